"""SimCLR: "A Simple Framework for Contrastive Learning of Visual Representations" (Chen, Kornblith, Norouzi & Hinton,
ICML 2020, arXiv:2002.05709)."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.heads import ProjectionHead
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses import nt_xent


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR's g(.): "We use a MLP with one hidden layer to obtain z_i = g(h_i) = W(2) sigma(W(1) h_i) where sigma
    is a ReLU non-linearity" (arXiv:2002.05709, Sec. 2.1), 128-d output (Sec. B.1). The authors' code batch-normalises
    both layers (the hidden one with ReLU, the output one without); ``output_bn=False`` drops the output BN."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, output_bn: bool = True):
        out_norm = nn.BatchNorm1d(out_dim, affine=False) if output_bn else None
        super().__init__(
            [
                (in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), False),
                (hidden_dim, out_dim, out_norm, None, not output_bn),
            ]
        )


@register_method(
    title="A Simple Framework for Contrastive Learning of Visual Representations", wing="vision-ssl", arxiv="2002.05709"
)
class SimCLR(EmbeddingModule):
    """Two augmented views of each image go through the encoder f (backbone) and the projector g; NT-Xent pulls the
    two projections of an image together against the other 2(N-1) views of the global batch (gathered across
    ranks, with gradients).

    Defaults are the paper's ImageNet setting (Sec. 2.3, B.1): LARS, lr 0.3 x batch/256, weight decay 1e-6,
    10 warmup epochs then cosine decay, temperature 0.1 (the authors' ImageNet command), 2048-d hidden layer
    (ResNet-50's width), 128-d output. The CIFAR-10 recipe follows Appendix B.9 and the authors' CIFAR command.

    Args:
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (the space of the loss).
        proj_output_bn: batch-normalise the projector's output layer (the authors' code does).
        temperature: the NT-Xent temperature tau.
        kwargs: shared options of :class:`EmbeddingModule` (backbone, optimiser, evaluation).
    """

    def __init__(
        self,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        proj_output_bn: bool = True,
        temperature: float = 0.1,
        optimizer: str = "lars",
        lr: float = 0.3,
        weight_decay: float = 1e-6,
        warmup_epochs: float = 10.0,
        **kwargs,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        self.projector = SimCLRProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim, proj_output_bn)

    def contrastive_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels=None, indices=None) -> torch.Tensor:
        """NT-Xent over the global batch; subclasses change which pairs count as negatives."""
        return nt_xent(z1, z2, self.hparams.temperature)

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        return TrainingOutput(self.contrastive_loss(z1, z2, labels, indices), features=f1, embeddings=z1)
