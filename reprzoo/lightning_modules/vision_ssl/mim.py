"""cMIM: "Contrastive Mutual Information Learning: Toward Robust Representations without Positive-Pair Augmentations"
(Livne, 2025, arXiv:2509.21511), earlier "cMIM: A Contrastive Mutual Information Framework for Unified Generative
and Discriminative Representation Learning" (arXiv:2502.19642)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from reprzoo.components.representation import Represent
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.mim import a_mim_loss, cmim_contrastive_loss, gaussian_log_prob


class ConvDecoder(nn.Module):
    """p(x|z): a linear map to a ``width`` x s x s grid (s = image_size / 8), three stride-2 transposed convolutions
    back to the image size, and a 3x3 convolution to the mean image; ``hidden(z)`` is the first feature map."""

    def __init__(self, latent_dim: int, image_size: int = 32, out_chans: int = 3, width: int = 128):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {image_size}")
        self.width, self.side = width, image_size // 8
        self.fc = nn.Sequential(nn.Linear(latent_dim, width * self.side**2), nn.ReLU(inplace=True))
        layers, ch = [], width
        for _ in range(3):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1), nn.BatchNorm2d(ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        self.up = nn.Sequential(*layers, nn.Conv2d(ch, out_chans, 3, padding=1))

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z).view(-1, self.width, self.side, self.side)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.hidden(z))


@register_method(
    title="Contrastive Mutual Information Learning: Toward Robust Representations without Positive-Pair Augmentations",
    wing="vision-ssl",
    arxiv="2509.21511",
)
class CMIM(EmbeddingModule):
    """A Mutual Information Machine (a probabilistic auto-encoder: Gaussian encoder q(z|x), decoder p(x|z), standard
    normal prior P(z)) trained with A-MIM, plus a contrastive term on the latent codes that needs no augmented
    positive pair: the positive of a code is the code of the sample's own reconstruction (encode, sample z, decode,
    encode again), the other samples' reconstructions are the negatives, averaged rather than summed so the term is
    insensitive to batch size. L = L_A-MIM + contrastive_weight * L_contrastive.

    The representation is either the encoder mean mu(x) or, by default, the paper's training-free "informative
    embedding" read from the encoder-decoder: mu(x) concatenated with the pooled first hidden layer of the decoder
    at mu(x). (Only the two abstracts were at hand offline: the exact forms of the contrastive term and of the
    informative embedding here are reconstructions from the method's description, not checked against the full
    text.) The encoder trunk is ``backbone``; an exported zoo encoder is that trunk (the encoder's hidden state).

    Args:
        latent_dim: size of z.
        image_size: side of the inputs (the decoder's output size).
        decoder_width: channels of the decoder's first feature map.
        decoder_logvar: log-variance of the Gaussian decoder p(x|z) (fixed; raising it lowers the weight of
            reconstruction against the latent and contrastive terms).
        contrastive_weight: weight of the contrastive term (0 gives plain MIM).
        temperature: temperature of the contrastive similarities.
        embedding: ``informative`` (mu and decoder hidden state) or ``mean`` (mu only).
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    LOGVAR_RANGE = (-6.0, 2.0)  # the encoder's log-variance is clamped as in the MIM code (Hardtanh)

    def __init__(
        self,
        latent_dim: int = 64,
        image_size: int = 32,
        decoder_width: int = 128,
        decoder_logvar: float = 0.0,
        contrastive_weight: float = 1.0,
        temperature: float = 0.1,
        embedding: Literal["informative", "mean"] = "informative",
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay, **kwargs)
        if embedding not in ("informative", "mean"):
            raise ValueError(f"embedding must be 'informative' or 'mean', got {embedding!r}")
        self.q_mean = nn.Linear(self.feature_dim, latent_dim)
        self.q_logvar = nn.Linear(self.feature_dim, latent_dim)
        self.decoder = ConvDecoder(latent_dim, image_size, width=decoder_width)
        self.representation_width = latent_dim + (decoder_width if embedding == "informative" else 0)
        self.resize_probe(self.representation_width)  # the probe reads the method's embedding, not the trunk's features

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): mean and (clamped) log-variance of the Gaussian encoder."""
        h = self.backbone(self._format(x))
        return self.q_mean(h), self.q_logvar(h).clamp(*self.LOGVAR_RANGE)

    def representation(self, mean: torch.Tensor) -> torch.Tensor:
        if self.hparams.embedding == "mean":
            return mean
        return torch.cat([mean, self.decoder.hidden(mean).mean(dim=(2, 3))], dim=1)

    def encoder(self) -> nn.Module:
        return Represent(self, CMIM.embed_mean, self.representation_width)

    def embed_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The representation of the encoder mean mu(x) (``embedding``: informative or mean)."""
        return self.representation(self.encode(x)[0])

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x = views[0]  # no second view: the positive comes from the model's own reconstruction
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        x_hat = self.decoder(z)
        log_px = gaussian_log_prob(x, x_hat, self.hparams.decoder_logvar)
        log_qz = gaussian_log_prob(z, mean, logvar)
        log_pz = gaussian_log_prob(z, torch.zeros_like(z), 0.0)
        loss = a_mim_loss(log_px, log_qz, log_pz)
        if self.hparams.contrastive_weight > 0:
            mean_hat, _ = self.encode(x_hat)
            loss = loss + self.hparams.contrastive_weight * cmim_contrastive_loss(mean, mean_hat, self.hparams.temperature)
        return TrainingOutput(loss, features=self.representation(mean.detach()), embeddings=mean)


@register_method(
    title="cMIM: A Contrastive Mutual Information Framework for Unified Generative and Discriminative Representation Learning",
    wing="vision-ssl",
    arxiv="2502.19642",
)
class CMIMFramework(CMIM):
    """The Feb-2025 version of cMIM (arXiv:2502.19642; earlier "Contrastive MIM", arXiv:2411.10548): the same method
    as :class:`CMIM` (A-MIM auto-encoder, augmentation-free batch-size-robust contrastive term on latent codes,
    informative embeddings), which the Sep-2025 paper re-titles and extends with experiments. It is registered under
    its own catalogue title so both rows resolve to one implementation; it adds nothing."""
