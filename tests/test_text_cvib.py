"""CVIB: its two losses against independent computations, the VIB masks, the polarity datamodule, and (with
PolaritySentences exported from reprzoo.datamodules for the push) the registry's smoke + hub round trip."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.datamodules.text.polarity import PolaritySentences, polarity_sentences
from reprzoo.lightning_modules.metric_supervised.cvib import CVIB, VIBMask
from reprzoo.losses.cvib import self_pruning_contrastive_loss, vib_kl


def test_vib_kl_matches_a_loop():
    torch.manual_seed(0)
    mu, log_var = torch.randn(6), torch.randn(6)
    expected = sum(0.5 * 7 * math.log(1 + m**2 / (math.exp(v) + 1e-8)) for m, v in zip(mu.tolist(), log_var.tolist()))
    assert math.isclose(vib_kl(mu, log_var, length=7).item(), expected, rel_tol=1e-5)
    with pytest.raises(ValueError, match="matching"):
        vib_kl(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="length"):
        vib_kl(torch.zeros(3), torch.zeros(3), length=0)


def test_self_pruning_contrastive_loss_matches_a_loop():
    torch.manual_seed(0)
    pruned, original = torch.randn(5, 8), torch.randn(5, 8)
    total = 0.0
    for i in range(5):
        sims = [torch.cosine_similarity(pruned[i], original[j], dim=0).item() / 0.1 for j in range(5)]
        total += -sims[i] + math.log(sum(math.exp(s) for s in sims))
    assert math.isclose(self_pruning_contrastive_loss(pruned, original, 0.1).item(), total / 5, rel_tol=1e-5)
    with pytest.raises(ValueError, match="matching"):
        self_pruning_contrastive_loss(pruned, original[:4])
    with pytest.raises(ValueError, match="temperature"):
        self_pruning_contrastive_loss(pruned, original, 0.0)


def test_vib_mask_samples_in_training_and_prunes_in_evaluation():
    torch.manual_seed(0)
    mask = VIBMask(4, init_mag=9.0)
    with torch.no_grad():
        mask.mu.copy_(torch.tensor([1.0, 0.5, 0.01, 2.0]))
        mask.log_var.copy_(torch.tensor([-9.0, 0.0, 0.0, -9.0]))  # log alpha: < 0, > 0, > 0, < 0
    x = torch.ones(3, 5, 4)
    assert torch.equal(mask.keep(), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    mask.eval()
    torch.testing.assert_close(mask(x), torch.tensor([1.0, 0.0, 0.0, 2.0]).expand(3, 5, 4))
    mask.train()
    sampled = mask(x)
    assert torch.equal(sampled[:, 0], sampled[:, 1])  # one mask per example, shared by its positions
    assert not torch.equal(sampled[0], sampled[1])  # sampled per example


def test_polarity_sentences_split_and_labels():
    texts, labels, names = polarity_sentences()
    assert len(texts) == 200 and sum(labels) == 100 and names == ["neg", "pos"]
    assert texts[0] == "simplistic , silly and tedious ."
    data = PolaritySentences(tokenizer="wordlevel", vocab_size=4000, batch_size=16)
    data.setup()
    assert data.num_classes == 2 and len(data._train) + len(data._test) == 200
    assert 0.6 < len(data._train) / 200 < 0.8
    assert len(data.val_dataloader()) == 2  # [labelled bank, queries]
    again = PolaritySentences(tokenizer="wordlevel", vocab_size=4000)
    again.setup()
    assert again._test.labels == data._test.labels  # the split is seeded


def test_cvib_trains_both_networks_and_exports_the_pruned_one():
    torch.manual_seed(0)
    data = PolaritySentences(tokenizer="wordlevel", vocab_size=4000, batch_size=16)
    data.setup()
    model = CVIB(vocab_size=data.vocab_size, num_classes=2, kl_weight=1e-3)
    assert model.encoder() is model.pruned
    torch.testing.assert_close(model.pruned.encoder.state_dict(), model.backbone.state_dict())  # same start
    views, labels, _ = next(iter(data.train_dataloader()))
    model.training_loss(views, labels).loss.backward()
    assert model.backbone.model.embeddings.word_embeddings.weight.grad is not None
    assert model.pruned.masks[0].mu.grad is not None and model.pruned.masks[0].log_var.grad is not None
    groups = {g["name"]: g for g in model.param_groups()}
    assert groups["vib"]["lr"] == 5e-3 and all(n.startswith("pruned.masks.") for n, _ in groups["vib"]["params"])
    with pytest.raises(ValueError, match="labelled"):
        model.training_loss(views, torch.full_like(labels, -1))
    with pytest.raises(ValueError, match="num_classes"):
        CVIB(vocab_size=10)


def test_smoke_and_hub_round_trip_through_the_registry_tests(tiny_trainer_kwargs, tmp_path, monkeypatch):
    """tests/test_methods.py's smoke + round trip, with PolaritySentences exported from reprzoo.datamodules (push
    accepts only the datamodules exported there)."""
    import reprzoo.datamodules
    from tests.test_methods import test_trains_a_few_steps_and_round_trips_through_the_hub as round_trip

    monkeypatch.setattr(reprzoo.datamodules, "PolaritySentences", PolaritySentences, raising=False)
    round_trip("CVIB", tiny_trainer_kwargs, tmp_path, monkeypatch)
