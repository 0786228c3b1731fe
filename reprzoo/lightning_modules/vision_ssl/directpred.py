"""DirectPred: "Understanding self-supervised Learning Dynamics without Contrastive Pairs" (Tian, Chen & Ganguli,
ICML 2021, arXiv:2102.06810)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from reprzoo.components.heads import BYOLPredictionHead
from reprzoo.distributed import all_reduce_mean
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.vision_ssl.byol import BYOL
from reprzoo.losses import byol_loss, directpred_weight, feature_correlation, update_correlation

PredictorMode = Literal["direct", "linear", "mlp"]


@register_method(
    title="Understanding self-supervised Learning Dynamics without Contrastive Pairs",
    wing="vision-ssl",
    arxiv="2102.06810",
)
class DirectPred(BYOL):
    """A siamese network whose linear predictor is not trained but set directly: keep
    F <- rho F + (1 - rho) E[f f^T] over the predictor's inputs f, decompose F = U diag(s) U^T, and every
    ``update_every`` steps set W_p = U diag(sqrt(s_j / s_max) + eps) U^T.

    ``predictor="linear"`` and ``"mlp"`` train the predictor instead, giving the paper's baselines from the same
    module; ``ema_target=False`` replaces the EMA target by the online network under stop-gradient
    (SimSiam style), ``True`` keeps BYOL's target. Defaults are the authors' reference CIFAR/STL-10 command
    (facebookresearch/luckmatters, ssl/real-dataset: rho 0.3, eps 0.01, update every step, linear predictor
    without bias); on ImageNet the paper updates every 5 steps.

    Args:
        predictor: ``direct`` (DirectPred), ``linear`` or ``mlp`` (trained baselines).
        dp_rho: EMA rate of the correlation matrix.
        dp_eps: epsilon added to the normalised square-rooted eigenvalues.
        update_every: steps between predictor updates.
        ema_target: BYOL-style EMA target (True) or SimSiam-style stop-gradient on the online network (False).
        kwargs: options of :class:`BYOL` and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        predictor: PredictorMode = "direct",
        dp_rho: float = 0.3,
        dp_eps: float = 0.01,
        update_every: int = 1,
        ema_target: bool = True,
        **kwargs,
    ):
        if predictor not in ("direct", "linear", "mlp"):
            raise ValueError(f"predictor must be 'direct', 'linear' or 'mlp', got {predictor!r}")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        self._predictor_mode = predictor
        super().__init__(**kwargs)
        dim = self.hparams.proj_output_dim
        self.register_buffer("correlation", torch.zeros(dim, dim))
        if not ema_target:
            del self.target_backbone, self.target_projector

    def build_predictor(self, dim: int, hidden_dim: int) -> nn.Module:
        if self._predictor_mode == "mlp":
            return BYOLPredictionHead(dim, hidden_dim, dim)
        linear = nn.Linear(dim, dim, bias=False)
        if self._predictor_mode == "direct":
            linear.weight.requires_grad_(False)
        return linear

    @property
    def momentum_pairs(self):
        return super().momentum_pairs if self.hparams.ema_target else []

    @torch.no_grad()
    def target_projections(self, views):
        if self.hparams.ema_target:
            return super().target_projections(views)
        return [self.projector(self.backbone(x)) for x in views]  # stop-gradient on the online network

    @torch.no_grad()
    def update_predictor(self, z: torch.Tensor) -> None:
        """Accumulate E[f f^T] (averaged over ranks so every rank sets the same W_p) and set W_p on schedule."""
        batch_corr = all_reduce_mean(feature_correlation(z))
        self.correlation.copy_(update_correlation(self.correlation, batch_corr, self.hparams.dp_rho))
        if self.global_step % self.hparams.update_every == 0:
            with torch.autocast(device_type=z.device.type, enabled=False):
                self.predictor.weight.copy_(directpred_weight(self.correlation, self.hparams.dp_eps))

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        if self._predictor_mode == "direct" and self.training:
            self.update_predictor(torch.cat([z1, z2]))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self.target_projections([x1, x2])
        loss = byol_loss(p1, p2, t1, t2)
        return TrainingOutput(loss, features=f1, embeddings=z1)
