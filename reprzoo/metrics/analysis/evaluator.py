"""Any analysis metric logged during training: :class:`AnalysisEvaluator` gathers the validation queries' features
and labels (across ranks), and at the end of the epoch logs the scalars a function of them returns."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torchmetrics import Metric

from reprzoo.metrics.evaluators import Evaluator


class LabelledFeatures(Metric):
    """The features and labels seen this epoch, concatenated on every rank (``dist_reduce_fx="cat"``)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features.append(features.detach().float().reshape(len(features), -1))
        self.labels.append(labels.detach().long().reshape(-1))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.cat(self.features) if isinstance(self.features, list) else self.features
        labels = torch.cat(self.labels) if isinstance(self.labels, list) else self.labels
        return features, labels


class AnalysisEvaluator(Evaluator):
    """Logs ``{stage}/{prefix}{key}`` for every scalar ``fn(features, labels)`` returns on the validation queries
    (a seeded subset of at most ``max_samples`` of them: the cost of a quadratic metric is bounded).

    Example: ``AnalysisEvaluator(lambda f, y: {"isoscore": isoscore(f)}, prefix="")`` in a module's ``evaluators``
    logs ``val/isoscore`` every validation epoch.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], Mapping[str, Any]], prefix: str = "", max_samples: int = 2000):
        if max_samples < 2:
            raise ValueError(f"max_samples must be >= 2, got {max_samples}")
        self.fn, self.prefix, self.max_samples = fn, prefix, max_samples
        self.seen = LabelledFeatures()

    def metrics(self):
        return (self.seen,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            self.seen.to(features.device)
            self.seen.update(features, labels)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not self.seen.update_called:
            return
        features, labels = self.seen.compute()
        if len(features) > self.max_samples:
            keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[: self.max_samples]
            features, labels = features[keep.to(features.device)], labels[keep.to(labels.device)]
        for key, value in self.fn(features.cpu(), labels.cpu()).items():
            if isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
                log_fn(f"{stage}/{self.prefix}{key}", float(value))


__all__ = ["AnalysisEvaluator", "LabelledFeatures"]
