"""SimSiam: "Exploring Simple Siamese Representation Learning" (Chen & He, CVPR 2021, arXiv:2011.10566)."""

from __future__ import annotations

import torch

from reprzoo.components.heads import SimSiamPredictionHead, SimSiamProjectionHead
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses import simsiam_loss


@register_method(title="Exploring Simple Siamese Representation Learning", wing="vision-ssl", arxiv="2011.10566")
class SimSiam(EmbeddingModule):
    """Two views through encoder f (backbone + projector) and predictor h; the symmetrised negative cosine
    D(p1, sg(z2))/2 + D(p2, sg(z1))/2, with no negatives, momentum encoder or large batch.

    Defaults are the paper's ImageNet setting: SGD, lr 0.05 x batch/256, weight decay 1e-4, momentum 0.9,
    cosine decay, predictor LR not decayed ("fix_pred_lr"), 3-layer 2048-d projector, 512-d predictor bottleneck.
    The CIFAR recipes use the paper's Appendix D: 2-layer projector, lr 0.03, weight decay 5e-4, batch 512.

    Args:
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of projector and predictor.
        proj_layers: layers of the projector (3 on ImageNet, 2 on CIFAR).
        pred_hidden_dim: bottleneck width of the predictor.
        fix_predictor_lr: keep the predictor's LR constant while the rest follows the cosine schedule.
        kwargs: shared options of :class:`EmbeddingModule` (backbone, optimiser, evaluation).
    """

    def __init__(
        self,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        proj_layers: int = 3,
        pred_hidden_dim: int = 512,
        fix_predictor_lr: bool = True,
        lr: float = 0.05,
        weight_decay: float = 1e-4,
        **kwargs,
    ):
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        self.projector = SimSiamProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim, proj_layers)
        self.predictor = SimSiamPredictionHead(proj_output_dim, pred_hidden_dim, proj_output_dim)

    def param_groups(self):
        fixed = self.hparams.fix_predictor_lr
        return [
            {"name": "encoder", "params": list(self._named_trainable(exclude=("probe.", "predictor.")))},
            {"name": "predictor", "params": list(self.predictor.named_parameters()), "fixed_lr": fixed},
        ]

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return TrainingOutput(simsiam_loss(p1, p2, z1, z2), features=f1, embeddings=z1)
