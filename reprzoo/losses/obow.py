"""OBoW's bag-of-visual-words targets and prediction loss: "OBoW: Online Bag-of-Visual-Words Generation for
Self-Supervised Learning" (Gidaris et al., CVPR 2021, arXiv:2012.11552), Sec. 3."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def squared_distances(features: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """||u - v_k||^2 between every local feature u of ``features`` ``(n, c, h, w)`` and every word v_k of ``words``
    ``(K, c)``; returns ``(n, K, h, w)``."""
    if features.ndim != 4 or words.ndim != 2 or features.shape[1] != words.shape[1]:
        raise ValueError(
            f"features must be (n, c, h, w) and words (K, c) with the same c, got {tuple(features.shape)} and "
            f"{tuple(words.shape)}"
        )
    cross = torch.einsum("nchw,kc->nkhw", features, words)
    return features.pow(2).sum(1, keepdim=True) + words.pow(2).sum(1)[None, :, None, None] - 2 * cross


def bow_from_distances(
    distances: torch.Tensor,
    inv_delta: float = 15.0,
    mean_min_distance: float | torch.Tensor = 1.0,
    pool: Literal["max", "avg"] = "max",
) -> torch.Tensor:
    """The teacher's BoW target: soft assignments softmax_k(-d_k / delta) at each location, with the adaptive
    temperature delta = mean_min_distance / inv_delta (the running mean of min_k d_k over inv_delta), pooled over
    locations (max in OBoW) and L1-normalised.

    Args:
        distances: ``(n, K, h, w)`` squared distances to the words.
        inv_delta: the base inverse temperature (15 in OBoW).
        mean_min_distance: the running mean of the per-location minimum distance.
        pool: ``max`` (OBoW) or ``avg`` (BoWNet) pooling of the assignment codes.
    Returns:
        ``(n, K)`` BoW distributions.
    """
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    if inv_delta <= 0:
        raise ValueError(f"inv_delta must be positive, got {inv_delta}")
    codes = F.softmax(-(inv_delta / mean_min_distance) * distances, dim=1)
    bow = codes.amax(dim=(2, 3)) if pool == "max" else codes.mean(dim=(2, 3))
    return F.normalize(bow, p=1, dim=1)


def bow_logits(
    features: torch.Tensor, word_weights: torch.Tensor, kappa: float = 8.0, normalize_features: bool = True
) -> torch.Tensor:
    """The student's BoW prediction scores kappa * z^T w_k with L2-normalised generated weights w_k.

    With ``normalize_features`` the scores are kappa times the cosine similarity (the paper's cosine classifier);
    OBoW's code leaves the pooled features z unnormalised.

    Args:
        features: ``(n, d)`` student features.
        word_weights: ``(K, d)`` weights generated from the vocabulary.
        kappa: the scale.
    """
    if normalize_features:
        features = F.normalize(features, dim=1)
    return kappa * features @ F.normalize(word_weights, dim=1).T


def bow_prediction_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy -sum_k y_k log softmax(logits)_k between the teacher's BoW ``targets`` ``(n, K)`` (no gradient)
    and the student's ``logits``; ``logits`` may hold ``m`` crops per target, ``(m n, K)`` ordered crop-major."""
    if logits.shape[1] != targets.shape[1] or logits.shape[0] % targets.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} must be crops x targets {tuple(targets.shape)} over the same vocabulary")
    targets = targets.detach().repeat(logits.shape[0] // targets.shape[0], 1)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
