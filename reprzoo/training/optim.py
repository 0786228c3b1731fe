"""Optimisers and schedules shared by every method: LR scaling by global batch, SGD/LARS/AdamW, warmup + cosine."""

from __future__ import annotations

import math
from typing import Iterable, Literal

import torch
from torch import nn

OptimizerName = Literal["sgd", "lars", "adamw"]
SchedulerName = Literal["warmup_cosine", "linear", "constant"]


def global_batch_size(batch_size_per_device: int, devices: int = 1, num_nodes: int = 1, accumulate: int = 1) -> int:
    """The batch one optimiser step sees: per-device batch x devices x nodes x gradient accumulation."""
    return batch_size_per_device * devices * num_nodes * accumulate


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int | None = 256) -> float:
    """The linear scaling rule lr = base_lr x global_batch / reference (Goyal et al., 2017; SimSiam, BYOL).

    ``reference_batch=None`` means the recipe gives an absolute learning rate.
    """
    if reference_batch is None:
        return base_lr
    return base_lr * global_batch / reference_batch


def steps_per_epoch(total_steps: int, max_epochs: int) -> int:
    return max(1, total_steps // max(1, max_epochs))


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Half a cosine from ``start`` at step 0 to ``end`` at ``total_steps`` (and after):
    ``end + (start - end) (1 + cos(pi step / total_steps)) / 2``; ``start`` when ``total_steps <= 0``.

    The one cosine schedule of the library: the LR decay (:func:`warmup_cosine`), BYOL's EMA rate
    (``reprzoo.components.ema.cosine_tau``), DINO's and I-JEPA's weight decay (DINO's ``cosine_scheduler`` without
    warmup).
    """
    if total_steps <= 0:
        return start
    progress = min(max(step / total_steps, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base LR: linear warmup from 0 to 1, then cosine decay to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return cosine_schedule(step - warmup_steps, max(1, total_steps - warmup_steps), 1.0, min_ratio)


def split_weight_decay(named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float, **group) -> list[dict]:
    """Two groups: weights with decay; biases and norm parameters (1-d) without, and without LARS adaptation."""
    decay, no_decay = [], []
    for _, p in named_params:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{**group, "params": decay, "weight_decay": weight_decay}]
    if no_decay:  # a distinct name keeps LearningRateMonitor's group names unique
        name = group.get("name", "params")
        groups.append({**group, "name": f"{name}/no_decay", "params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(
    name: OptimizerName,
    groups: list[dict],
    lr: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """SGD and AdamW from torch, LARS from timm (which skips adaptation for groups without weight decay).

    ``fused``: torch's fused SGD/AdamW kernels (one kernel for all parameters); ``None`` uses them when every
    parameter is on a CUDA device, where they are faster, and the plain loop elsewhere (LARS has none).
    """
    for g in groups:  # a group's own "lr" is an absolute override; the rest scale with the base
        g.setdefault("lr", lr)
        g["initial_lr"] = g["lr"]
    if fused is None:
        params = [p for g in groups for p in g["params"]]
        fused = bool(params) and all(p.is_cuda for p in params)
    options = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **options)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **options)
    if name == "lars":
        from timm.optim import Lars

        return Lars(groups, lr=lr, momentum=momentum, trust_clip=False)
    raise ValueError(f"unknown optimizer {name!r}; choose one of sgd, lars, adamw")


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: SchedulerName, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR; groups marked ``fixed_lr`` (SimSiam's predictor) keep their LR."""

    def schedule(step: int) -> float:
        if name == "constant":
            return 1.0
        if name == "linear":  # word2vec.c: from the base LR down to min_lr_ratio of it over training (after warmup)
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return 1.0 - (1.0 - min_lr_ratio) * progress
        return warmup_cosine(step, warmup_steps, total_steps, min_lr_ratio)

    lambdas = [(lambda step: 1.0) if g.get("fixed_lr") else schedule for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
