"""Compatibility through stationarity: a fixed classifier whose class arrangement never changes, so features trained
against it stay where they were as models are updated.

- CoReS (arXiv:2111.07632): a fixed d-Simplex classifier, vertices reserved for future classes.
- CL2R (arXiv:2211.09032): the same classifier plus feature distillation to the old model on the replay memory.
- Stationary Representations (arXiv:2405.02581): the same classifier plus the higher-order compatibility loss.
- Equiangular Basis Vectors (arXiv:2303.11637): fixed, nearly orthogonal class vectors and a cosine softmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.representation import Chain
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.compatible.base import CompatibleModule
from reprzoo.lightning_modules.compatible.layers import DSimplexClassifier, EquiangularBasisClassifier
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.compatible import cosine_distillation, higher_order_compatibility_loss


class FixedClassifierModule(CompatibleModule):
    """Backbone -> linear embedding layer (the representation, ``embed``) -> fixed classifier over ALL classes of
    the protocol (the rows of future classes are reserved from the first model on). The cross-entropy runs over all
    classes, as in the authors' code, so not-yet-seen classes already repel the features.

    A successor starts from its predecessor's backbone and embedding (``init_from_old``, the authors' fine-tuning).

    Args:
        preallocated_classes: vertices of the d-Simplex when more than ``num_classes`` (the authors' code
            preallocates 1024, so the representation has 1023 dimensions whatever the protocol's class count);
            ``None``: one vertex per class of the protocol. Keep it across model updates.
        label_smoothing: of the cross-entropy.
        init_from_old: start a successor from the old model's backbone and embedding.
    """

    abstract_base = True  # shared by CoReS, CL2R, Stationary Representations and EBV; not a method of its own

    def __init__(
        self, preallocated_classes: int | None = None, label_smoothing: float = 0.0, init_from_old: bool = True, **kwargs
    ):
        if preallocated_classes is not None and preallocated_classes < (kwargs.get("num_classes") or 0):
            raise ValueError(
                f"preallocated_classes ({preallocated_classes}) must be at least num_classes ({kwargs.get('num_classes')})"
            )
        super().__init__(init_from_old=init_from_old, **kwargs)
        self.feature_dim = self.classifier.in_dim  # the representation is the embedding layer's output
        self.resize_probe(self.feature_dim)

    def build_classifier(self) -> nn.Module:
        classifier = self.fixed_classifier()
        self.embedding = self.build_embedding(classifier.in_dim)
        return classifier

    def fixed_classifier(self) -> nn.Module:
        return DSimplexClassifier(self.hparams.get("preallocated_classes") or self.hparams.num_classes)

    def build_embedding(self, dim: int) -> nn.Module:
        """CoReS/CL2R's feature layer: a linear map without bias from the backbone features to the simplex space."""
        return nn.Linear(self.feature_dim, dim, bias=False)

    def encoder(self) -> nn.Module:
        return Chain(self.backbone, self.embedding, num_features=self.classifier.in_dim)

    def on_old_model_set(self, old) -> None:
        super().on_old_model_set(old)
        old_embedding = getattr(old, "embedding", None)
        if self.hparams.init_from_old and old_embedding is not None:
            if all(a.shape == b.shape for a, b in zip(old_embedding.state_dict().values(), self.embedding.state_dict().values())):
                self.embedding.load_state_dict(old_embedding.state_dict())

    def classification_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classifier(features), labels, ignore_index=-1, label_smoothing=self.hparams.label_smoothing)

    def features_and_loss(self, views: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = views[0]
        features = self.embed(x)
        return features, self.classification_loss(features, labels)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        features, loss = self.features_and_loss(views, labels)
        return TrainingOutput(loss, features=features, embeddings=features)


@register_method(
    title="CoReS: Compatible Representations via Stationarity", wing="compatible-representations", arxiv="2111.07632"
)
class CoReS(FixedClassifierModule):
    """CoReS (Biondi, Pernici, Bruni & Del Bimbo, TPAMI 2023, arXiv:2111.07632): the features are trained against a
    fixed d-Simplex classifier with one vertex per class of the whole protocol (future classes reserved), so
    "classes are maximally separated in the representation space and maintain their spatial configuration
    stationary as new classes are added": a successor is fine-tuned from its predecessor with the plain
    cross-entropy, with no mapping and no pairwise training against the old model.

    The representation is the ``num_classes - 1`` dimensional output of the feature layer. The optimiser follows the
    authors' code (SGD, lr 0.1, momentum 0.9, weight decay 5e-4; step decay there, cosine here: ours).
    """

    def __init__(
        self, optimizer: str = "sgd", lr: float = 0.1, lr_reference_batch: int | None = None, weight_decay: float = 5e-4, **kwargs
    ):
        super().__init__(optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay, **kwargs)


@register_method(
    title="CL2R: Compatible Lifelong Learning Representations", wing="compatible-representations", arxiv="2211.09032"
)
class CL2R(FixedClassifierModule):
    """CL2R (Biondi, Pernici, Bruni & Del Bimbo, ACM TOMM 2022, arXiv:2211.09032): the d-Simplex fixed classifier
    ("global stationarity") plus feature distillation on the replay memory ("local stationarity"): the memory
    samples' features are pulled toward the frozen old model's by ``1 - cos``, weighted by
    ``lambda = distill_weight * sqrt(new classes / old classes)`` (the authors' ``update_criterion_weight``, base 5).

    Defaults follow the authors' code: SGD lr 0.1, momentum 0.9, weight decay 5e-4, 20 memory exemplars per class
    (``ClassIncremental(memory_per_class=20)``). Memory samples are recognised by their old-class labels. The
    authors draw each batch half from the memory and half from the new task; batches here are drawn uniformly
    from task + memory (ours).

    Args:
        distill_weight: the base weight of the feature distillation (5).
    """

    def __init__(
        self,
        distill_weight: float = 5.0,
        optimizer: str = "sgd",
        lr: float = 0.1,
        lr_reference_batch: int | None = None,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        if distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, got {distill_weight}")
        super().__init__(optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay, **kwargs)

    def distillation_weight(self) -> float:
        old, seen = self.num_old_classes, int(self.num_seen_classes)
        return self.hparams.distill_weight * math.sqrt(max(seen - old, 1) / old) if old else 0.0

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        features, loss = self.features_and_loss(views, labels)
        if self.old is not None:
            memory = self.is_old_class(labels)
            if memory.any():
                old = self.old_features(views[0][memory])
                distill = cosine_distillation(features[memory], old)
                self.log("train/distill_loss", distill)
                loss = loss + self.distillation_weight() * distill
        return TrainingOutput(loss, features=features, embeddings=features)


@register_method(
    title="Stationary Representations: Optimally Approximating Compatibility and Implications for Improved Model Replacements",
    wing="compatible-representations",
    arxiv="2405.02581",
)
class StationaryRepresentations(FixedClassifierModule):
    """Stationary Representations (Biondi, Pernici, Ricci & Del Bimbo, CVPR 2024, arXiv:2405.02581): the d-Simplex
    fixed classifier "optimally approximates compatibility"; on top, the paper's higher-order compatibility loss
    (Eq. 4) ties each new feature to the old model's feature of the same image against those of other classes,
    combined as ``lambda * CE + (1 - lambda) * L_hoc`` (Eq. 3) with lambda 0.1 and scale mu 10 (the authors'
    ``hoc`` configuration). Without an old model it is the d-Simplex classifier alone.

    The authors train with replay (20 exemplars per class) and fine-tune every task from a checkpoint (their first
    task starts from a pre-trained model) by SGD with momentum 0.9 at lr 1e-3, cosine decay to 1e-5 and weight
    decay 5e-4 (their ``params.py``), over a d-Simplex of 1024 preallocated classes (``preallocated_classes``). The
    defaults here keep lr, decay and weight decay but use AdamW, which also trains a first model from scratch
    (ours). The model-replacement scenario (a successor started from a model pre-trained elsewhere) is
    ``init_from_old: false`` with the new backbone's own weights.

    Measured on digits (the upgrade of tests/test_compatible_methods.py): after a first model of 1 epoch, whose
    BatchNorm running averages still lag its weights, the higher-order loss matches the successor's training-mode
    features to the old model's lagging eval-mode ones and misses the criterion (new/old top-1 0.744 vs 0.928);
    with the first model's statistics recomputed (``PreciseBatchNorm`` callback) it meets it in mAP (0.925 vs
    0.895). The d-Simplex alone (``ce_weight: 1``, i.e. CoReS) meets it either way (0.978 vs 0.928).

    Args:
        ce_weight: the paper's lambda.
        hoc_scale: the paper's mu.
    """

    def __init__(
        self,
        ce_weight: float = 0.1,
        hoc_scale: float = 10.0,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 5e-4,
        min_lr_ratio: float = 0.01,
        **kwargs,
    ):
        if not 0.0 <= ce_weight <= 1.0:
            raise ValueError(f"ce_weight must be in [0, 1], got {ce_weight}")
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            min_lr_ratio=min_lr_ratio,
            **kwargs,
        )

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        features, loss = self.features_and_loss(views, labels)
        if self.old is not None:
            hoc = higher_order_compatibility_loss(features, self.old_features(views[0]), labels, self.hparams.hoc_scale)
            self.log("train/hoc_loss", hoc)
            loss = self.hparams.ce_weight * loss + (1.0 - self.hparams.ce_weight) * hoc
        return TrainingOutput(loss, features=features, embeddings=features)


@register_method(title="Equiangular Basis Vectors", wing="compatible-representations", arxiv="2303.11637")
class EBV(FixedClassifierModule):
    """Equiangular Basis Vectors (Shen, Sun & Wei, CVPR 2023, arXiv:2303.11637): the trainable k-way classifier is
    replaced by fixed, pre-computed unit vectors, one per class, "with the equal status between each other" and
    "as orthogonal as possible" (pairwise ``|cos| <= threshold``, generated as in the authors' code); training
    minimises the spherical distance of an embedding to its class's EBV through a cosine softmax with temperature
    0.07 and label smoothing 0.1, and prediction picks the nearest EBV.

    The backbone ends in a linear layer to the EBV dimension (the authors' timm head with ``num_classes=dim``).
    Defaults: threshold 0.002 and SGD lr 0.5 per 1024 images, weight decay 2e-5 (their ImageNet setting); a fixed
    classifier keeps the space stationary across updates like the d-Simplex, which is why it sits in this wing.

    Args:
        ebv_dim: dimension of the basis vectors (and of the representation).
        ebv_threshold: the largest allowed ``|cos|`` between two EBVs.
        temperature: of the cosine softmax.
        ebv_seed: seed of the EBV generation (keep it across model updates: same seed, same EBVs).
    """

    def __init__(
        self,
        ebv_dim: int = 1000,
        ebv_threshold: float = 0.002,
        temperature: float = 0.07,
        ebv_seed: int = 42,
        label_smoothing: float = 0.1,
        optimizer: str = "sgd",
        lr: float = 0.5,
        lr_reference_batch: int | None = 1024,
        weight_decay: float = 2e-5,
        warmup_epochs: float = 5.0,
        **kwargs,
    ):
        super().__init__(
            label_smoothing=label_smoothing,
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            **kwargs,
        )

    def fixed_classifier(self) -> nn.Module:
        hp = self.hparams
        return EquiangularBasisClassifier(hp.num_classes, hp.ebv_dim, hp.ebv_threshold, hp.temperature, hp.ebv_seed)

    def build_embedding(self, dim: int) -> nn.Module:
        return nn.Linear(self.feature_dim, dim)


__all__ = ["CL2R", "CoReS", "EBV", "FixedClassifierModule", "StationaryRepresentations"]
