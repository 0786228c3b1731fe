"""Hybrid retrieval by rank fusion: the runs of several retrievers (e.g. BM25 and a learned one) merged into one.

Reciprocal Rank Fusion (Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual
Rank Learning Methods", SIGIR 2009): a document's fused score is ``sum_r 1 / (k + rank_r(d))`` over the runs that
rank it (ranks from 1; ``k = 60``, the paper's constant). It needs no score normalisation and no weight tuned on the
evaluation queries, which is why the README's hybrid row uses it.

A run is ``{query id: {document id: score}}`` (ir-measures' and :func:`reprzoo.metrics.retrieval.rank`'s form).
Ranks inside a run are by score descending, ties by document id ascending (deterministic).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from reprzoo.errors import ReprzooError

Run = Mapping[str, Mapping[str, float]]


def ranked(documents: Mapping[str, float]) -> list[str]:
    """The document ids of one query's run in rank order (score descending, ties by id ascending)."""
    return sorted(documents, key=lambda d: (-documents[d], d))


def reciprocal_rank_fusion(
    runs: Sequence[Run], k: float = 60.0, depth: int = 100, weights: Sequence[float] | None = None
) -> dict[str, dict[str, float]]:
    """The fused run of ``runs``: every query of any run, its top ``depth`` documents by ``sum_r w_r / (k + rank)``
    (``weights`` default 1 each: the paper's unweighted form)."""
    if not runs:
        raise ReprzooError("reciprocal_rank_fusion needs at least one run")
    if k < 0 or depth < 1:
        raise ReprzooError(f"reciprocal_rank_fusion needs k >= 0 and depth >= 1, got k={k}, depth={depth}")
    weights = [1.0] * len(runs) if weights is None else list(weights)
    if len(weights) != len(runs):
        raise ReprzooError(f"{len(weights)} weights for {len(runs)} runs")
    fused: dict[str, dict[str, float]] = {}
    for query in sorted({q for run in runs for q in run}):
        scores: dict[str, float] = {}
        for run, weight in zip(runs, weights):
            for position, document in enumerate(ranked(run.get(query, {}))):
                scores[document] = scores.get(document, 0.0) + weight / (k + position + 1)
        fused[query] = {d: scores[d] for d in ranked(scores)[:depth]}
    return fused


__all__ = ["ranked", "reciprocal_rank_fusion"]
