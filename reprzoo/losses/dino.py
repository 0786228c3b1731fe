"""DINO's self-distillation objective: "Emerging Properties in Self-Supervised Vision Transformers" (Caron et al.,
ICCV 2021, arXiv:2104.14294), Algorithm 1 and Eq. 2-3."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from reprzoo.distributed import all_reduce_mean


def dino_loss(
    student_logits: Sequence[torch.Tensor],
    teacher_logits: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> torch.Tensor:
    """min_s sum_{x in globals} sum_{x' != x} H(P_t(x), P_s(x')), averaged over the pairs (Eq. 3).

    P_s = softmax(g_s / tau_s) and the teacher's centred, sharpened P_t = softmax((g_t - c) / tau_t) (no gradient).
    The teacher's view ``i`` is the student's view ``i`` (global crops come first), so that pair is skipped.

    Args:
        student_logits: one ``(n, K)`` tensor per view the student saw (global crops first, then local ones).
        teacher_logits: one ``(n, K)`` tensor per global view the teacher saw.
        center: ``(1, K)`` or ``(K,)`` running mean of the teacher's logits.
        student_temperature: tau_s.
        teacher_temperature: tau_t (sharpening).
    """
    if not teacher_logits or len(student_logits) < 2 or len(teacher_logits) > len(student_logits):
        raise ValueError(
            f"DINO needs >= 1 teacher view and >= 2 student views, teacher views being the first student views; got "
            f"{len(teacher_logits)} teacher and {len(student_logits)} student views"
        )
    if student_temperature <= 0 or teacher_temperature <= 0:
        raise ValueError(f"temperatures must be positive, got {student_temperature} and {teacher_temperature}")
    shapes = {tuple(t.shape) for t in [*student_logits, *teacher_logits]}
    if len(shapes) != 1:
        raise ValueError(f"every view's logits must have the same (batch, K) shape, got {sorted(shapes)}")
    log_p_s = [F.log_softmax(s / student_temperature, dim=-1) for s in student_logits]
    p_t = [F.softmax((t.detach() - center) / teacher_temperature, dim=-1) for t in teacher_logits]
    total, terms = 0.0, 0
    for i, q in enumerate(p_t):
        for v, log_p in enumerate(log_p_s):
            if v == i:
                continue
            total = total + (-q * log_p).sum(dim=-1).mean()
            terms += 1
    return total / terms


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """c <- m c + (1 - m) mean_i g_t(x_i) (Eq. 4), the batch mean taken over every rank's teacher outputs.

    Args:
        center: ``(1, K)`` current centre.
        teacher_logits: ``(n, K)`` this rank's teacher outputs of every global view.
        momentum: m (0.9 in the paper).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"center momentum must be in [0, 1], got {momentum}")
    batch_center = all_reduce_mean(teacher_logits.detach().float().mean(dim=0, keepdim=True))
    return center * momentum + batch_center.to(center.dtype) * (1 - momentum)


def teacher_temperature_at(epoch: int, warmup: float = 0.04, final: float = 0.07, warmup_epochs: int = 30) -> float:
    """The teacher temperature of ``epoch``: linear from ``warmup`` to ``final`` over ``warmup_epochs`` epochs
    (DINO's ``np.linspace(warmup, final, warmup_epochs)``), then ``final``."""
    if epoch >= warmup_epochs:
        return final
    if warmup_epochs <= 1:
        return warmup
    return warmup + (final - warmup) * epoch / (warmup_epochs - 1)
