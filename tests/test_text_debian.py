"""Debian package descriptions: the shipped fixture, the apt-lists parser (on handwritten Packages and
Translation-en lists), the synopsis -> description pairs with their retrieval evaluation, and the sections as
labels for kNN and probe."""

from __future__ import annotations

import gzip
import lzma
import math
import shutil
import subprocess
from collections import Counter

import pytest
import torch

from reprzoo.datamodules.text import corpora
from reprzoo.datamodules.text.sentences import DEBIAN_MIN_SECTION_SIZE, Sentences, TextPairs, debian_sections
from reprzoo.datamodules.text.topics import TopicSentences


# ----------------------------------------------------------------------------------------------- the fixture
def test_the_fixture_holds_5000_packages_with_every_field():
    records = corpora.debian_packages()
    assert len(records) == 5000
    assert [r["package"] for r in records] == sorted(r["package"] for r in records)
    assert len({r["package"] for r in records}) == 5000
    for r in records:
        assert r["package"] and r["section"] and r["synopsis"] and r["description"], r["package"]
        assert "\n" not in r["synopsis"] and "/" not in r["section"]
        assert isinstance(r["depends"], list) and isinstance(r["tags"], list)
    sections = Counter(r["section"] for r in records)
    assert len(sections) >= 50 and sections.most_common(1)[0][0] == "libs"
    assert sum(len(r["depends"]) for r in records) > 15000  # ~4.5 per package: the Depends graph's edges
    assert sum(bool(r["tags"]) for r in records) > 1500  # debtags where the archive has them
    assert Counter(d for r in records for d in r["depends"]).most_common(1)[0][0] == "libc6"
    records[0]["depends"].append("changed")
    assert "changed" not in corpora.debian_packages()[0]["depends"]  # fresh copies


def test_the_fixture_carries_its_licence_note():
    notice = (corpora.DATA_DIR / "DEBIAN_NOTICE").read_text()
    assert "Debian Free Software Guidelines" in notice and "debian/copyright" in notice
    with lzma.open(corpora.DEBIAN_FIXTURE, "rt", encoding="utf-8") as f:
        header = [line for line in f if line.startswith("#")]
    assert any("DFSG" in line for line in header) and header[-1] == "# packages: 5000\n"
    assert "DFSG" in corpora.SOURCES["debian"]["licence"]


# ----------------------------------------------------------------------------------------------- the apt lists
MAIN_PACKAGES = """\
Package: foo
Version: 1.0-1
Architecture: amd64
Depends: libc6 (>= 2.34), bar | baz:any, python3:any (>= 3.11~)
Pre-Depends: dpkg (>= 1.15.6~)
Description: a foo game
Description-md5: aaaa
Tag: game::arcade, role::program,
 use::gameplaying
Section: contrib/games

Package: bar
Version: 2.0
Section: libs
Description: bar library
Description-md5: bbbb

Package: qux
Version: 1
Section: utils
Description: qux tool
 Qux reads
 files.
"""
SECURITY_PACKAGES = """\
Package: foo
Version: 1.0-1+deb12u1
Depends: libc6
Description: a foo game, fixed
Description-md5: cccc
Section: contrib/games

Package: bar
Version: 1.9
Section: oldlibs
Description: old bar
Description-md5: dddd

Package: nodesc
Version: 0.1
Section: misc
Description: nothing more
"""
TRANSLATION = """\
Package: foo
Description-md5: aaaa
Description-en: a foo game
 The old text.

Package: foo
Description-md5: cccc
Description-en: a foo game, fixed
 Foo is a game
 of skill.
 .
 Features:
   * fast
   * fun
 .
 Enjoy.

Package: bar
Description-md5: bbbb
Description-en: bar library
 Bar does things.
"""


MAIN_PACKAGES_NAME = "mirror_debian_dists_bookworm_main_binary-amd64_Packages"


@pytest.fixture
def apt_lists(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / MAIN_PACKAGES_NAME).write_text(MAIN_PACKAGES)
    with lzma.open(folder / "mirror_debian-security_dists_bookworm-security_main_binary-amd64_Packages.xz", "wt") as f:
        f.write(SECURITY_PACKAGES)
    with gzip.open(folder / "mirror_debian_dists_bookworm_main_i18n_Translation-en.gz", "wt") as f:
        f.write(TRANSLATION)
    (folder / "mirror_debian_dists_bookworm_InRelease").write_text("Suite: bookworm\n")
    return folder


def test_the_full_lists_parser_reads_handwritten_lists(apt_lists):
    records = {r["package"]: r for r in corpora.debian_packages(apt_lists)}
    assert sorted(records) == ["bar", "foo", "nodesc", "qux"]
    foo = records["foo"]  # the security update's version (higher), with its own description (md5 cccc)
    assert foo["synopsis"] == "a foo game, fixed"
    assert foo["description"] == "Foo is a game of skill.\n\nFeatures:\n  * fast\n  * fun\n\nEnjoy."
    assert foo["section"] == "games" and foo["depends"] == ["libc6"] and foo["tags"] == []
    bar = records["bar"]  # 2.0 of the main suite beats 1.9
    assert (bar["section"], bar["synopsis"], bar["description"]) == ("libs", "bar library", "Bar does things.")
    assert records["qux"]["description"] == "Qux reads files."  # a long description inside Packages itself
    assert records["nodesc"] == {
        "package": "nodesc",
        "section": "misc",
        "synopsis": "nothing more",
        "description": "",
        "depends": [],
        "tags": [],
    }
    main_only = {
        r["package"]: r for r in corpora.debian_packages(apt_lists / MAIN_PACKAGES_NAME, list(apt_lists.glob("*Translation*")))
    }
    assert main_only["foo"]["depends"] == ["dpkg", "libc6", "bar", "baz", "python3"]  # Pre-Depends first
    assert main_only["foo"]["tags"] == ["game::arcade", "role::program", "use::gameplaying"]
    assert main_only["foo"]["description"] == "The old text."


@pytest.mark.skipif(shutil.which("lz4") is None, reason="the lz4 command (apt's own lists format) is not installed")
def test_lz4_lists_are_read_as_apt_stores_them(apt_lists):
    plain = apt_lists / MAIN_PACKAGES_NAME
    subprocess.run(["lz4", "-q", str(plain), str(plain) + ".lz4"], check=True)
    plain.unlink()
    assert {r["package"] for r in corpora.debian_packages(apt_lists)} == {"bar", "foo", "nodesc", "qux"}


def test_a_path_that_is_not_a_list_raises(tmp_path):
    with pytest.raises(corpora.ReprzooError, match="no \\*Packages\\*"):
        corpora.debian_packages(tmp_path)
    with pytest.raises(corpora.ReprzooError, match="neither"):
        corpora.debian_packages(tmp_path / "missing")


def test_depends_parsing():
    assert corpora.parse_depends("a (>= 1), b:any | c [amd64], a, d:native (<< 2)") == ["a", "b", "c", "d"]
    assert corpora.parse_depends("") == []


VERSIONS = ["1.0~rc1", "1.0", "1.0-1", "1.0-1+deb12u1", "1.0a", "1.0.1", "1.2", "1.10", "1:0.9", "2:0", "0.9~~", "0.9~"]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg (the reference comparison) is not installed")
def test_version_order_matches_dpkg():
    for a in VERSIONS:
        for b in VERSIONS:
            ours = corpora.debian_version_key(a) < corpora.debian_version_key(b)
            theirs = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
            assert ours == theirs, (a, b)


# ----------------------------------------------------------------------------------------------- datamodules
def test_description_pairs_yield_query_document_batches():
    data = TextPairs(source="debian_descriptions", max_pairs=400, test_share=0.2, vocab_size=800, max_length=48, batch_size=8)
    pairs = data.pairs()
    records = corpora.debian_packages()
    assert pairs[0] == (records[0]["synopsis"], records[0]["description"])
    data.setup("fit")
    (query, document), labels, _ = next(iter(data.train_dataloader()))
    assert query["input_ids"].shape[0] == document["input_ids"].shape[0] == 8
    assert query["attention_mask"].sum() < document["attention_mask"].sum()  # a synopsis is shorter than its document
    documents, queries = data.val_dataloader()
    assert len(documents.dataset) == len(queries.dataset) == len(data._split_positions()[1]) > 50


def _tfidf(texts: list[str], vocab: dict[str, int], idf: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(texts), len(vocab))
    for i, text in enumerate(texts):
        for word, n in Counter(corpora.simple_tokenize(text)).items():
            if word in vocab:
                out[i, vocab[word]] = (1 + math.log(n)) * idf[vocab[word]]
    return out


def test_the_retrieval_evaluator_scores_tfidf_on_held_out_descriptions():
    """A lexical baseline through the datamodule's own protocol: TF-IDF cosine, synopsis -> description (about 250
    held-out packages): far above chance (MRR@10 of a random ranking ~0.01), below perfect."""
    data = TextPairs(source="debian_descriptions", vocab_size=2000, max_length=32)
    data.setup("fit")
    pairs, (_, test) = data.pairs(), data._split_positions()
    queries, documents = [pairs[i][0] for i in test], [pairs[i][1] for i in test]
    words = sorted({w for t in documents for w in corpora.simple_tokenize(t)})
    vocab = {w: i for i, w in enumerate(words)}
    df = torch.zeros(len(vocab))
    for t in documents:
        for w in set(corpora.simple_tokenize(t)):
            df[vocab[w]] += 1
    idf = torch.log(len(documents) / df)
    evaluator = data.evaluation_protocol.evaluators()[0]
    positions = torch.arange(len(test))
    evaluator.update(_tfidf(documents, vocab, idf), positions, bank=True, module=None, batch=None)
    evaluator.update(_tfidf(queries, vocab, idf), positions, bank=False, module=None, batch=None)
    logged: dict[str, float] = {}
    evaluator.compute_and_log(lambda key, value: logged.__setitem__(key, float(value)), "val", None)
    assert set(logged) == {"val/mrr@10", "val/ndcg@10", "val/recall@10", "val/recall@100"}
    # measured: MRR@10 0.881, nDCG@10 0.900, Recall@10 0.957, Recall@100 0.984 over 254 held-out packages
    assert 0.75 < logged["val/mrr@10"] < 0.97 and logged["val/recall@100"] > 0.9, logged


def test_a_text_pair_method_trains_and_is_evaluated_on_descriptions(tiny_trainer_kwargs):
    import lightning as L

    from reprzoo.lightning_modules import MNRL

    data = TextPairs(source="debian_descriptions", max_pairs=800, test_share=0.1, vocab_size=600, max_length=32, batch_size=96)
    model = MNRL(vocab_size=data.vocab_size, backbone="bert_tiny", backbone_kwargs={"pooling": "mean", "max_length": 32})
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert {"val/mrr@10", "val/ndcg@10", "val/recall@10", "val/recall@100"} <= set(metrics)
    assert 0 < float(metrics["val/mrr@10"]) <= 1


def test_sections_are_labels_for_knn_and_probe():
    texts, labels, names = debian_sections()
    counts = Counter(labels)
    assert len(names) == 16 and min(counts.values()) >= DEBIAN_MIN_SECTION_SIZE and len(texts) == len(labels) == 3761
    assert {"libs", "libdevel", "python", "doc"} <= set(names)
    data = TopicSentences(topics="debian_sections", tokenizer="wordlevel", vocab_size=1000, max_length=32, batch_size=16)
    assert data.num_classes == 16  # before setup: the command line links it
    data.setup("fit")
    views, batch_labels, _ = next(iter(data.train_dataloader()))
    assert views[0]["input_ids"].shape[0] == 16 and views[0]["input_ids"].shape[1] <= 32
    assert batch_labels.min() >= 0 and batch_labels.max() < 16
    bank, queries = data.val_dataloader()
    assert len(bank.dataset) + len(queries.dataset) == 3761 and len(bank.dataset) == len(data.train_dataloader().dataset)
    assert set(torch.cat([batch[1] for batch in queries]).tolist()) == set(range(16))


def test_unlabelled_sentences_of_the_debian_corpus_evaluate_on_sections():
    data = Sentences(corpus="debian", evaluation="debian_sections", max_texts=300, vocab_size=800, max_length=32)
    assert data.num_classes == 16 and len(data._texts()) == 300
    data.setup("fit")
    views, labels, _ = next(iter(data.train_dataloader()))
    assert bool((labels == -1).all())
    _, queries = data.val_dataloader()
    assert int(torch.cat([batch[1] for batch in queries]).min()) >= 0
    with pytest.raises(Exception, match="debian_sections"):
        TopicSentences(topics="sections")
