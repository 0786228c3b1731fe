"""Hydra's contrastive loss on arbitrary class pairs, from "Rethinking Positive Pairs in Contrastive Learning" (Wu,
Mo, Feng, Atito, Kittler & Awais, 2024, arXiv:2410.18200).

Each anchor of class y1 is paired with a class y2 (any class); the keys of class y2 are its positives, the keys of
neither class its negatives, and all similarities are taken in the anchor's gated subspace: cos(q ⊙ g, k ⊙ g) with
the pair's gate g = g(y1, y2) in [0, 1]^d. The multi-positive form follows the authors' ``multipos_ce_loss``:

    L = sum_i sum_{p in P(i)} [ log(e^{l_ip} + sum_{n in N(i)} e^{l_in}) - l_ip ] / sum_i |P(i)|,   l = cos / T
"""

from __future__ import annotations

import torch

from reprzoo.distributed import gather


def gated_cosine(queries: torch.Tensor, keys: torch.Tensor, gates: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(q_i ⊙ g_i, k_j ⊙ g_i) for every query ``i`` and key ``j``: ``(n, m)``, without materialising ``(n, m, d)``."""
    g2 = gates**2
    dots = (queries * g2) @ keys.T
    q_norm = ((queries**2) * g2).sum(dim=1, keepdim=True).clamp_min(eps).sqrt()
    k_norm = (g2 @ (keys**2).T).clamp_min(eps).sqrt()
    return dots / (q_norm * k_norm)


def class_pair_contrastive_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    gates: torch.Tensor,
    labels: torch.Tensor,
    pair_labels: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Hydra's gated InfoNCE with class-pair positives.

    Args:
        queries: ``(n, d)`` anchors of this rank.
        keys: ``(n, d)`` keys of this rank (the other view); gathered across ranks with gradients.
        gates: ``(n, d)`` gate of each anchor's class pair, in [0, 1].
        labels: ``(n,)`` classes y1 of the anchors (and of the keys); -1 marks unlabelled samples, which are
            never anchors nor positives.
        pair_labels: ``(n,)`` the class y2 each anchor is paired with.
        temperature: T of the similarities.
    """
    n, d = queries.shape
    if keys.shape != (n, d) or gates.shape != (n, d):
        raise ValueError(
            f"queries, keys and gates must share one (n, d) shape, got {tuple(queries.shape)}, {tuple(keys.shape)}, {tuple(gates.shape)}"
        )
    if labels.shape != (n,) or pair_labels.shape != (n,):
        raise ValueError("labels and pair_labels must hold one class per query")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    all_keys, key_labels = gather(keys), gather(labels)
    logits = gated_cosine(queries, all_keys, gates) / temperature
    valid = ((labels >= 0) & (pair_labels >= 0))[:, None]
    positive = (key_labels[None, :] == pair_labels[:, None]) & valid
    excluded = (key_labels[None, :] == labels[:, None]) | (key_labels[None, :] == pair_labels[:, None])
    if not positive.any():
        return queries.sum() * 0.0
    neg_lse = torch.logsumexp(logits.masked_fill(excluded, float("-inf")), dim=1, keepdim=True)
    per_pair = torch.logaddexp(logits, neg_lse) - logits  # -log(e^{l_ip} / (e^{l_ip} + sum_n e^{l_in}))
    return per_pair[positive].sum() / positive.sum()


def gate_entropy(gates: torch.Tensor) -> torch.Tensor:
    """Mean Bernoulli entropy of the gate values: the authors' optional regulariser (weight ``gamma``, 0 by
    default) that drives gates to open or close fully."""
    g = gates.clamp(1e-6, 1 - 1e-6)
    return -(g * g.log() + (1 - g) * (1 - g).log()).mean()
