"""Retrieval accuracy of metric learning as "A Metric Learning Reality Check" (Musgrave, Belongie & Lim, ECCV 2020,
arXiv:2003.08505, Sec. 3.2) defines it: every sample of the evaluation set is a query against all the others
(leave-one-out), ranked by cosine similarity.

For a query with ``R`` other samples of its class (queries alone in their class are skipped):

- ``precision_at_1``: the nearest other sample has the query's class;
- ``r_precision``: the share of the query's class among its ``R`` nearest;
- ``map_at_r``: ``(1/R) sum_{i<=R} P(i) rel(i)``, the mean of the precision at each correct rank among the ``R``
  nearest (a correct item missing from the top ``R`` counts as 0).

Each is averaged over the queries. :class:`RetrievalAccuracyEvaluator` logs them for the ``zero_shot_retrieval``
protocol (unseen classes; a datamodule's ``class_split="zero_shot"``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from reprzoo.metrics.evaluators import EvaluationBatch, EvaluationProtocol, Evaluator

ZERO_SHOT_RETRIEVAL = "zero_shot_retrieval"
#: the metrics, by the names they are logged under
RETRIEVAL_ACCURACY_METRICS = ("precision_at_1", "r_precision", "map_at_r")


@torch.no_grad()
def retrieval_metrics(features: torch.Tensor, labels: torch.Tensor, chunk: int = 1024) -> dict[str, float]:
    """``{"precision_at_1", "r_precision", "map_at_r"}`` of ``features`` ``(n, d)`` with ``labels`` ``(n,)``, each
    sample a query against the others (cosine similarity; ties broken by position). Queries are scored in chunks
    of ``chunk`` rows: memory ``chunk x n``."""
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be (n, d) and labels (n,), got {tuple(features.shape)} and {tuple(labels.shape)}")
    x = F.normalize(features.float(), dim=1)
    labels = labels.to(x.device)
    counts = torch.bincount(labels - labels.min())[labels - labels.min()] - 1  # R of each query
    keep = counts > 0
    if not bool(keep.any()):
        raise ValueError("no query has another sample of its class: retrieval accuracy is undefined")
    max_r = int(counts.max())
    p1, rp, mapr = [], [], []
    for start in range(0, len(x), chunk):
        rows = torch.arange(start, min(start + chunk, len(x)), device=x.device)
        scores = x[rows] @ x.T
        scores[torch.arange(len(rows)), rows] = float("-inf")  # not the query itself
        order = scores.topk(max_r, dim=1).indices  # (rows, max_r), best first
        r = counts[rows]
        ranks = torch.arange(1, max_r + 1, device=x.device)
        within = ranks.unsqueeze(0) <= r.unsqueeze(1)
        relevant = (labels[order] == labels[rows].unsqueeze(1)) & within
        hits = relevant.cumsum(1)
        rr = r.clamp(min=1).float()
        p1.append(relevant[:, 0].float())
        rp.append(hits[:, -1].float() / rr)
        mapr.append(((hits.float() / ranks) * relevant).sum(1) / rr)
    keep = keep.cpu()
    values = [torch.cat(v).cpu()[keep].mean().item() for v in (p1, rp, mapr)]
    return dict(zip(RETRIEVAL_ACCURACY_METRICS, values))


def precision_at_1(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out precision@1 (see :func:`retrieval_metrics`)."""
    return retrieval_metrics(features, labels)["precision_at_1"]


def r_precision(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out R-precision (see :func:`retrieval_metrics`)."""
    return retrieval_metrics(features, labels)["r_precision"]


def map_at_r(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out MAP@R (see :func:`retrieval_metrics`)."""
    return retrieval_metrics(features, labels)["map_at_r"]


class ZeroShotRetrieval(EvaluationProtocol):
    """One loader of ``(inputs, labels)`` batches from classes unseen in training: every sample is a query against
    the others. Brings :class:`RetrievalAccuracyEvaluator`; kNN and the probe (trained on other classes) do not
    run."""

    name = ZERO_SHOT_RETRIEVAL

    def read(self, batch: Any, dataloader_idx: int, num_loaders: int) -> EvaluationBatch:
        return EvaluationBatch(batch[0], batch[1], bank=False, with_bank=False, dataloader_idx=dataloader_idx, raw=batch)

    def evaluators(self) -> list[Evaluator]:
        return [RetrievalAccuracyEvaluator()]


class RetrievalAccuracyEvaluator(Evaluator):
    """``{stage}/precision_at_1``, ``{stage}/r_precision`` and ``{stage}/map_at_r`` of the query features
    (gathered across ranks before scoring)."""

    protocols = (ZERO_SHOT_RETRIEVAL,)

    def __init__(self):
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            self.features.append(features.detach())
            self.labels.append(labels.detach())

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not self.features:
            return
        features, labels = torch.cat(self.features), torch.cat(self.labels)
        trainer = getattr(module, "_trainer", None)
        if trainer is not None and trainer.world_size > 1:  # every rank scores the whole evaluation set
            features = module.all_gather(features).flatten(0, 1)
            labels = module.all_gather(labels).flatten(0, 1)
        for name, value in retrieval_metrics(features, labels).items():
            log_fn(f"{stage}/{name}", value)

    def reset(self) -> None:
        self.features, self.labels = [], []


__all__ = [
    "RETRIEVAL_ACCURACY_METRICS",
    "ZERO_SHOT_RETRIEVAL",
    "RetrievalAccuracyEvaluator",
    "ZeroShotRetrieval",
    "map_at_r",
    "precision_at_1",
    "r_precision",
    "retrieval_metrics",
]
