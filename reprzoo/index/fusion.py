"""Hybrid retrieval by rank fusion: the runs of several retrievers (e.g. BM25 and a learned one) merged into one.

Reciprocal Rank Fusion (Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual
Rank Learning Methods", SIGIR 2009): a document's fused score is ``sum_r 1 / (k + rank_r(d))`` over the runs that
rank it (ranks from 1; ``k = 60``, the paper's constant). It needs no score normalisation and no weight tuned on the
evaluation queries, which is why the README's hybrid row uses it.

Normalised score fusion (the hybrid of dense and sparse retrieval in Pyserini, Lin et al. 2021; Ma et al., "A
Replication Study of Dense Passage Retriever", 2021): each run's scores min-max normalised per query to [0, 1]
(a query's only document, or documents all tied, get 1), then summed with weights; a document a run did not
return counts 0 there. Equal weights are the untuned default.

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
    weights = _check(runs, depth, weights)
    if k < 0:
        raise ReprzooError(f"reciprocal_rank_fusion needs k >= 0, got {k}")
    fused: dict[str, dict[str, float]] = {}
    for query in sorted({q for run in runs for q in run}):
        scores: dict[str, float] = {}
        for run, weight in zip(runs, weights):
            for position, document in enumerate(ranked(run.get(query, {}))):
                scores[document] = scores.get(document, 0.0) + weight / (k + position + 1)
        fused[query] = {d: scores[d] for d in ranked(scores)[:depth]}
    return fused


def _check(runs: Sequence[Run], depth: int, weights: Sequence[float] | None) -> list[float]:
    if not runs:
        raise ReprzooError("fusion needs at least one run")
    if depth < 1:
        raise ReprzooError(f"fusion needs depth >= 1, got {depth}")
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs):
        raise ReprzooError(f"{len(weights)} weights for {len(runs)} runs")
    return weights


def min_max(documents: Mapping[str, float]) -> dict[str, float]:
    """One query's scores mapped to [0, 1] (all equal: every document 1)."""
    if not documents:
        return {}
    lo, hi = min(documents.values()), max(documents.values())
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in documents.items()}


def normalized_score_fusion(
    runs: Sequence[Run], depth: int = 100, weights: Sequence[float] | None = None
) -> dict[str, dict[str, float]]:
    """The fused run of ``runs``: every query of any run, its top ``depth`` documents by ``sum_r w_r * minmax_r(d)``
    (``weights`` default 1 each)."""
    weights = _check(runs, depth, weights)
    fused: dict[str, dict[str, float]] = {}
    for query in sorted({q for run in runs for q in run}):
        scores: dict[str, float] = {}
        for run, weight in zip(runs, weights):
            for document, value in min_max(run.get(query, {})).items():
                scores[document] = scores.get(document, 0.0) + weight * value
        fused[query] = {d: scores[d] for d in ranked(scores)[:depth]}
    return fused


__all__ = ["min_max", "normalized_score_fusion", "ranked", "reciprocal_rank_fusion"]
