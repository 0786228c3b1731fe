"""Losses of CVIB, "Reducing Spurious Correlations for Aspect-Based Sentiment Analysis with Variational Information
Bottleneck and Contrastive Learning" (Chang, Yang, Jiang & Xu, 2023, arXiv:2303.02846): the variational information
bottleneck's KL bound on multiplicative neuron masks (Dai et al., 2018, "Compressing Neural Networks using the
Variational Information Bottleneck", arXiv:1802.10399) and the self-pruning contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vib_kl(mu: torch.Tensor, log_var: torch.Tensor, length: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """The VIB upper bound of one masking layer, ``0.5 * length * sum_j log(1 + mu_j^2 / sigma_j^2)``.

    The layer multiplies each of its ``dim`` neurons by ``z_j ~ N(mu_j, sigma_j^2)``; the bound is small when a mask is
    noise-dominated (``mu_j^2 << sigma_j^2``: the neuron can be pruned). ``length`` counts the positions the mask is
    applied to (the authors multiply by the sequence length).

    Args:
        mu: ``(dim,)`` means of the masks.
        log_var: ``(dim,)`` log-variances ``log sigma^2``.
        length: positions sharing the mask.
        eps: added to the variance.
    """
    if mu.ndim != 1 or mu.shape != log_var.shape:
        raise ValueError(f"mu and log_var must be matching (dim,) vectors, got {tuple(mu.shape)}, {tuple(log_var.shape)}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    return 0.5 * length * torch.log1p(mu.pow(2) / (log_var.exp() + eps)).sum()


def self_pruning_contrastive_loss(pruned: torch.Tensor, original: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE with the self-pruned network's encodings as anchors: sentence ``i``'s positive is the original
    network's encoding of the same sentence, its negatives the original encodings of the batch's other sentences
    (cosine similarities over ``temperature``).

    Args:
        pruned: ``(batch, dim)`` encodings by the self-pruned network.
        original: ``(batch, dim)`` encodings by the original network.
        temperature: softmax temperature.
    """
    if pruned.ndim != 2 or pruned.shape != original.shape:
        raise ValueError(f"pruned and original must be matching (batch, dim), got {tuple(pruned.shape)}, {tuple(original.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = F.normalize(pruned, dim=-1) @ F.normalize(original, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(pruned), device=pruned.device))


__all__ = ["self_pruning_contrastive_loss", "vib_kl"]
