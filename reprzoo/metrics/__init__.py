"""Shared metrics (torchmetrics, synced across ranks): kNN, linear probe, collapse monitors."""

from reprzoo.metrics.collapse import EffectiveRank, EmbeddingStd, effective_rank, normalized_std
from reprzoo.metrics.knn import KNNAccuracy, weighted_knn_predict
from reprzoo.metrics.probe import OnlineLinearProbe

__all__ = [
    "EffectiveRank",
    "EmbeddingStd",
    "KNNAccuracy",
    "OnlineLinearProbe",
    "effective_rank",
    "normalized_std",
    "weighted_knn_predict",
]
