"""Dense indexes: exact search (batched matrix products and top-k over chunks of queries and documents) and
faiss IVF (``IndexIVFPQ``: inverted lists of product-quantised residuals; ``IndexIVFFlat``: of the vectors) for
large corpora. Cosine indexes store L2-normalised vectors and compare inner products."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reprzoo.atomic import atomic_write
from reprzoo.errors import ReprzooError
from reprzoo.index.core import file_record, merge_topk, topk

VECTORS = "vectors.safetensors"
FAISS_FILE = "index.faiss"
#: faiss's k-means warns below 39 training points per centroid (faiss/Clustering.cpp)
FAISS_POINTS_PER_CENTROID = 39


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Arrays as one safetensors file, written atomically; returns its manifest record (sha256, size)."""
    from safetensors.numpy import save_file

    atomic_write(path, lambda tmp: save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp)))
    return file_record(path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _check_rows(reps: torch.Tensor, ndim: int, what: str) -> torch.Tensor:
    if reps.ndim != ndim:
        raise ReprzooError(f"{what} representations must have {ndim} dimensions, got shape {tuple(reps.shape)}")
    if not torch.isfinite(reps).all():
        raise ReprzooError(f"the model gave non-finite {what} representations; refusing to index them")
    return reps.float()


class DenseEngine:
    """Exact inner-product (or cosine) search over ``(documents, dim)`` vectors."""

    kind = "dense"
    query_chunk = 1024
    document_chunk = 65536

    def __init__(self, vectors: np.ndarray, similarity: str):
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors))
        self.similarity = similarity

    @staticmethod
    def check_options(options: Mapping[str, Any], count: int) -> dict[str, Any]:
        if options:
            raise ReprzooError(f"a dense index takes no options, got {', '.join(sorted(options))}")
        return {}

    @staticmethod
    def chunk_arrays(reps: torch.Tensor, similarity: str) -> dict[str, np.ndarray]:
        reps = _check_rows(reps, 2, "dense")
        if similarity == "cosine":
            reps = torch.nn.functional.normalize(reps, dim=-1)
        return {"vectors": reps.numpy()}

    @classmethod
    def finish(cls, chunks: list[dict[str, np.ndarray]], similarity: str, options: dict[str, Any], folder: Path):
        vectors = np.concatenate([c["vectors"] for c in chunks])
        return {VECTORS: save_arrays(folder / VECTORS, {"vectors": vectors})}, {"dim": int(vectors.shape[1])}, options

    @classmethod
    def load(cls, folder: Path, manifest: Mapping[str, Any]) -> "DenseEngine":
        return cls(load_arrays(folder / VECTORS)["vectors"], manifest["similarity"])

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        if queries.ndim != 2 or queries.shape[1] != self.vectors.shape[1]:
            raise ReprzooError(f"this index holds {self.vectors.shape[1]}-d vectors; the queries are {tuple(queries.shape)}")
        if self.similarity == "cosine":
            queries = torch.nn.functional.normalize(queries, dim=-1)
        out_scores, out_positions = [], []
        for q0 in range(0, len(queries), self.query_chunk):
            q = queries[q0 : q0 + self.query_chunk]
            best = None
            for d0 in range(0, len(self.vectors), self.document_chunk):
                scores = q @ self.vectors[d0 : d0 + self.document_chunk].T
                best = merge_topk(best, topk(scores, k, offset=d0), k)
            out_scores.append(best[0])
            out_positions.append(best[1])
        return np.concatenate(out_scores), np.concatenate(out_positions)


def default_nlist(count: int) -> int:
    """About 4 sqrt(n) inverted lists, at most one per 39 vectors (faiss's k-means minimum per centroid)."""
    return max(1, min(int(4 * math.sqrt(count)), count // FAISS_POINTS_PER_CENTROID))


class IVFEngine:
    """faiss ``IndexIVFPQ`` (``pq=True``: ``m`` sub-quantisers of ``nbits`` bits per vector) or ``IndexIVFFlat``
    over ``nlist`` inverted lists; ``nprobe`` lists are searched per query (set ``engine.nprobe`` to change it
    after loading). Approximate: its recall against the exact index depends on ``nprobe`` and the code size."""

    kind = "ivfpq"
    pq = True

    def __init__(self, index: Any, similarity: str, nprobe: int):
        self.index, self.similarity, self.nprobe = index, similarity, nprobe

    @classmethod
    def check_options(cls, options: Mapping[str, Any], count: int) -> dict[str, Any]:
        known = {"nlist", "nprobe"} | ({"m", "nbits"} if cls.pq else set())
        unknown = set(options) - known
        if unknown:
            raise ReprzooError(f"an {cls.kind} index takes {', '.join(sorted(known))}; got {', '.join(sorted(unknown))}")
        nlist = options.get("nlist")
        nlist = default_nlist(count) if nlist is None else int(nlist)
        out = {"nlist": nlist, "nprobe": int(options.get("nprobe") or min(8, nlist))}
        if nlist < 1 or out["nprobe"] < 1:
            raise ReprzooError(f"nlist and nprobe must be at least 1, got {nlist} and {out['nprobe']}")
        if cls.pq:
            out["m"] = None if options.get("m") is None else int(options["m"])
            out["nbits"] = int(options.get("nbits") or 8)
        # the inverted lists need faiss's 39 training vectors per list (fewer: lists of noise); the PQ codebooks at
        # least one vector per centroid (faiss's k-means cannot train more centroids than it has points)
        needs = {f"nlist = {nlist}": FAISS_POINTS_PER_CENTROID * nlist}
        if cls.pq:
            needs[f"nbits = {out['nbits']} (2**nbits = {2 ** out['nbits']} centroids per sub-quantiser)"] = 2 ** out["nbits"]
        which, need = max(needs.items(), key=lambda item: item[1])
        if count < need:
            raise ReprzooError(
                f"the corpus has {count} documents, too few to train an {cls.kind} index with {which}: it needs at "
                f"least {need:,} vectors; use nlist <= {max(1, count // FAISS_POINTS_PER_CENTROID)}"
                + (f" and nbits <= {max(1, int(math.log2(max(count, 2))))}" if cls.pq else "")
                + ", or --kind dense (exact, and fast at this size)"
            )
        if cls.pq and count < FAISS_POINTS_PER_CENTROID * 2 ** out["nbits"]:
            import warnings

            warnings.warn(
                f"{count} documents train the {2 ** out['nbits']} PQ centroids per sub-quantiser with fewer than the "
                f"{FAISS_POINTS_PER_CENTROID} vectors each faiss recommends ({FAISS_POINTS_PER_CENTROID * 2 ** out['nbits']:,}); "
                "recall may suffer (a smaller nbits trains better)",
                stacklevel=3,
            )
        return out

    chunk_arrays = staticmethod(DenseEngine.chunk_arrays)

    @classmethod
    def finish(cls, chunks: list[dict[str, np.ndarray]], similarity: str, options: dict[str, Any], folder: Path):
        import faiss

        vectors = np.ascontiguousarray(np.concatenate([c["vectors"] for c in chunks]), dtype=np.float32)
        dim = vectors.shape[1]
        options = dict(options)
        quantizer = faiss.IndexFlatIP(dim)
        if cls.pq:
            if options["m"] is None:  # the largest divisor of dim up to dim / 4 (4-d sub-vectors or longer)
                options["m"] = max(m for m in range(1, max(dim // 4, 1) + 1) if dim % m == 0)
            if dim % options["m"]:
                raise ReprzooError(f"m = {options['m']} sub-quantisers must divide the dimension {dim}")
            index = faiss.IndexIVFPQ(quantizer, dim, options["nlist"], options["m"], options["nbits"], faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, options["nlist"], faiss.METRIC_INNER_PRODUCT)
        index.cp.min_points_per_centroid = 1  # check_options refused or warned about too few vectors once;
        if cls.pq:  # faiss would print one line per sub-quantiser
            index.pq.cp.min_points_per_centroid = 1
        index.train(vectors)
        index.add(vectors)
        atomic_write(folder / FAISS_FILE, lambda tmp: faiss.write_index(index, str(tmp)))
        return {FAISS_FILE: file_record(folder / FAISS_FILE)}, {"dim": int(dim)}, options

    @classmethod
    def load(cls, folder: Path, manifest: Mapping[str, Any]) -> "IVFEngine":
        import faiss

        index = faiss.read_index(str(folder / FAISS_FILE))
        return cls(index, manifest["similarity"], int(manifest["options"]["nprobe"]))

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise ReprzooError(f"this index holds {self.index.d}-d vectors; the queries are {tuple(queries.shape)}")
        if self.similarity == "cosine":
            queries = torch.nn.functional.normalize(queries, dim=-1)
        self.index.nprobe = self.nprobe
        scores, positions = self.index.search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), min(k, self.index.ntotal))
        return scores, positions.astype(np.int64)


class IVFFlatEngine(IVFEngine):
    kind = "ivfflat"
    pq = False


__all__ = ["DenseEngine", "IVFEngine", "IVFFlatEngine", "default_nlist", "load_arrays", "save_arrays"]
