"""The offline text corpora: gensim's evaluation sets, the WordNet parser and the shipped WordNet fixture."""

from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np
import pytest

from reprzoo.datamodules.text import corpora
from reprzoo.datamodules.text.corpora import (
    SOURCES,
    WORDNET_FIXTURE,
    analogies,
    gloss_line,
    lee_background,
    lee_test,
    mini_newsgroups,
    read_wordnet_tsv,
    simple_tokenize,
    word_similarity,
    wordnet_corpus,
    wordnet_glosses,
    write_wordnet_tsv,
)
from reprzoo.errors import ReprzooError

needs_gensim = pytest.mark.skipif(importlib.util.find_spec("gensim") is None, reason="the evaluation sets come with gensim")


# ----------------------------------------------------------------------------------------------- tokenizer, sources
@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Hello, World!", ["hello", "world"]),
        ("I don't think U.S. rates rose 2.5% in 'Q3'", ["i", "don't", "think", "u", "s", "rates", "rose", "2", "5", "in", "q3"]),
        ("a b  C\td\ne", ["a", "b", "c", "d", "e"]),  # 1-character tokens are kept
        ("self-contained snake_case", ["self", "contained", "snake", "case"]),
        ("Café naïve Zürich", ["café", "naïve", "zürich"]),
        ("supercalifragilisticexpialidocious" * 2, ["supercalifragilisticexpialidocious" * 2]),  # no max length
        ("'quoted' rock'n'roll ''", ["quoted", "rock'n'roll"]),
        ("", []),
    ],
)
def test_simple_tokenize(text, tokens):
    assert simple_tokenize(text) == tokens


def test_sources_record_licences():
    assert {"lee", "wordsim353", "simlex999", "analogies", "mini_newsgroups", "wordnet"} <= set(SOURCES)
    for entry in SOURCES.values():
        assert set(entry) == {"description", "licence", "origin"} and all(entry.values())


def test_gensim_missing_gives_install_hint(monkeypatch):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ReprzooError, match="pip install gensim"):
        corpora.gensim_data_dir()


# ----------------------------------------------------------------------------------------------- gensim test data
@needs_gensim
def test_lee_counts_and_human_matrix():
    background = lee_background()
    docs, sims = lee_test()
    assert len(background) == 300 and len(docs) == 50
    assert all(isinstance(d, str) and len(d.split()) > 20 for d in background + docs)
    assert "£3,000" in " ".join(docs)  # latin-1 decoded
    assert sims.shape == (50, 50) and np.array_equal(sims, sims.T)
    assert np.all(np.diag(sims) == 1) and sims.min() >= 0 and sims.max() <= 1
    # the matrix is aligned with the documents: TF-IDF (idf from the background) correlates with it (~0.57;
    # gensim's LSI on log-entropy ~0.61), a shuffled matrix would not
    vocab = {w: i for i, w in enumerate(sorted({w for d in background + docs for w in simple_tokenize(d)}))}
    df = np.zeros(len(vocab))
    for d in background:
        df[[vocab[w] for w in set(simple_tokenize(d))]] += 1
    x = np.zeros((50, len(vocab)))
    for i, d in enumerate(docs):
        for w, c in Counter(simple_tokenize(d)).items():
            x[i, vocab[w]] = c * (np.log(301 / (df[vocab[w]] + 1)) + 1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    iu = np.triu_indices(50, 1)
    assert np.corrcoef((x @ x.T)[iu], sims[iu])[0, 1] > 0.5


@needs_gensim
def test_word_similarity_sets():
    ws = word_similarity("wordsim353")
    sl = word_similarity("simlex999")
    assert len(ws) == 353 and len(sl) == 999
    assert ws[0] == ("love", "sex", 6.77) and sl[0] == ("old", "new", 1.58)
    for pairs in (ws, sl):
        assert all(a == a.lower() and b == b.lower() and 0 <= s <= 10 for a, b, s in pairs)
    with pytest.raises(ValueError, match="simlex999, wordsim353"):
        word_similarity("men3000")


@needs_gensim
def test_analogies():
    items = analogies()
    assert len(items) == 19544
    sections = Counter(s for s, *_ in items)
    assert len(sections) == 14 and sections["capital-world"] == 4524 and sections["gram9-plural-verbs"] == 870
    assert items[0] == ("capital-common-countries", "athens", "greece", "baghdad", "iraq")
    assert all(len(q) == 5 and all(w == w.lower() for w in q[1:]) for q in items)


@needs_gensim
def test_mini_newsgroups():
    texts, labels, names = mini_newsgroups()
    assert names == ["alt.atheism", "sci.space"]
    assert len(texts) == len(labels) == 200 and Counter(labels) == {0: 100, 1: 100}
    assert not any(t.startswith(("Newsgroups:", "Path:", "From:")) for t in texts)
    assert texts[0].startswith("In article <1993Apr05.174537.14962@watson.ibm.com>")


def test_strip_headers():
    assert corpora._strip_headers("From: a\nSubject: b\n\nbody\n\nmore\n") == "body\n\nmore"
    assert corpora._strip_headers("no header block") == "no header block"


# ----------------------------------------------------------------------------------------------- WordNet
_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04431553 n 0000 | that which is perceived or known or inferred to have its own distinct existence (living or nonliving)
00003553 03 n 02 whole 0 unit 0 001 @ 00002684 n 0000 | an assemblage of parts that is regarded as a single entity; "how big is that part compared to the whole?"; "the team is a unit"
"""
_VERB = """\
00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 001 * 00005041 v 0000 02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs; "I can breathe better when the air is clean"; "The patient is respiring"
"""
_ADJ = """\
00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; "abounding confidence"; "she said; quietly; no"
"""
_ADV = """\
00001740 02 r 0a a_cappella 0 b 0 c 0 d 0 e 0 f 0 g 0 h 0 i 0 j 0 000 | without musical accompaniment; without more
"""


def _write_dict(folder):
    for pos, text in {"noun": _NOUN, "verb": _VERB, "adj": _ADJ, "adv": _ADV}.items():
        (folder / f"data.{pos}").write_text(text, encoding="utf-8")
    return folder


def test_wordnet_parser_on_a_tiny_dict(tmp_path):
    records = wordnet_glosses(_write_dict(tmp_path))
    assert [r["synset"] for r in records] == ["00001740-n", "00003553-n", "00001740-v", "00014358-a", "00001740-r"]
    entity, whole, breathe, abounding, acappella = records
    assert entity == {
        "words": ["entity"],
        "pos": "n",
        "definition": "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)",
        "examples": [],
        "synset": "00001740-n",
    }
    assert whole["words"] == ["whole", "unit"]
    assert whole["examples"] == ["how big is that part compared to the whole?", "the team is a unit"]
    assert breathe["words"] == ["breathe", "take a breath", "respire", "suspire"]  # underscores, verb frames skipped
    assert breathe["definition"] == "draw air into, and expel out of, the lungs"
    assert abounding["pos"] == "a" and abounding["words"] == ["abounding", "galore"]  # satellite, marker dropped
    assert abounding["examples"] == ["abounding confidence", "she said; quietly; no"]  # ';' inside quotes
    assert len(acappella["words"]) == 10 and acappella["words"][0] == "a cappella"  # w_cnt is hexadecimal
    assert acappella["definition"] == "without musical accompaniment; without more"
    assert gloss_line(whole) == (
        "whole unit : an assemblage of parts that is regarded as a single entity ; "
        "how big is that part compared to the whole? ; the team is a unit"
    )
    assert wordnet_corpus(tmp_path)[2].startswith("breathe take a breath respire suspire : draw air")
    # the TSV round trip used by the fixture
    write_wordnet_tsv(records, tmp_path / "g.tsv.xz", ["a header"])
    assert read_wordnet_tsv(tmp_path / "g.tsv.xz") == records


def test_wordnet_missing_files(tmp_path):
    with pytest.raises(ReprzooError, match="data.noun"):
        wordnet_glosses(tmp_path)


def test_wordnet_fixture():
    assert WORDNET_FIXTURE.is_file() and WORDNET_FIXTURE.stat().st_size < 3_000_000
    assert (WORDNET_FIXTURE.parent / "WORDNET_LICENSE").is_file()
    records = wordnet_glosses()
    assert len(records) == 89578
    assert Counter(r["pos"] for r in records) == {"n": 54780, "v": 13747, "a": 17434, "r": 3617}
    assert len({r["synset"] for r in records}) == len(records)
    assert all(r["words"] and r["definition"] for r in records)
    assert sum(len(r["examples"]) for r in records) > 30000
    by_id = {r["synset"]: r for r in records}
    assert by_id["00001740-v"]["words"] == ["breathe", "take a breath", "respire", "suspire"]
    assert by_id["00001740-v"]["examples"] == ["I can breathe better when the air is clean", "The patient is respiring"]
    records[0]["words"].append("changed")  # callers get copies
    assert wordnet_glosses()[0]["words"] == ["entity"]


def test_wordnet_corpus_word_count():
    lines = wordnet_corpus()
    assert len(lines) == 89578
    n_tokens = sum(len(simple_tokenize(line)) for line in lines)
    assert 1_200_000 < n_tokens < 1_450_000  # 1,317,469 (the full WordNet 3.0: 1,769,237)
