"""BECLR's pieces as pure functions: the contrastive objective on memory-enhanced batches, balanced assignments
of embeddings to memory clusters, and OpTA, the optimal-transport alignment of few-shot prototypes.

"BECLR: Batch Enhanced Contrastive Few-Shot Learning" (Poulakakis-Daktylidis & Jamali-Rad, ICLR 2024,
arXiv:2402.02444). The objective (the authors' code) is a BYOL-style alignment of student predictions with
teacher projections plus lambda times a uniformity term, log of the mean of exp(z_i . z_j / tau) over the
non-positive pairs of the student's projections. The batch enhancement appends memory neighbours as extra,
detached rows of every tensor the loss reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather
from reprzoo.losses.sinkhorn import sinkhorn


def alignment_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative cosine similarity of each prediction row ``(n, d)`` with the target row of the same index
    ``(n, d)`` (the authors' ``pos``); targets are detached: they come from the teacher and the memory."""
    if targets.shape != predictions.shape or predictions.ndim != 2:
        raise ValueError(f"targets must be (n, d) like predictions, got {tuple(targets.shape)} and {tuple(predictions.shape)}")
    p = F.normalize(predictions, dim=-1)
    t = F.normalize(targets.detach(), dim=-1)
    return -(p * t).sum(-1).mean()


def enhance_batch(rows: torch.Tensor, neighbours: torch.Tensor | None) -> torch.Tensor:
    """BECLR's batch enhancement (the authors' ``DyCE.get_top_kNN``): the ``(n, k, d)`` memory neighbours of the
    ``(n, d)`` batch rows appended, detached, as ``n * k`` extra rows after the batch, sample-major (sample 0's k
    neighbours, then sample 1's, ...). ``None``: the batch unchanged (before the memory is ready)."""
    if neighbours is None:
        return rows
    if neighbours.ndim != 3 or neighbours.shape[0] != rows.shape[0] or neighbours.shape[2] != rows.shape[1]:
        raise ValueError(f"neighbours must be (n, k, d) for rows (n, d), got {tuple(neighbours.shape)} and {tuple(rows.shape)}")
    return torch.cat([rows, neighbours.detach().reshape(-1, rows.shape[1]).to(rows.dtype)])


def uniformity_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 2.0, gather_distributed: bool = True
) -> torch.Tensor:
    """log mean_{i, j not in {i, pair(i)}} exp(z_i . z_j / tau) over the unit-normalised projections of both views
    ``(n, d)`` each; pairs are row i of ``z1`` and row i of ``z2``. Gathered across ranks with gradients."""
    if z1.shape != z2.shape:
        raise ValueError(f"views must have equal shapes, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if gather_distributed:
        z1, z2 = gather(z1), gather(z2)
    n = z1.shape[0]
    if n < 2:
        raise ValueError("the uniformity term needs at least 2 samples per view")
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    positives = torch.eye(n, dtype=torch.bool, device=z.device).repeat(2, 2)  # self and the other view
    sim = sim.masked_fill(positives, float("-inf"))
    # log of the mean over all 2n(2n-2) negative pairs, computed stably
    return torch.logsumexp(sim.flatten(), dim=0) - torch.log(torch.tensor(2 * n * (2 * n - 2), dtype=z.dtype, device=z.device))


def beclr_loss(
    p1: torch.Tensor,
    p2: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    neg_weight: float = 0.1,
    temperature: float = 2.0,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """BECLR's objective for two views (the authors' ``BECLRLoss`` with ``uniformity_config="SS"``).

    After ``memory_start_epoch`` every argument is an enhanced batch (:func:`enhance_batch`): the ``n`` batch rows
    followed by ``n * k`` detached memory rows, each tensor enhanced from its own memory (teacher projections,
    student predictions, student projections). Rows pair by index, so a neighbour row of ``p1`` meets the neighbour
    row of ``t2`` with the same (sample, rank) and carries no gradient; a true pair weighs 1 / (n (1 + k)) of the
    alignment, as in the authors' code, and the neighbour rows of ``z1``, ``z2`` join the uniformity term.

    Args:
        p1, p2: student predictions ``(m, d)`` of views 1 and 2.
        t1, t2: teacher projections ``(m, d)`` (targets; no gradient).
        z1, z2: student projections ``(m, d)`` for the uniformity term.
        neg_weight: lambda of the uniformity term (0.1).
        temperature: tau of the uniformity term (2.0).
    Returns:
        (alignment(p1, t2) + alignment(p2, t1)) / 2 + lambda * uniformity(z1, z2).
    """
    positive = (alignment_loss(p1, t2) + alignment_loss(p2, t1)) / 2
    return positive + neg_weight * uniformity_loss(z1, z2, temperature, gather_distributed)


@torch.no_grad()
def balanced_assignments(
    embeddings: torch.Tensor, prototypes: torch.Tensor, epsilon: float = 0.1, iterations: int = 10
) -> torch.Tensor:
    """Cluster ids ``(n,)`` of ``embeddings`` ``(n, d)`` under an equipartitioned optimal-transport assignment to
    ``prototypes`` ``(k, d)`` (Sinkhorn on cosine similarities, every cluster receiving n/k of the mass): DyCE's
    memory update."""
    scores = F.normalize(embeddings.float(), dim=1) @ F.normalize(prototypes.float(), dim=1).T
    return sinkhorn(scores, epsilon=epsilon, iterations=iterations).argmax(dim=1)


def opta(prototypes: torch.Tensor, queries: torch.Tensor, epsilon: float = 0.05, iterations: int = 100) -> torch.Tensor:
    """OpTA: move each support prototype to the barycentre of the queries it is transported to.

    The entropic optimal-transport plan pi between prototypes ``(..., ways, d)`` and queries ``(..., q, d)`` (uniform
    marginals, squared Euclidean cost divided by its maximum) gives ``prototype_i <- sum_j pi_ij query_j / sum_j pi_ij``
    (BECLR, Sec. 5). Batched over leading dimensions (episodes).
    """
    if prototypes.shape[:-2] != queries.shape[:-2] or prototypes.shape[-1] != queries.shape[-1]:
        raise ValueError(
            f"prototypes and queries must be (..., ways, d) and (..., q, d), got {tuple(prototypes.shape)} and {tuple(queries.shape)}"
        )
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"need epsilon > 0 and iterations >= 1, got {epsilon}, {iterations}")
    cost = torch.cdist(prototypes.float(), queries.float()).pow(2)
    cost = cost / cost.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    plan = sinkhorn(-cost, epsilon=epsilon, iterations=iterations)
    return (plan / plan.sum(dim=-1, keepdim=True)) @ queries.float()


__all__ = ["alignment_loss", "balanced_assignments", "beclr_loss", "enhance_batch", "opta", "uniformity_loss"]
