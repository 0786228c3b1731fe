"""BYOL: "Bootstrap your own latent: A new approach to self-supervised Learning" (Grill et al., NeurIPS 2020,
arXiv:2006.07733)."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.ema import copy_as_target
from reprzoo.components.heads import BYOLPredictionHead, BYOLProjectionHead
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses import byol_loss


@register_method(
    title="Bootstrap your own latent: A new approach to self-supervised Learning",
    wing="vision-ssl",
    arxiv="2006.07733",
)
class BYOL(EmbeddingModule):
    """An online network (backbone, projector, predictor) regresses the projection of the other view made by a
    target network, the online network's EMA with decay tau rising from tau_base to 1 on a cosine schedule.

    Defaults are the paper's: projector/predictor 4096 hidden, 256 out; LARS, lr 0.2 x batch/256, weight decay
    1.5e-6, tau_base 0.996, 10 warmup epochs of 1000 (the recipes set the CIFAR values).

    Args:
        proj_hidden_dim: hidden width of projector and predictor.
        proj_output_dim: output width of projector and predictor.
        tau_base: initial EMA decay of the target network.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        tau_base: float = 0.996,
        optimizer: str = "lars",
        lr: float = 0.2,
        weight_decay: float = 1.5e-6,
        warmup_epochs: float = 10.0,
        **kwargs,
    ):
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        self.tau_base = tau_base
        self.projector = BYOLProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim)
        self.predictor = self.build_predictor(proj_output_dim, proj_hidden_dim)
        self.target_backbone = copy_as_target(self.backbone)
        self.target_projector = copy_as_target(self.projector)

    def build_predictor(self, dim: int, hidden_dim: int) -> nn.Module:
        return BYOLPredictionHead(dim, hidden_dim, dim)

    @property
    def momentum_pairs(self):
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]

    def param_groups(self):
        return [{"name": "online", "params": list(self._named_trainable(exclude=("probe.", "target_")))}]

    @torch.no_grad()
    def target_projections(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.target_projector(self.target_backbone(x)) for x in views]

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self.target_projections([x1, x2])
        return TrainingOutput(byol_loss(p1, p2, t1, t2), features=f1, embeddings=z1)
