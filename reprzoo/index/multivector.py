"""Exact late-interaction search (ColBERT's MaxSim) over multi-vector representations ``(documents, n, dim)``:
``reprzoo.metrics.retrieval.maxsim_scores`` over chunks of queries and documents sized to a memory budget.
All-zero vectors are padding (kept as stored: the representation's ``n`` is fixed per method)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reprzoo.errors import ReprzooError
from reprzoo.index.core import merge_topk, topk
from reprzoo.index.dense import VECTORS, _check_rows, load_arrays, save_arrays


class MaxSimEngine:
    """Exact MaxSim over stored token vectors; ``budget`` bounds the elements of one chunk's similarity tensor
    (queries x documents x query vectors x document vectors)."""

    kind = "maxsim"
    query_chunk = 64
    budget = 1 << 24

    def __init__(self, vectors: np.ndarray):
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors))

    @staticmethod
    def check_options(options: Mapping[str, Any], count: int) -> dict[str, Any]:
        if options:
            raise ReprzooError(f"a maxsim index takes no options, got {', '.join(sorted(options))}")
        return {}

    @staticmethod
    def chunk_arrays(reps: torch.Tensor, similarity: str) -> dict[str, np.ndarray]:
        return {"vectors": _check_rows(reps, 3, "multi-vector").numpy()}

    @classmethod
    def finish(cls, chunks: list[dict[str, np.ndarray]], similarity: str, options: dict[str, Any], folder: Path):
        shapes = {c["vectors"].shape[1:] for c in chunks}
        if len(shapes) != 1:
            raise ReprzooError(f"the document chunks have different (vectors, dim) shapes {sorted(shapes)}")
        vectors = np.concatenate([c["vectors"] for c in chunks])
        meta = {"dim": int(vectors.shape[2]), "vectors_per_document": int(vectors.shape[1])}
        return {VECTORS: save_arrays(folder / VECTORS, {"vectors": vectors})}, meta, options

    @classmethod
    def load(cls, folder: Path, manifest: Mapping[str, Any]) -> "MaxSimEngine":
        return cls(load_arrays(folder / VECTORS)["vectors"])

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        from reprzoo.metrics.retrieval import maxsim_scores  # here: reprzoo.metrics imports torchmetrics (seconds)

        if queries.ndim == 2:  # one vector per query
            queries = queries[:, None]
        if queries.ndim != 3 or queries.shape[-1] != self.vectors.shape[-1]:
            raise ReprzooError(
                f"this index holds {self.vectors.shape[-1]}-d token vectors; the queries are {tuple(queries.shape)}"
            )
        out_scores, out_positions = [], []
        per_document = queries.shape[1] * self.vectors.shape[1]
        for q0 in range(0, len(queries), self.query_chunk):
            q = queries[q0 : q0 + self.query_chunk]
            step = max(1, self.budget // max(1, len(q) * per_document))
            best = None
            for d0 in range(0, len(self.vectors), step):
                best = merge_topk(best, topk(maxsim_scores(q, self.vectors[d0 : d0 + step]), k, offset=d0), k)
            out_scores.append(best[0])
            out_positions.append(best[1])
        return np.concatenate(out_scores), np.concatenate(out_positions)


__all__ = ["MaxSimEngine"]
