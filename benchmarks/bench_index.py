"""Index build and search speed: reprzoo's indexes (``reprzoo.index``: dense exact, IVF-PQ, inverted sparse,
MaxSim) against ``faiss`` used directly (``IndexFlatIP``, ``IndexIVFPQ`` on the same vectors) and ``bm25s``, in one
run on the 5,000 shipped Debian package descriptions.

* Documents: the 5,000 Debian packages of ``reprzoo.datamodules.text.corpora.debian_packages()`` (ids: package
  names); queries: the first ``--queries`` packages' synopses.
* Representations: seeded random vectors of realistic shapes, not a model's (what is timed is the index, not an
  encoder): dense ``--dim`` (256) from a mixture of 50 Gaussians, L2-normalised once (cosine); sparse vocabulary
  vectors of 30,522 terms (BERT's vocabulary) with 120 terms drawn per document and 20 per query from a Zipf-like
  distribution (as SPLADE's are; a term drawn twice counts once: the distinct counts are in the JSON); multi-vector 64 x 128 per document (ColBERT's dim), 32
  vectors per query, the last ones of each document zero (padding, as short texts have). bm25s indexes the real
  description texts and retrieves the real synopses (its tokenizer, English stopwords and PyStemmer included).
* reprzoo's build: ``build_index`` with an encoder that looks representations up (no model cost): chunking,
  atomic safetensors chunk files, the final arrays or faiss index, sha256 of every file and the manifest.
  faiss direct: ``add`` (and ``train``) in memory only. bm25s: ``tokenize`` + ``index`` in memory.
* Search: top 10 of every query; one thread everywhere (torch, faiss's OpenMP, BLAS, bm25s ``n_threads=1``),
  the best of ``--repeats`` runs. Recall@10 of the approximate indexes against exact search on the same vectors.

Run from the repository root: ``python benchmarks/bench_index.py --out .bench/bench_index.json`` (a minute or two
on a 2-core CPU); ``--quick`` is a smoke run (500 documents).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--documents", type=int, default=None, help="Debian packages indexed (default all 5,000)")
    p.add_argument("--queries", type=int, default=1000, help="queries of the dense, sparse and BM25 searches")
    p.add_argument("--maxsim-queries", type=int, default=50, help="queries of the MaxSim search")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--nlist", type=int, default=64)
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--nbits", type=int, default=8)
    p.add_argument("--nprobe", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: 500 documents, 50 queries, one repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.documents, args.queries, args.maxsim_queries, args.repeats, args.nlist, args.nbits = 500, 50, 10, 1, 8, 6
    return args


class Lookup:
    """A duck-typed encoder returning precomputed representations (``"7"`` -> row 7): the build costs no model."""

    def __init__(self, table: torch.Tensor, kind: str, similarity: str):
        self.table, self.kind, self.similarity = table, kind, similarity
        self.name, self.revision, self.source, self.config = "bench-lookup", "0", None, {"name": "bench-lookup"}

    def encode(self, texts, query=False):
        rows = [int(t) for t in texts]
        if hasattr(self.table, "toarray"):  # sparse vectors kept as CSR here, given densely as the encoder would
            return torch.from_numpy(self.table[rows].toarray())
        return self.table[rows]


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def dense_vectors(n: int, dim: int, generator: torch.Generator, centres: torch.Tensor) -> torch.Tensor:
    x = centres[torch.randint(0, len(centres), (n,), generator=generator)] + torch.randn(n, dim, generator=generator)
    return torch.nn.functional.normalize(x, dim=-1)


def sparse_vectors(n: int, vocabulary: int, nonzeros: int, generator: torch.Generator):
    """A scipy CSR ``(n, vocabulary)`` matrix (a dense one of 5,000 x 30,522 floats would take 610 MB)."""
    from scipy import sparse

    ranks = torch.arange(1, vocabulary + 1, dtype=torch.float64)
    terms = torch.multinomial((1 / ranks) / (1 / ranks).sum(), n * nonzeros, replacement=True, generator=generator)
    rows = torch.arange(n).repeat_interleave(nonzeros)
    weights = torch.rand(n * nonzeros, generator=generator) * 2
    matrix = sparse.coo_matrix((weights.numpy(), (rows.numpy(), terms.numpy())), shape=(n, vocabulary)).tocsr()
    matrix.sum_duplicates()  # a term drawn twice: its weights add up
    return matrix.astype(np.float32)


def multi_vectors(n: int, tokens: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, tokens, dim, generator=generator)
    lengths = torch.randint(tokens // 2, tokens + 1, (n,), generator=generator)
    x[torch.arange(tokens)[None, :] >= lengths[:, None]] = 0
    return torch.nn.functional.normalize(x, dim=-1)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def recall_at(approximate: list[list[Any]], exact: list[list[Any]]) -> float:
    return float(np.mean([len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(approximate, exact)]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import bm25s
    import faiss

    from reprzoo.datamodules.text.corpora import debian_packages
    from reprzoo.index import Index, build_index
    from reprzoo.index.bm25 import bm25_index, bm25_search

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    records = [r for r in debian_packages() if r["description"]][: args.documents]
    texts, ids = [r["description"] for r in records], [r["package"] for r in records]
    n, nq, k = len(texts), min(args.queries, len(texts)), 10
    queries_text = [r["synopsis"] for r in records[:nq]]
    generator = torch.Generator().manual_seed(args.seed)
    centres = torch.randn(50, args.dim, generator=generator) * 0.5
    dense = dense_vectors(n, args.dim, generator, centres)
    dense_queries = dense_vectors(nq, args.dim, generator, centres)
    sparse = sparse_vectors(n, 30522, 120, generator)
    sparse_queries = sparse_vectors(nq, 30522, 20, generator)
    multi = multi_vectors(n, 64, 128, generator)
    multi_queries = multi_vectors(min(args.maxsim_queries, n), 32, 128, generator)
    positions = [str(i) for i in range(n)]
    rows: list[dict[str, Any]] = []

    def add(system, kind, build_s, search_s, queries, size, recall=None):
        rows.append(
            {
                "system": system,
                "kind": kind,
                "documents": n,
                "build_s": build_s,
                "docs_per_s": n / build_s,
                "queries": queries,
                "search_s": search_s,
                "queries_per_s": queries / search_s,
                "index_mb": size / 2**20,
                "recall@10": recall,
            }
        )
        print(f"{system:10s} {kind:18s} build {build_s:7.3f} s  search {search_s:7.3f} s", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        tmp = Path(tmp)

        def ours(kind: str, table: torch.Tensor, representation: str, similarity: str, queries: torch.Tensor, **options):
            folder = tmp / f"ours-{kind}"
            encoder = Lookup(table, representation, similarity)

            def build():
                return build_index(encoder, positions, ids, folder, kind=kind, resume=False, progress=False, **options)

            build_s, _ = best_of(args.repeats, build)
            index = Index.load(folder)
            search_s, results = best_of(args.repeats, lambda: index.search(queries, k=k))
            return build_s, search_s, [r[0] for r in results], index.size_bytes

        # dense exact
        build_s, search_s, exact_ids, size = ours("dense", dense, "dense", "cosine", dense_queries)
        add("reprzoo", "dense exact", build_s, search_s, nq, size)
        x, q = dense.numpy(), dense_queries.numpy()

        def flat():
            index = faiss.IndexFlatIP(args.dim)
            index.add(x)
            return index

        build_s, flat_index = best_of(args.repeats, flat)
        search_s, (_, found) = best_of(args.repeats, lambda: flat_index.search(q, k))
        faiss.write_index(flat_index, str(tmp / "flat.faiss"))
        flat_ids = [[ids[j] for j in row] for row in found]
        add("faiss", "IndexFlatIP", build_s, search_s, nq, (tmp / "flat.faiss").stat().st_size, recall_at(flat_ids, exact_ids))

        # IVF-PQ
        pq = {"nlist": args.nlist, "m": args.m, "nbits": args.nbits, "nprobe": args.nprobe}
        build_s, search_s, found_ids, size = ours("ivfpq", dense, "dense", "cosine", dense_queries, **pq)
        add("reprzoo", f"ivfpq nprobe {args.nprobe}", build_s, search_s, nq, size, recall_at(found_ids, exact_ids))

        def ivfpq():
            quantizer = faiss.IndexFlatIP(args.dim)
            index = faiss.IndexIVFPQ(quantizer, args.dim, args.nlist, args.m, args.nbits, faiss.METRIC_INNER_PRODUCT)
            index.train(x)
            index.add(x)
            index.nprobe = args.nprobe
            return index

        build_s, pq_index = best_of(args.repeats, ivfpq)
        search_s, (_, found) = best_of(args.repeats, lambda: pq_index.search(q, k))
        faiss.write_index(pq_index, str(tmp / "pq.faiss"))
        pq_ids = [[ids[j] for j in row if j >= 0] for row in found]
        size = (tmp / "pq.faiss").stat().st_size
        add("faiss", f"IndexIVFPQ nprobe {args.nprobe}", build_s, search_s, nq, size, recall_at(pq_ids, exact_ids))

        # sparse and MaxSim (no faiss counterpart)
        build_s, search_s, _, size = ours("sparse", sparse, "sparse", "dot", sparse_queries)
        add("reprzoo", "sparse inverted", build_s, search_s, nq, size)
        build_s, search_s, _, size = ours("maxsim", multi, "multi_vector", "maxsim", multi_queries)
        add("reprzoo", "maxsim exact", build_s, search_s, len(multi_queries), size)

        # BM25 on the texts
        build_s, (retriever, stemmer) = best_of(args.repeats, lambda: bm25_index(texts))
        search_s, _ = best_of(args.repeats, lambda: bm25_search(retriever, stemmer, queries_text, k))
        retriever.save(str(tmp / "bm25"))
        add("bm25s", "BM25 (texts)", build_s, search_s, nq, folder_bytes(tmp / "bm25"))

    env = _timing.environment(torch.device("cpu"), packages=("faiss", "bm25s", "scipy"))
    env["bm25s"] = bm25s.__version__
    config = {k: v for k, v in vars(args).items() if k not in ("out", "argv")}
    shapes = {
        "dense": list(dense.shape),
        "sparse_nonzeros_per_document": sparse.nnz / n,
        "sparse_nonzeros_per_query": sparse_queries.nnz / nq,
        "multi_vector": list(multi.shape),
        "multi_vector_real_per_document": float((multi.abs().sum(-1) != 0).sum(1).float().mean()),
        "multi_vector_queries": list(multi_queries.shape),
    }
    return {
        "config": {**config, "documents": n, "queries": nq, "shapes": shapes},
        "environment": env,
        "loadavg": _timing.loadavg(),
        "rows": rows,
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        "| system | index | build s | docs/s | queries | queries/s | size MB | recall@10 vs exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        recall = "-" if r["recall@10"] is None else f"{r['recall@10']:.3f}"
        lines.append(
            f"| {r['system']} | {r['kind']} | {r['build_s']:.3f} | {r['docs_per_s']:,.0f} | {r['queries']} | "
            f"{r['queries_per_s']:,.0f} | {r['index_mb']:.2f} | {recall} |"
        )
    env = results["environment"]
    lines.append(
        f"\nshapes: {results['config']['shapes']}\n{results['config']['documents']} documents; {env['cpu']} ({env['cpu_count']} cores), one thread; load {results['loadavg']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return _timing.main(argv, parse_args, run, report)


if __name__ == "__main__":
    main()
