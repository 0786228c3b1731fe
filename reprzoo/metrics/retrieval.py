"""Retrieval evaluation: queries ranked against a document collection by the similarity of their representations,
scored against relevance judgments (qrels) with ``ir-measures`` (nDCG@10, MRR@10 = ``RR@10``, Recall@k).

The protocol (:class:`QueryDocumentProtocol`, ``query_document_relevance``) reads two loaders: the documents
(loader 0, the "bank") and the queries (loader 1), each batch ``(inputs, ids)`` where ids index
``document_ids`` / ``query_ids``. Features are gathered across ranks, documents ranked exactly (a full score
matrix, in chunks of queries), the top ``depth`` kept as the run.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from reprzoo.metrics.evaluators import EvaluationBatch, EvaluationProtocol, Evaluator
from reprzoo.metrics.text import IndexedFeatures

QUERY_DOCUMENT_RELEVANCE = "query_document_relevance"
#: measure name of ir-measures -> the metric's log name
DEFAULT_MEASURES = {"nDCG@10": "ndcg@10", "RR@10": "mrr@10", "R@10": "recall@10", "R@100": "recall@100"}


def cosine_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(documents, dim=-1).T


def dot_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Inner products: dense vectors, and sparse vocabulary vectors ``(n, vocabulary)`` (SPLADE's relevance)."""
    return queries @ documents.T


def maxsim_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Late interaction (ColBERT's MaxSim): ``s(q, d) = sum_i max_j <q_i, d_j>`` over multi-vector representations
    ``(n_queries, n, dim)`` and ``(n_documents, m, dim)``; all-zero vectors are padding and take part in neither
    the sum (query side) nor the max (document side). A 2-D side is one vector per text."""
    if queries.ndim == 2:
        queries = queries[:, None]
    if documents.ndim == 2:
        documents = documents[:, None]
    if queries.ndim != 3 or documents.ndim != 3 or queries.shape[-1] != documents.shape[-1]:
        raise ValueError(f"maxsim needs (n, vectors, dim) on both sides, got {tuple(queries.shape)} and {tuple(documents.shape)}")
    sims = torch.einsum("qid,njd->qnij", queries, documents)
    doc_pad = documents.abs().sum(-1) == 0  # (n_documents, m)
    sims = sims.masked_fill(doc_pad[None, :, None, :], float("-inf"))
    best = sims.amax(dim=-1)  # (q, n, i)
    query_real = queries.abs().sum(-1) != 0  # (q, i)
    best = torch.where(query_real[:, None, :] & torch.isfinite(best), best, torch.zeros_like(best))
    return best.sum(-1)


SIMILARITIES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cosine": cosine_scores,
    "dot": dot_scores,
    "maxsim": maxsim_scores,
}


def _order(values: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row sorted by descending value, ties by ascending position."""
    order = np.lexsort((positions, -values), axis=1)
    return np.take_along_axis(values, order, 1), np.take_along_axis(positions, order, 1)


def topk(scores: torch.Tensor, k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The exact top ``k`` of each row of ``scores`` ``(queries, documents)`` under the order (score descending,
    position ascending): ``(values, positions + offset)``, each ``(queries, min(k, documents))``.

    ``torch.topk`` alone leaves the choice among equal scores at the k-th place open; rows where it matters are
    redone from all the row's scores, so that every chunking of the documents gives the same ranking."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        empty = np.zeros((scores.shape[0], 0))
        return empty.astype(np.float32), empty.astype(np.int64)
    values, positions = scores.topk(k, dim=1)
    last = values[:, -1:]
    undecided = ((scores == last).sum(1) != (values == last).sum(1)).nonzero().flatten().tolist()
    for row in undecided:  # more documents tie at the k-th score than fit: the lowest positions among them
        above = (scores[row] > last[row]).nonzero().flatten()
        tied = (scores[row] == last[row]).nonzero().flatten()[: k - len(above)]
        positions[row] = torch.cat([above, tied])
        values[row] = scores[row, positions[row]]
    return _order(values.cpu().numpy(), positions.cpu().numpy().astype(np.int64) + offset)


def rank(
    queries: torch.Tensor,
    documents: torch.Tensor,
    query_ids: Sequence[str],
    document_ids: Sequence[str],
    depth: int = 100,
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cosine_scores,
    chunk: int = 1024,
) -> dict[str, dict[str, float]]:
    """The run ``{query id: {document id: score}}`` of the top ``depth`` documents of every query, ties at the cut
    broken by document position (as :mod:`reprzoo.index` does: the same documents make the cut in both)."""
    run: dict[str, dict[str, float]] = {}
    depth = min(depth, len(document_ids))
    for start in range(0, len(queries), chunk):
        values, indices = topk(score(queries[start : start + chunk], documents), depth)
        for row, (vals, idx) in enumerate(zip(values.tolist(), indices.tolist())):
            run[query_ids[start + row]] = {document_ids[j]: float(v) for v, j in zip(vals, idx)}
    return run


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], measures: Sequence[str]
) -> dict[str, float]:
    """Aggregate ``measures`` (ir-measures names: ``nDCG@10``, ``RR@10``, ``R@100``) of a run over the qrels' queries."""
    import ir_measures

    parsed = [ir_measures.parse_measure(m) for m in measures]
    results = ir_measures.calc_aggregate(parsed, {q: dict(d) for q, d in qrels.items()}, {q: dict(d) for q, d in run.items()})
    return {str(m): float(results.get(p, 0.0)) for m, p in zip(measures, parsed)}


class QueryDocumentProtocol(EvaluationProtocol):
    """Documents (loader 0) and queries (loader 1) with relevance judgments; adds a :class:`RetrievalEvaluator`.

    Args:
        qrels: ``{query id: {document id: relevance}}``.
        query_ids: the id of each query position (the second element of a query batch indexes it).
        document_ids: the id of each document position.
        similarity: ``cosine`` or ``dot`` (what the method's training compares).
        measures: ir-measures names -> log names.
        depth: documents ranked per query.
    """

    name = QUERY_DOCUMENT_RELEVANCE

    def __init__(
        self,
        qrels: Mapping[str, Mapping[str, int]],
        query_ids: Sequence[str],
        document_ids: Sequence[str],
        similarity: str = "cosine",
        measures: Mapping[str, str] | None = None,
        depth: int = 100,
    ):
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {sorted(SIMILARITIES)}, got {similarity!r}")
        self.qrels, self.query_ids, self.document_ids = qrels, list(query_ids), list(document_ids)
        self.similarity, self.measures, self.depth = similarity, dict(measures or DEFAULT_MEASURES), depth

    def read(self, batch: Any, dataloader_idx: int, num_loaders: int) -> EvaluationBatch:
        inputs, ids = batch[0], batch[1]
        role = "document" if dataloader_idx == 0 else "query"  # queries are embedded by the method's query tower
        return EvaluationBatch(
            inputs, ids, bank=dataloader_idx == 0, with_bank=True, dataloader_idx=dataloader_idx, raw=batch, role=role
        )

    def evaluators(self) -> list[Evaluator]:
        return [RetrievalEvaluator(self)]


class RetrievalEvaluator(Evaluator):
    """``{stage}/ndcg@10``, ``{stage}/mrr@10``, ``{stage}/recall@10``, ``{stage}/recall@100`` (by default) of the
    queries (embedded by the module's ``embed_query``) against the documents (``embed``), compared by the module's
    ``retrieval_similarity`` when it names one (a retriever's own relevance: ``dot``, ``maxsim``), else by the
    protocol's ``similarity``."""

    protocols = (QUERY_DOCUMENT_RELEVANCE,)

    def __init__(self, protocol: QueryDocumentProtocol):
        self.protocol = protocol
        self.documents, self.queries = IndexedFeatures(), IndexedFeatures()

    def metrics(self):
        return (self.documents, self.queries)

    def update(self, features, labels, *, bank, module, batch) -> None:
        (self.documents if bank else self.queries).update(labels, features)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not (self.documents.update_called and self.queries.update_called):
            return
        p = self.protocol
        doc_pos, docs = self.documents.compute()
        query_pos, queries = self.queries.compute()
        run = rank(
            queries,
            docs,
            [p.query_ids[i] for i in query_pos.tolist()],
            [p.document_ids[i] for i in doc_pos.tolist()],
            p.depth,
            SIMILARITIES[getattr(module, "retrieval_similarity", None) or p.similarity],
        )
        judged = {q: p.qrels[q] for q in run if q in p.qrels}
        for measure, value in evaluate_run(judged, run, list(p.measures)).items():
            log_fn(f"{stage}/{p.measures[measure]}", value)


__all__ = [
    "DEFAULT_MEASURES",
    "QUERY_DOCUMENT_RELEVANCE",
    "QueryDocumentProtocol",
    "RetrievalEvaluator",
    "cosine_scores",
    "dot_scores",
    "evaluate_run",
    "maxsim_scores",
    "rank",
]
