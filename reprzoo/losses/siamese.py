"""Losses of siamese methods without negatives: SimSiam's negative cosine and BYOL's normalised regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(p: torch.Tensor, z: torch.Tensor) -> None:
    if p.ndim != 2 or p.shape != z.shape:
        raise ValueError(f"expected two (batch, dim) tensors of the same shape, got {tuple(p.shape)} and {tuple(z.shape)}")


def negative_cosine_similarity(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -<p/||p||, sg(z)/||z||>, averaged over the batch.

    From "Exploring Simple Siamese Representation Learning" (Chen & He, 2021, arXiv:2011.10566), Eq. 1 with the
    stop-gradient of Eq. 3 applied to ``z``.

    Args:
        p: predictor outputs, shape ``(batch, dim)``.
        z: projector outputs of the other view, shape ``(batch, dim)``; no gradient flows into them.
    """
    _check_pair(p, z)
    return -(F.normalize(p, dim=-1) * F.normalize(z.detach(), dim=-1)).sum(dim=-1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Symmetrised SimSiam loss L = D(p1, sg(z2))/2 + D(p2, sg(z1))/2 (Eq. 3 of arXiv:2011.10566)."""
    return 0.5 * negative_cosine_similarity(p1, z2) + 0.5 * negative_cosine_similarity(p2, z1)


def byol_regression_loss(p: torch.Tensor, z_target: torch.Tensor) -> torch.Tensor:
    """BYOL's loss ||p/||p|| - z'/||z'|| ||^2 = 2 - 2 cos(p, z'), averaged over the batch.

    From "Bootstrap your own latent" (Grill et al., 2020, arXiv:2006.07733), Eq. 2. ``z_target`` comes from
    the target network and receives no gradient.
    """
    _check_pair(p, z_target)
    cos = (F.normalize(p, dim=-1) * F.normalize(z_target.detach(), dim=-1)).sum(dim=-1)
    return (2 - 2 * cos).mean()


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, z1_target: torch.Tensor, z2_target: torch.Tensor) -> torch.Tensor:
    """Symmetrised BYOL loss: view 1's prediction regresses view 2's target and vice versa (sum, as in the paper)."""
    return byol_regression_loss(p1, z2_target) + byol_regression_loss(p2, z1_target)
