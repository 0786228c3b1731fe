"""The models shipped inside the package: loadable by name with no training and no network, and honest cards.

Parametrised over the shipped hub folder, so a new shipped model is tested without a new test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reprzoo.zoo.api import BUILTIN_DIR, builtin_hub

SHIPPED = builtin_hub().names()
MODEL_CARDS = Path(__file__).resolve().parents[1] / "model_cards"


def test_models_are_shipped():
    assert "simsiam-tinyresnet-digits" in SHIPPED


@pytest.fixture(autouse=True)
def _offline_empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_embeds(name):
    import reprzoo

    assert name in reprzoo.list_models()
    enc = reprzoo.load(name)
    assert not enc.training and enc.source == name
    x = enc.transform(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)).unsqueeze(0)
    assert enc.embed(x).shape == (1, enc.config["architecture"]["embedding_dim"])
    assert (BUILTIN_DIR / name / "revisions" / enc.revision / "model.safetensors").stat().st_size < 4.5e6


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_is_the_rendered_config(name):
    import reprzoo
    from reprzoo.zoo.card import card_metrics, render_card

    enc = reprzoo.load(name)
    card = enc.card
    assert card.text.strip() == render_card(enc.config).text.strip()  # nothing in the card but the config
    assert (MODEL_CARDS / f"{name}.md").read_text() == (BUILTIN_DIR / name / "revisions" / enc.revision / "README.md").read_text()
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {k: v for k, v in card_metrics(enc.metrics).items() if k.startswith(("val/", "test/"))}
    assert enc.config["training"]["recipe"] == f"digits/{enc.config['method']['name'].lower()}"
    assert enc.metrics["val/knn_top1"] > 0.5  # a trained encoder, far above chance (0.1)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_method_restores(name):
    import reprzoo

    module = reprzoo.load_method(name)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(module.eval().embed(x), reprzoo.load(name).embed(x))
    assert type(module).__name__ == reprzoo.load(name).config["method"]["name"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_revision_files_match_commit(name):
    from reprzoo.zoo.repo import sha256_file

    hub = builtin_hub()
    for rev in hub.revisions(name):
        for filename, meta in rev.files.items():
            assert sha256_file(rev.path / filename) == meta["sha256"]
        assert json.loads((rev.path / "config.json").read_text())["weights"]["sha256"] == rev.files["model.safetensors"]["sha256"]
