"""fastText (Bojanowski et al., 2017): character n-grams and their FNV-1a hashes against gensim's reimplementation
of the authors' ``dictionary.cc``, word and out-of-vocabulary vectors against gensim's ``FastTextKeyedVectors`` on
the same tables, the loss and fastText's gradient against loops, the ``subwords`` preprocessing, a few training
steps and a push / load round trip where an unseen word gets a vector."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from reprzoo.datamodules.text.preprocess import (
    SubwordLookup,
    build_text_preprocessor,
    character_ngrams,
    fasttext_hash,
    subword_buckets,
)
from reprzoo.datamodules.text.vocab import Vocabulary
from reprzoo.lightning_modules.text.fasttext import FastText
from reprzoo.losses.fasttext import fasttext_loss, subword_hidden

WORDS = ["where", "a", "café", "naïve", "日本語", "antidisestablishment", "ab", "x"]
VOCAB = Vocabulary(["the", "cat", "sat", "on", "mat", "dog", "where", "naïve"], [9, 8, 7, 6, 5, 4, 3, 2])


# ----------------------------------------------------------------------------------------------- hashing
def test_fnv1a_hash_matches_gensim_and_the_signed_char_rule():
    fasttext = pytest.importorskip("gensim.models.fasttext")
    from gensim.models.fasttext_inner import ft_hash_bytes

    assert fasttext_hash("") == 2166136261  # the FNV offset basis
    for word in [*WORDS, "<wh", "é>", "<日本"]:
        assert fasttext_hash(word) == ft_hash_bytes(word.encode("utf-8")), word
    # a byte >= 0x80 is sign-extended (int8_t), as the released models were trained: not plain FNV-1a
    plain = ((2166136261 ^ 0xE9) * 16777619) & 0xFFFFFFFF
    assert fasttext_hash(b"\xe9") != plain
    assert fasttext_hash(b"\xe9") == ((2166136261 ^ 0xFFFFFFE9) * 16777619) & 0xFFFFFFFF
    assert fasttext.ft_ngram_hashes  # imported


@pytest.mark.parametrize("minn,maxn,bucket", [(3, 6, 2_000_000), (2, 4, 1000), (3, 3, 97)])
def test_ngrams_and_buckets_match_gensim(minn, maxn, bucket):
    fasttext = pytest.importorskip("gensim.models.fasttext")
    for word in WORDS:
        ours = character_ngrams(word, minn, maxn)
        assert sorted(ours) == sorted(fasttext.compute_ngrams(word, minn, maxn)), word  # gensim orders by length
        assert sorted(subword_buckets(word, minn, maxn, bucket)) == sorted(fasttext.ft_ngram_hashes(word, minn, maxn, bucket))


def test_ngrams_follow_compute_subwords():
    # fastText's order (by start, then length), whole characters, the whole "<word>" when short enough
    assert character_ngrams("ab", 3, 6) == ["<ab", "<ab>", "ab>"]
    assert character_ngrams("é", 2, 3) == ["<é", "<é>", "é>"]
    # the boundary 1-grams "<" and ">" are left out (minn = 1)
    assert character_ngrams("ab", 1, 2) == ["<a", "a", "ab", "b", "b>"]
    assert character_ngrams("aaa", 3, 3) == ["<aa", "aaa", "aa>"]
    assert character_ngrams("aaaa", 3, 3).count("aaa") == 2  # repeats kept, as fastText sums them twice


# ----------------------------------------------------------------------------------------------- vectors vs gensim
def _model(vocab=VOCAB, dim=6, bucket=50, **kwargs) -> FastText:
    torch.manual_seed(0)
    model = FastText(vocab_size=len(vocab), dim=dim, bucket=bucket, sparse=False, **kwargs)
    model.vocabulary_ready(vocab)
    with torch.no_grad():  # not the tiny init range, so that sums and means are told apart
        model.backbone.embedding.weight.normal_()
        model.subwords.embedding.weight.normal_()
    return model


def test_word_and_unseen_word_vectors_match_gensim_on_the_same_tables():
    fasttext = pytest.importorskip("gensim.models.fasttext")
    model = _model()
    kv = fasttext.FastTextKeyedVectors(6, 3, 6, 50)
    kv.index_to_key = list(VOCAB.words)
    kv.key_to_index = dict(VOCAB.index)
    kv.vectors_vocab = model.backbone.embedding.weight.detach().numpy().copy()
    kv.vectors_ngrams = model.subwords.embedding.weight.detach().numpy().copy()
    kv.recalc_char_ngram_buckets()
    kv.adjust_vectors()
    encoder = model.encoder().eval()
    with torch.no_grad():
        ours = encoder(torch.arange(len(VOCAB))).numpy()
    np.testing.assert_allclose(ours, kv.vectors, rtol=1e-5, atol=1e-6)
    lookup = SubwordLookup(VOCAB, 3, 6, 50)
    unseen = ["catnip", "wherever", "日本", "zz"]
    with torch.no_grad():
        got = encoder(lookup(unseen)).numpy()
        known = encoder(lookup(["naïve", "cat"])).numpy()  # the same vector by id or by text
    for word, vector in zip(unseen, got):
        np.testing.assert_allclose(vector, kv.get_vector(word), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(known, kv.vectors[[VOCAB.index["naïve"], VOCAB.index["cat"]]], rtol=1e-5, atol=1e-6)


def test_subword_lookup_marks_unknown_words_and_pads():
    lookup = SubwordLookup(VOCAB, 3, 6, 50)
    batch = lookup(["cat", "catnip sat"])
    assert batch["input_ids"].tolist() == [[1, 0], [-1, 2]]
    assert batch["attention_mask"].tolist() == [[1, 0], [1, 1]]
    assert batch["ngram_mask"][1, 0].sum() == len(character_ngrams("catnip", 3, 6))
    row = batch["ngram_ids"][1, 0][batch["ngram_mask"][1, 0].bool()].tolist()
    assert row == subword_buckets("catnip", 3, 6, 50)
    with pytest.raises(Exception, match="no word"):
        SubwordLookup(VOCAB, 5, 6, 50)(["a"])  # "<a>" has no 5-gram and "a" is unknown
    config = {"tokenizer": "subwords", "vocabulary": "vocab.json", "minn": 3, "maxn": 6, "bucket": 50}
    rebuilt = build_text_preprocessor(config, lambda name: VOCAB.to_json())
    assert isinstance(rebuilt, SubwordLookup) and torch.equal(rebuilt(["dogs"])["ngram_ids"], lookup(["dogs"])["ngram_ids"])


def test_text_of_several_words_is_the_mean_of_its_word_vectors():
    model = _model()
    encoder = model.encoder().eval()
    lookup = SubwordLookup(VOCAB, 3, 6, 50)
    with torch.no_grad():
        words = encoder(lookup(["cat", "catnip"]))
        text = encoder(lookup(["cat catnip"]))
        by_ids = encoder({"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.tensor([[1, 1]])})
    torch.testing.assert_close(text[0], words.mean(0))
    torch.testing.assert_close(by_ids[0], encoder(torch.tensor([1, 2])).mean(0))


# ----------------------------------------------------------------------------------------------- loss and gradient
def test_fasttext_loss_and_gradient_match_a_loop():
    g = torch.Generator().manual_seed(0)
    n, k, d, rows = 3, 2, 4, [2, 0, 5]
    words = torch.randn(n, d, generator=g)
    grams = [torch.randn(r, d, generator=g) for r in rows]
    pos, neg = torch.randn(n, d, generator=g), torch.randn(n, k, d, generator=g)
    # the loop: h = (z_w + sum_g z_g) / (1 + |G|); -log s(h.v) - sum log s(-h.v_k)
    expected, hiddens = 0.0, []
    for i in range(n):
        h = (words[i] + grams[i].sum(0)) / (1 + rows[i])
        hiddens.append(h)
        expected -= math.log(torch.sigmoid(h @ pos[i]))
        for j in range(k):
            expected -= math.log(torch.sigmoid(-(h @ neg[i, j])))
    for mean_gradient in (False, True):
        w = words.clone().requires_grad_(True)
        sums = torch.stack([gr.sum(0) for gr in grams])
        sums.requires_grad_(True)
        counts = torch.tensor(rows) + 1
        hidden = subword_hidden(w, sums, counts, mean_gradient)
        torch.testing.assert_close(hidden, torch.stack(hiddens))
        loss = fasttext_loss(hidden, pos, neg)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        loss.backward()
        for i in range(n):  # dL/dh by hand: (s(h.v) - 1) v + sum_k s(h.v_k) v_k
            h = hiddens[i]
            grad_h = (torch.sigmoid(h @ pos[i]) - 1) * pos[i] + sum(torch.sigmoid(h @ neg[i, j]) * neg[i, j] for j in range(k))
            scale = 1.0 / (1 + rows[i]) if mean_gradient else 1.0  # fastText: every row gets the full gradient
            torch.testing.assert_close(w.grad[i], grad_h * scale, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(sums.grad[i], grad_h * scale, rtol=1e-5, atol=1e-6)


def test_training_loss_is_the_loss_of_every_real_pair(monkeypatch):
    model = _model()
    batch = {
        "center": torch.tensor([0, 6, 1]),
        "context": torch.tensor([[2, 3], [4, 0], [0, 0]]),
        "context_mask": torch.tensor([[True, True], [True, False], [False, False]]),
    }
    noise = torch.tensor([[5, 7], [1, 2], [3, 3]])
    monkeypatch.setattr(model, "sample_negatives", lambda targets, k=None: (noise, torch.ones_like(noise, dtype=torch.bool)))
    with torch.no_grad():
        model.output.weight.normal_()
        got = model.training_loss([batch]).loss
        vectors = model.encoder()(torch.arange(len(VOCAB)))
    expected, out = 0.0, model.output.weight.detach()
    for (c, t), ns in zip([(0, 2), (0, 3), (6, 4)], noise.tolist()):
        h = vectors[c]
        expected -= math.log(torch.sigmoid(h @ out[t]))
        expected -= sum(math.log(torch.sigmoid(-(h @ out[j]))) for j in ns)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_noise_words_equal_to_the_target_are_redrawn():
    model = _model()
    model.noise = torch.tensor([0.5, 0.5] + [0.0] * (len(VOCAB) - 2))
    ids, keep = model.sample_negatives(torch.zeros(200, dtype=torch.long), 3)
    assert (ids[keep] == 1).all() and keep.float().mean() > 0.9  # redrawn: almost all kept, none is the target


# ----------------------------------------------------------------------------------------------- module
def test_datamodule_subwords_must_match_the_model():
    from reprzoo.datamodules.text.words import WordWindows

    data = WordWindows(corpus="wordnet", max_sentences=300, batch_size=64, subwords={"minn": 3, "maxn": 5, "bucket": 1000})
    model = FastText(vocab_size=data.vocab_size, dim=8, bucket=1000)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(Exception, match="subwords"):
        trainer.fit(model, datamodule=data)
    assert data.preprocessing()["tokenizer"] == "subwords" and data.preprocessing()["maxn"] == 5
    with pytest.raises(ValueError, match="minn"):
        WordWindows(subwords={"minn": 3})


def test_a_checkpoint_loads_into_a_fresh_module():
    model = _model()
    fresh = FastText(vocab_size=len(VOCAB), dim=6, bucket=50, sparse=False)  # index not sized yet
    fresh.load_state_dict(model.state_dict())  # Lightning's resume: strict, the index resized on load
    torch.testing.assert_close(fresh.encoder()(torch.arange(8)), model.encoder()(torch.arange(8)))
    sized = FastText(vocab_size=len(VOCAB), dim=6, bucket=50, sparse=False, num_subwords=model.hparams.num_subwords)
    assert sized.subwords.index.shape == model.subwords.index.shape


def test_trains_and_an_unseen_word_gets_a_vector_after_load(tmp_path, monkeypatch):
    from reprzoo.datamodules.text.words import WordWindows
    from reprzoo.zoo.api import load, push

    torch.manual_seed(0)
    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    subwords = {"minn": 3, "maxn": 6, "bucket": 5000}
    data_args = {"corpus": "wordnet", "max_sentences": 2000, "batch_size": 256, "sample": 1e-4, "subwords": subwords}
    data = WordWindows(**data_args, similarity=("wordsim353",), analogies=False)
    model = FastText(vocab_size=data.vocab_size, dim=16, bucket=5000)
    before = model.subwords.embedding.weight.detach().clone()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert not torch.equal(model.subwords.embedding.weight, before)  # the n-gram rows learn
    assert model.hparams.num_subwords == model.subwords.index.numel() > data.vocab_size

    run = tmp_path / "run"
    run.mkdir()
    hparams = {k: v for k, v in model.hparams.items() if not k.startswith("_")}
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 2},
        "model": {"class_path": "reprzoo.lightning_modules.FastText", "init_args": hparams},
        "data": {"class_path": "reprzoo.datamodules.WordWindows", "init_args": data_args},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(config, default=list))))
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    pushed = push(run, "fasttext-subwords-wordnet.test").config
    assert pushed["preprocessing"]["tokenizer"] == "subwords" and pushed["preprocessing"]["bucket"] == 5000
    loaded = load("fasttext-subwords-wordnet.test")
    unseen = "unseenwordzz"
    assert unseen not in data.vocabulary
    known = data.vocabulary.words[20]
    vectors = loaded.encode([unseen, known, known + "s"])
    assert vectors.shape == (3, 16) and vectors[0].norm() > 0
    model.eval()
    with torch.no_grad():
        expected = model.subwords.embedding.weight[subword_buckets(unseen, 3, 6, 5000)].mean(0)
        torch.testing.assert_close(vectors[0], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(vectors[1], model.embed(torch.tensor([20]))[0], rtol=1e-5, atol=1e-6)
