"""Weighted k-nearest-neighbour accuracy of embeddings, as a torchmetrics Metric synced across ranks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def weighted_knn_predict(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Class predictions by cosine-similarity kNN with weights exp(sim / T).

    The rule of "Unsupervised Feature Learning via Non-Parametric Instance Discrimination" (Wu et al., 2018,
    arXiv:1805.01978), used by SimSiam, BYOL and solo-learn's kNN monitor. Top-k by matrix products in chunks
    of queries: no Python loop over samples.

    Args:
        query: ``(n, d)`` embeddings to classify.
        bank: ``(m, d)`` labelled embeddings.
        bank_labels: ``(m,)`` integer labels in ``[0, num_classes)``.
    Returns:
        ``(n,)`` predicted labels.
    """
    if query.ndim != 2 or bank.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(f"query and bank must be (n, d) and (m, d), got {tuple(query.shape)} and {tuple(bank.shape)}")
    if bank.shape[0] != bank_labels.shape[0]:
        raise ValueError("bank and bank_labels differ in length")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    k = min(k, bank.shape[0])
    bank = F.normalize(bank.float(), dim=1)
    preds = []
    for start in range(0, query.shape[0], chunk_size):
        q = F.normalize(query[start : start + chunk_size].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=q.device, dtype=weights.dtype)
        votes.scatter_add_(1, bank_labels[idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=query.device)


def effective_k(k: int, bank_labels: torch.Tensor) -> int:
    """``k`` capped by the median number of bank samples per class (classes present in ``bank_labels``), at least 1:
    the rule of :class:`KNNAccuracy`."""
    if bank_labels.numel() == 0:
        return k
    counts = torch.bincount(bank_labels.long().flatten())
    counts = counts[counts > 0]
    median = int(counts.float().median().item())  # the lower of the two middle counts for an even number of classes
    return max(1, min(k, median))


def _is_empty(state) -> bool:
    """A ``cat`` state is a list of tensors before syncing and one tensor after (torchmetrics concatenates)."""
    return len(state) == 0 if isinstance(state, list) else state.numel() == 0


class KNNAccuracy(Metric):
    """Top-1 accuracy of weighted kNN classification (cosine, k=200, T=0.1 by default).

    Call ``update(features, labels, bank=True)`` for the labelled reference set (the training split without
    augmentation), then ``update(features, labels)`` for the queries; ``compute()`` gathers both from every
    rank before classifying. Samples with a negative label are ignored.

    ``k`` is capped by the bank's class sizes: ``compute()`` classifies with ``k_used = min(k, median number of
    bank samples per class)`` (over the classes present in the gathered bank, at least 1; :func:`effective_k`),
    and leaves it in ``k_used``. Beyond a class's size the extra neighbours are necessarily of other classes, so
    an uncapped k=200 on a set of 150 images per class measures the vote dilution rather than the features. The
    median rather than the smallest class keeps one tiny class of a long-tailed set from shrinking k for all.
    ``KNNEvaluator`` logs ``k_used`` as ``{stage}/knn_k``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, k: int = 200, temperature: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.num_classes, self.k, self.temperature = num_classes, k, temperature
        #: the k of the last ``compute()`` (``k`` capped by the bank's class sizes); ``None`` before one
        self.k_used: int | None = None
        for name in ("bank_features", "bank_labels", "query_features", "query_labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, labels: torch.Tensor, bank: bool = False) -> None:
        keep = labels >= 0
        features, labels = features.detach()[keep], labels[keep]
        if bank:
            self.bank_features.append(features)
            self.bank_labels.append(labels)
        else:
            self.query_features.append(features)
            self.query_labels.append(labels)

    def compute(self) -> torch.Tensor:
        if _is_empty(self.bank_features) or _is_empty(self.query_features):
            return torch.tensor(float("nan"), device=self.device)
        bank, bank_labels = dim_zero_cat(self.bank_features), dim_zero_cat(self.bank_labels)
        query, query_labels = dim_zero_cat(self.query_features), dim_zero_cat(self.query_labels)
        bank_labels = bank_labels.long()
        self.k_used = effective_k(self.k, bank_labels)
        preds = weighted_knn_predict(query, bank, bank_labels, self.num_classes, self.k_used, self.temperature)
        return (preds == query_labels).float().mean()
