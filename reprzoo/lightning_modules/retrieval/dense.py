"""What the dense and multi-vector retrievers share: towers built from a text backbone's token states and a head
(ME-BERT's first-token vectors, RepCONC's quantised vector, the multivariate retriever's expanded Gaussian, the
pseudo-query centroids). Each tower is a small module over the method's own submodules, so ``encoder()`` exports
exactly the parameters its representation reads (``num_params`` of a pushed config) and the query and document
towers of a :class:`~reprzoo.components.retrieval.DualEncoder` share them.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.pooling import pool_tokens


def token_states(backbone: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A text backbone's ``(B, L, H)`` token states and the ``(B, L)`` mask of real tokens (truncated alike)."""
    states = backbone.token_states(batch)
    mask = batch.get("attention_mask")
    mask = batch["input_ids"].ne(0) if mask is None else mask
    return states, mask[:, : states.shape[1]].to(states.dtype)


class FirstTokens(nn.Module):
    """The first ``count`` token states through ``head``, ``(B, count, dim)``; positions past a text's end (and
    past its padding) are all-zero rows, the multi-vector padding. ``count=1`` with ``squeeze``: ``(B, dim)``, the
    [CLS] vector. ``normalize``: unit-length vectors (padding rows stay zero)."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, count: int, dim: int, squeeze: bool = False, normalize: bool = False
    ):
        super().__init__()
        self.backbone, self.head, self.count, self.squeeze, self.normalize = backbone, head, count, squeeze, normalize
        self.num_features = dim

    def forward(self, batch) -> torch.Tensor:
        states, mask = token_states(self.backbone, batch)
        states, mask = states[:, : self.count], mask[:, : self.count]
        out = self.head(states)
        if self.normalize:
            out = F.normalize(out, dim=-1)
        out = out * mask[..., None]
        if out.shape[1] < self.count:  # a batch of texts shorter than count tokens
            out = torch.cat([out, out.new_zeros(out.shape[0], self.count - out.shape[1], out.shape[2])], 1)
        return out[:, 0] if self.squeeze else out


class PooledVector(nn.Module):
    """The backbone's token states pooled (``cls``, ``mean`` or ``max`` over real tokens) through ``head``:
    ``(B, dim)``, optionally unit-length."""

    def __init__(self, backbone: nn.Module, head: nn.Module, pooling: str, dim: int, normalize: bool = False):
        super().__init__()
        self.backbone, self.head, self.pooling, self.normalize = backbone, head, pooling, normalize
        self.num_features = dim

    def forward(self, batch) -> torch.Tensor:
        states, mask = token_states(self.backbone, batch)
        out = self.head(pool_tokens(states, mask, self.pooling))
        return F.normalize(out, dim=-1) if self.normalize else out


class Tower(nn.Module):
    """``fn(modules, batch)`` over named submodules of a method (a query or document tower reading several heads).

    Args:
        modules: the submodules the representation reads (registered here, so they are this tower's parameters).
        fn: ``fn(modules: nn.ModuleDict, batch) -> tensor``; a module-level function (picklable).
        num_features: size of the representation's last axis.
    """

    def __init__(self, modules: dict[str, nn.Module], fn: Callable[[nn.ModuleDict, object], torch.Tensor], num_features: int):
        super().__init__()
        self.parts = nn.ModuleDict(modules)
        self.fn = fn
        self.num_features = int(num_features)

    def forward(self, batch) -> torch.Tensor:
        return self.fn(self.parts, batch)


__all__ = ["FirstTokens", "PooledVector", "Tower", "token_states"]
