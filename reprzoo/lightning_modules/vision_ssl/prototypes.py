"""ST-ProtoPNet: "Learning Support and Trivial Prototypes for Interpretable Image Classification" (Wang, Liu, Chen,
Liu, Tian, McCarthy, Frazer & Carneiro, ICCV 2023, arXiv:2301.04011)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.feature_maps import stage_maps
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.prototypes import (
    closeness_cost,
    cluster_cost,
    discrimination_cost,
    last_layer_l1,
    orthogonality_cost,
    prototype_similarity_maps,
    separation_cost,
)


class PrototypeBranch(nn.Module):
    """One branch: add-on layers (x2 bilinear upsampling, two 1x1 convolutions, as in the paper's ResNet setting),
    ``classes x per_class`` prototypes, and a last layer initialised to +1 for a prototype's own class and -0.5 for
    the others (ProtoPNet)."""

    def __init__(self, in_channels: int, num_classes: int, per_class: int, dim: int):
        super().__init__()
        self.add_on = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, dim, 1),
            nn.Conv2d(dim, dim, 1),
        )
        for m in self.add_on.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.prototypes = nn.Parameter(torch.rand(num_classes * per_class, dim))
        self.last_layer = nn.Linear(num_classes * per_class, num_classes, bias=False)
        own = torch.arange(num_classes)[:, None] == torch.arange(num_classes * per_class)[None, :] // per_class
        self.last_layer.weight.data.copy_(own.float() * 1.5 - 0.5)

    def forward(self, fmap: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(b, classes)`` and each prototype's max similarity over patches ``(b, prototypes)``."""
        sims = prototype_similarity_maps(self.add_on(fmap), self.prototypes, kind).amax(dim=(2, 3))
        return self.last_layer(sims), sims


@register_method(
    title="Learning Support and Trivial Prototypes for Interpretable Image Classification", wing="vision-ssl", arxiv="2301.04011"
)
class STProtoPNet(EmbeddingModule):
    """A supervised, interpretable prototype head with two branches on the backbone's feature map. Trivial
    prototypes follow ProtoPNet (cluster and separation costs) and a discrimination loss keeps those of different
    classes apart, far from the decision boundary; support prototypes add the SVM-inspired closeness loss, which
    pulls the prototypes of different classes together, onto the boundary, like support vectors. Each branch's
    logits come from the max patch-prototype similarities through its last layer; the prediction sums both.

    Per branch: L = CE + clst * Clst + sep * Sep + orth * Orth + l1 * L1 (+ discr * Discr for trivial, + close * Close
    for support), with the official code's weights: clst -0.8 (on similarities), sep 0.08 (trivial) / 0.48 (support),
    orth 1e-3, l1 1e-4, discr 1.0, close 1.0; 5 prototypes of 64 dims per class, cosine similarity. The code
    alternates the two branches' losses batch by batch; here each step takes their mean. Adam at 1e-4 for the
    backbone and 3e-3 for add-on layers and prototypes (``head_lr_scale`` 30), weight decay 1e-3. Left out:
    ImageNet-pretrained backbones, the warm-up/last-layer-only phases and prototype projection ("push"), which
    makes prototypes visualisable but is not needed for the representation. ``embed`` is the backbone's pooled
    features; ``predict_logits`` gives the classifier's output.

    Args:
        prototypes_per_class: prototypes per class in each branch.
        prototype_dim: channels of the add-on layers and prototypes.
        similarity: ``cosine`` (the paper's code) or ``log`` (ProtoPNet's log-activation of squared distances).
        cluster_weight, sep_trivial_weight, sep_support_weight, orth_weight, l1_weight, discrimination_weight,
            closeness_weight: the loss coefficients above.
        head_lr_scale: LR of add-on layers and prototypes relative to the backbone's.
        kwargs: shared options of :class:`EmbeddingModule`; ``num_classes`` is required.
    """

    def __init__(
        self,
        prototypes_per_class: int = 5,
        prototype_dim: int = 64,
        similarity: Literal["cosine", "log"] = "cosine",
        cluster_weight: float = -0.8,
        sep_trivial_weight: float = 0.08,
        sep_support_weight: float = 0.48,
        orth_weight: float = 1e-3,
        l1_weight: float = 1e-4,
        discrimination_weight: float = 1.0,
        closeness_weight: float = 1.0,
        head_lr_scale: float = 30.0,
        optimizer: str = "adamw",
        lr: float = 1e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 1e-3,
        **kwargs,
    ):
        super().__init__(optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay, **kwargs)
        num_classes = self.hparams.num_classes
        if not num_classes:
            raise ValueError("STProtoPNet is supervised: num_classes is required")
        if similarity not in ("cosine", "log"):
            raise ValueError(f"similarity must be 'cosine' or 'log', got {similarity!r}")
        self.trivial = PrototypeBranch(self.feature_dim, num_classes, prototypes_per_class, prototype_dim)
        self.support = PrototypeBranch(self.feature_dim, num_classes, prototypes_per_class, prototype_dim)

    def param_groups(self):
        lr = self.effective_lr()
        head = [(n, p) for n, p in self.named_parameters() if n.startswith(("trivial.", "support.")) and "last_layer" not in n]
        protos = [(n, p) for n, p in head if n.endswith("prototypes")]
        return [
            {"name": "backbone", "params": list(self.backbone.named_parameters())},
            {
                "name": "add_on",
                "params": [(n, p) for n, p in head if not n.endswith("prototypes")],
                "lr": lr * self.hparams.head_lr_scale,
            },
            {"name": "prototypes", "params": protos, "lr": lr * self.hparams.head_lr_scale},
            {"name": "last_layers", "params": [(n, p) for n, p in self.named_parameters() if "last_layer" in n]},
        ]

    def branches(self, x: torch.Tensor):
        fmap = stage_maps(self.backbone, self._format(x), 1)[0]  # the last map, before global pooling
        kind = self.hparams.similarity
        return fmap, self.trivial(fmap, kind), self.support(fmap, kind)

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits: the sum of the trivial and support branches' logits."""
        _, (logits_t, _), (logits_s, _) = self.branches(x)
        return logits_t + logits_s

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        if labels is None or not (labels >= 0).any():
            raise ValueError("STProtoPNet needs labelled batches")
        x = views[0]
        fmap, (logits_t, sims_t), (logits_s, sims_s) = self.branches(x)
        hp, m = self.hparams, self.hparams.prototypes_per_class
        keep = labels >= 0
        y = labels[keep]

        def branch_loss(logits, sims, branch, sep_weight):
            return (
                F.cross_entropy(logits[keep], y)
                + hp.cluster_weight * cluster_cost(sims[keep], y, m)
                + sep_weight * separation_cost(sims[keep], y, m)
                + hp.orth_weight * orthogonality_cost(branch.prototypes, m)
                + hp.l1_weight * last_layer_l1(branch.last_layer.weight, m)
            )

        trivial = branch_loss(logits_t, sims_t, self.trivial, hp.sep_trivial_weight)
        trivial = trivial + hp.discrimination_weight * discrimination_cost(self.trivial.prototypes, m)
        support = branch_loss(logits_s, sims_s, self.support, hp.sep_support_weight)
        support = support + hp.closeness_weight * closeness_cost(self.support.prototypes, m)
        return TrainingOutput(0.5 * (trivial + support), features=fmap.mean(dim=(2, 3)))
