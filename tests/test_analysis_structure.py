"""Visual-token statistics, slot DCI and ideal words against scipy / numpy re-derivations and the papers' properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy, linregress

from reprzoo.metrics.analysis.structure import (
    dci_scores,
    huffman_code_lengths,
    ideal_words,
    slot_dci,
    visual_token_statistics,
)


def test_visual_token_statistics_match_scipy():
    g = np.random.default_rng(0)
    tokens = torch.as_tensor(g.integers(0, 50, size=(20, 16)) * g.integers(0, 2, size=(20, 16)))
    stats = visual_token_statistics(tokens, vocab_size=64)
    counts = np.bincount(tokens.reshape(-1).numpy())
    counts = np.sort(counts[counts > 0])[::-1]
    assert stats["entropy_bits"] == pytest.approx(entropy(counts, base=2))
    assert stats["perplexity"] == pytest.approx(2 ** entropy(counts, base=2))
    fit = linregress(np.log(np.arange(1, len(counts) + 1)), np.log(counts))
    assert stats["zipf_exponent"] == pytest.approx(-fit.slope)
    assert stats["codebook_usage"] == len(counts) / 64
    seen, shares = set(), []
    for row in tokens.tolist():
        if seen:
            shares.append(len(set(row) - seen) / len(set(row)))
        seen |= set(row)
    assert stats["innovation_rate"] == pytest.approx(np.mean(shares))
    assert stats["types_seen"][-1] == len(counts)
    # Huffman is optimal: within one bit of the entropy, and equal to it for dyadic probabilities
    assert stats["entropy_bits"] <= stats["huffman_bits_per_token"] < stats["entropy_bits"] + 1
    assert huffman_code_lengths(np.array([4, 2, 1, 1])).tolist() == [1, 2, 3, 3]


def test_zipf_exponent_and_entropy_of_known_laws():
    ranks = np.arange(1, 101)
    for s in (0.8, 1.0, 1.5):
        counts = np.round(1e5 * ranks**-s).astype(int)
        sequence = torch.as_tensor(np.repeat(ranks - 1, counts))
        assert visual_token_statistics([sequence], 100)["zipf_exponent"] == pytest.approx(s, abs=0.01)
    ranks = np.arange(1, 201)
    g = torch.Generator().manual_seed(0)
    p = torch.tensor(ranks, dtype=torch.double) ** -1.2
    sampled = torch.multinomial(p / p.sum(), 200_000, replacement=True, generator=g)
    assert visual_token_statistics(sampled.reshape(100, -1), 200)["zipf_exponent"] == pytest.approx(1.2, abs=0.05)
    uniform = visual_token_statistics(torch.arange(256).repeat(8).reshape(8, 256), 256)
    assert uniform["entropy_bits"] == pytest.approx(8.0) and uniform["compression_rate"] == pytest.approx(1.0)
    assert uniform["innovation_rate"] == 0.0 and uniform["types_seen"] == [256] * 8
    with pytest.raises(ValueError, match="token ids"):
        visual_token_statistics(torch.tensor([[0, 5]]), 4)


def test_dci_scores_against_a_direct_entropy_computation():
    r = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.2, 0.6], [0.0, 0.0, 0.3], [0.5, 0.5, 0.5]])
    rn = r.numpy()
    d = sum((1 - entropy(row, base=3)) * row.sum() / rn.sum() for row in rn)
    c = sum((1 - entropy(col, base=4)) * col.sum() / rn.sum() for col in rn.T)
    assert dci_scores(r) == pytest.approx({"disentanglement": d, "completeness": c})
    permutation = torch.eye(4)[[2, 0, 3, 1]]
    assert dci_scores(permutation) == pytest.approx({"disentanglement": 1.0, "completeness": 1.0})
    assert dci_scores(torch.ones(4, 3)) == pytest.approx({"disentanglement": 0.0, "completeness": 0.0}, abs=1e-12)


def slot_scene(n: int = 300, slots: int = 4, objects: int = 3, properties: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    props = torch.randn(n, objects, properties, generator=g, dtype=torch.double)
    padded = torch.cat([props, torch.zeros(n, slots - objects, properties, dtype=torch.double)], dim=1)
    permutation = torch.stack([torch.randperm(slots, generator=g) for _ in range(n)])
    shuffled = padded[torch.arange(n)[:, None], permutation]  # slot j holds object permutation[j]
    noise = 0.01 * torch.randn(n, slots, properties, generator=g, dtype=torch.double)
    return props, shuffled + noise, permutation.argsort(dim=1)[:, :objects]


def test_slot_dci_is_one_for_a_disentangled_model_with_permuted_slots():
    props, slots, truth = slot_scene()
    result = slot_dci(slots, props)
    assert torch.equal(result["assignment"], truth)
    for key in ("object_disentanglement", "object_completeness", "property_disentanglement", "property_completeness"):
        assert result[key] > 0.95, key
    assert result["informativeness"] > 0.95


def test_slot_dci_falls_for_entangled_properties_and_objects():
    props, slots, _ = slot_scene()
    rotation = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.double))[0]
    rotated = slot_dci(slots @ rotation, props)
    assert rotated["object_disentanglement"] > 0.9 and rotated["property_disentanglement"] < 0.7
    mixing = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, -1.0, 1.0, 0.0], [1.0, 1.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    mixed = slot_dci(torch.einsum("kj,njd->nkd", mixing.double(), slots), props)  # every slot holds three objects
    assert mixed["object_disentanglement"] < 0.7 and mixed["object_completeness"] < 0.7


def test_slot_dci_with_random_forest_importance():
    props, slots, truth = slot_scene(n=100, slots=3, objects=2, properties=2)
    result = slot_dci(slots, props, regressor="random_forest")
    assert torch.equal(result["assignment"], truth)
    assert min(result["object_disentanglement"], result["property_disentanglement"]) > 0.9


def factor_grid(additive: float, interaction: float, samples: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    attribute_words, object_words = torch.randn(4, 16, generator=g), torch.randn(5, 16, generator=g)
    cell_words = torch.randn(4, 5, 16, generator=g)
    a, o = torch.arange(4).repeat_interleave(5 * samples), torch.arange(5).repeat_interleave(samples).repeat(4)
    x = (
        additive * (attribute_words[a] + object_words[o])
        + interaction * cell_words[a, o]
        + 0.05 * torch.randn(len(a), 16, generator=g)
    )
    return x, a, o


def test_ideal_words_match_a_two_way_least_squares_fit():
    x, a, o = factor_grid(additive=1.0, interaction=1.0, samples=4)
    result = ideal_words(x, a, o, test_fraction=0.25)
    # with one held-out sample per cell, the training cell means are those of the 3 remaining samples
    from sklearn.model_selection import train_test_split

    train, _ = train_test_split(np.arange(len(a)), test_size=0.25, random_state=0, stratify=(a * 5 + o).numpy())
    means = np.stack([[x[train][(a[train] == i) & (o[train] == j)].double().mean(0).numpy() for j in range(5)] for i in range(4)])
    design = np.concatenate([np.ones((20, 1)), np.kron(np.eye(4), np.ones((5, 1))), np.kron(np.ones((4, 1)), np.eye(5))], 1)
    fitted = design @ np.linalg.lstsq(design, means.reshape(20, -1), rcond=None)[0]
    expected = ((means.reshape(20, -1) - fitted) ** 2).sum() / ((means - means.mean((0, 1))) ** 2).sum()
    assert result["residual_share"] == pytest.approx(expected)


def test_ideal_words_are_exact_for_an_additive_embedding():
    additive = ideal_words(*factor_grid(additive=1.0, interaction=0.0))
    assert additive["residual_share"] < 0.01 and additive["decomposed_accuracy"] == 1.0
    entangled = ideal_words(*factor_grid(additive=0.0, interaction=1.0))  # one word per pair
    # random pair words leave (A-1)(O-1)/(AO-1) = 12/19 of the variance to the residual
    assert entangled["residual_share"] == pytest.approx(12 / 19, abs=0.1)
    assert entangled["decomposed_accuracy"] < entangled["cell_accuracy"] - 0.2
    with pytest.raises(ValueError, match="at least two samples"):
        ideal_words(torch.randn(3, 2), torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]))
