"""Contrastive losses of sentence embeddings with in-batch negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather, rank


def multiple_negatives_ranking_loss(
    queries: torch.Tensor, documents: torch.Tensor, scale: float = 20.0, gather_distributed: bool = True
) -> torch.Tensor:
    """Multiple negatives ranking loss (Henderson et al., 2017, arXiv:1705.00652; sentence-transformers'
    ``MultipleNegativesRankingLoss``): for query i, ``-log softmax_j(scale * cos(q_i, d_j))`` at j = i, where the
    documents of the other pairs (of every rank, gathered with gradients) are the negatives.

    Args:
        queries: ``(n, d)`` query (anchor) embeddings.
        documents: ``(n, d)`` or ``(n + m, d)``: the positive of each query first, then extra hard negatives.
        scale: inverse temperature (20 in sentence-transformers).
        gather_distributed: take the other ranks' documents as negatives too.
    """
    if documents.shape[0] < queries.shape[0] or documents.shape[1] != queries.shape[1]:
        raise ValueError(f"need a positive per query: queries {tuple(queries.shape)}, documents {tuple(documents.shape)}")
    keys = gather(documents) if gather_distributed else documents
    offset = rank() * documents.shape[0] if gather_distributed and keys.shape[0] != documents.shape[0] else 0
    scores = scale * F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T
    targets = torch.arange(queries.shape[0], device=queries.device) + offset
    return F.cross_entropy(scores, targets)


__all__ = ["multiple_negatives_ranking_loss"]
