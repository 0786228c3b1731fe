"""SIE's objective: VICReg with the embedding split into an invariant and an equivariant part ("Self-supervised
learning of Split Invariant Equivariant representations", Garrido et al., ICML 2023, arXiv:2302.10283)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather
from reprzoo.losses.redundancy import covariance_loss, variance_loss


def sie_loss(
    inv1: torch.Tensor,
    inv2: torch.Tensor,
    eq1: torch.Tensor,
    eq2: torch.Tensor,
    eq2_pred: torch.Tensor,
    sim_coeff: float = 10.0,
    std_coeff: float = 10.0,
    cov_coeff: float = 1.0,
    equi_factor: float = 0.45,
    pred_std: bool = True,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """lambda_inv ||z_inv - z'_inv||^2 + lambda_equi ||pred_g(z_eq) - z'_eq||^2 + VICReg variance and covariance.

    Following the official code: both distances are mean squared errors, lambda_equi = ``equi_factor`` x
    ``sim_coeff``; variance (hinge at ``gamma``, averaged over the two views) and covariance (summed over the two
    views) regularise the concatenation [z_inv, z_eq] of each view, so that redundancy between the two parts is
    penalised too; with ``pred_std`` the predictor output gets its own variance hinge (halved, weight
    ``std_coeff``), which prevents the predictor from collapsing. Variance and covariance use the gathered global
    batch.

    Args:
        inv1, inv2: ``(batch, d_inv)`` invariant embeddings of the two views.
        eq1, eq2: ``(batch, d_eq)`` equivariant embeddings of the two views.
        eq2_pred: ``(batch, d_eq)`` the predictor's estimate of ``eq2`` from ``eq1`` and the relative transformation.
    """
    if inv1.shape != inv2.shape or inv1.ndim != 2:
        raise ValueError(
            "invariant embeddings must be two (batch, dim) tensors of equal shape, "
            f"got {tuple(inv1.shape)} and {tuple(inv2.shape)}"
        )
    if not eq1.shape == eq2.shape == eq2_pred.shape or eq1.ndim != 2:
        raise ValueError(
            f"equivariant embeddings and prediction must be (batch, dim) of equal shape, got {tuple(eq1.shape)}, "
            f"{tuple(eq2.shape)} and {tuple(eq2_pred.shape)}"
        )
    if inv1.shape[0] != eq1.shape[0]:
        raise ValueError(f"invariant and equivariant parts have different batch sizes: {inv1.shape[0]} vs {eq1.shape[0]}")
    if min(sim_coeff, std_coeff, cov_coeff, equi_factor) < 0:
        raise ValueError("SIE coefficients must be non-negative")
    invariance = F.mse_loss(inv1, inv2)
    equivariance = F.mse_loss(eq2_pred, eq2)
    z1, z2 = torch.cat([inv1, eq1], dim=1), torch.cat([inv2, eq2], dim=1)
    if gather_distributed:
        z1, z2, eq2_pred = gather(z1), gather(z2), gather(eq2_pred)
    if z1.shape[0] < 2:
        raise ValueError(f"sie_loss needs at least 2 samples in the batch, got {z1.shape[0]}")
    variance = (variance_loss(z1, gamma, eps) + variance_loss(z2, gamma, eps)) / 2
    if pred_std:
        variance = variance + variance_loss(eq2_pred, gamma, eps) / 2
    covariance = covariance_loss(z1) + covariance_loss(z2)
    return sim_coeff * (invariance + equi_factor * equivariance) + std_coeff * variance + cov_coeff * covariance
