"""Exponential moving average of a target network, with BYOL's cosine schedule of the decay rate."""

from __future__ import annotations

import copy

import torch
from torch import nn

from reprzoo.training.optim import cosine_schedule


def copy_as_target(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to serve as an EMA target (no gradients, same initial weights)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def cosine_tau(step: int, total_steps: int, tau_base: float, tau_final: float = 1.0) -> float:
    """BYOL's schedule: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (arXiv:2006.07733, Sec. 3.3), i.e.
    :func:`~reprzoo.training.optim.cosine_schedule` from ``tau_base`` to ``tau_final``."""
    return cosine_schedule(step, total_steps, tau_base, tau_final)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, for parameters; buffers (BN statistics) are copied."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("online and target networks have different parameter lists")
    torch._foreach_lerp_(t_params, o_params, 1.0 - tau)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)
