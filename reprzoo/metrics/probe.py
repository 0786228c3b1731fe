"""Online linear probe: a classifier trained on detached features alongside the method (as solo-learn does)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


class OnlineLinearProbe(nn.Module):
    """A linear classifier on detached embeddings; its gradient never reaches the encoder.

    ``training_loss`` gives the cross-entropy to add to the method's loss (unlabelled samples, label -1, are
    ignored) and updates the train accuracy; ``update`` accumulates the validation accuracy. Both accuracies
    are torchmetrics metrics, so Lightning syncs them across ranks.
    """

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.train_top1 = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)
        self.val_top1 = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.detach())

    def training_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self(features)
        if not (labels >= 0).any():  # a fully unlabelled batch (STL-10 unlabeled split)
            return logits.sum() * 0.0
        self.train_top1.update(logits, labels)
        return F.cross_entropy(logits, labels, ignore_index=-1)

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.val_top1.update(self(features), labels)
