"""A text model pushed by reprzoo is used from other libraries and from the command line: a BERT sentence encoder
through ``SentenceTransformer(path)`` (same embeddings as ``reprzoo.load(name).encode``), word vectors through
gensim's ``load_word2vec_format``, and strings through ``reprzoo embed --text/--file``; bad text input fails in one
line."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from reprzoo.errors import ReprzooError
from test_hub import hub_env  # noqa: F401  (the fake Hugging Face Hub, a fixture)


def _fit_and_push(tmp_path, model, data, name: str, tiny_trainer_kwargs):
    from reprzoo.zoo.api import push

    L.seed_everything(0)
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    hparams = {k: v for k, v in model.hparams.items() if not k.startswith("_")}
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1},
        "model": {"class_path": f"reprzoo.lightning_modules.{type(model).__name__}", "init_args": hparams},
        "data": {"class_path": f"reprzoo.datamodules.{type(data).__name__}", "init_args": data.init_args},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(config, default=list))))
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    return push(run, name)


@pytest.fixture
def sentence_model(tmp_path, monkeypatch, tiny_trainer_kwargs):
    from reprzoo.datamodules import TextPairs
    from reprzoo.lightning_modules import MNRL

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    init = {"max_pairs": 400, "vocab_size": 600, "batch_size": 16, "max_length": 32}
    data = TextPairs(**init)
    data.init_args = init
    model = MNRL(vocab_size=data.vocab_size, backbone="bert_tiny", backbone_kwargs={"pooling": "mean", "max_length": 32})
    _fit_and_push(tmp_path, model, data, "mnrl-berttiny-wordnet.interop", tiny_trainer_kwargs)
    return "mnrl-berttiny-wordnet.interop"


TEXTS = ["a domesticated carnivorous mammal", "the act of moving quickly", "bank"]


def test_a_pushed_sentence_encoder_loads_in_sentence_transformers(sentence_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    import reprzoo

    encoder = reprzoo.load(sentence_model)
    ours = encoder.encode(TEXTS)
    folder = encoder.save_sentence_transformers(tmp_path / "st")
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(theirs.cpu(), ours, rtol=1e-4, atol=1e-5)


def test_the_pushed_repository_itself_is_a_sentence_transformers_folder(sentence_model):
    """No export step: ``SentenceTransformer(path)`` on the pushed revision's folder embeds as ``load`` does, its
    files are recorded in commit.json like the weights, and the card says how to use it."""
    from sentence_transformers import SentenceTransformer

    import reprzoo
    from reprzoo.zoo.api import resolve

    encoder = reprzoo.load(sentence_model)
    folder = encoder.folder
    assert folder == resolve(sentence_model).folder
    files = json.loads((folder / "commit.json").read_text())["files"]
    assert {"modules.json", "0_Transformer/model.safetensors", "0_Transformer/tokenizer.json", "1_Pooling/config.json"} <= set(
        files
    )
    assert set(encoder.config["interop"]["files"]) <= set(files)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(theirs.cpu(), encoder.encode(TEXTS), rtol=1e-4, atol=1e-5)
    card = str(encoder.card)
    assert "SentenceTransformer(path)" in card and "encoder.encode(" in card and "encoder.transform(image)" not in card


def test_a_tampered_sentence_transformers_file_is_refused(sentence_model):
    import reprzoo
    from reprzoo.zoo.api import resolve
    from reprzoo.zoo.repo import IntegrityError

    weights = resolve(sentence_model).folder / "0_Transformer" / "model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(IntegrityError, match="0_Transformer/model.safetensors.*modified or corrupted"):
        reprzoo.load(sentence_model)


def test_a_text_model_from_the_hugging_face_hub_loads_in_sentence_transformers(sentence_model, tmp_path, hub_env):  # noqa: F811
    """Pushed to a (fake, local) Hugging Face Hub and downloaded again: the snapshot holds the sentence-transformers
    module folders too."""
    from sentence_transformers import SentenceTransformer

    import reprzoo
    from reprzoo.zoo.api import resolve

    reprzoo.zoo.push(tmp_path / "run", "mnrl-berttiny-wordnet.hf", to="hf://reprzoo-test/mnrl-tiny")
    encoder = reprzoo.load("hf://reprzoo-test/mnrl-tiny")
    folder = resolve("hf://reprzoo-test/mnrl-tiny").folder
    assert (folder / "0_Transformer" / "config.json").is_file()
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(theirs.cpu(), encoder.encode(TEXTS), rtol=1e-4, atol=1e-5)


def test_text_longer_than_the_model_is_truncated_and_said_once(sentence_model):
    import reprzoo

    encoder = reprzoo.load(sentence_model)
    long = " ".join(["mammal"] * 200)
    with pytest.warns(UserWarning, match="truncated"):
        first = encoder.encode([long])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per model
        again = encoder.encode([long, long + " mammal"])
    torch.testing.assert_close(again[0], first[0])
    torch.testing.assert_close(again[1], first[0])  # the words past the limit are not seen


def test_bad_text_input_is_one_clear_line(sentence_model, tmp_path, capsys):
    import reprzoo
    from reprzoo.cli.main import main

    encoder = reprzoo.load(sentence_model)
    with pytest.raises(ReprzooError, match="empty"):
        encoder.encode([""])
    with pytest.raises(ReprzooError, match="not a string"):
        encoder.encode([3])
    unknown = encoder.encode(["\u2603\u2603 zzqx"])  # unknown tokens map to [UNK]: a vector, not an error
    assert unknown.shape == (1, encoder.dim) and torch.isfinite(unknown).all()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    assert main(["embed", sentence_model, "--file", str(bad)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    good = tmp_path / "lines.txt"
    good.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "e.npy"
    assert main(["embed", sentence_model, "--file", str(good), "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), encoder.encode(TEXTS).numpy(), rtol=1e-5, atol=1e-6)
    assert main(["embed", sentence_model, "--text", "a dog", "--text", "a cat"]) == 0
    assert "'a dog'" in capsys.readouterr().out


def test_a_tokenizer_missing_from_a_repo_is_one_line(sentence_model):
    import reprzoo
    from reprzoo.zoo.api import home_hub

    folder = home_hub().find_revision(sentence_model, verify=False)
    (folder / "tokenizer.json").chmod(0o644)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ReprzooError, match="tokenizer.json"):
        reprzoo.load(sentence_model).encode(TEXTS)


def test_word_vectors_round_trip_through_gensim(tmp_path, monkeypatch, tiny_trainer_kwargs):
    from gensim.models import KeyedVectors

    import reprzoo
    from reprzoo.datamodules import WordWindows
    from reprzoo.lightning_modules import SkipGramNegativeSampling

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    init = {"corpus": "lee", "batch_size": 256}
    data = WordWindows(**init)
    data.init_args = init
    model = SkipGramNegativeSampling(vocab_size=data.vocab_size, dim=16)
    _fit_and_push(tmp_path, model, data, "sgns-table-lee.interop", tiny_trainer_kwargs)
    encoder = reprzoo.load("sgns-table-lee.interop")
    kv = KeyedVectors.load_word2vec_format(str(encoder.save_word2vec_format(tmp_path / "vectors.txt")))
    assert len(kv.index_to_key) == data.vocab_size
    ours = encoder.encode(["government", "minister"])
    np.testing.assert_allclose(kv["government"], ours[0].numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ReprzooError, match="is in the vocabulary of"):
        encoder.encode(["zzqxv"])


@pytest.mark.parametrize(
    "name",
    [
        "../x.json",
        "0_Transformer/../../x.json",
        "a/b/c.json",
        "/etc/x.json",
        "0_Transformer/.x.json",
        "config.json",
        "x.py",
        "0_T\\x.json",
    ],
)
def test_an_interop_file_name_from_a_hub_cannot_steer_a_path(name):
    from reprzoo.zoo.repo import IntegrityError, check_interop_name, interop_files

    with pytest.raises(ReprzooError, match="refusing interop file name"):
        check_interop_name(name)
    with pytest.raises(ReprzooError):
        interop_files({"interop": {"files": {name: {"sha256": "0" * 64}}}})
    assert check_interop_name("0_Transformer/model.safetensors") and check_interop_name("modules.json")
    with pytest.raises(IntegrityError, match="both as preprocessing and as interop"):
        interop_files(
            {
                "preprocessing": {"files": {"tokenizer.json": {"sha256": "0" * 64}}},
                "interop": {"files": {"tokenizer.json": {"sha256": "0" * 64}}},
            }
        )


def test_exported_tokenizer_truncates_as_the_datamodule_does():
    """What is exported is what was measured: a text longer than ``max_length`` gets the same ids from the
    exported preprocessor (``reprzoo.load(...).tokenizer``) as from the datamodule that trained and evaluated the
    model, final ``[SEP]`` kept, and a short one is untouched."""
    from reprzoo.datamodules.text.preprocess import TokenizerPreprocessor
    from reprzoo.datamodules.text.sentences import TextPairs

    data = TextPairs(source="debian_descriptions", max_pairs=300, vocab_size=500, max_length=16)
    tokenizer = data.fit_tokenizer()
    exported = TokenizerPreprocessor.from_bytes(tokenizer.to_str().encode(), max_length=16)
    texts = [" ".join(p[1] for p in data.pairs()[:3]), "a short text"]
    assert len(tokenizer.encode(texts[0]).ids) > 16
    batch = exported(texts)
    for row, expected in enumerate(data.encode(texts)):
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :n].tolist() == expected.tolist()
    assert batch["input_ids"][0, 15].item() == tokenizer.token_to_id("[SEP]")
