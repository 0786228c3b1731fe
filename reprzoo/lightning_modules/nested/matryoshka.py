"""Nested (Matryoshka) embeddings: the backbone's features are trained so that every prefix of them is a
representation, and evaluated (kNN top-1) at every prefix size.

- :class:`MRL`: "Matryoshka Representation Learning" (Kusupati et al., NeurIPS 2022, arXiv:2205.13147), supervised
  cross-entropy with a linear head per prefix size (or MRL-E's weight-tied head).
- :class:`MatryoshkaSimCLR`: the same nesting over a self-supervised objective (SimCLR's NT-Xent), one projector per
  prefix size, as MRL does for its contrastive (ALIGN) experiments.
- :class:`TwoDMatryoshka`: "2D Matryoshka Sentence Embeddings" (Li et al., 2024, arXiv:2402.14776) on a ViT: nested
  prefixes of the pooled tokens of the last layer and of a sampled shallower layer.

The prefixes are of the backbone features, the representation a pushed model exports, so ``reprzoo.load(name,
dim=m)`` returns a trained embedding; the export records ``nested_dims``.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones.vit_tokens import vit_patch_embeddings
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.vision_ssl.simclr import SimCLR, SimCLRProjectionHead
from reprzoo.losses import nt_xent
from reprzoo.losses.matryoshka import check_nested_dims, doubling_dims, matryoshka_loss, nested_logits, two_d_matryoshka_loss
from reprzoo.metrics import NestedKNN
from reprzoo.metrics.evaluators import KNNEvaluator, NestedKNNEvaluator


class NestedEvaluation:
    """Mixin of an :class:`EmbeddingModule` with nested features: ``nested_dims`` and ``val/knn_top1@{m}`` (its kNN
    metric is a :class:`NestedKNN`, measured by a :class:`NestedKNNEvaluator`).

    Call ``_init_nested(nested_dims)`` after the base's ``__init__``; ``val/knn_top1`` stays the full-size accuracy.
    """

    nested_dims: tuple[int, ...]

    def _init_nested(self, nested_dims: Sequence[int] | None, loss_weights: Sequence[float] | None = None) -> None:
        full = self.feature_dim
        self.nested_dims = check_nested_dims(nested_dims, full) if nested_dims else doubling_dims(full)
        if self.nested_dims[-1] != full:
            raise ValueError(
                f"nested_dims must end with the feature size {full} (the full embedding), got {list(self.nested_dims)}"
            )
        if loss_weights is not None and len(loss_weights) != len(self.nested_dims):
            raise ValueError(f"got {len(loss_weights)} loss_weights for nested_dims {list(self.nested_dims)}")
        self.loss_weights = tuple(loss_weights) if loss_weights is not None else (1.0,) * len(self.nested_dims)
        if self.knn is not None:
            self.knn = NestedKNN(self.knn.num_classes, self.nested_dims, self.knn.k, self.knn.temperature)

    def build_evaluators(self):
        # the base's kNN evaluator becomes the nested one: val/knn_top1 (full size) and val/knn_top1@{m}
        return [
            NestedKNNEvaluator(e.metric) if isinstance(e, KNNEvaluator) and isinstance(e.metric, NestedKNN) else e
            for e in super().build_evaluators()
        ]


class MatryoshkaClassifier(nn.Module):
    """MRL's heads W^(m): a linear classifier per prefix size, or with ``efficient`` (MRL-E) one classifier whose
    first m columns are the head of size m ("weight-tying ... W^(m) = W[:, :m]", Sec. 3)."""

    def __init__(self, nested_dims: Sequence[int], num_classes: int, efficient: bool = False):
        super().__init__()
        self.nested_dims, self.efficient = tuple(nested_dims), efficient
        if efficient:
            self.tied = nn.Linear(self.nested_dims[-1], num_classes)
        else:
            self.heads = nn.ModuleList(nn.Linear(m, num_classes) for m in self.nested_dims)

    def forward(self, prefix: torch.Tensor, index: int) -> torch.Tensor:
        """Logits of the ``index``-th head on ``prefix`` (``(n, nested_dims[index])``)."""
        if self.efficient:
            return nested_logits(prefix, self.tied.weight, self.tied.bias, self.nested_dims[index])
        return self.heads[index](prefix)


@register_method(title="Matryoshka Representation Learning", wing="nested-embeddings", arxiv="2205.13147")
class MRL(NestedEvaluation, EmbeddingModule):
    """Supervised MRL: L = sum_m c_m CE(W^(m) z_{1:m}, y) over m in {8, 16, ..., d} of the backbone features z.

    Defaults follow the paper's ResNet-50 training, which uses FFCV's ImageNet recipe: SGD (momentum 0.9),
    lr 1.7 at batch 1024 (0.425 per 256), label smoothing 0.1, weight decay 1e-4 (ours: FFCV's configs use 5e-5 to
    1e-4), a 2-epoch ramp then decay (ours: cosine instead of FFCV's linear decay); c_m = 1.

    Args:
        nested_dims: the prefix sizes; ``None`` doubles from 8 up to the backbone width (the paper's nesting).
        efficient: MRL-E, one weight-tied classifier instead of one per size.
        loss_weights: c_m per size; ``None`` is 1 each.
        label_smoothing: of the cross-entropy.
        kwargs: shared options of :class:`EmbeddingModule`; ``num_classes`` is required.
    """

    def __init__(
        self,
        nested_dims: list[int] | None = None,
        efficient: bool = False,
        loss_weights: list[float] | None = None,
        label_smoothing: float = 0.1,
        optimizer: str = "sgd",
        lr: float = 0.425,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 2.0,
        **kwargs,
    ):
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        if not self.hparams.num_classes:
            raise ValueError("MRL is supervised: num_classes is required")
        self._init_nested(nested_dims, loss_weights)
        self.classifier = MatryoshkaClassifier(self.nested_dims, self.hparams.num_classes, efficient)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        x = views[0] if isinstance(views, (list, tuple)) else views
        features = self.backbone(x)
        keep = labels >= 0
        smoothing = self.hparams.label_smoothing

        def cross_entropy(i: int, prefix: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(self.classifier(prefix[keep], i), labels[keep], label_smoothing=smoothing)

        loss = matryoshka_loss(features, cross_entropy, self.nested_dims, self.loss_weights)
        return TrainingOutput(loss, features=features, embeddings=features)


@register_method(title="Matryoshka Representation Learning", wing="nested-embeddings", arxiv="2205.13147")
class MatryoshkaSimCLR(NestedEvaluation, SimCLR):
    """SimCLR made Matryoshka: NT-Xent on g_m(z_{1:m}) for every prefix size m, sum_m c_m L_m, with one projector
    g_m per size (MRL applies its nesting to any loss through per-size heads, Sec. 3; its ALIGN experiments do so
    for a contrastive loss). Other options are SimCLR's.

    Args:
        nested_dims: the prefix sizes; ``None`` doubles from 8 up to the backbone width.
        loss_weights: c_m per size; ``None`` is 1 each.
        kwargs: :class:`SimCLR`'s options (projector sizes, temperature, optimiser, backbone, evaluation).
    """

    def __init__(self, nested_dims: list[int] | None = None, loss_weights: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._init_nested(nested_dims, loss_weights)
        hp = self.hparams
        del self.projector  # SimCLR's single full-size projector is replaced by one per prefix size
        self.projectors = nn.ModuleList(
            SimCLRProjectionHead(m, hp.proj_hidden_dim, hp.proj_output_dim, hp.proj_output_bn) for m in self.nested_dims
        )

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)

        def contrastive(i: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.contrastive_loss(self.projectors[i](a), self.projectors[i](b), labels, indices)

        loss = matryoshka_loss((f1, f2), contrastive, self.nested_dims, self.loss_weights)
        return TrainingOutput(loss, features=f1, embeddings=f1)


@register_method(title="2D Matryoshka Sentence Embeddings", wing="nested-embeddings", arxiv="2402.14776")
class TwoDMatryoshka(NestedEvaluation, EmbeddingModule):
    """2DMSE on a transformer encoder (a timm ViT here; the text encoder reuses the same loss): embeddings are the
    mean-pooled tokens of a layer, elastic in depth (which layer) and width (which prefix).

    Each step: the base loss at the last layer n and at a uniformly sampled shallower layer i, each at the full
    size D and at a sampled Matryoshka size d, plus KL(X_i^D || X_n^D) pulling layer i toward layer n
    (:func:`reprzoo.losses.matryoshka.two_d_matryoshka_loss`, the paper's Sec. 3 with weights 1). The base loss is
    InfoNCE with in-batch negatives on the two views' embeddings (NT-Xent), as for the paper's contrastive
    (InfoNCE) variant, at temperature 0.05 (AnglE's in-batch scale 20). Layer i is pooled through the encoder's
    final norm, so the last layer's embedding is exactly the backbone's features (what the hub exports).

    Args:
        nested_dims: the Matryoshka sizes d is drawn from (and evaluated at); ``None`` doubles from 8.
        temperature: of the NT-Xent base loss.
        kl_weight: weight of the alignment term; kl_temperature: its softmax temperature.
        shallow_weight: weight of the shallow layer's two terms.
        min_layer: the shallowest layer sampled (1-based).
        kwargs: shared options of :class:`EmbeddingModule`; the backbone must be a timm VisionTransformer.
    """

    def __init__(
        self,
        nested_dims: list[int] | None = None,
        temperature: float = 0.05,
        kl_weight: float = 1.0,
        kl_temperature: float = 0.3,
        shallow_weight: float = 1.0,
        min_layer: int = 1,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        **kwargs,
    ):
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, **kwargs)
        if not hasattr(self.backbone, "blocks") or not hasattr(self.backbone, "forward_head"):
            raise ValueError(f"TwoDMatryoshka needs a timm VisionTransformer backbone, got {type(self.backbone).__name__}")
        self.num_layers = len(self.backbone.blocks)
        if not 1 <= min_layer < self.num_layers:
            raise ValueError(f"min_layer must be in [1, {self.num_layers - 1}] for {self.num_layers} layers, got {min_layer}")
        self._init_nested(nested_dims)

    def layer_embeddings(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pooled embedding after each transformer layer, ``num_layers`` tensors ``(n, D)``; the last one is
        ``backbone(x)``."""
        vit = self.backbone
        tokens = vit_patch_embeddings(vit, x, patch_drop=True)  # as timm's forward_features
        pooled = []
        for block in vit.blocks:
            tokens = block(tokens)
            pooled.append(vit.forward_head(vit.norm(tokens)))
        return pooled

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        layers1, layers2 = self.layer_embeddings(x1), self.layer_embeddings(x2)
        shallow = random.randint(self.hparams.min_layer, self.num_layers - 1) - 1  # 0-based index of layer i
        proper = self.nested_dims[:-1] or self.nested_dims
        dim = random.choice(proper)
        hp = self.hparams
        loss = two_d_matryoshka_loss(
            [layers1[-1], layers2[-1]],
            [layers1[shallow], layers2[shallow]],
            lambda a, b: nt_xent(a, b, hp.temperature),
            dim,
            kl_weight=hp.kl_weight,
            kl_temperature=hp.kl_temperature,
            shallow_weight=hp.shallow_weight,
        )
        return TrainingOutput(loss, features=layers1[-1], embeddings=layers1[-1])
