"""Redundancy reduction: Barlow Twins' cross-correlation loss and VICReg's variance-invariance-covariance loss.

Both objectives are statistics of the whole batch, so they are computed on the global batch: embeddings are
gathered across ranks with gradients (``reprzoo.distributed.gather``) and every rank evaluates the same loss, which
makes a 2-process run compute the loss of the 1-process run on the same batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather


def _check_pair(z1: torch.Tensor, z2: torch.Tensor, name: str) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"{name} needs two (batch, dim) embeddings of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square ``(d, d)`` matrix as a flat ``(d * (d - 1),)`` vector."""
    d = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape[1] != d:
        raise ValueError(f"off_diagonal needs a square matrix, got {tuple(matrix.shape)}")
    return matrix.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5, gather_distributed: bool = True) -> torch.Tensor:
    """Barlow Twins' C_ij = sum_b z1_bi z2_bj / N of embeddings standardised along the (global) batch.

    Standardisation is a batch norm without affine parameters (biased variance, ``eps`` inside the square root),
    as the official code's ``nn.BatchNorm1d(affine=False)`` under SyncBatchNorm. Returns ``(d, d)``.
    """
    _check_pair(z1, z2, "cross_correlation")
    if gather_distributed:
        z1, z2 = gather(z1), gather(z2)
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"cross_correlation needs at least 2 samples in the batch, got {n}")
    z1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    z2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
    return z1.T @ z2 / n


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambda_: float = 5e-3, eps: float = 1e-5, gather_distributed: bool = True
) -> torch.Tensor:
    """Barlow Twins (arXiv:2103.03230, Eq. 1): sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2.

    Args:
        z1, z2: ``(batch, dim)`` projector outputs of the two views.
        lambda_: weight of the redundancy-reduction (off-diagonal) term; 5e-3 in the paper.
        eps: batch-norm epsilon of the standardisation.
        gather_distributed: compute C over the global batch (the official code all-reduces C over ranks).
    """
    if lambda_ < 0:
        raise ValueError(f"lambda_ must be non-negative, got {lambda_}")
    c = cross_correlation(z1, z2, eps, gather_distributed)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    return on_diag + lambda_ * off_diagonal(c).pow(2).sum()


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's v(Z) = mean_j max(0, gamma - sqrt(Var(z_j) + eps)), unbiased variance over the batch."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg's c(Z) = sum_{i != j} C(Z)_ij^2 / d with C(Z) the unbiased covariance matrix over the batch."""
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (n - 1)
    return off_diagonal(cov).pow(2).sum() / d


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """VICReg (arXiv:2105.04906, Eq. 6): lambda s(Z, Z') + mu [v(Z) + v(Z')] / 2 + nu [c(Z) + c(Z')].

    The invariance s is the mean squared error of this rank's pairs (its gradient averaged over ranks by DDP is the
    global one); variance and covariance use the gathered global batch, as the official ``FullGatherLayer``. The
    variance term averages the two branches and the covariance term sums them, as the official code.

    Args:
        z1, z2: ``(batch, dim)`` expander outputs of the two views.
        sim_coeff: lambda, weight of the invariance term (25).
        std_coeff: mu, weight of the variance term (25).
        cov_coeff: nu, weight of the covariance term (1).
        gamma: target standard deviation of each dimension (1).
        eps: added to the variance before the square root (1e-4).
        gather_distributed: compute variance and covariance on the global batch.
    """
    _check_pair(z1, z2, "vicreg_loss")
    if min(sim_coeff, std_coeff, cov_coeff) < 0:
        raise ValueError(f"VICReg coefficients must be non-negative, got {sim_coeff}, {std_coeff}, {cov_coeff}")
    invariance = F.mse_loss(z1, z2)
    if gather_distributed:
        z1, z2 = gather(z1), gather(z2)
    if z1.shape[0] < 2:
        raise ValueError(f"vicreg_loss needs at least 2 samples in the batch, got {z1.shape[0]}")
    variance = (variance_loss(z1, gamma, eps) + variance_loss(z2, gamma, eps)) / 2
    covariance = covariance_loss(z1) + covariance_loss(z2)
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
