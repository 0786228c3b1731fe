"""Losses of joint-embedding predictive architectures: I-JEPA's regression of layer-normalised target patches, and
the oi-VAE terms (grouped reconstruction, Gaussian KL, group lasso) SparseJEPA adds to it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jepa_loss(predictions: torch.Tensor, targets: torch.Tensor, normalize_targets: bool = True) -> torch.Tensor:
    """I-JEPA's objective: the mean squared L2 distance between predicted and target patch representations.

    From "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture" (Assran et al.,
    2023, arXiv:2301.08243), Sec. 3: (1/M) sum_i sum_{j in B_i} ||s_hat_{y_j} - s_{y_j}||^2, with the target
    encoder's outputs layer-normalised over the feature dimension (no affine) as in the authors' code. Averaged over
    every element, i.e. the paper's sum divided by the number of patches and the feature size.

    Args:
        predictions: predictor outputs, shape ``(..., dim)`` (e.g. ``(blocks, batch, patches, dim)``).
        targets: target-encoder patch representations of the same shape; no gradient flows into them.
        normalize_targets: layer-normalise the targets first.
    """
    if predictions.shape != targets.shape or predictions.ndim < 2:
        raise ValueError(
            f"predictions and targets must have the same shape (..., dim), got {tuple(predictions.shape)} "
            f"and {tuple(targets.shape)}"
        )
    targets = targets.detach()
    if normalize_targets:
        targets = F.layer_norm(targets, targets.shape[-1:])
    return (predictions - targets).pow(2).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) = 1/2 sum_k (mu_k^2 + sigma_k^2 - 1 - log sigma_k^2), summed over
    the latent dimension (last) and averaged over the rest.

    Args:
        mu: posterior means, shape ``(..., latent)``.
        logvar: posterior log-variances, same shape.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean()


def group_lasso(group_weights: torch.Tensor) -> torch.Tensor:
    """oi-VAE's group-sparsity penalty sum_g sum_j ||W^(g)_{:, j}||_2 on the latent-to-group maps.

    From "oi-VAE: Output Interpretable VAEs for Nonlinear Group Factor Analysis" (Ainsworth et al., 2018,
    arXiv:1802.06765), Eq. 4: column j of W^(g) carries latent dimension j into feature group g; the penalty drives
    whole columns to zero, so each latent dimension is shared by a few groups only.

    Args:
        group_weights: the maps stacked as ``(groups, group_dim, latent)``.
    """
    if group_weights.ndim != 3:
        raise ValueError(f"group_weights must be (groups, group_dim, latent), got shape {tuple(group_weights.shape)}")
    return group_weights.norm(dim=1).sum()


def oi_vae_loss(
    features: torch.Tensor, reconstruction: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl_weight: float = 1.0
) -> torch.Tensor:
    """The negative ELBO of oi-VAE with a unit-variance Gaussian likelihood, per feature dimension.

    (||x - x_hat||^2 + kl_weight * KL(q(z|x) || N(0, I))) / dim, averaged over samples (tokens): the per-dimension
    scale keeps it comparable with :func:`jepa_loss`, which is a mean over feature dimensions too.

    Args:
        features: the vectors being modelled, shape ``(..., dim)``.
        reconstruction: the grouped generator's output, same shape.
        mu: posterior means, shape ``(..., latent)``.
        logvar: posterior log-variances, same shape as ``mu``.
        kl_weight: beta, the weight of the KL term.
    """
    if features.shape != reconstruction.shape:
        raise ValueError(
            f"features and reconstruction must have the same shape, got {tuple(features.shape)} and {tuple(reconstruction.shape)}"
        )
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be non-negative, got {kl_weight}")
    reconstruction_error = (features - reconstruction).pow(2).sum(-1).mean()
    return (reconstruction_error + kl_weight * gaussian_kl(mu, logvar)) / features.shape[-1]
