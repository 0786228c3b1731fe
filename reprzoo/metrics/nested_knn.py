"""kNN accuracy at every prefix size of nested (Matryoshka) embeddings, from one store of full-size features."""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics.utilities import dim_zero_cat

from reprzoo.metrics.knn import KNNAccuracy, _is_empty, effective_k, weighted_knn_predict


class NestedKNN(KNNAccuracy):
    """:class:`KNNAccuracy` that also classifies with the first m coordinates, for every m in ``nested_dims``.

    ``compute()`` returns the full-size accuracy (as ``KNNAccuracy`` does) and leaves ``{m: accuracy}`` in
    ``prefix_accuracies``; both come from the same gathered (rank-synced) features.
    """

    def __init__(self, num_classes: int, nested_dims: Sequence[int], k: int = 200, temperature: float = 0.1, **kwargs):
        super().__init__(num_classes, k, temperature, **kwargs)
        self.nested_dims = tuple(int(m) for m in nested_dims)
        self.prefix_accuracies: dict[int, torch.Tensor] = {}

    def compute(self) -> torch.Tensor:
        self.prefix_accuracies = {}
        if _is_empty(self.bank_features) or _is_empty(self.query_features):
            return torch.tensor(float("nan"), device=self.device)
        bank, bank_labels = dim_zero_cat(self.bank_features), dim_zero_cat(self.bank_labels).long()
        query, query_labels = dim_zero_cat(self.query_features), dim_zero_cat(self.query_labels)
        full = bank.shape[1]
        self.k_used = effective_k(self.k, bank_labels)  # capped by the class sizes, as KNNAccuracy does
        for m in sorted({*self.nested_dims, full}):
            preds = weighted_knn_predict(query[:, :m], bank[:, :m], bank_labels, self.num_classes, self.k_used, self.temperature)
            self.prefix_accuracies[m] = (preds == query_labels).float().mean()
        return self.prefix_accuracies[full]
