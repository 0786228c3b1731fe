"""InterCLR's inter-image branch ("Delving into Inter-Image Invariance for Unsupervised Visual Representations",
arXiv:2008.11702): positives and negatives drawn from a memory bank by pseudo-label, and InfoNCE with a cosine
margin on the positive."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

NegativeSampling = Literal["semihard", "hard", "random"]


def _random_subset(valid: torch.Tensor, count: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` columns per row drawn uniformly without replacement among the ``valid`` ones (invalid columns fill
    in where a row has too few valid ones); returns (columns, their validity)."""
    scores = torch.rand(valid.shape, generator=generator, device=valid.device)
    scores = torch.where(valid, scores, scores - 2.0)  # every valid column ranks above every invalid one
    columns = scores.topk(count, dim=1).indices
    return columns, valid.gather(1, columns)


def sample_inter_image_pairs(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    labels: torch.Tensor,
    num_negatives: int,
    strategy: NegativeSampling = "semihard",
    pool_size: int = 128000,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Memory-bank indices of one positive and ``num_negatives`` negatives per query.

    The positive is drawn uniformly among the entries with the query's pseudo-label. Negatives have another
    pseudo-label and are: ``semihard``, drawn uniformly from the ``pool_size`` entries most similar to the query
    (the paper's choice); ``hard``, the most similar ones; ``random``, drawn uniformly from the whole bank.

    Args:
        query: ``(n, d)`` queries (only their direction matters).
        bank: ``(N, d)`` memory features.
        bank_labels: ``(N,)`` pseudo-label of each memory entry.
        labels: ``(n,)`` pseudo-label of each query (that of its own memory entry).
        num_negatives: negatives per query.
        strategy: ``semihard``, ``hard`` or ``random``.
        pool_size: size of the semi-hard pool of nearest entries.
        generator: random source of the draws.

    Returns:
        ``(positive (n,), negatives (n, num_negatives), negative_valid (n, num_negatives))``; a negative is invalid
        (it shares the query's pseudo-label) only where fewer than ``num_negatives`` candidates exist.
    """
    n_bank = bank.shape[0]
    if strategy not in ("semihard", "hard", "random"):
        raise ValueError(f"strategy must be 'semihard', 'hard' or 'random', got {strategy!r}")
    pool = pool_size if strategy == "semihard" else n_bank
    if not 1 <= num_negatives <= min(pool, n_bank):
        raise ValueError(f"num_negatives must be in [1, {min(pool, n_bank)}] (pool and bank size), got {num_negatives}")
    if pool > n_bank:
        raise ValueError(f"pool_size {pool} exceeds the {n_bank} memory entries")
    # positives: sort the bank by label, then draw an offset inside the query's label block
    order = torch.argsort(bank_labels, stable=True)
    counts = torch.bincount(bank_labels, minlength=int(labels.max()) + 1)
    if (counts[labels] == 0).any():
        raise ValueError("a query's pseudo-label has no entry in the memory bank")
    starts = torch.cumsum(counts, 0) - counts
    offsets = (torch.rand(labels.shape, generator=generator, device=labels.device) * counts[labels]).long()
    positive = order[starts[labels] + offsets.clamp(max=counts[labels] - 1)]
    # negatives
    similarity = F.normalize(query.detach(), dim=1) @ bank.T.to(query.dtype)
    if strategy == "hard":
        candidates = torch.arange(n_bank, device=bank.device).expand(len(query), -1)
        similarity = similarity.masked_fill(bank_labels[None, :] == labels[:, None], float("-inf"))
        columns = similarity.topk(num_negatives, dim=1).indices
        negatives = candidates.gather(1, columns)
        return positive, negatives, bank_labels[negatives] != labels[:, None]
    if strategy == "semihard":
        candidates = similarity.topk(pool, dim=1).indices
    else:
        candidates = torch.arange(n_bank, device=bank.device).expand(len(query), -1)
    columns, valid = _random_subset(bank_labels[candidates] != labels[:, None], num_negatives, generator)
    return positive, candidates.gather(1, columns), valid


def inter_image_info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    negative_valid: torch.Tensor | None = None,
    temperature: float = 0.2,
    margin: float = -0.5,
) -> torch.Tensor:
    """InfoNCE with a cosine margin m on the positive: -log e^{(cos(q, p) - m)/T} / (e^{(cos(q, p) - m)/T} +
    sum_j e^{cos(q, n_j)/T}). A negative m (the paper's -0.5) relaxes the decision boundary.

    Args:
        query: ``(n, d)`` queries.
        positive: ``(n, d)`` the positive of each query.
        negatives: ``(n, K, d)`` the negatives of each query.
        negative_valid: ``(n, K)`` mask; invalid negatives are left out.
        temperature: the temperature T.
        margin: the cosine margin m subtracted from the positive's similarity.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if positive.shape != query.shape or negatives.ndim != 3 or negatives.shape[::2] != query.shape:
        raise ValueError(
            f"expected query, positive (n, d) and negatives (n, K, d), got {tuple(query.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negatives.shape)}"
        )
    q = F.normalize(query, dim=1)
    pos = (q * F.normalize(positive, dim=1)).sum(dim=1, keepdim=True) - margin
    neg = torch.einsum("nd,nkd->nk", q, F.normalize(negatives, dim=2))
    if negative_valid is not None:
        neg = neg.masked_fill(~negative_valid, float("-inf"))
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
