"""G-SimCLR: "G-SimCLR : Self-Supervised Contrastive Learning with Guided Projection via Pseudo Labelling"
(Chakraborty, Gosthipaty & Paul, ICDM Workshops 2020, arXiv:2009.12007)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.training_set import extract, unaugmented_train_loader
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.vision_ssl.simclr import SimCLR
from reprzoo.losses import guided_nt_xent, kmeans


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class DenoisingAutoencoder(nn.Module):
    """G-SimCLR's denoising autoencoder (the authors' CIFAR-10 model): Gaussian noise on the input, three
    conv-BN-ReLU-max-pool blocks (32, 64, 128 channels), a mirrored decoder with upsampling; the latent is the
    global average of the bottleneck. Input sides must be multiples of 8."""

    def __init__(self, in_channels: int = 3, channels: tuple[int, int, int] = (32, 64, 128), noise_std: float = 0.04):
        super().__init__()
        c1, c2, c3 = channels
        pool = nn.MaxPool2d(2)
        self.encoder = nn.Sequential(*_block(in_channels, c1), pool, *_block(c1, c2), pool, *_block(c2, c3), pool)
        up = nn.Upsample(scale_factor=2)
        self.decoder = nn.Sequential(
            up, *_block(c3, c3), up, *_block(c3, c2), up, *_block(c2, c1), nn.Conv2d(c1, in_channels, 3, padding=1)
        )
        self.noise_std = noise_std

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = x + self.noise_std * torch.randn_like(x) if self.training else x
        return self.decoder(self.encoder(noisy))


@register_method(
    title="G-SimCLR : Self-Supervised Contrastive Learning with Guided Projection via Pseudo Labelling",
    wing="vision-ssl",
    arxiv="2009.12007",
)
class GSimCLR(SimCLR):
    """SimCLR with guided batches: before training, a denoising autoencoder is fitted to the training images, its
    latents are clustered by k-means into pseudo-labels, and NT-Xent never uses an image of the anchor's
    pseudo-class as a negative (fewer false negatives).

    The paper builds batches that hold no two images of one pseudo-class. Here batches stay random (the datamodule
    and its distributed sampler are untouched) and the same-pseudo-class negatives are removed inside NT-Xent
    (:func:`reprzoo.losses.guided_nt_xent`): the loss-side equivalent, which leaves every batch with no negative of
    the anchor's pseudo-class. The autoencoder runs at the start of fit on the unaugmented training images (Adam,
    MSE reconstruction of the noisy input) and is then discarded; the pseudo-labels are broadcast from rank zero.

    Defaults follow the authors' CIFAR-10 code: k = the batch size (64 there; ``None`` takes this run's global
    batch), autoencoder with 32-64-128 channels; the authors train it up to 100 epochs with early stopping, here
    for ``dae_epochs``. The authors' input noise has std 0.01 on [0, 1] pixels, about 0.04 on normalised inputs.

    Args:
        num_clusters: number of pseudo-classes k; ``None`` uses the global batch size.
        dae_epochs: epochs of autoencoder training.
        dae_channels: channels of the autoencoder's three encoder blocks.
        dae_noise_std: std of the Gaussian noise added to the (normalised) input.
        dae_lr: Adam learning rate of the autoencoder.
        cluster_seed: seed of the autoencoder's initialisation, noise and shuffling, and of k-means.
        kwargs: options of :class:`SimCLR` and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        num_clusters: int | None = None,
        dae_epochs: int = 20,
        dae_channels: tuple[int, int, int] = (32, 64, 128),
        dae_noise_std: float = 0.04,
        dae_lr: float = 1e-3,
        cluster_seed: int = 0,
        **kwargs,
    ):
        if num_clusters is not None and num_clusters < 2:
            raise ValueError(f"num_clusters must be at least 2, got {num_clusters}")
        if dae_epochs < 1:
            raise ValueError(f"dae_epochs must be at least 1, got {dae_epochs}")
        super().__init__(**kwargs)
        self.register_buffer("pseudo_labels", torch.empty(0, dtype=torch.long), persistent=False)  # rebuilt each fit

    def on_train_start(self) -> None:
        super().on_train_start()
        labels = self.compute_pseudo_labels() if self.trainer.is_global_zero else None
        labels = self.trainer.strategy.broadcast(labels, src=0)
        self.pseudo_labels = labels.to(self.device)

    @torch.enable_grad()
    def compute_pseudo_labels(self) -> torch.Tensor:
        """Fit the denoising autoencoder to the training images, then k-means its latents."""
        hp = self.hparams
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp.cluster_seed)
            dae = DenoisingAutoencoder(channels=tuple(hp.dae_channels), noise_std=hp.dae_noise_std).to(self.device)
            optimizer = torch.optim.Adam(dae.parameters(), lr=hp.dae_lr)
            for epoch in range(hp.dae_epochs):
                for x, _ in unaugmented_train_loader(self.trainer, shuffle=True, seed=hp.cluster_seed + epoch):
                    x = x.to(self.device)
                    loss = F.mse_loss(dae(x), x)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            dae.eval()
            latents = extract(dae.latent, unaugmented_train_loader(self.trainer), self.device)
        k = hp.num_clusters or self.global_batch_size() or 64
        return kmeans(latents, min(k, len(latents)), seed=hp.cluster_seed)[1]

    def contrastive_loss(self, z1, z2, labels=None, indices=None) -> torch.Tensor:
        if indices is None:
            raise ValueError("G-SimCLR needs the samples' indices in the training batches to look up pseudo-labels")
        if self.pseudo_labels.numel() == 0:  # outside Trainer.fit: no pseudo-labels, plain NT-Xent
            groups = torch.full_like(indices, -1)
        else:
            groups = self.pseudo_labels[indices]
        return guided_nt_xent(z1, z2, groups, self.hparams.temperature)
