"""Redundancy reduction between the embedding dimensions of two views: Barlow Twins and VICReg.

- Barlow Twins: "Barlow Twins: Self-Supervised Learning via Redundancy Reduction" (Zbontar et al., ICML 2021,
  arXiv:2103.03230).
- VICReg: "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning" (Bardes et al.,
  ICLR 2022, arXiv:2105.04906).
"""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.heads import Layer, ProjectionHead
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.redundancy import barlow_twins_loss, vicreg_loss


def _expander(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, hidden_bias: bool) -> list[Layer]:
    if num_layers < 1:
        raise ValueError(f"the projector needs at least 1 layer, got num_layers={num_layers}")
    layers: list[Layer] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append((dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), hidden_bias))
        dim = hidden_dim
    layers.append((dim, out_dim, None, None, False))
    return layers


class BarlowTwinsProjectionHead(ProjectionHead):
    """Barlow Twins' projector: "The projector network has three linear layers, each with 8192 output units. The
    first two layers of the projector are followed by a batch normalization layer and rectified linear units"
    (arXiv:2103.03230, Sec. 2). Linear layers without bias, as the official code."""

    def __init__(self, in_dim: int, hidden_dim: int = 8192, out_dim: int = 8192, num_layers: int = 3):
        super().__init__(_expander(in_dim, hidden_dim, out_dim, num_layers, hidden_bias=False))


class VICRegProjectionHead(ProjectionHead):
    """VICReg's expander: "composed of two fully-connected layers with batch normalization (BN) and ReLU, and a
    third linear layer. The sizes of all 3 layers were set to 8192" (arXiv:2105.04906, Sec. 4.1)."""

    def __init__(self, in_dim: int, hidden_dim: int = 8192, out_dim: int = 8192, num_layers: int = 3):
        super().__init__(_expander(in_dim, hidden_dim, out_dim, num_layers, hidden_bias=True))


@register_method(title="Barlow Twins: Self-Supervised Learning via Redundancy Reduction", wing="vision-ssl", arxiv="2103.03230")
class BarlowTwins(EmbeddingModule):
    """Two views through a shared encoder and projector; the cross-correlation matrix of their batch-standardised
    embeddings is pushed towards the identity: sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2.

    Defaults are the paper's ImageNet setting: 3 x 8192 projector, lambda 5e-3, LARS with lr 0.2 (weights) and
    0.0048 (biases and batch-norm parameters, excluded from weight decay and LARS adaptation) x batch/256, weight
    decay 1.5e-6, 10 warmup epochs then cosine decay to 1/1000 of the peak (official code).

    Args:
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector.
        proj_layers: linear layers of the projector.
        lambda_: weight of the off-diagonal (redundancy reduction) term.
        bias_lr: base LR of biases and normalisation parameters (scaled with the batch like ``lr``).
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 8192,
        proj_output_dim: int = 8192,
        proj_layers: int = 3,
        lambda_: float = 5e-3,
        bias_lr: float = 0.0048,
        optimizer: str = "lars",
        lr: float = 0.2,
        weight_decay: float = 1.5e-6,
        warmup_epochs: float = 10.0,
        min_lr_ratio: float = 0.001,
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio, **kwargs,
        )  # fmt: skip
        self.projector = BarlowTwinsProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim, proj_layers)

    def param_groups(self):
        params = list(self._named_trainable(exclude=("probe.",)))
        peak = self.effective_lr() if self._trainer is not None else self.hparams.lr
        bias_lr = peak * self.hparams.bias_lr / self.hparams.lr
        return [
            {"name": "weights", "params": [(n, p) for n, p in params if p.ndim > 1]},
            {"name": "biases", "params": [(n, p) for n, p in params if p.ndim <= 1], "lr": bias_lr},
        ]

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        return TrainingOutput(barlow_twins_loss(z1, z2, self.hparams.lambda_), features=f1, embeddings=z1)


@register_method(
    title="VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
    wing="vision-ssl",
    arxiv="2105.04906",
)
class VICReg(EmbeddingModule):
    """Invariance (mean squared distance between the two views' embeddings), variance (a hinge keeping each
    dimension's standard deviation above gamma) and covariance (decorrelating dimensions) on the expander output.

    Defaults are the paper's ImageNet setting: 8192-8192-8192 expander, lambda = mu = 25, nu = 1, gamma 1,
    eps 1e-4; LARS with lr 0.2 x batch/256, weight decay 1e-6, 10 warmup epochs, cosine decay to 1/1000 of the peak
    (official code); biases and batch-norm parameters excluded from weight decay and LARS adaptation.

    Args:
        proj_hidden_dim: hidden width of the expander.
        proj_output_dim: output width of the expander.
        proj_layers: linear layers of the expander.
        sim_coeff: lambda, weight of the invariance term.
        std_coeff: mu, weight of the variance term.
        cov_coeff: nu, weight of the covariance term.
        gamma: target standard deviation.
        eps: numerical stabiliser of the standard deviation.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 8192,
        proj_output_dim: int = 8192,
        proj_layers: int = 3,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        optimizer: str = "lars",
        lr: float = 0.2,
        weight_decay: float = 1e-6,
        warmup_epochs: float = 10.0,
        min_lr_ratio: float = 0.001,
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio, **kwargs,
        )  # fmt: skip
        self.projector = VICRegProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim, proj_layers)

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        loss = vicreg_loss(z1, z2, hp.sim_coeff, hp.std_coeff, hp.cov_coeff, hp.gamma, hp.eps)
        return TrainingOutput(loss, features=f1, embeddings=z1)
