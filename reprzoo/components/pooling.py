"""Pooling of token states into one vector per text: the first token (``cls``), the mean or the max over real
tokens (the mask is 1 on tokens, 0 on padding)."""

from __future__ import annotations

from typing import Literal

import torch

Pooling = Literal["cls", "mean", "max"]


def pool_tokens(states: torch.Tensor, mask: torch.Tensor, mode: Pooling = "mean") -> torch.Tensor:
    """``(batch, length, dim)`` states and a ``(batch, length)`` mask -> ``(batch, dim)``.

    ``cls``: the first position's state; ``mean``: the average over real tokens (a text without tokens gives
    zeros); ``max``: the element-wise maximum over real tokens (zeros for a text without tokens).
    """
    if mode == "cls":
        return states[:, 0]
    weights = mask[..., : states.shape[1]].unsqueeze(-1).to(states.dtype)
    if mode == "mean":
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if mode == "max":
        masked = states.masked_fill(weights == 0, float("-inf")).amax(1)
        return torch.where(torch.isfinite(masked), masked, torch.zeros_like(masked))
    raise ValueError(f"unknown pooling {mode!r}; choose cls, mean or max")


__all__ = ["Pooling", "pool_tokens"]
