"""Hydra: "Rethinking Positive Pairs in Contrastive Learning" (Wu, Mo, Feng, Atito, Kittler & Awais, 2024,
arXiv:2410.18200)."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.heads import ProjectionHead
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses import nt_xent
from reprzoo.losses.hydra import class_pair_contrastive_loss, gate_entropy


class HydraProjectionHead(ProjectionHead):
    """SimCLR's two-layer projector ending in LayerNorm instead of BatchNorm, as in the authors' code ("BN will
    prevent gate close": a batch-normalised dimension cannot be switched off for one class pair)."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 256):
        super().__init__(
            [
                (in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), False),
                (hidden_dim, out_dim, nn.LayerNorm(out_dim), None, False),
            ]
        )


class FeatureFilter(nn.Module):
    """The feature filter g(y1, y2) = sigmoid(f_g((f_l(y1) + f_l(y2)) / 2)): a label embedding f_l, averaged over
    the pair, through the authors' gate MLP (ReLU, BN, linear, ReLU, BN, linear) to a gate in [0, 1]^d."""

    def __init__(self, num_classes: int, out_dim: int, label_dim: int = 512, hidden_dim: int = 1024):
        super().__init__()
        self.label_embedding = nn.Embedding(num_classes, label_dim)
        self.mlp = nn.Sequential(
            nn.ReLU(), nn.BatchNorm1d(label_dim), nn.Linear(label_dim, hidden_dim),
            nn.ReLU(), nn.BatchNorm1d(hidden_dim), nn.Linear(hidden_dim, out_dim),
        )  # fmt: skip

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp((self.label_embedding(y1) + self.label_embedding(y2)) / 2))


@register_method(title="Rethinking Positive Pairs in Contrastive Learning", wing="vision-ssl", arxiv="2410.18200")
class Hydra(EmbeddingModule):
    """Contrastive learning where any two classes can form a positive pair. Each image of class y1 is paired with
    the class y2 of a random other image of the batch (arbitrary pairs, most of them distinct); the feature filter
    gives the pair a gate that selects the embedding dimensions the two classes share, and an InfoNCE in that
    gated subspace pulls the anchor towards the other view's samples of class y2 and away from samples of neither
    class. A standard SimCLR NT-Xent on the two views runs alongside:
    L = (L_SimCLR + beta * L_Hydra) / (1 + beta) + gamma * H(gates), as in the authors' code (beta = 1; the gate
    entropy regulariser gamma is 0 there by default). Labels are needed; unlabelled samples (-1) only join SimCLR.

    Sizes follow the authors' code: 2048-d projector hidden layer, 256-d output with LayerNorm, 512-d label
    embedding and 1024-d gate MLP, temperature 0.1. The optimiser is SimCLR's (LARS, lr 0.3 x batch/256, weight
    decay 1e-6, 10 warmup epochs).

    Args:
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector, the gated space.
        label_dim: width of the label embedding of the feature filter.
        gate_hidden_dim: hidden width of the gate MLP.
        temperature: temperature of both contrastive terms.
        hydra_weight: beta, the weight of the class-pair term against SimCLR's.
        gate_entropy_weight: gamma, the weight of the gates' Bernoulli entropy.
        kwargs: shared options of :class:`EmbeddingModule`; ``num_classes`` is required.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        label_dim: int = 512,
        gate_hidden_dim: int = 1024,
        temperature: float = 0.1,
        hydra_weight: float = 1.0,
        gate_entropy_weight: float = 0.0,
        optimizer: str = "lars",
        lr: float = 0.3,
        weight_decay: float = 1e-6,
        warmup_epochs: float = 10.0,
        **kwargs,
    ):
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        if not self.hparams.num_classes:
            raise ValueError("Hydra pairs classes: num_classes is required")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.projector = HydraProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim)
        self.filter = FeatureFilter(self.hparams.num_classes, proj_output_dim, label_dim, gate_hidden_dim)

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError("Hydra needs the batch's labels")
        hp = self.hparams
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        loss = nt_xent(z1, z2, hp.temperature)
        pair_labels = labels[torch.randperm(labels.shape[0], device=labels.device)]  # arbitrary class pairs
        gates = self.filter(labels.clamp_min(0), pair_labels.clamp_min(0))
        hydra = 0.5 * (
            class_pair_contrastive_loss(z1, z2, gates, labels, pair_labels, hp.temperature)
            + class_pair_contrastive_loss(z2, z1, gates, labels, pair_labels, hp.temperature)
        )
        loss = (loss + hp.hydra_weight * hydra) / (1 + hp.hydra_weight)
        if hp.gate_entropy_weight > 0:
            loss = loss + hp.gate_entropy_weight * gate_entropy(gates)
        return TrainingOutput(loss, features=f1, embeddings=z1)
