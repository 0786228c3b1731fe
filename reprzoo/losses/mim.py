"""Mutual Information Machine losses: A-MIM's symmetric cross-entropy and cMIM's augmentation-free contrastive term.

A-MIM is from "MIM: Mutual Information Machine" (Livne, Swersky & Fleet, 2019, arXiv:1910.03175): with samples
from the encoding joint only (x ~ P(x), z ~ q(z|x)), L = -1/2 E[log p(x|z) + log q(z|x) + log P(z)] (the data
anchor log P(x) is constant and dropped). Compared with the VAE's ELBO the encoder's log-density enters with a plus
sign: MIM minimises the encoder's entropy and so maximises I(x; z) and clusters codes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather, rank

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor | float) -> torch.Tensor:
    """log N(x; mean, exp(logvar)) of each sample, summed over all non-batch dimensions: shape ``(batch,)``."""
    if x.shape != mean.shape:
        raise ValueError(f"x shape {tuple(x.shape)} differs from mean shape {tuple(mean.shape)}")
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device).expand_as(x)
    log_p = -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
    return log_p.flatten(1).sum(dim=1)


def a_mim_loss(log_p_x_given_z: torch.Tensor, log_q_z_given_x: torch.Tensor, log_p_z: torch.Tensor) -> torch.Tensor:
    """A-MIM: -1/2 mean_i [log p(x_i|z_i) + log q(z_i|x_i) + log P(z_i)], with z_i ~ q(z|x_i) (MIM Sec. 3.3).

    Args:
        log_p_x_given_z: decoder log-likelihoods of the inputs, ``(batch,)``.
        log_q_z_given_x: encoder log-densities of the sampled codes, ``(batch,)``.
        log_p_z: prior (anchor) log-densities of the sampled codes, ``(batch,)``.
    """
    shapes = {tuple(log_p_x_given_z.shape), tuple(log_q_z_given_x.shape), tuple(log_p_z.shape)}
    if len(shapes) != 1 or log_p_z.ndim != 1:
        raise ValueError(f"expected three (batch,) tensors, got shapes {sorted(shapes)}")
    return -0.5 * (log_p_x_given_z + log_q_z_given_x + log_p_z).mean()


def cmim_contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """cMIM's contrastive term on latent codes, with no augmented positive pair and a batch-size-robust normaliser.

    Each code's positive is produced by the model itself (in :class:`~reprzoo.lightning_modules.vision_ssl.mim.CMIM`: the code
    of its own reconstruction), the other samples' positives are the negatives, and the negatives enter through
    their *mean* rather than their sum::

        L = -1/n sum_i log( e^{s_ii/T} / (e^{s_ii/T} + 1/(N-1) sum_{j != i} e^{s_ij/T}) ),  s = cosine similarity

    so the loss does not drift with log N as InfoNCE does when the batch grows. Positives are gathered across ranks
    with gradients (N is the global batch).

    Args:
        anchors: ``(n, d)`` codes of this rank's samples.
        positives: ``(n, d)`` the positive code of each anchor.
        temperature: T of the similarities.
    """
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(f"expected two (n, d) tensors of one shape, got {tuple(anchors.shape)} and {tuple(positives.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    keys = gather(F.normalize(positives, dim=1))
    big_n, n = keys.shape[0], anchors.shape[0]
    if big_n < 2:
        raise ValueError("the contrastive term needs at least two samples in the (global) batch")
    logits = F.normalize(anchors, dim=1) @ keys.T / temperature  # (n, N)
    own = torch.arange(n, device=anchors.device) + rank() * n
    positive = logits[torch.arange(n, device=anchors.device), own]
    negatives = logits.clone()
    negatives[torch.arange(n, device=anchors.device), own] = float("-inf")
    log_mean_negative = torch.logsumexp(negatives, dim=1) - math.log(big_n - 1)
    return (torch.logaddexp(positive, log_mean_negative) - positive).mean()
