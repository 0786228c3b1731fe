"""DBPM: "Towards Enhancing Time Series Contrastive Learning: A Dynamic Bad Pair Mining Approach" (Lan, Yan, Hong &
Feng, ICLR 2024, arXiv:2302.03357), on a SimCLR (NT-Xent) base with a 1-D CNN, as the authors' code does."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reprzoo.components.heads import ProjectionHead
from reprzoo.distributed import gather
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.dbpm import find_bad_pairs, gaussian_weights, historical_loss, nt_xent_per_sample
from reprzoo.training.optim import OptimizerName, SchedulerName


class DBPMProjectionHead(ProjectionHead):
    """The projection head of DBPM's SimCLR: ``Linear(256, 512) - ReLU - Linear(512, 256)`` (the authors' code,
    ``head_hidden_dim: 512``, ``head_output_dim: 256``)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 256):
        super().__init__([(in_dim, hidden_dim, None, nn.ReLU(inplace=True), True), (hidden_dim, out_dim, None, None, True)])


class PairLossMemory:
    """DBPM's memory module: the loss of every positive pair (training sample) in every epoch, NaN where unseen.

    A plain tensor on the CPU that grows with the largest index and epoch written, identical on every rank (writes
    all-gather the global batch). It lives in checkpoints through :meth:`DBPM.on_save_checkpoint`, not in the
    module's state dict, so an exported model loads without knowing the dataset's size.
    """

    def __init__(self):
        self.history = torch.empty(0, 0)

    def record(self, indices: torch.Tensor, losses: torch.Tensor, epoch: int) -> None:
        indices, losses = indices.detach().long().cpu(), losses.detach().float().cpu()
        rows = max(self.history.shape[0], int(indices.max()) + 1 if indices.numel() else 0)
        cols = max(self.history.shape[1], epoch + 1)
        if (rows, cols) != tuple(self.history.shape):
            grown = torch.full((rows, cols), float("nan"))
            grown[: self.history.shape[0], : self.history.shape[1]] = self.history
            self.history = grown
        self.history[indices, epoch] = losses

    def before(self, epoch: int) -> torch.Tensor:
        """The losses of the epochs before ``epoch``, ``(num_pairs, epoch)``."""
        history = self.history[:, :epoch]
        if history.shape[1] < epoch:
            history = torch.cat([history, torch.full((history.shape[0], epoch - history.shape[1]), float("nan"))], 1)
        return history


@register_method(
    title="Towards Enhancing Time Series Contrastive Learning: A Dynamic Bad Pair Mining Approach",
    wing="vision-ssl",
    modality="sequence",
    arxiv="2302.03357",
)
class DBPM(EmbeddingModule):
    """SimCLR on two augmented views of a series, with Dynamic Bad Pair Mining plugged into its loss.

    The memory module records each pair's NT-Xent in every epoch (keyed by the batch ``indices``). From epoch
    ``mining_start_epoch`` on, at the start of each epoch the pairs' historical losses m_i (a mean that weighs later
    epochs more) give mu and sigma over the training set; pairs with m_i <= mu - beta_noisy sigma (noisy positives)
    or m_i >= mu + beta_faulty sigma (faulty positives) are flagged, and the transformation module multiplies a
    flagged pair's loss l_i by the Gaussian density N(l_i; mu, sigma^2). DBPM has no learnable parameters.

    Defaults are the authors' PTB-XL setting (their code and ``run.sh``): mining from epoch 50 of 80, beta_noisy 2,
    beta_faulty 3, temperature 0.2, Adam at lr 3e-4 without weight decay or schedule, batch 512, a 512-256
    projection head. The backbone there is a 1-D ResNet-34 with a 256-d output; ``conv1d_tstcc`` is the default here.

    Args:
        proj_hidden_dim: hidden width of the projection head.
        proj_output_dim: output width of the projection head.
        temperature: NT-Xent temperature.
        mining_start_epoch: the first epoch in which bad pairs are mined (the warm-up epochs before it only fill the
            memory).
        beta_noisy: how many standard deviations below the mean flag a noisy positive pair.
        beta_faulty: how many standard deviations above the mean flag a faulty positive pair.
        kwargs: shared options of :class:`EmbeddingModule` (backbone, optimiser, evaluation).
    """

    def __init__(
        self,
        proj_hidden_dim: int = 512,
        proj_output_dim: int = 256,
        temperature: float = 0.2,
        mining_start_epoch: int = 50,
        beta_noisy: float = 2.0,
        beta_faulty: float = 3.0,
        backbone: str = "conv1d_tstcc",
        optimizer: OptimizerName = "adamw",
        lr: float = 3e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.0,
        scheduler: SchedulerName = "constant",
        **kwargs: Any,
    ):
        super().__init__(
            backbone=backbone, optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay, scheduler=scheduler, **kwargs,
        )  # fmt: skip
        if mining_start_epoch < 0:
            raise ValueError(f"mining_start_epoch must be non-negative, got {mining_start_epoch}")
        self.projector = DBPMProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim)
        self.memory = PairLossMemory()
        self.noisy = self.faulty = None  # boolean masks over pairs while mining is on
        self.mu = self.sigma = float("nan")

    # ----------------------------------------------------------------- bad pair mining
    def mine_bad_pairs(self, epoch: int, max_epochs: int) -> None:
        """Flag the noisy and faulty positive pairs from the memory of the epochs before ``epoch``."""
        if epoch < self.hparams.mining_start_epoch or epoch == 0:
            self.noisy = self.faulty = None
            return
        mean_loss = historical_loss(self.memory.before(epoch), max_epochs)
        self.noisy, self.faulty, self.mu, self.sigma = find_bad_pairs(
            mean_loss, self.hparams.beta_noisy, self.hparams.beta_faulty
        )

    def on_train_epoch_start(self) -> None:
        self.mine_bad_pairs(self.current_epoch, self.trainer.max_epochs or self.current_epoch + 1)
        if self.noisy is not None:
            self.log("train/noisy_pairs", self.noisy.float().sum())
            self.log("train/faulty_pairs", self.faulty.float().sum())

    def _flagged(self, indices: torch.Tensor) -> torch.Tensor:
        flagged = torch.zeros(indices.shape[0], dtype=torch.bool)
        if self.noisy is not None:
            idx = indices.detach().long().cpu()
            known = idx < self.noisy.shape[0]
            flagged[known] = self.noisy[idx[known]] | self.faulty[idx[known]]
        return flagged.to(indices.device)

    # ----------------------------------------------------------------- objective
    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        pair_loss = nt_xent_per_sample(z1, z2, self.hparams.temperature)
        if indices is None:  # no sample identities: plain SimCLR
            return TrainingOutput(pair_loss.mean(), features=f1, embeddings=z1)
        if self.training:
            self.memory.record(gather(indices), gather(pair_loss.detach()), self.current_epoch)
        flagged = self._flagged(indices)
        weights = gaussian_weights(pair_loss, flagged, self.mu, self.sigma)
        return TrainingOutput((weights * pair_loss).mean(), features=f1, embeddings=z1)

    # ----------------------------------------------------------------- the memory in checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dbpm_memory"] = self.memory.history.clone()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "dbpm_memory" in checkpoint:
            self.memory.history = checkpoint["dbpm_memory"].float().cpu()
