"""Nested layers: sub-networks that are prefixes of a larger one, usable as projectors or heads.

- :class:`SortedLinear` / :class:`SortedMLP`: "SortedNet, a Place for Every Network and Every Network in its Place:
  Towards a Generalized Solution for Training Many-in-One Neural Networks" (Valipour et al., 2023,
  arXiv:2309.00255). Sub-models share weights in sorted order: the width-w sub-network uses the first w units of
  every hidden layer, so each step trains a sampled sub-model and every prefix is usable without search.
- :class:`OrderedLowRankLinear`: "Maestro: Uncovering Low-Rank Structures via Trainable Decomposition" (Horvath et
  al., ICML 2024, arXiv:2308.14929). W = U diag(s) V trained with ordered dropout over the rank: a step keeps the
  first r components for a sampled r, so components come out ordered by importance and the layer truncates to any
  rank after training.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SortedLinear(nn.Linear):
    """A linear layer whose sub-layer of sizes ``(in_dim, out_dim)`` is ``W[:out_dim, :in_dim]``, ``b[:out_dim]``.

    ``forward(x, out_dim)`` reads the input width from ``x`` (a prefix of ``in_features``) and returns the first
    ``out_dim`` outputs (all when ``None``).
    """

    def forward(self, x: torch.Tensor, out_dim: int | None = None) -> torch.Tensor:
        in_dim, out_dim = x.shape[-1], self.out_features if out_dim is None else out_dim
        if not (1 <= in_dim <= self.in_features and 1 <= out_dim <= self.out_features):
            raise ValueError(f"sub-layer ({in_dim} -> {out_dim}) exceeds the layer ({self.in_features} -> {self.out_features})")
        bias = self.bias[:out_dim] if self.bias is not None else None
        return F.linear(x, self.weight[:out_dim, :in_dim], bias)


class SortedMLP(nn.Module):
    """SortedNet over width: an MLP whose width-fraction-f sub-network keeps the first ceil(f h) units of each hidden
    layer (the output width stays whole). In training, each call samples a fraction from ``width_fractions``
    (SortedNet's per-step sub-model sampling); in eval the full network runs unless ``width`` is given.

    Args:
        dims: layer widths ``[in, hidden..., out]``.
        width_fractions: the sub-model widths trained, as fractions of each hidden layer.
        norm: LayerNorm hidden layers (over the active units only, so a sub-network is exactly its prefix).
    """

    def __init__(self, dims: Sequence[int], width_fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0), norm: bool = False):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"dims needs at least [in, out], got {list(dims)}")
        if not width_fractions or any(not 0 < f <= 1 for f in width_fractions):
            raise ValueError(f"width_fractions must lie in (0, 1], got {list(width_fractions)}")
        self.dims, self.width_fractions, self.norm = tuple(dims), tuple(sorted(width_fractions)), norm
        self.layers = nn.ModuleList(SortedLinear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def hidden_widths(self, fraction: float) -> list[int]:
        return [max(1, math.ceil(fraction * h)) for h in self.dims[1:-1]]

    def forward(self, x: torch.Tensor, width: float | None = None) -> torch.Tensor:
        if width is None:
            width = random.choice(self.width_fractions) if self.training else 1.0
        widths = [*self.hidden_widths(width), self.dims[-1]]
        for i, (layer, w) in enumerate(zip(self.layers, widths)):
            x = layer(x, w)
            if i < len(self.layers) - 1:
                x = F.relu(F.layer_norm(x, (w,)) if self.norm else x)
        return x


class OrderedLowRankLinear(nn.Module):
    """Maestro's decomposed layer y = U diag(s) V x + b with ordered dropout over the rank.

    In training, each forward keeps the first r components for r drawn uniformly from ``[min_rank, rank]``
    (ordered dropout; ``ordered_dropout=False`` trains the full rank); ``forward(x, rank=r)`` fixes r, and
    :meth:`truncate` returns the rank-r layer.

    Args:
        in_features, out_features: sizes of the linear map.
        rank: the largest rank R (at most ``min(in, out)`` is useful).
        min_rank: the smallest rank sampled.
    """

    def __init__(
        self, in_features: int, out_features: int, rank: int, min_rank: int = 1, bias: bool = True, ordered_dropout: bool = True
    ):
        super().__init__()
        if not 1 <= min_rank <= rank:
            raise ValueError(f"need 1 <= min_rank <= rank, got min_rank={min_rank}, rank={rank}")
        self.in_features, self.out_features, self.rank, self.min_rank = in_features, out_features, rank, min_rank
        self.ordered_dropout = ordered_dropout
        self.u = nn.Parameter(torch.empty(out_features, rank))
        self.s = nn.Parameter(torch.ones(rank))
        self.v = nn.Parameter(torch.empty(rank, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.orthogonal_(self.u)
        nn.init.orthogonal_(self.v)
        with torch.no_grad():  # the scale of nn.Linear's default init, spread over the rank
            self.s.fill_(1.0 / math.sqrt(in_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int | None = None, **kwargs) -> "OrderedLowRankLinear":
        """Initialised from a trained layer by SVD (components ordered by singular value)."""
        full = min(linear.in_features, linear.out_features)
        layer = cls(linear.in_features, linear.out_features, rank or full, bias=linear.bias is not None, **kwargs)
        u, s, vh = torch.linalg.svd(linear.weight.detach(), full_matrices=False)
        with torch.no_grad():
            r = layer.rank
            layer.u.copy_(u[:, :r]), layer.s.copy_(s[:r]), layer.v.copy_(vh[:r])
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor, rank: int | None = None) -> torch.Tensor:
        if rank is None:
            rank = random.randint(self.min_rank, self.rank) if (self.training and self.ordered_dropout) else self.rank
        if not 1 <= rank <= self.rank:
            raise ValueError(f"rank must be in [1, {self.rank}], got {rank}")
        self.last_rank = rank
        hidden = F.linear(x, self.v[:rank]) * self.s[:rank]
        return F.linear(hidden, self.u[:, :rank], self.bias)

    def weight(self, rank: int | None = None) -> torch.Tensor:
        r = rank or self.rank
        return (self.u[:, :r] * self.s[:r]) @ self.v[:r]

    def truncate(self, rank: int) -> "OrderedLowRankLinear":
        """A layer of rank ``rank``: the first components (Maestro's post-training rank truncation)."""
        if not 1 <= rank <= self.rank:
            raise ValueError(f"rank must be in [1, {self.rank}], got {rank}")
        out = OrderedLowRankLinear(self.in_features, self.out_features, rank, 1, self.bias is not None, self.ordered_dropout)
        with torch.no_grad():
            out.u.copy_(self.u[:, :rank]), out.s.copy_(self.s[:rank]), out.v.copy_(self.v[:rank])
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out.train(self.training)
