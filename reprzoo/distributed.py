"""Distributed helpers used by losses and metrics: rank, world size, and an all-gather whose backward sums gradients."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the gradient summed over all ranks.

    Every rank's loss depends on every rank's embeddings, so the gradient of the global loss with respect
    to the local embeddings is the all-reduced sum of the gradients that arrive at each rank's gathered copy.
    (lightly#1528 shipped a backward without that sum; tests/test_distributed.py checks the gradient.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        stacked = torch.stack(grads)
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (shape ``(n, ...)``, equal ``n`` on every rank) from all ranks along dim 0, with gradients.

    Returns ``x`` unchanged outside distributed runs.
    """
    if not is_distributed() or world_size() == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (no gradient); ``x`` itself outside distributed runs."""
    if not is_distributed() or world_size() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / world_size()
