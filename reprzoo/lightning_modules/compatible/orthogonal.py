"""Compatibility with room to grow: the new representation gets extra dimensions, and an orthogonal map (which keeps
all the information of its input) reconciles the part compared with the old model and the part that learns anew.

- BT^2 (arXiv:2211.03989): a learnable basis transformation over old-compatible and new features, two stages.
- OCA (arXiv:2408.08793): features of ``d_old + k`` dims, the first ``d_old`` aligned with the old model, an
  orthogonal transformation layer before the new classifier.

Both compare a new query with the old gallery on the first ``old_dim`` dimensions (:meth:`compatible_embed`), as
the authors' evaluation does (cosine on the common prefix). Their "pseudo classifier" (BCT's influence loss without
the old classifier) is the mean old-model feature of every seen class, computed once at the start of fit over the
datamodule's bank (the un-augmented training split; the authors use their training loader).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.representation import Chain, L2Normalize, Represent
from reprzoo.lightning_modules.base import BANK, TrainingOutput
from reprzoo.lightning_modules.compatible.base import CompatibleModule, load_old_model
from reprzoo.lightning_modules.compatible.layers import OrthogonalLinear
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.compatible import cosine_distillation, prototype_alignment_loss, prototype_influence_loss


class ExtraDimensionsModule(CompatibleModule):
    """Shared by BT^2 and OCA: the old-space prototypes, the width check and the compatible prefix.

    Args:
        old_dim: width of the old model's representation (``old.embed``), the prefix compared with it.
        extra_dim: the added dimensions k.
        label_smoothing: of the new classifier's cross-entropy (0.1 in the authors' configurations).
    """

    representation_dim: int

    def __init__(self, old_dim: int = 128, extra_dim: int = 32, label_smoothing: float = 0.1, **kwargs):
        if old_dim < 1 or extra_dim < 0:
            raise ValueError(f"old_dim must be positive and extra_dim >= 0, got {old_dim} and {extra_dim}")
        super().__init__(**kwargs)
        self.feature_dim = self.representation_dim
        self.resize_probe(self.feature_dim)
        self.prototypes: torch.Tensor | None = None

    @property
    def compatible_dim(self) -> int:
        """Width of the prefix compared with the old model's gallery (recorded in a pushed config)."""
        return int(self.hparams.old_dim)

    def on_old_model_set(self, old) -> None:
        super().on_old_model_set(old)
        width = getattr(old, "feature_dim", None)
        if width is not None and width != self.hparams.old_dim:
            raise ValueError(f"the old model's representation has {width} dims, but old_dim is {self.hparams.old_dim}")

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.prototypes = self.old_class_means() if self.old is not None else None

    @torch.no_grad()
    def old_class_means(self) -> torch.Tensor:
        """``(num_seen_classes, old_dim)``: the mean normalised old-model feature of each seen class over the bank."""
        loaders = self.trainer.datamodule.val_dataloader()
        bank = loaders[BANK] if isinstance(loaders, (list, tuple)) else loaders
        seen = int(self.num_seen_classes)
        sums = torch.zeros(seen, self.hparams.old_dim, device=self.device)
        counts = torch.zeros(seen, device=self.device)
        for x, labels in bank:
            x, labels = x.to(self.device), labels.to(self.device)
            keep = (labels >= 0) & (labels < seen)
            sums.index_add_(0, labels[keep], F.normalize(self.old_features(x[keep]), dim=1))
            counts.index_add_(0, labels[keep], torch.ones_like(labels[keep], dtype=counts.dtype))
        if (counts == 0).any():
            raise RuntimeError(f"the bank lacks samples of classes {torch.nonzero(counts == 0).flatten().tolist()}")
        return sums / counts[:, None]

    def new_classification_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classify(features), labels, ignore_index=-1, label_smoothing=self.hparams.label_smoothing)


@register_method(
    title="Backward-Compatible Aligned Representations via an Orthogonal Transformation Layer",
    wing="compatible-representations",
    arxiv="2408.08793",
)
class OCA(ExtraDimensionsModule):
    """OCA (Ricci, Biondi, Pernici & Del Bimbo, 2024, arXiv:2408.08793): "expanding the representation space with
    additional dimensions and learning an orthogonal transformation to achieve compatibility with old models and,
    at the same time, integrate new information".

    As in the authors' code: the backbone's (normalised) feature ``h`` has ``old_dim + extra_dim`` dims and is the
    representation; its first ``old_dim`` dims are trained to be compatible, by the influence loss through the
    old-space class prototypes (weight 10) and a cosine alignment to the prototype of the sample's class (weight 5);
    the new classifier sees ``h`` through an orthogonal layer with bias (weight 5, label smoothing 0.1), which
    preserves the geometry of ``h`` while decoupling the classifier's basis from the compatible prefix. Without an
    old model only the classification term remains. Adam lr 1e-3, weight decay 2^-15, 5 warmup epochs and cosine
    (their CIFAR-100 configuration; AdamW here: ours). The backbone's features go through a linear layer to the
    representation width (the authors set the ResNet's last block to that width: ours).

    Args:
        ce_weight: weight of the new classifier's cross-entropy.
        influence_weight: weight of the prototype influence loss.
        alignment_weight: weight of the cosine alignment to the class prototype.
        transform: ``torch`` (PyTorch's orthogonal parametrisation, the authors') or ``householder``.
    """

    def __init__(
        self,
        ce_weight: float = 5.0,
        influence_weight: float = 10.0,
        alignment_weight: float = 5.0,
        transform: Literal["torch", "householder"] = "torch",
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 2.0**-15,
        warmup_epochs: float = 5.0,
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            **kwargs,
        )

    @property
    def representation_dim(self) -> int:
        return self.hparams.old_dim + self.hparams.extra_dim

    def build_classifier(self) -> nn.Module:
        dim = self.hparams.old_dim + self.hparams.extra_dim
        self.embedding = nn.Linear(self.feature_dim, dim)
        self.transform = OrthogonalLinear(dim, bias=True, parametrization=self.hparams.transform)
        return nn.Linear(dim, self.hparams.num_classes, bias=False)

    def encoder(self) -> nn.Module:
        return Chain(self.backbone, self.embedding, L2Normalize(), num_features=self.representation_dim)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        h = self.embed(views[0])
        loss = self.new_classification_loss(self.transform(h), labels)
        if self.old is not None and self.prototypes is not None:
            compatible = h[:, : hp.old_dim]
            influence = prototype_influence_loss(compatible, self.prototypes, labels)
            alignment = prototype_alignment_loss(compatible, self.prototypes, labels)
            self.log("train/influence_loss", influence)
            self.log("train/alignment_loss", alignment)
            loss = hp.ce_weight * loss + hp.influence_weight * influence + hp.alignment_weight * alignment
        return TrainingOutput(loss, features=h, embeddings=h)


@register_method(
    title="BT^2: Backward-compatible Training with Basis Transformation", wing="compatible-representations", arxiv="2211.03989"
)
class BT2(ExtraDimensionsModule):
    """BT^2 (Zhou, Li, Shrivastava, Zhao, Torralba, Tian & Lim, ICCV 2023, arXiv:2211.03989): "adding extra
    dimensions to the representation" through "a learnable set of parameters that applies an orthonormal
    transformation", which retains all the information of its input.

    Architecture and losses as in the public re-implementation by the OCA authors (adapted from the BT^2 code):
    the backbone gives ``f`` of ``new_dim + old_dim`` dims; ``phi = normalize(f[:new_dim])`` is the new feature (the
    new classifier's input) and a branch ``b = normalize(W relu(f))`` of ``old_dim`` dims supplies the extra
    dimensions. With orthonormal bases ``B_new`` (new_dim) and ``B_old`` (old_dim)::

        m = [normalize(b[:extra_dim]), B_new(C phi)]           (extra_dim + new_dim)
        representation = [B_old(m[:old_dim]), m[old_dim:]]      (new_dim + extra_dim)

    whose first ``old_dim`` dims (``bct``) are compatible. Two stages: stage 1 trains a new model independently
    (any registered method, e.g. this one with no old model); stage 2 (``old_model`` and ``independent_model``)
    trains ``CE(phi) + lambda_2 influence(bct) + lambda_3 (1 - cos(phi_old, bct)) + lambda_1 (1 - cos(phi_ind, phi))``
    with lambda_1 1, lambda_2 10, lambda_3 5 and C 2 (their CIFAR-100 configuration), Adam lr 1e-3 (AdamW here),
    weight decay 2^-15, label smoothing 0.1. Without ``independent_model`` the lambda_1 term is left out.

    Args:
        new_dim: width of the new feature phi (requires ``old_dim <= new_dim + extra_dim``).
        scale: C, the scale of phi before its basis change.
        independent_model: the stage-1 model (a ``.ckpt`` or run directory) whose features phi is matched to.
        new_match_weight: lambda_1; influence_weight: lambda_2; old_match_weight: lambda_3.
        transform: ``torch`` (PyTorch's orthogonal parametrisation, the authors') or ``householder``.
    """

    def __init__(
        self,
        new_dim: int = 128,
        scale: float = 2.0,
        independent_model: str | None = None,
        new_match_weight: float = 1.0,
        influence_weight: float = 10.0,
        old_match_weight: float = 5.0,
        transform: Literal["torch", "householder"] = "torch",
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 2.0**-15,
        warmup_epochs: float = 5.0,
        **kwargs,
    ):
        old_dim, extra_dim = kwargs.get("old_dim", 128), kwargs.get("extra_dim", 32)
        if old_dim > new_dim + extra_dim:
            raise ValueError(f"old_dim ({old_dim}) must be at most new_dim + extra_dim ({new_dim + extra_dim})")
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            **kwargs,
        )
        object.__setattr__(self, "_independent", None)  # frozen, outside parameters and state dict like the old model
        if independent_model is not None:
            self.set_independent_model(load_old_model(independent_model, default_class=type(self)))

    @property
    def representation_dim(self) -> int:
        return self.hparams.new_dim + self.hparams.extra_dim

    def build_classifier(self) -> nn.Module:
        hp = self.hparams
        self.embedding = nn.Linear(self.feature_dim, hp.new_dim + hp.old_dim)
        self.old_branch = nn.Linear(hp.new_dim + hp.old_dim, hp.old_dim)
        self.new_basis = OrthogonalLinear(hp.new_dim, bias=False, parametrization=hp.transform)
        self.old_basis = OrthogonalLinear(hp.old_dim, bias=False, parametrization=hp.transform)
        return nn.Linear(hp.new_dim, hp.num_classes, bias=False)

    @property
    def independent(self):
        return self.__dict__.get("_independent")

    def set_independent_model(self, module) -> None:
        """Use (a frozen copy of) ``module`` as the stage-1 independently trained model."""
        import copy

        object.__setattr__(self, "_independent", copy.deepcopy(module).eval().requires_grad_(False))

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(phi, bct, representation)`` of a batch."""
        hp = self.hparams
        f = self.embedding(self.backbone(self._format(x)))
        phi = F.normalize(f[:, : hp.new_dim], dim=1)
        branch = F.normalize(self.old_branch(F.relu(f)), dim=1)
        mixed = torch.cat([F.normalize(branch[:, : hp.extra_dim], dim=1), self.new_basis(hp.scale * phi)], dim=1)
        bct = self.old_basis(mixed[:, : hp.old_dim])
        return phi, bct, torch.cat([bct, mixed[:, hp.old_dim :]], dim=1)

    def encoder(self) -> nn.Module:
        return Represent(self, BT2.representation, self.representation_dim)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)[2]

    def new_features(self, x: torch.Tensor) -> torch.Tensor:
        """phi: what a later BT^2 stage matches when this model is its independent model."""
        return self.parts(x)[0]

    @torch.no_grad()
    def independent_features(self, x: torch.Tensor) -> torch.Tensor:
        model = self.independent.to(self.device).eval()
        return model.new_features(x) if hasattr(model, "new_features") else model.embed(x)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        x = views[0]
        phi, bct, representation = self.parts(x)
        loss = self.new_classification_loss(phi, labels)
        if self.old is not None and self.prototypes is not None:
            influence = prototype_influence_loss(bct, self.prototypes, labels)
            old_match = cosine_distillation(bct, self.old_features(x))
            self.log("train/influence_loss", influence)
            self.log("train/old_match_loss", old_match)
            loss = loss + hp.influence_weight * influence + hp.old_match_weight * old_match
        if self.independent is not None:
            new_match = cosine_distillation(phi, self.independent_features(x))
            self.log("train/new_match_loss", new_match)
            loss = loss + hp.new_match_weight * new_match
        return TrainingOutput(loss, features=representation, embeddings=representation)


__all__ = ["BT2", "OCA", "ExtraDimensionsModule"]
