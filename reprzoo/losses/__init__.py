"""Losses: pure functions of tensors, one per paper objective; no Lightning here."""

from reprzoo.losses.directpred import directpred_weight, feature_correlation, update_correlation
from reprzoo.losses.siamese import byol_loss, byol_regression_loss, negative_cosine_similarity, simsiam_loss

__all__ = [
    "byol_loss",
    "byol_regression_loss",
    "directpred_weight",
    "feature_correlation",
    "negative_cosine_similarity",
    "simsiam_loss",
    "update_correlation",
]
