"""Collapse monitors: spread of normalised embeddings and their effective rank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def normalized_std(embeddings: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension std of l2-normalised embeddings.

    SimSiam's collapse monitor (arXiv:2011.10566, Fig. 2): 0 for a collapsed output, about 1/sqrt(d) for
    embeddings spread over the sphere.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"need a (batch >= 2, dim) tensor, got shape {tuple(embeddings.shape)}")
    return F.normalize(embeddings.detach().float(), dim=1).std(dim=0).mean()


def effective_rank(embeddings: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """exp of the entropy of the normalised singular values (Roy & Vetterli, 2007): from 1 (collapsed) to dim."""
    if embeddings.ndim != 2:
        raise ValueError(f"need a (n, dim) tensor, got shape {tuple(embeddings.shape)}")
    x = embeddings.detach().double()
    s = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
    p = s / (s.sum() + eps)
    entropy = -(p * (p + eps).log()).sum()
    return entropy.exp().float()


class _EmbeddingStatistic(Metric):
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor) -> None:
        self.embeddings.append(embeddings.detach().float())


class EmbeddingStd(_EmbeddingStatistic):
    """:func:`normalized_std` over every embedding seen on every rank."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        return normalized_std(dim_zero_cat(self.embeddings))


class EffectiveRank(_EmbeddingStatistic):
    """:func:`effective_rank` over every embedding seen on every rank."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        return effective_rank(dim_zero_cat(self.embeddings))
