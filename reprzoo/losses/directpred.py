"""DirectPred: set the linear predictor from the eigendecomposition of the feature correlation.

From "Understanding self-supervised Learning Dynamics without Contrastive Pairs" (Tian, Chen & Ganguli, 2021,
arXiv:2102.06810), Sec. 5: keep an EMA of the correlation of the predictor's inputs,
F <- rho F + (1 - rho) E[f f^T], decompose F = U diag(s) U^T and set W_p = U diag(p) U^T with
p_j = sqrt(s_j / max_j s_j) + eps.
"""

from __future__ import annotations

import torch


def feature_correlation(features: torch.Tensor) -> torch.Tensor:
    """E[f f^T] over the batch: ``(batch, dim) -> (dim, dim)`` (uncentred, as in the paper)."""
    if features.ndim != 2:
        raise ValueError(f"features must be (batch, dim), got shape {tuple(features.shape)}")
    f = features.detach().float()
    return f.T @ f / f.shape[0]


def update_correlation(running: torch.Tensor, batch_corr: torch.Tensor, rho: float) -> torch.Tensor:
    """EMA of the correlation: ``rho * running + (1 - rho) * batch_corr``."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    if running.shape != batch_corr.shape:
        raise ValueError(f"shape mismatch: {tuple(running.shape)} vs {tuple(batch_corr.shape)}")
    return rho * running + (1.0 - rho) * batch_corr


def directpred_weight(correlation: torch.Tensor, eps: float = 0.01, min_eigenvalue: float = 1e-4) -> torch.Tensor:
    """W_p = U diag(sqrt(s_j / s_max) + eps) U^T from a symmetric correlation matrix.

    Negative eigenvalues (numerical noise) are clamped to 0 before the square root, and the final diagonal is
    clamped to ``min_eigenvalue`` so that a negative ``eps`` (allowed by the paper) keeps W_p positive definite.

    Args:
        correlation: symmetric ``(dim, dim)`` matrix.
        eps: the paper's epsilon, added after the square root to boost weak directions.
    """
    if correlation.ndim != 2 or correlation.shape[0] != correlation.shape[1]:
        raise ValueError(f"correlation must be square, got shape {tuple(correlation.shape)}")
    s, u = torch.linalg.eigh(correlation.double())
    s = s.clamp(min=0)
    s_max = s.max()
    if s_max <= 0:
        raise ValueError("correlation matrix has no positive eigenvalue (collapsed or all-zero features)")
    p = ((s / s_max).sqrt() + eps).clamp(min=min_eigenvalue)
    return (u @ torch.diag(p) @ u.T).to(correlation.dtype)
