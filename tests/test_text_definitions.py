"""The dictionary-definition methods (SetCSE, the unified reverse dictionary, DefSent+): their losses against
independent computations, argument checks, and a training step of each method on a tiny batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprzoo.datamodules.text.sentences import pad_ids
from reprzoo.lightning_modules.text.defsent_plus import DefSentPlus
from reprzoo.lightning_modules.text.setcse import SetCSE, set_operation_scores, set_similarity
from reprzoo.lightning_modules.text.unified_dictionary import UnifiedDictionary
from reprzoo.losses.definitions import (
    definition_modelling_loss,
    entry_projection_loss,
    inter_set_contrastive_loss,
    isotropy_statistics,
)


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_inter_set_contrastive_loss_matches_a_loop():
    torch.manual_seed(0)
    z = torch.randn(7, 5)
    sets = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # sets 2 and 3 have one sentence: no set-mate, not anchors
    t = 0.1
    x = z.numpy()
    terms = []
    for i in range(len(x)):
        mates = [j for j in range(len(x)) if j != i and sets[j] == sets[i]]
        others = [j for j in range(len(x)) if sets[j] != sets[i]]
        if not mates:
            continue
        pos = sum(math.exp(_cos(x[i], x[j]) / t) for j in mates)
        neg = sum(math.exp(_cos(x[i], x[j]) / t) for j in others)
        terms.append(-math.log(pos / neg))
    got = inter_set_contrastive_loss(z, sets, temperature=t)
    assert got.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_inter_set_contrastive_loss_checks_its_arguments():
    with pytest.raises(ValueError, match="set labels"):
        inter_set_contrastive_loss(torch.randn(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        inter_set_contrastive_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), temperature=0)
    with pytest.raises(ValueError, match="set-mate"):
        inter_set_contrastive_loss(torch.randn(3, 3), torch.arange(3))


def test_inter_set_contrastive_loss_prefers_separated_sets():
    sets = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, 0.1]])
    mixed = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [-1.0, 0.0], [1.0, 0.1]])
    assert inter_set_contrastive_loss(separated, sets) < inter_set_contrastive_loss(mixed, sets)


def test_set_operations_match_a_loop():
    torch.manual_seed(1)
    x, a, b, c = torch.randn(5, 4), torch.randn(3, 4), torch.randn(2, 4), torch.randn(4, 4)
    got = set_operation_scores(x, [a, b], [c])
    for i in range(5):
        sim = [np.mean([_cos(x[i].numpy(), m.numpy()) for m in s]) for s in (a, b, c)]
        assert got[i].item() == pytest.approx(sim[0] + sim[1] - sim[2], rel=1e-5, abs=1e-6)
    torch.testing.assert_close(set_similarity(x, a[:1]), F.cosine_similarity(x, a[:1]))
    with pytest.raises(ValueError, match="at least one set"):
        set_operation_scores(x, [])
    with pytest.raises(ValueError, match="non-empty"):
        set_similarity(x, torch.zeros(0, 4))


def test_definition_modelling_loss_matches_a_loop():
    torch.manual_seed(2)
    logits, targets = torch.randn(2, 4, 6), torch.randint(0, 6, (2, 4))
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    nll = [-torch.log_softmax(logits[i, t], -1)[targets[i, t]].item() for i in range(2) for t in range(4) if mask[i, t]]
    assert definition_modelling_loss(logits, targets, mask).item() == pytest.approx(sum(nll) / len(nll), rel=1e-5)
    with pytest.raises(ValueError, match="no target"):
        definition_modelling_loss(logits, targets, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="logits"):
        definition_modelling_loss(logits[0], targets, mask)


def test_isotropy_statistics_whiten_and_centre():
    torch.manual_seed(3)
    entries = torch.randn(500, 6) @ torch.randn(6, 6) + 3.0  # anisotropic and off-centre
    mean, transform = isotropy_statistics(entries, "isotropic")
    white = ((entries - mean) @ transform).numpy().astype(np.float64)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(6), atol=1e-3)
    np.testing.assert_allclose(mean.numpy(), entries.numpy().mean(0), rtol=1e-5, atol=1e-5)
    mean_q, transform_q = isotropy_statistics(entries, "quasi-isotropic")
    torch.testing.assert_close(transform_q, torch.eye(6))
    assert ((entries - mean_q) @ transform_q).mean(0).abs().max() < 1e-4
    with pytest.raises(ValueError, match="mode"):
        isotropy_statistics(entries, "anisotropic")
    with pytest.raises(ValueError, match="n >= 2"):
        isotropy_statistics(entries[:1])


def test_entry_projection_loss_matches_a_loop_and_masks_unbuilt_entries():
    torch.manual_seed(4)
    definitions, entries = torch.randn(3, 5), torch.randn(6, 5)
    targets = torch.tensor([0, 2, 3])
    valid = torch.tensor([True, False, True, True, False, True])
    terms = []
    for i in range(3):
        logits = [20 * _cos(definitions[i].numpy(), entries[j].numpy()) for j in range(6) if valid[j]]
        target = [j for j in range(6) if valid[j]].index(int(targets[i]))
        terms.append(-(logits[target] - math.log(sum(math.exp(v) for v in logits))))
    got = entry_projection_loss(definitions, entries, targets, scale=20.0, valid=valid)
    assert got.item() == pytest.approx(sum(terms) / 3, rel=1e-5)
    with pytest.raises(ValueError, match="valid row"):
        entry_projection_loss(definitions, entries, torch.tensor([1, 2, 3]), valid=valid)
    with pytest.raises(ValueError, match="rows of"):
        entry_projection_loss(definitions, entries, torch.tensor([0, 1, 9]))


def _batch(n=6, length=7, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return pad_ids([torch.randint(5, vocab, (int(torch.randint(3, length, (1,), generator=g)),), generator=g) for _ in range(n)])


TINY = {"vocab_size": 50, "backbone": "bert_tiny", "backbone_kwargs": {"pooling": "mean", "max_length": 16}}


def test_setcse_training_step_reaches_the_encoder():
    model = SetCSE(**TINY)
    out = model.training_loss([_batch(seed=0), _batch(seed=1)])
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.backbone.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_defsent_plus_builds_its_entry_table_progressively():
    model = DefSentPlus(**TINY)
    out = model.training_loss([_batch(seed=0), _batch(seed=1)], indices=torch.arange(10, 16))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.built.sum() == 6 and bool(model.built[10:16].all()) and not bool(model.built[:10].any())
    model.training_loss([_batch(seed=2), _batch(seed=3)], indices=torch.arange(0, 6))
    assert model.built.sum() == 12
    table = model.entries[model.built]  # the map makes the table's entries isotropic
    white = model.projection(table).double()
    np.testing.assert_allclose(white.mean(0).numpy(), 0, atol=1e-4)
    x = _batch(seed=4)
    model.eval()
    torch.testing.assert_close(model.embed(x), model.projection(model.backbone(x)))
    # a stage's rebuild: every entry re-embedded by the encoder as it is now, the map refitted on the whole table
    batches = [(_batch(n=24, seed=5), torch.arange(0, 24)), (_batch(n=24, seed=6), torch.arange(24, 48))]
    model.train()
    model.build_entries(batches)
    assert model.built.sum() == 48 and model.training  # rebuilt in eval mode, the mode restored
    model.eval()
    with torch.no_grad():
        expected = torch.cat([model.backbone(b) for b, _ in batches])
    torch.testing.assert_close(model.entries[:48], expected)
    mean, transform = isotropy_statistics(model.entries[model.built], "isotropic")
    torch.testing.assert_close(model.projection.mean, mean)
    torch.testing.assert_close(model.projection.transform, transform)


def test_unified_dictionary_trains_every_part_and_embeds_in_the_shared_space():
    model = UnifiedDictionary(**TINY, decoder_hidden=32)
    definition, word = _batch(seed=0), _batch(n=6, length=4, seed=1)
    out = model.training_loss([definition, word])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for module in (model.backbone, model.shared, model.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    model.eval()
    torch.testing.assert_close(model.embed(definition), model.shared(model.backbone(definition)))
    assert model.embedding_dim == model.feature_dim
