"""The BM25 baseline of the retrieval tables: ``bm25s`` (Lù, 2024, arXiv:2407.03618) with its default variant
(``method="lucene"``: idf ``ln(1 + (N - df + 0.5) / (df + 0.5))``, term frequency component
``tf / (tf + k1 (1 - b + b |d| / avgdl))``, k1 = 1.5, b = 0.75), bm25s's tokenizer (lower case, words of two or
more word characters), its English stopwords and the Snowball English stemmer of PyStemmer.

``bm25_run`` ranks documents for queries (an ir-measures run); ``bm25_evaluate`` scores BM25 on exactly the
held-out split of a ``TextPairs`` datamodule (``source="debian_descriptions"``: each held-out synopsis against
every held-out long description), with the measures of the learned retrievers' tables, the index's size on disk
and queries per second.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reprzoo.errors import ReprzooError

#: bm25s's defaults, stated: the variant and parameters every BM25 number of reprzoo uses
K1, B, METHOD = 1.5, 0.75, "lucene"
MEASURES = ("nDCG@10", "RR@10", "R@100")


def _stemmer():
    try:
        import Stemmer
    except ImportError:
        raise ReprzooError("BM25 needs PyStemmer: pip install 'reprzoo[retrieval]'") from None
    return Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str], stemmer: Any = None):
    """bm25s tokens of ``texts``: lower-cased words, English stopwords removed, stemmed."""
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer or _stemmer(), show_progress=False)


def bm25_index(documents: Sequence[str], k1: float = K1, b: float = B, method: str = METHOD):
    """A ``bm25s.BM25`` retriever indexing ``documents`` (and the stemmer its queries must use)."""
    try:
        import bm25s
    except ImportError:
        raise ReprzooError("BM25 needs bm25s: pip install 'reprzoo[retrieval]'") from None
    stemmer = _stemmer()
    retriever = bm25s.BM25(k1=k1, b=b, method=method)
    retriever.index(tokenize(documents, stemmer), show_progress=False)
    return retriever, stemmer


def bm25_search(retriever, stemmer, queries: Sequence[str], depth: int) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, scores)`` of the top ``depth`` documents of each query, ``(queries, depth)``."""
    depth = min(depth, int(retriever.scores["num_docs"]))
    tokens = tokenize(queries, stemmer)
    positions, scores = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    return positions, scores


def bm25_run(
    queries: Sequence[str],
    documents: Sequence[str],
    query_ids: Sequence[str],
    document_ids: Sequence[str],
    depth: int = 100,
    k1: float = K1,
    b: float = B,
) -> dict[str, dict[str, float]]:
    """The run ``{query id: {document id: BM25 score}}`` of the top ``depth`` documents of each query (documents
    a query shares no term with are left out)."""
    if len(queries) != len(query_ids) or len(documents) != len(document_ids):
        raise ReprzooError("bm25_run needs one id per query and one per document")
    retriever, stemmer = bm25_index(documents, k1=k1, b=b)
    positions, scores = bm25_search(retriever, stemmer, queries, depth)
    return {
        q: {document_ids[int(p)]: float(s) for p, s in zip(row_p, row_s) if s > 0}
        for q, row_p, row_s in zip(query_ids, positions, scores)
    }


def heldout_pairs(datamodule) -> tuple[list[str], list[str], list[str], dict[str, dict[str, int]]]:
    """``(queries, documents, ids, qrels)`` of a ``TextPairs`` datamodule's held-out evaluation: the positions of
    its own split (``_split_positions``, what ``TextPairs._splits`` evaluates) with its ids ``p{position}``, each
    query relevant to its own pair's document."""
    if not (hasattr(datamodule, "pairs") and hasattr(datamodule, "_split_positions")):
        raise ReprzooError(f"{type(datamodule).__name__} is not a TextPairs datamodule (it has no held-out pairs)")
    pairs = datamodule.pairs()
    _, test = datamodule._split_positions()
    ids = [f"p{i}" for i in test]  # TextPairs._splits' ids
    protocol = getattr(datamodule, "evaluation_protocol", None)
    if protocol is not None and list(protocol.query_ids) != ids:
        raise ReprzooError("the datamodule's evaluation protocol does not match its held-out split")
    return [pairs[i][0] for i in test], [pairs[i][1] for i in test], ids, {q: {q: 1} for q in ids}


def bm25_evaluate(datamodule, depth: int = 100, k1: float = K1, b: float = B) -> dict[str, float]:
    """BM25 on the held-out split of a ``TextPairs`` datamodule: ``nDCG@10``, ``RR@10`` (MRR@10), ``R@100``
    (ir-measures, through ``reprzoo.metrics.retrieval.evaluate_run``), ``index_bytes`` (the bm25s index saved to
    disk), ``queries_per_s`` (tokenising and retrieving all queries, one thread), ``queries`` and ``documents``."""
    from reprzoo.metrics.retrieval import evaluate_run

    queries, documents, ids, qrels = heldout_pairs(datamodule)
    retriever, stemmer = bm25_index(documents, k1=k1, b=b)
    start = time.perf_counter()
    positions, scores = bm25_search(retriever, stemmer, queries, depth)
    seconds = time.perf_counter() - start
    run = {q: {ids[int(p)]: float(s) for p, s in zip(row_p, row_s) if s > 0} for q, row_p, row_s in zip(ids, positions, scores)}
    metrics = evaluate_run(qrels, run, list(MEASURES))
    with tempfile.TemporaryDirectory(prefix="reprzoo-bm25-") as tmp:
        retriever.save(tmp)
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    return {
        **metrics,
        "index_bytes": float(size),
        "queries_per_s": len(queries) / seconds,
        "queries": float(len(queries)),
        "documents": float(len(documents)),
    }


__all__ = ["B", "K1", "METHOD", "bm25_evaluate", "bm25_index", "bm25_run", "bm25_search", "heldout_pairs", "tokenize"]
