"""The BM25 baseline (reprzoo.index.bm25): bm25s's scores against the formula computed by hand, and the held-out
Debian evaluation on the TextPairs split."""

from __future__ import annotations

import math

import pytest

from reprzoo.index.bm25 import K1, METHOD, B, bm25_evaluate, bm25_run, heldout_pairs

pytest.importorskip("bm25s")
pytest.importorskip("Stemmer")

DOCUMENTS = [
    "The cat sat on the mat",
    "Cats chase mice and other cats",
    "A dog barks at the cat",
    "Dogs and cats living together",
    "The mouse ran away",
]
#: the same texts as bm25s sees them, written out by hand: lower case, bm25s's English stopwords ("the", "on",
#: "and", "at", "a"; not "other" or "away") dropped, Snowball-stemmed ("cats" -> "cat", "mice" stays, "barks" -> "bark", "living" ->
#: "live", "dogs" -> "dog"); one-letter words are not tokens
TOKENS = [
    ["cat", "sat", "mat"],
    ["cat", "chase", "mice", "other", "cat"],
    ["dog", "bark", "cat"],
    ["dog", "cat", "live", "togeth"],
    ["mous", "ran", "away"],
]
QUERIES = {"q1": ("cats on mats", ["cat", "mat"]), "q2": ("a barking dog", ["bark", "dog"]), "q3": ("mouse", ["mous"])}


def bm25_by_hand(query: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Lucene's BM25 (Kamphuis et al., ECIR 2020), a loop over the query's terms and each document."""
    n = len(TOKENS)
    avgdl = sum(len(d) for d in TOKENS) / n
    scores = []
    for doc in TOKENS:
        score = 0.0
        for term in query:
            df = sum(term in d for d in TOKENS)
            tf = doc.count(term)
            if df == 0 or tf == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(score)
    return scores


def test_bm25s_defaults_are_the_stated_variant():
    import bm25s

    retriever = bm25s.BM25()
    assert (retriever.k1, retriever.b, retriever.method) == (K1, B, METHOD) == (1.5, 0.75, "lucene")


def test_the_tokens_are_what_the_hand_computation_assumes():
    from reprzoo.index.bm25 import tokenize

    tokenized = tokenize(DOCUMENTS)
    words = {i: w for w, i in tokenized.vocab.items()}
    assert [[words[i] for i in doc] for doc in tokenized.ids] == TOKENS


def test_bm25_run_equals_the_formula_by_hand():
    ids = [f"d{i}" for i in range(len(DOCUMENTS))]
    run = bm25_run([q for q, _ in QUERIES.values()], DOCUMENTS, list(QUERIES), ids, depth=5)
    for qid, (_, terms) in QUERIES.items():
        expected = {ids[j]: s for j, s in enumerate(bm25_by_hand(terms)) if s > 0}
        assert run[qid] == pytest.approx(expected, rel=1e-6), qid
    assert list(run["q1"])[0] == "d0"  # the mat


def test_bm25_evaluates_the_textpairs_heldout_split():
    from reprzoo.datamodules.text.sentences import TextPairs

    data = TextPairs(source="debian_descriptions", max_pairs=400, tokenizer="wordlevel", vocab_size=2000)
    queries, documents, ids, qrels = heldout_pairs(data)
    data.setup()  # the datamodule's own evaluation: the same held-out pairs and ids
    protocol = data.evaluation_protocol
    assert ids == protocol.query_ids == protocol.document_ids and qrels == protocol.qrels
    pairs = data.pairs()
    assert [(q, d) for q, d in zip(queries, documents)] == [pairs[int(i[1:])] for i in ids]
    metrics = bm25_evaluate(data)
    assert metrics["queries"] == len(ids) == metrics["documents"] and len(ids) > 5
    assert 0.5 < metrics["nDCG@10"] <= 1 and 0.5 < metrics["RR@10"] <= 1 and metrics["R@100"] == 1.0
    assert metrics["index_bytes"] > 0 and metrics["queries_per_s"] > 0
