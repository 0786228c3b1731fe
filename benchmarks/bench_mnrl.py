"""MNRL sentence embeddings: reprzoo's ``MNRL`` against sentence-transformers' ``MultipleNegativesRankingLoss``,
the same model trained on the same batches.

* Data: ``TextPairs(source="wordnet_definitions")``, WordNet 3.0 definition -> its words (a reverse dictionary),
  ``--pairs`` pairs, a WordPiece tokenizer of ``--vocab`` tokens fitted on the training pairs, 64 tokens at most.
  Evaluation: the held-out 5% of the pairs, each definition ranking every held-out pair's words (MRR@10,
  nDCG@10, Recall@10 with ``ir-measures``).
* Model: one seeded ``bert_tiny`` (2 layers, 64 wide, mean pooling), copied into a sentence-transformers model
  (``Transformer`` + ``Pooling`` modules, written by ``reprzoo.zoo.interop.write_sentence_transformers``): both
  start from the same weights.
* Training: ``--epochs`` over the same batches (the datamodule's seeded order, 64 pairs), AdamW lr 1e-3, weight
  decay 0.01, scale 20, in a plain loop on each side: reprzoo's ``MNRL.training_loss`` and
  ``SentenceTransformer`` + ``losses.MultipleNegativesRankingLoss`` fed the same padded token ids.
* Reported: pairs per second of training (forward, backward, step) and the retrieval metrics after training,
  both models embedding the held-out texts in eval mode.

Run from the repository root: ``python benchmarks/bench_mnrl.py --out bench_mnrl.json`` (about 5 minutes on a
2-core CPU); ``--quick`` is a smoke run (1,000 pairs, one epoch).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=None, help="pairs used (default 20,000)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 3)")
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: 1,000 pairs, one epoch")
    args = p.parse_args(argv)
    args.pairs = args.pairs or (1000 if args.quick else 20000)
    args.epochs = args.epochs or (1 if args.quick else 3)
    return args


def evaluate(embed, data) -> dict[str, float]:
    from reprzoo.metrics.retrieval import evaluate_run, rank

    protocol = data.evaluation_protocol
    docs_loader, queries_loader = data.val_dataloader()
    with torch.no_grad():
        docs = torch.cat([embed(batch[0]) for batch in docs_loader])
        queries = torch.cat([embed(batch[0]) for batch in queries_loader])
    run = rank(queries, docs, protocol.query_ids, protocol.document_ids, depth=100)
    scores = evaluate_run(protocol.qrels, run, ["RR@10", "nDCG@10", "R@10"])
    return {"mrr@10": scores["RR@10"], "ndcg@10": scores["nDCG@10"], "recall@10": scores["R@10"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import lightning as L
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from reprzoo.datamodules import TextPairs
    from reprzoo.lightning_modules import MNRL
    from reprzoo.zoo.interop import write_sentence_transformers

    torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, verbose=False)
    data = TextPairs(max_pairs=args.pairs, vocab_size=args.vocab, max_length=64, batch_size=64, seed=args.seed)
    data.setup()
    ours = MNRL(vocab_size=data.vocab_size, backbone="bert_tiny", backbone_kwargs={"pooling": "mean", "max_length": 64})
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_sentence_transformers(
            copy.deepcopy(ours.backbone), data.fit_tokenizer().to_str().encode(), 64, Path(tmp) / "st", "bench"
        )
        theirs = SentenceTransformer(str(folder), device="cpu")
    st_loss = MultipleNegativesRankingLoss(theirs, scale=20.0)
    batches = list(data.train_dataloader())
    started_all, load_start = time.perf_counter(), _timing.loadavg()
    rows = []
    for library in ("reprzoo", "sentence-transformers"):
        torch.manual_seed(args.seed)
        params = ours.backbone.parameters() if library == "reprzoo" else theirs.parameters()
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
        model = ours if library == "reprzoo" else theirs
        model.train()
        started = time.perf_counter()
        for _ in range(args.epochs):
            for views, _labels, _indices in batches:
                if library == "reprzoo":
                    loss = ours.training_loss(views).loss
                else:
                    loss = st_loss([dict(views[0]), dict(views[1])], labels=None)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        seconds = time.perf_counter() - started
        model.eval()
        if library == "reprzoo":
            metrics = evaluate(ours.embed, data)
        else:
            metrics = evaluate(lambda batch: theirs(dict(batch))["sentence_embedding"], data)
        pairs = len(batches) * 64 * args.epochs
        rows.append(
            {
                "library": library,
                "seconds": round(seconds, 2),
                "pairs_per_s": round(pairs / seconds, 1),
                **{k: round(v, 4) for k, v in metrics.items()},
            }
        )
        print(f"{library:22s} {seconds:7.1f} s  mrr@10 {metrics['mrr@10']:.3f}", file=sys.stderr)
    return {
        "pairs": args.pairs,
        "held_out": len(data.evaluation_protocol.query_ids),
        "epochs": args.epochs,
        "threads": args.threads,
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started_all, 1),
        "loadavg_start": load_start,
        "loadavg_end": _timing.loadavg(),
        "environment": _timing.environment(torch.device("cpu"), packages=("sentence_transformers", "transformers", "lightning")),
        "argv": args.argv,
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{results['pairs']:,} pairs ({results['held_out']:,} held out), {results['epochs']} epochs, {results['threads']} threads",
        "| library | train s | pairs/s | MRR@10 | nDCG@10 | Recall@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['library']} | {r['seconds']:.1f} | {r['pairs_per_s']:.0f} | {r['mrr@10']:.3f} | {r['ndcg@10']:.3f} | {r['recall@10']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return _timing.main(argv, parse_args, run, report)


if __name__ == "__main__":
    main()
