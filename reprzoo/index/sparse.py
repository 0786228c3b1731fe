"""An inverted index over sparse vocabulary vectors (SPLADE-style ``(documents, vocabulary)`` weights).

Stored as the document x vocabulary matrix in compressed sparse columns: for each term its posting list (the
positions of the documents weighting it, ascending) and their weights. A query is scored term at a time: each of
its terms (ascending id) adds ``query weight * posting weight`` to the accumulators of that term's documents, in
float64, so the scores are the inner products of the query and document vectors (exactly so when the sums are
exact in float64).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reprzoo.errors import ReprzooError
from reprzoo.index.core import topk
from reprzoo.index.dense import load_arrays, save_arrays

POSTINGS = "postings.safetensors"


def to_csr_arrays(reps: torch.Tensor) -> dict[str, np.ndarray]:
    """A dense ``(n, vocabulary)`` block as CSR arrays (its non-zero weights only, columns ascending in each row).
    Non-finite weights are refused (NaN and infinities are non-zero: checking the non-zeros finds them)."""
    if reps.ndim != 2:
        raise ReprzooError(f"sparse representations must have 2 dimensions, got shape {tuple(reps.shape)}")
    reps = reps.float()
    rows, cols = reps.nonzero(as_tuple=True)  # row-major order
    data = reps[rows, cols]
    if not torch.isfinite(data).all():
        raise ReprzooError("the model gave non-finite sparse representations; refusing to index them")
    indptr = torch.zeros(len(reps) + 1, dtype=torch.int64)
    indptr[1:] = torch.bincount(rows, minlength=len(reps)).cumsum(0)
    return {
        "indptr": indptr.numpy(),
        "indices": cols.to(torch.int32).numpy(),
        "data": data.numpy(),
        "shape": np.asarray(reps.shape, dtype=np.int64),
    }


def accumulate(term_indptr: np.ndarray, doc_positions: np.ndarray, weights: np.ndarray, terms, values, count: int):
    """Term-at-a-time scores of one query: for each of ``terms`` (with query weights ``values``), its postings'
    weights times the query weight added to their documents' accumulators (float64)."""
    starts, ends = term_indptr[terms], term_indptr[terms + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(count)
    # the concatenated posting ranges of the query's terms, in term order
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(total)
    contributions = weights[offsets].astype(np.float64) * np.repeat(np.asarray(values, dtype=np.float64), lengths)
    return np.bincount(doc_positions[offsets], weights=contributions, minlength=count)


class SparseEngine:
    """Inverted index of vocabulary weights, scored by inner product, term at a time."""

    kind = "sparse"
    query_chunk = 256

    def __init__(self, term_indptr: np.ndarray, doc_positions: np.ndarray, weights: np.ndarray, shape: tuple[int, int]):
        self.term_indptr, self.doc_positions, self.weights = term_indptr, doc_positions, weights
        self.count, self.vocabulary = int(shape[0]), int(shape[1])

    @staticmethod
    def check_options(options: Mapping[str, Any], count: int) -> dict[str, Any]:
        if options:
            raise ReprzooError(f"a sparse index takes no options, got {', '.join(sorted(options))}")
        return {}

    @staticmethod
    def chunk_arrays(reps: torch.Tensor, similarity: str) -> dict[str, np.ndarray]:
        return to_csr_arrays(reps)

    @classmethod
    def finish(cls, chunks: list[dict[str, np.ndarray]], similarity: str, options: dict[str, Any], folder: Path):
        from scipy import sparse

        blocks = [sparse.csr_matrix((c["data"], c["indices"], c["indptr"]), shape=tuple(c["shape"])) for c in chunks]
        vocabularies = {b.shape[1] for b in blocks}
        if len(vocabularies) != 1:
            raise ReprzooError(f"the document chunks have different vocabulary sizes {sorted(vocabularies)}")
        csc = sparse.vstack(blocks, format="csr").tocsc()
        csc.sort_indices()
        arrays = {
            "term_indptr": csc.indptr.astype(np.int64),
            "doc_positions": csc.indices.astype(np.int32),
            "weights": csc.data.astype(np.float32),
            "shape": np.asarray(csc.shape, dtype=np.int64),
        }
        meta = {"dim": int(csc.shape[1]), "nonzeros": int(csc.nnz)}
        return {POSTINGS: save_arrays(folder / POSTINGS, arrays)}, meta, options

    @classmethod
    def load(cls, folder: Path, manifest: Mapping[str, Any]) -> "SparseEngine":
        a = load_arrays(folder / POSTINGS)
        return cls(a["term_indptr"], a["doc_positions"], a["weights"], tuple(int(x) for x in a["shape"]))

    def scores(self, queries: torch.Tensor) -> np.ndarray:
        """``(queries, documents)`` inner products, term at a time (float64)."""
        if queries.ndim != 2 or queries.shape[1] != self.vocabulary:
            raise ReprzooError(f"this index holds {self.vocabulary}-term vectors; the queries are {tuple(queries.shape)}")
        out = np.zeros((len(queries), self.count))
        for row, query in enumerate(queries):
            terms = query.nonzero().flatten()
            values = query[terms].double().numpy()
            out[row] = accumulate(self.term_indptr, self.doc_positions, self.weights, terms.numpy(), values, self.count)
        return out

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [
            topk(torch.from_numpy(self.scores(queries[q0 : q0 + self.query_chunk])), k)
            for q0 in range(0, len(queries), self.query_chunk)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


__all__ = ["SparseEngine", "accumulate", "to_csr_arrays"]
