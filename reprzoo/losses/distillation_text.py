"""Sentence-pair distillation between a cross-encoder and a sentence-embedding (bi-) encoder.

- :func:`dse_loss`: DSE's student objective (Barkan et al., 2020, arXiv:1908.05161): a convex combination of the
  pair task's loss and the squared error between the student's and the teacher's logits.
- :func:`logit_distillation_loss`: that squared error alone (the authors' ``((y_pred - logits) ** 2).sum(1).mean()``;
  for one logit a pair, sentence-transformers' cross-encoder ``MSELoss``).
- :func:`soft_label_bce`: binary cross-entropy of pair logits against soft labels in [0, 1] (Trans-Encoder's
  cross-encoder step, Liu et al., 2022, arXiv:2109.13059; sentence-transformers' ``BinaryCrossEntropyLoss``).
- :func:`cosine_regression_loss`: mean squared error between the cosine of two embeddings and a target score
  (Trans-Encoder's bi-encoder step; sentence-transformers' ``CosineSimilarityLoss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _as_pairs(logits: torch.Tensor) -> torch.Tensor:
    return logits.unsqueeze(-1) if logits.ndim == 1 else logits


def logit_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared error between student and teacher logits, summed over the logits of a pair and averaged over pairs.

    Args:
        student: ``(n,)`` or ``(n, k)`` logits of the student.
        teacher: the teacher's logits, same shape (detached by the caller).
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student.shape)}, {tuple(teacher.shape)}")
    if student.ndim not in (1, 2) or student.shape[0] == 0:
        raise ValueError(f"logits must be (n,) or (n, k) with n > 0, got {tuple(student.shape)}")
    return (_as_pairs(student) - _as_pairs(teacher)).pow(2).sum(-1).mean()


def dse_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, distillation_weight: float = 0.5
) -> torch.Tensor:
    """DSE: ``(1 - a) * BCE(student, labels) + a * ||student - teacher||^2`` on binary pair tasks (one logit a pair).

    Args:
        student: ``(n,)`` logits of the Siamese student's pair head.
        teacher: ``(n,)`` logits of the cross-encoder teacher (the authors' two-class teachers give
            ``logit_1 - logit_0``).
        labels: ``(n,)`` pair labels in [0, 1].
        distillation_weight: ``a`` in [0, 1] (0.5 in the authors' code; 1: distillation only).
    """
    if not 0.0 <= distillation_weight <= 1.0:
        raise ValueError(f"distillation_weight must be in [0, 1], got {distillation_weight}")
    if student.ndim != 1 or labels.shape != student.shape:
        raise ValueError(f"need (n,) student logits and labels, got {tuple(student.shape)} and {tuple(labels.shape)}")
    distillation = logit_distillation_loss(student, teacher)
    if distillation_weight == 1.0:
        return distillation
    task = F.binary_cross_entropy_with_logits(student, labels.to(student.dtype))
    return (1.0 - distillation_weight) * task + distillation_weight * distillation


def soft_label_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``(n,)`` pair logits against ``(n,)`` soft labels in [0, 1], averaged over pairs."""
    if logits.ndim != 1 or targets.shape != logits.shape:
        raise ValueError(f"need (n,) logits and targets, got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if targets.numel() and (targets.min() < 0 or targets.max() > 1):
        raise ValueError("soft labels must lie in [0, 1]")
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def cosine_regression_loss(first: torch.Tensor, second: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_i (cos(first_i, second_i) - targets_i)^2``.

    Args:
        first, second: ``(n, d)`` embeddings of the pairs' two texts.
        targets: ``(n,)`` scores the cosines regress to.
    """
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"need two (n, d) embeddings, got {tuple(first.shape)} and {tuple(second.shape)}")
    if targets.shape != (first.shape[0],):
        raise ValueError(f"need one target a pair: {first.shape[0]} pairs, targets {tuple(targets.shape)}")
    return F.mse_loss(F.cosine_similarity(first, second, dim=-1), targets.to(first.dtype))


__all__ = ["cosine_regression_loss", "dse_loss", "logit_distillation_loss", "soft_label_bce"]
