"""The shared base of methods trained with labels (the metric-and-supervised wing): a backbone, an optional embedding
layer (the exported representation), and a classifier head the method picks.

What is exported is what the method's metrics were computed on: :meth:`SupervisedModule.encoder` is the backbone,
then the embedding layer (when ``embedding_dim`` is set), then L2 normalisation (when ``normalize``): metric-learning
methods retrieve with the normalised embedding, and their MAP@R is computed on exactly that. The classifier reads
the same representation, so ``{stage}/classifier_top1`` is the method's own test accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from reprzoo.components.representation import Chain, L2Normalize
from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.metrics.evaluators import LABELLED_BANK_AND_QUERIES, ClassifierEvaluator


class MissingLabelsError(ReprzooError, ValueError):
    """A supervised method was given unlabelled data."""


class SupervisedModule(EmbeddingModule):
    """Base of supervised and metric-learning methods.

    ``encoder()`` = backbone -> embedding layer (``embedding_dim``, a linear layer; none when ``None``) -> L2 norm
    (``normalize``); :meth:`represent` computes it on a training batch with gradients. :meth:`build_classifier` gives
    the head that :meth:`logits` applies to the representation (a linear layer here; a cosine classifier, proxies or
    none in subclasses). Labels of -1 (unlabelled samples) are ignored by the losses here.

    Args:
        embedding_dim: width of the embedding layer after the backbone; ``None`` exports the backbone's features.
        normalize: the representation is L2-normalised (metric learning retrieves by cosine).
        label_smoothing: of the cross-entropy in :meth:`cross_entropy`.
        kwargs: options of :class:`~reprzoo.lightning_modules.base.EmbeddingModule` (``num_classes`` is required:
            the CLI links it from the datamodule).
    """

    def __init__(self, embedding_dim: int | None = None, normalize: bool = False, label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        num_classes = self.hparams.num_classes
        if not num_classes:
            raise MissingLabelsError(
                f"{type(self).__name__} trains with labels: it needs num_classes (the CLI links it from a labelled datamodule)"
            )
        self.embedding = nn.Linear(self.feature_dim, embedding_dim) if embedding_dim else None
        self.representation_dim = int(embedding_dim or self.feature_dim)
        self.classifier = self.build_classifier()
        self.classifier_top1 = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)
        self.resize_probe(self.representation_dim)

    # ----------------------------------------------------------------- hooks
    def build_classifier(self) -> nn.Module | None:
        """The head on the representation: a linear layer over ``num_classes``; ``None`` for a method without one."""
        return nn.Linear(self.representation_dim, self.hparams.num_classes)

    def encoder(self) -> nn.Module:
        modules = [self.backbone]
        if self.embedding is not None:
            modules.append(self.embedding)
        if self.hparams.normalize:
            modules.append(L2Normalize())
        return modules[0] if len(modules) == 1 else Chain(*modules, num_features=self.representation_dim)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The representation of a training batch (with gradients): what ``embed`` returns."""
        return self.encoder()(self._format(x))

    def represent_features(self, features: torch.Tensor) -> torch.Tensor:
        """The representation from the backbone's features (embedding layer, then L2 norm): ``encoder()`` after the
        backbone, for a method that also feeds the features to other heads."""
        rep = self.embedding(features) if self.embedding is not None else features
        return F.normalize(rep, dim=-1) if self.hparams.normalize else rep

    def logits(self, representation: torch.Tensor) -> torch.Tensor:
        """The classifier's scores of a representation."""
        if self.classifier is None:
            raise ReprzooError(f"{type(self).__name__} has no classifier head")
        return self.classifier(representation)

    # ----------------------------------------------------------------- losses and labels
    def labelled(self, labels: torch.Tensor | None) -> torch.Tensor:
        """Boolean mask of the labelled samples of a batch; one clear error when a batch carries no labels at all."""
        if labels is None or not bool((labels >= 0).any()):
            raise MissingLabelsError(
                f"{type(self).__name__} got a training batch without labels: train it on a labelled datamodule "
                "(unlabelled samples carry the label -1)"
            )
        return labels >= 0

    def cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the labelled samples (-1 ignored), with the method's label smoothing."""
        return F.cross_entropy(logits, labels, ignore_index=-1, label_smoothing=self.hparams.label_smoothing)

    # ----------------------------------------------------------------- evaluation
    def build_evaluators(self):
        evaluators = super().build_evaluators()
        if self.classifier is not None:
            evaluator = ClassifierEvaluator(self.classifier_top1, self.logits, "classifier_top1")
            evaluator.protocols = (LABELLED_BANK_AND_QUERIES,)  # the classes of the queries are the trained ones
            evaluators.append(evaluator)
        return evaluators


__all__ = ["MissingLabelsError", "SupervisedModule", "TrainingOutput"]
