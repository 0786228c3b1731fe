"""kNN evaluation fast path: reprzoo's batched weighted kNN against scikit-learn's KNeighborsClassifier.

Both classify the same query embeddings against the same labelled bank with the same rule: the k nearest bank
embeddings by cosine similarity, each voting for its label with weight exp(similarity / T), T = 0.1 (Wu et al.,
2018, arXiv:1805.01978; reprzoo's ``KNNAccuracy`` monitor).

* ``reprzoo``: ``reprzoo.metrics.knn.weighted_knn_predict`` (what ``KNNAccuracy.compute`` calls) on ``--device``:
  top-k of similarity matrix products over chunks of queries, no Python loop over samples. The embeddings are
  already on the device, as they are after a validation epoch.
* ``sklearn``: ``KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", n_jobs=-1,
  weights=exp((1 - cosine distance) / T))`` on the CPU, ``fit`` + ``predict`` timed.

Embeddings come from a fixed random generator: 10 class centres drawn from a standard normal in ``--dim``
dimensions, each sample its class centre plus Gaussian noise of standard deviation ``--spread`` per dimension
(7.0 by default at 512-d, 2.5 in the 64-d quick run: top-1 well below 1 and depending on k), L2-normalised once and given to both. Defaults:
50,000 bank x 10,000 queries, 512-d, k = 200 and 20; each timing is the median of ``--repeats`` calls, the two
libraries interleaved. Reported: seconds per full classification, the ratio, both top-1 accuracies and the
fraction of queries on which the two predictions agree.

Run from the repository root: ``python benchmarks/bench_knn.py --out bench_knn.json`` (about 2 minutes on a
2-core CPU); ``--device cuda`` for a GPU; ``--quick`` is a smoke run of a few seconds (2,000 x 500, 64-d).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing, also when this file is loaded by path
import _timing  # noqa: E402
from _timing import environment, loadavg, sync  # noqa: E402

from reprzoo.metrics.knn import weighted_knn_predict  # noqa: E402

TEMPERATURE = 0.1  # KNNAccuracy's default
# spread ~ 7 * sqrt(dim / 512): about as hard at both sizes (the signal-to-noise ratio grows as sqrt(dim) / spread)
FULL_DEFAULTS = {"bank": 50_000, "queries": 10_000, "dim": 512, "spread": 7.0, "repeats": 3}
QUICK_DEFAULTS = {"bank": 2_000, "queries": 500, "dim": 64, "spread": 2.5, "repeats": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", type=int, default=None, help=f"labelled embeddings (default {FULL_DEFAULTS['bank']:,})")
    p.add_argument("--queries", type=int, default=None, help=f"embeddings to classify (default {FULL_DEFAULTS['queries']:,})")
    p.add_argument("--dim", type=int, default=None, help=f"embedding width (default {FULL_DEFAULTS['dim']})")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument(
        "--spread",
        type=float,
        default=None,
        help=f"noise std per dimension around unit-variance centres (default {FULL_DEFAULTS['spread']})",
    )
    p.add_argument("--k", type=int, nargs="+", default=[200, 20], help="neighbours (default 200 20)")
    p.add_argument(
        "--repeats", type=int, default=None, help=f"timed calls per library and k; median (default {FULL_DEFAULTS['repeats']})"
    )
    p.add_argument("--chunk-size", type=int, default=None, help="queries per matrix product (default: weighted_knn_predict's)")
    p.add_argument("--device", default="cpu", help="device of reprzoo's kNN: cpu (default) or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 x 500, 64-d, one call each (explicit options win)")
    args = p.parse_args(argv)
    for key, value in (QUICK_DEFAULTS if args.quick else FULL_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.bank, args.queries, args.dim, args.repeats, *args.k) < 1 or args.classes < 2:
        p.error("sizes, --k and --repeats must be positive and --classes at least 2")
    if max(args.k) > args.bank:
        p.error(f"--k {max(args.k)} exceeds the bank of {args.bank}")
    return args


def clustered_embeddings(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bank, bank labels, queries, query labels), L2-normalised, from a generator seeded with ``args.seed``."""
    g = torch.Generator().manual_seed(args.seed)
    centres = torch.randn(args.classes, args.dim, generator=g)

    def draw(n: int):
        labels = torch.randint(args.classes, (n,), generator=g)
        return F.normalize(centres[labels] + args.spread * torch.randn(n, args.dim, generator=g), dim=1), labels

    bank, bank_labels = draw(args.bank)
    queries, query_labels = draw(args.queries)
    return bank, bank_labels, queries, query_labels


def similarity_weights(distances: np.ndarray) -> np.ndarray:
    """sklearn's ``weights`` callable: cosine distance 1 - s to reprzoo's vote weight exp(s / T)."""
    return np.exp((1.0 - distances) / TEMPERATURE)


def timed(run: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = run()
    sync(device)
    return time.perf_counter() - t0, out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.neighbors import KNeighborsClassifier

    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started, load_start = time.perf_counter(), loadavg()
    bank, bank_labels, queries, query_labels = clustered_embeddings(args)
    bank_np, bank_labels_np, queries_np = bank.numpy(), bank_labels.numpy(), queries.numpy()
    on_device = [t.to(device) for t in (bank, bank_labels, queries)]
    chunk = {} if args.chunk_size is None else {"chunk_size": args.chunk_size}

    rows = []
    for k in args.k:

        def reprzoo_knn(k=k):  # k bound now (called in this iteration only)
            return weighted_knn_predict(on_device[2], on_device[0], on_device[1], args.classes, k, TEMPERATURE, **chunk)

        def sklearn_knn(k=k):
            clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", n_jobs=-1, weights=similarity_weights)
            return clf.fit(bank_np, bank_labels_np).predict(queries_np)

        warm = [
            ("reprzoo", lambda k=k: weighted_knn_predict(on_device[2][:16], on_device[0], on_device[1], args.classes, k)),
            (
                "sklearn",
                lambda k=k: KNeighborsClassifier(n_neighbors=k).fit(bank_np[:k], bank_labels_np[:k]).predict(queries_np[:16]),
            ),
        ]
        for _, first_call in warm:  # untimed: thread pools, allocator, lazy imports
            first_call()
        seconds: dict[str, list[float]] = {"reprzoo": [], "sklearn": []}
        predictions = {}
        order = [("reprzoo", reprzoo_knn, device), ("sklearn", sklearn_knn, torch.device("cpu"))]
        for r in range(args.repeats):
            for name, knn, where in order if r % 2 == 0 else order[::-1]:
                elapsed, predictions[name] = timed(knn, where)
                seconds[name].append(elapsed)
                print(f"k={k:<4d} repeat {r + 1}/{args.repeats} {name:8s} {elapsed:8.3f} s", file=sys.stderr, flush=True)
        ours, theirs = predictions["reprzoo"].cpu(), torch.from_numpy(np.asarray(predictions["sklearn"]))
        median = {name: statistics.median(values) for name, values in seconds.items()}
        rows.append(
            {
                "k": k,
                "reprzoo_s": median["reprzoo"],
                "sklearn_s": median["sklearn"],
                "sklearn_over_reprzoo": median["sklearn"] / median["reprzoo"],
                "reprzoo_top1": (ours == query_labels).float().mean().item(),
                "sklearn_top1": (theirs == query_labels).float().mean().item(),
                "agreement": (ours == theirs).float().mean().item(),
                "seconds": seconds,
            }
        )
    return {
        "rule": f"cosine kNN, votes weighted exp(similarity / {TEMPERATURE})",
        "command": "python benchmarks/bench_knn.py " + " ".join(getattr(args, "argv", [])),
        "config": {
            key: getattr(args, key)
            for key in (
                "bank",
                "queries",
                "dim",
                "classes",
                "spread",
                "k",
                "repeats",
                "chunk_size",
                "device",
                "threads",
                "seed",
                "quick",
            )
        },
        "environment": environment(device, packages=("sklearn", "numpy")),
        "results": rows,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "wall_s": time.perf_counter() - started,
    }


def markdown_table(results: dict[str, Any]) -> str:
    env, config = results["environment"], results["config"]
    rows = [
        f"{config['bank']:,} bank x {config['queries']:,} queries, {config['dim']}-d, {config['classes']} classes; "
        f"reprzoo on {env['device_name']} ({env['device']}, {env['torch_threads']} torch threads), sklearn on the CPU "
        f"(n_jobs=-1).",
        "",
        "| k | reprzoo s | sklearn s | sklearn / reprzoo | reprzoo top-1 | sklearn top-1 | agreement | reprzoo device |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["results"]:
        rows.append(
            f"| {row['k']} | {row['reprzoo_s']:.3f} | {row['sklearn_s']:.3f} | {row['sklearn_over_reprzoo']:.1f} | "
            f"{row['reprzoo_top1']:.4f} | {row['sklearn_top1']:.4f} | {row['agreement']:.4f} | {env['device_name']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return _timing.main(argv, parse_args, run, markdown_table)


if __name__ == "__main__":
    main()
