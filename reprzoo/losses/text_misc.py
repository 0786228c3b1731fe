"""Losses of three text methods: byte reconstruction of a convolutional auto-encoder ("Efficient Purely
Convolutional Text Encoding"), and KaLM-Embedding-V2's focal-style InfoNCE with online hard-negative mixing.

The recurrent convolutional network of "Word and Document Embeddings based on Neural Network Approaches" is
trained with plain cross-entropy over its classes (``torch.nn.functional.cross_entropy``): no loss of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byte_reconstruction_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the reconstructed symbols (Zhang & LeCun, 2018, arXiv:1802.01817; Malik, Lancucki &
    Chorowski, 2018, arXiv:1808.01160): every position of the fixed-length byte sequence, padding included (the
    decoder must also say where the text ends), unless ``mask`` selects positions.

    Args:
        logits: ``(batch, length, vocab)`` decoder scores.
        targets: ``(batch, length)`` symbol ids.
        mask: optional ``(batch, length)``, 1 where a position counts.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (batch, length, vocab) and targets (batch, length): {tuple(logits.shape)}, {tuple(targets.shape)}"
        )
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    if mask is None:
        return losses.mean()
    if mask.shape != targets.shape:
        raise ValueError(f"mask must match targets {tuple(targets.shape)}, got {tuple(mask.shape)}")
    weights = mask.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


def mix_hard_negatives(
    queries: torch.Tensor,
    documents: torch.Tensor,
    num_hardest: int = 8,
    num_pair_mixes: int = 4,
    num_query_mixes: int = 4,
    max_query_share: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Online hard-negative mixing (KaLM-Embedding-V2, Zhao et al., 2025, arXiv:2506.20923, after MoCHi: Kalantidis
    et al., 2020, arXiv:2010.01028): for each query, its ``num_hardest`` most similar in-batch negatives (the other
    pairs' documents), then ``num_pair_mixes`` synthetic negatives ``normalize(a n_1 + (1 - a) n_2)`` of two random
    hard negatives (``a ~ U(0, 1)``) and ``num_query_mixes`` ``normalize(b q + (1 - b) n)`` of the query and a
    random hard negative (``b ~ U(0, max_query_share)``, so the negative stays closer to the negative than to the
    query). The synthetic points carry no gradient, as MoCHi's.

    Args:
        queries: ``(n, d)`` query embeddings.
        documents: ``(n, d)`` positive documents: document ``i`` is query ``i``'s positive, the others negatives.
        num_hardest: hardest negatives mixed (capped at ``n - 1``).
        num_pair_mixes, num_query_mixes: synthetic negatives of each kind per query.
        max_query_share: the largest share of the query in a query-negative mix (< 0.5 in MoCHi).
        generator: random source of the mixing choices and coefficients.

    Returns:
        ``(n, num_pair_mixes + num_query_mixes, d)`` unit-norm synthetic negatives, detached.
    """
    n, d = queries.shape
    if documents.shape != (n, d):
        raise ValueError(f"documents must be (n, d) = {(n, d)}, got {tuple(documents.shape)}")
    if n < 2:
        raise ValueError("hard-negative mixing needs at least 2 pairs (one in-batch negative)")
    if num_hardest < 1 or num_pair_mixes < 0 or num_query_mixes < 0:
        raise ValueError(
            f"need num_hardest >= 1 and non-negative mix counts, got {num_hardest}, {num_pair_mixes}, {num_query_mixes}"
        )
    if not 0 <= max_query_share <= 1:
        raise ValueError(f"max_query_share must be in [0, 1], got {max_query_share}")
    with torch.no_grad():
        q, docs = F.normalize(queries.detach(), dim=-1), F.normalize(documents.detach(), dim=-1)
        scores = (q @ docs.T).fill_diagonal_(float("-inf"))  # the positive is no negative
        k = min(num_hardest, n - 1)
        hardest = docs[scores.topk(k, dim=1).indices]  # (n, k, d)
        rows = torch.arange(n, device=q.device).unsqueeze(1)

        def pick(count: int) -> torch.Tensor:
            return hardest[rows, torch.randint(k, (n, count), generator=generator).to(q.device)]

        def uniform(count: int, high: float) -> torch.Tensor:
            return (torch.rand(n, count, 1, generator=generator) * high).to(q.device, q.dtype)

        a = uniform(num_pair_mixes, 1.0)
        pair_mixes = a * pick(num_pair_mixes) + (1 - a) * pick(num_pair_mixes)
        b = uniform(num_query_mixes, max_query_share)
        query_mixes = b * q.unsqueeze(1) + (1 - b) * pick(num_query_mixes)
        return F.normalize(torch.cat([pair_mixes, query_mixes], 1), dim=-1)


def focal_info_nce_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    temperature: float = 0.05,
    gamma: float = 1.0,
    extra_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE with focal-style reweighting (KaLM-Embedding-V2, arXiv:2506.20923): with ``p_i`` the softmax
    probability of query i's positive among the in-batch documents (and its own extra negatives),
    ``mean_i -(1 - p_i)^gamma log p_i`` (cosine similarities over ``temperature``); ``gamma = 0`` is plain InfoNCE.
    The weight is differentiated through, as the focal loss (Lin et al., 2017, arXiv:1708.02002).

    Args:
        queries: ``(n, d)`` query embeddings.
        documents: ``(n, d)``: document ``i`` is query ``i``'s positive, the others in-batch negatives.
        temperature: softmax temperature of the cosine similarities.
        gamma: focusing exponent (>= 0).
        extra_negatives: optional ``(n, m, d)`` negatives of each query only (mixed hard negatives).
    """
    n, d = queries.shape
    if documents.shape != (n, d):
        raise ValueError(f"documents must be (n, d) = {(n, d)}, got {tuple(documents.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    q = F.normalize(queries, dim=-1)
    scores = q @ F.normalize(documents, dim=-1).T / temperature
    if extra_negatives is not None:
        if extra_negatives.ndim != 3 or extra_negatives.shape[0] != n or extra_negatives.shape[2] != d:
            raise ValueError(f"extra_negatives must be (n, m, d) = ({n}, m, {d}), got {tuple(extra_negatives.shape)}")
        extra = torch.einsum("nd,nmd->nm", q, F.normalize(extra_negatives, dim=-1)) / temperature
        scores = torch.cat([scores, extra], 1)
    log_p = scores.log_softmax(-1).diagonal()
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()


__all__ = ["byte_reconstruction_loss", "focal_info_nce_loss", "mix_hard_negatives"]
