"""Word vectors: reprzoo's word2vec (skip-gram with negative sampling, CBOW) and fastText against gensim's, side by
side on the same corpus, vocabulary, window, subsampling, negatives, dimensions and epochs.

* Corpus: WordNet 3.0's definitions and examples as shipped with reprzoo (89,578 synsets, 1.32M tokens after
  ``simple_tokenize``), ``--corpus lee`` for the 60k-word Lee background corpus. Both libraries get the same
  token lists; vocabulary: words seen ``min_count`` = 5 times (21,226 words on WordNet).
* gensim: ``Word2Vec(sg=1|0, hs=0, negative=5, window=5, sample=1e-3, vector_size=100, min_count=5,
  epochs=E, workers=--threads)`` and ``FastText(sg=1, min_n=3, max_n=6, bucket=200000, ...)``; ``train`` timed
  (after ``build_vocab``).
* reprzoo: ``SkipGramNegativeSampling`` / ``Word2Vec(architecture="cbow", objective="negative_sampling")`` /
  ``FastText`` on ``WordWindows`` through ``lightning.Trainer`` (what ``reprzoo fit`` runs), ``torch`` with
  ``--threads`` intra-op threads, the fit timed without validation (the vocabulary and batches of the
  datamodule are built before the clock starts).
* Quality, the same evaluators for both (``reprzoo.metrics.text``, equal to gensim's ``evaluate_word_pairs`` and
  ``evaluate_word_analogies``, tests/test_text_words.py): WordSim-353 and SimLex-999 Spearman, 3CosAdd analogy
  accuracy on the Google questions among the 30,000 most frequent words (coverage reported).

Run from the repository root: ``python benchmarks/bench_word2vec.py --out bench_word2vec.json`` (about 15 minutes
on a 2-core CPU); ``--quick`` is a smoke run on the Lee corpus, one epoch (about a minute).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

MODELS = ("sgns", "cbow", "fasttext")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=None, help="wordnet (default) or lee")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 5)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--threads", type=int, default=2, help="gensim workers and torch threads (default 2)")
    p.add_argument("--batch-size", type=int, default=1024, help="reprzoo's centre words per step (default 1024)")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run: the Lee corpus, one epoch")
    args = p.parse_args(argv)
    args.corpus = args.corpus or ("lee" if args.quick else "wordnet")
    args.epochs = args.epochs or (1 if args.quick else 5)
    return args


def quality(vectors: np.ndarray, words: list[str]) -> dict[str, float]:
    from reprzoo.datamodules.text import corpora
    from reprzoo.metrics.text import analogy_accuracy, word_pair_spearman

    index = {w: i for i, w in enumerate(words)}
    out = {}
    for name in ("wordsim353", "simlex999"):
        out[f"{name}_spearman"], _, out[f"{name}_oov"] = word_pair_spearman(vectors, index, corpora.word_similarity(name))
    out["analogy_acc"], out["analogy_coverage"] = analogy_accuracy(vectors, index, [q[1:] for q in corpora.analogies()], 30000)
    return {k: round(float(v), 4) for k, v in out.items()}


def run_gensim(model: str, sentences: list[list[str]], args, tokens: int) -> dict[str, Any]:
    from gensim.models import FastText, Word2Vec

    common = dict(
        vector_size=args.dim, window=5, min_count=5, sample=1e-3, negative=5, hs=0, workers=args.threads, seed=args.seed
    )
    if model == "fasttext":
        m = FastText(sg=1, min_n=3, max_n=6, bucket=200000, **{**common, "sample": 1e-4})
    else:
        m = Word2Vec(sg=int(model == "sgns"), **common)
    m.build_vocab(sentences)
    started = time.perf_counter()
    m.train(sentences, total_examples=len(sentences), epochs=args.epochs)
    seconds = time.perf_counter() - started
    words = list(m.wv.index_to_key)
    return {
        "library": "gensim",
        "seconds": round(seconds, 2),
        "words_per_s": round(tokens * args.epochs / seconds),
        "vocab": len(words),
        **quality(m.wv.vectors, words),
    }


def run_reprzoo(model: str, args, tokens: int) -> dict[str, Any]:
    import lightning as L

    from reprzoo.datamodules import WordWindows
    from reprzoo.lightning_modules import FastText, SkipGramNegativeSampling, Word2Vec

    torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, verbose=False)
    subwords = {"minn": 3, "maxn": 6, "bucket": 200000}
    data = WordWindows(
        corpus=args.corpus,
        min_count=5,
        window=5,
        sample=1e-4 if model == "fasttext" else 1e-3,
        batch_size=args.batch_size,
        seed=args.seed,
        **({"subwords": subwords} if model == "fasttext" else {}),
    )
    data.setup()
    if model == "sgns":
        method = SkipGramNegativeSampling(vocab_size=data.vocab_size, dim=args.dim)
    elif model == "cbow":
        method = Word2Vec(
            vocab_size=data.vocab_size,
            dim=args.dim,
            architecture="cbow",
            objective="negative_sampling",
            shared_negatives=64,
            lr=0.05,
        )
    else:
        method = FastText(vocab_size=data.vocab_size, dim=args.dim, **subwords)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=args.epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    started = time.perf_counter()
    trainer.fit(method, datamodule=data)
    seconds = time.perf_counter() - started
    method.eval()
    with torch.no_grad():
        vectors = method.embed(torch.arange(data.vocab_size)).numpy()
    return {
        "library": "reprzoo",
        "seconds": round(seconds, 2),
        "words_per_s": round(tokens * args.epochs / seconds),
        "vocab": data.vocab_size,
        **quality(vectors, data.vocabulary.words),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from reprzoo.datamodules.text import corpora
    from reprzoo.datamodules.text.words import corpus_texts

    sentences = [corpora.simple_tokenize(t) for t in corpus_texts(args.corpus)]
    tokens = sum(map(len, sentences))
    started, load_start = time.perf_counter(), _timing.loadavg()
    rows = []
    for model in args.models:
        for runner in ("gensim", "reprzoo"):
            row = run_gensim(model, sentences, args, tokens) if runner == "gensim" else run_reprzoo(model, args, tokens)
            rows.append({"model": model, **row})
            print(f"{model:9s} {runner:8s} {row['seconds']:7.1f} s  ws {row['wordsim353_spearman']:.3f}", file=sys.stderr)
    return {
        "corpus": args.corpus,
        "tokens": tokens,
        "epochs": args.epochs,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "loadavg_start": load_start,
        "loadavg_end": _timing.loadavg(),
        "environment": _timing.environment(torch.device("cpu"), packages=("gensim", "lightning")),
        "argv": args.argv,
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        f"corpus {results['corpus']} ({results['tokens']:,} tokens), {results['epochs']} epochs, {results['threads']} threads",
        "| model | library | train s | words/s | WordSim-353 | SimLex-999 | analogy acc (coverage) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['model']} | {r['library']} | {r['seconds']:.1f} | {r['words_per_s']:,} | {r['wordsim353_spearman']:.3f} | "
            f"{r['simlex999_spearman']:.3f} | {r['analogy_acc']:.3f} ({r['analogy_coverage']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return _timing.main(argv, parse_args, run, report)


if __name__ == "__main__":
    main()
