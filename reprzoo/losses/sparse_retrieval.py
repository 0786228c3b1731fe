"""Learned sparse retrieval: vocabulary weights from masked-LM logits, their regularisers and ranking losses.

- :func:`saturated_pooling`: SPLADE's ``w_j = pool_i log(1 + ReLU(logit_ij))`` over a text's tokens (``sum`` in SPLADE,
  Formal et al., SIGIR 2021, arXiv:2107.05720; ``max`` in SPLADE v2, arXiv:2109.10086).
- :func:`flops_regularizer`: the FLOPS regulariser ``sum_j (mean_i |w_ij|)^2`` (Paria et al., ICLR 2020), which
  SPLADE applies to queries and documents; sentence-transformers' ``FlopsLoss``.
- :func:`quadratic_lambda`: SPLADE's warmup of the regulariser weight, ``lambda * min(1, (step / T)^2)``.
- :func:`in_batch_ranking_loss`: cross-entropy of each query's positive against the batch's documents (and extra
  hard negatives) under dot products; sentence-transformers' ``MultipleNegativesRankingLoss`` with scale 1.
- :func:`margin_mse`: MarginMSE (Hofstaetter et al., 2020, arXiv:2010.02666), ``((s+ - s-) - (t+ - t-))^2``.
- :func:`kl_distillation`: KL divergence from the teacher's softmax over a query's candidates to the student's
  (SPLADE++, Formal et al., SIGIR 2022, arXiv:2205.04733).
- :func:`topk_binarize`: UHD's winner-take-all top-k sparsification and binarisation with a straight-through
  gradient (Jang et al., EMNLP 2021, arXiv:2104.07198).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLINGS = ("sum", "max")


def saturated_pooling(logits: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "max") -> torch.Tensor:
    """Vocabulary weights of texts from their tokens' logits: ``log(1 + ReLU(logit))``, pooled over real tokens.

    Args:
        logits: ``(B, L, V)`` MLM logits of each token over the vocabulary.
        attention_mask: ``(B, L)``, 1 on real tokens (padding contributes nothing).
        pooling: ``sum`` (SPLADE) or ``max`` (SPLADE v2 and SPLADE++).

    Returns:
        ``(B, V)`` non-negative weights.
    """
    if logits.ndim != 3 or attention_mask.shape != logits.shape[:2]:
        raise ValueError(f"need (B, L, V) logits and a (B, L) mask, got {tuple(logits.shape)}, {tuple(attention_mask.shape)}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    weights = torch.log1p(torch.relu(logits)) * attention_mask.unsqueeze(-1).to(logits.dtype)
    return weights.sum(1) if pooling == "sum" else weights.amax(1)


def flops_regularizer(weights: torch.Tensor) -> torch.Tensor:
    """FLOPS: ``sum_j (mean_i |w_ij|)^2``, a smooth proxy of the expected number of multiplications of an inverted
    index lookup (the square of each term's average activation over the batch).

    Args:
        weights: ``(B, V)`` representations of a batch.
    """
    if weights.ndim != 2 or weights.shape[0] == 0:
        raise ValueError(f"need (B, V) weights with B > 0, got {tuple(weights.shape)}")
    return weights.abs().mean(0).pow(2).sum()


def quadratic_lambda(lambda_: float, step: int, warmup_steps: int) -> float:
    """The regulariser's weight at ``step``: ``lambda * min(1, (step / T)^2)`` (SPLADE's ``RegWeightScheduler``);
    ``warmup_steps = 0`` gives ``lambda`` from the start."""
    if lambda_ < 0 or warmup_steps < 0 or step < 0:
        raise ValueError(f"need lambda, step and warmup_steps >= 0, got {lambda_}, {step}, {warmup_steps}")
    if warmup_steps == 0:
        return float(lambda_)
    return float(lambda_) * min(1.0, (step / warmup_steps) ** 2)


def in_batch_ranking_loss(
    queries: torch.Tensor, documents: torch.Tensor, negatives: torch.Tensor | None = None, scale: float = 1.0
) -> torch.Tensor:
    """``-log softmax`` of each query's own document among the batch's documents (and every extra negative), scores
    ``scale * <q, d>``.

    Args:
        queries: ``(B, V)``; row i's positive is ``documents[i]``.
        documents: ``(B, V)``.
        negatives: ``(N, V)`` more documents that are negatives for every query (SPLADE's BM25 negatives).
        scale: multiplies the scores (1 for SPLADE's raw dot products).
    """
    if queries.ndim != 2 or queries.shape != documents.shape:
        raise ValueError(f"need (B, V) queries and documents, got {tuple(queries.shape)}, {tuple(documents.shape)}")
    if negatives is not None and (negatives.ndim != 2 or negatives.shape[1] != queries.shape[1]):
        raise ValueError(f"negatives must be (N, {queries.shape[1]}), got {tuple(negatives.shape)}")
    candidates = documents if negatives is None else torch.cat([documents, negatives])
    scores = scale * queries @ candidates.T
    return F.cross_entropy(scores, torch.arange(len(queries), device=queries.device))


def margin_mse(
    student_positive: torch.Tensor,
    student_negative: torch.Tensor,
    teacher_positive: torch.Tensor,
    teacher_negative: torch.Tensor,
) -> torch.Tensor:
    """MarginMSE: mean of ``((s+ - s-) - (t+ - t-))^2`` over triples (the teacher's scores detached by the caller).

    Args:
        student_positive, student_negative: ``(n,)`` the student's scores of (query, positive) and (query, negative).
        teacher_positive, teacher_negative: ``(n,)`` the teacher's scores of the same pairs.
    """
    shapes = {tuple(t.shape) for t in (student_positive, student_negative, teacher_positive, teacher_negative)}
    if len(shapes) != 1 or student_positive.ndim != 1 or student_positive.numel() == 0:
        raise ValueError(f"need four (n,) score tensors of one shape, got {sorted(shapes)}")
    return F.mse_loss(student_positive - student_negative, teacher_positive - teacher_negative)


def kl_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(teacher) || softmax(student))`` over each query's candidates, averaged over queries.

    Args:
        student, teacher: ``(n, k)`` scores of k candidates per query (the teacher's detached by the caller).
    """
    if student.shape != teacher.shape or student.ndim != 2 or student.shape[1] < 2:
        raise ValueError(f"need (n, k >= 2) scores of one shape, got {tuple(student.shape)}, {tuple(teacher.shape)}")
    return F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="batchmean", log_target=True)


class _TopKBinarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int) -> torch.Tensor:
        winners = torch.zeros_like(x, dtype=torch.bool).scatter_(-1, x.topk(k, dim=-1).indices, True)
        ctx.save_for_backward(winners)
        return (winners & (x > 0)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (winners,) = ctx.saved_tensors
        return grad * winners.to(grad.dtype), None


def topk_binarize(x: torch.Tensor, k: int) -> torch.Tensor:
    """Winner-take-all sparsification and binarisation: 1 where an entry is among its row's ``k`` largest and
    positive, else 0. Backward: straight-through on the winners (the gradient passes unchanged to the ``k`` winning
    entries and is 0 on the losers), so the projection learns which units win.

    Args:
        x: ``(..., D)`` activations.
        k: winners per row, ``1 <= k <= D``.
    """
    if x.ndim < 1 or not 1 <= k <= x.shape[-1]:
        raise ValueError(f"need 1 <= k <= {x.shape[-1] if x.ndim else 0}, got {k}")
    return _TopKBinarize.apply(x, k)


__all__ = [
    "POOLINGS",
    "flops_regularizer",
    "in_batch_ranking_loss",
    "kl_distillation",
    "margin_mse",
    "quadratic_lambda",
    "saturated_pooling",
    "topk_binarize",
]
