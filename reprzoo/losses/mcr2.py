"""Coding rates and the maximal coding rate reduction (MCR^2), with soft memberships.

"Learning Diverse and Discriminative Representations via the Principle of Maximal Coding Rate Reduction" (Yu et al.,
NeurIPS 2020, arXiv:2006.08558) defines, for features Z (n samples on the unit sphere in R^d) and a membership
Pi (n x k, column j weighting the samples of group j):

    R(Z)       = 1/2 logdet(I + d / (n eps^2) Z^T Z)
    R_c(Z, Pi) = sum_j tr(Pi_j) / (2n) logdet(I + d / (tr(Pi_j) eps^2) Z^T Diag(Pi_j) Z)

and maximises R - R_c. "Unsupervised Manifold Linearizing and Clustering" (Ding et al., ICCV 2023,
arXiv:2301.01805) takes Pi to be an n x n doubly stochastic matrix (every column sums to 1, so R_c is its Eq. 4)
made by a Sinkhorn projection of cluster-head affinities, and initialises features with the total coding rate (TCR,
its Eq. 5). Everything is computed in float32 (logdets of near-singular matrices are not safe in half precision).
"""

from __future__ import annotations

import torch

from reprzoo.losses.sinkhorn import sinkhorn


def _logdet_spd(matrices: torch.Tensor) -> torch.Tensor:
    """logdet of symmetric positive-definite ``(..., d, d)`` matrices through their Cholesky factor."""
    chol = torch.linalg.cholesky(matrices)
    return 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)


def _check_features(z: torch.Tensor, eps_sq: float) -> None:
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(f"features must be (n, d) with n >= 1, got shape {tuple(z.shape)}")
    if eps_sq <= 0:
        raise ValueError(f"eps_sq must be positive, got {eps_sq}")


def coding_rate(z: torch.Tensor, eps_sq: float = 0.1) -> torch.Tensor:
    """R(Z) = 1/2 logdet(I + d / (n eps^2) Z^T Z) for features ``z`` of shape ``(n, d)``."""
    _check_features(z, eps_sq)
    n, d = z.shape
    z = z.float()
    eye = torch.eye(d, device=z.device, dtype=z.dtype)
    return 0.5 * _logdet_spd(eye + (d / (n * eps_sq)) * z.T @ z)


def compression_rate(z: torch.Tensor, membership: torch.Tensor, eps_sq: float = 0.1) -> torch.Tensor:
    """R_c(Z, Pi) = sum_j tr(Pi_j) / (2n) logdet(I + d / (tr(Pi_j) eps^2) Z^T Diag(Pi_j) Z).

    Args:
        z: ``(n, d)`` features.
        membership: ``(n, k)`` non-negative weights, column j the (soft) members of group j: one-hot labels for
            supervised MCR^2, an ``(n, n)`` doubly stochastic matrix for MLC.
        eps_sq: squared distortion epsilon^2.
    """
    _check_features(z, eps_sq)
    if membership.ndim != 2 or membership.shape[0] != z.shape[0]:
        raise ValueError(f"membership must be (n, k) with n = {z.shape[0]}, got shape {tuple(membership.shape)}")
    if (membership < 0).any():
        raise ValueError("membership must be non-negative")
    n, d = z.shape
    z, membership = z.float(), membership.float()
    traces = membership.sum(dim=0)  # (k,)
    covariances = torch.einsum("nk,na,nb->kab", membership, z, z)  # Z^T Diag(Pi_j) Z for every group j
    scale = d / ((traces + 1e-8) * eps_sq)
    eye = torch.eye(d, device=z.device, dtype=z.dtype)
    logdets = _logdet_spd(eye + scale[:, None, None] * covariances)
    return (traces * logdets).sum() / (2 * n)


def rate_reduction(z: torch.Tensor, membership: torch.Tensor, eps_sq: float = 0.1) -> torch.Tensor:
    """Delta R = R(Z) - R_c(Z, Pi), the quantity MCR^2 and MLC maximise."""
    return coding_rate(z, eps_sq) - compression_rate(z, membership, eps_sq)


def doubly_stochastic_membership(c: torch.Tensor, eta: float = 0.175, iterations: int = 5) -> torch.Tensor:
    """MLC's membership Gamma = P_{Omega, eta}(C C^T): the entropy-regularised projection of the affinities of
    unit-norm cluster-head outputs ``c`` ``(n, d)`` onto the n x n doubly stochastic matrices (Sinkhorn, unrolled)."""
    if c.ndim != 2:
        raise ValueError(f"cluster-head outputs must be (n, d), got shape {tuple(c.shape)}")
    if eta <= 0 or iterations < 1:
        raise ValueError(f"need eta > 0 and iterations >= 1, got eta={eta}, iterations={iterations}")
    c = c.float()
    return sinkhorn(c @ c.T, epsilon=eta, iterations=iterations)


def mlc_loss(z: torch.Tensor, membership: torch.Tensor, eps_sq: float = 0.1) -> torch.Tensor:
    """The MLC objective as a loss: -(R(Z) - R_c(Z, Gamma)) (arXiv:2301.01805, Eq. 4)."""
    if membership.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"MLC's membership is n x n with n = {z.shape[0]}, got shape {tuple(membership.shape)}")
    return -rate_reduction(z, membership, eps_sq)


def total_coding_rate_loss(
    z1: torch.Tensor, z2: torch.Tensor, eps_sq: float = 0.1, invariance_weight: float = 10.0
) -> torch.Tensor:
    """TCR, MLC's self-supervised initialisation (arXiv:2301.01805, Eq. 5) as a loss:
    -R((Z + Z') / 2) - lambda mean_i |z_i^T z'_i| for unit-norm features of two augmentations ``(n, d)``.

    The paper sums the invariance term over the batch; the mean makes ``invariance_weight`` independent of it.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"views must have equal shapes, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z1, z2 = z1.float(), z2.float()
    return -coding_rate((z1 + z2) / 2, eps_sq) - invariance_weight * (z1 * z2).sum(dim=1).abs().mean()


__all__ = [
    "coding_rate",
    "compression_rate",
    "doubly_stochastic_membership",
    "mlc_loss",
    "rate_reduction",
    "total_coding_rate_loss",
]
