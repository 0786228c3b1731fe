"""IVF with attribute filters (reprzoo/index/filtered_ivf.py): every strategy equals brute-force filtered search at
nprobe = nlist, and the strategy follows the filter's selectivity."""

from __future__ import annotations

import numpy as np
import pytest

from reprzoo.index.filtered_ivf import FilteredIVF


def data(seed: int = 0, n: int = 2000, dim: int = 16):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    attributes = {"section": rng.integers(0, 10, n), "year": rng.integers(0, 50, n), "lang": rng.integers(0, 2, n)}
    queries = rng.standard_normal((15, dim)).astype(np.float32)
    return vectors, attributes, queries


def passing(attributes, filters) -> np.ndarray:
    mask = np.ones(len(next(iter(attributes.values()))), dtype=bool)
    for name, allowed in filters.items():
        mask &= np.isin(attributes[name], list(allowed))
    return mask


def brute_force(vectors, queries, mask, k, metric="ip"):
    inside = np.flatnonzero(mask)
    sims = queries @ vectors[inside].T if metric == "ip" else -((queries[:, None] - vectors[inside][None]) ** 2).sum(-1)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, 1), inside[order]


FILTERS = [{"section": [3]}, {"section": [1, 2, 5], "lang": [1]}, {"year": [7], "section": [0, 4]}, {"lang": [0, 1]}]


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("strategy", ["brute", "pre", "post"])
def test_every_strategy_equals_brute_force_at_full_probe(strategy, metric):
    vectors, attributes, queries = data()
    index = FilteredIVF(vectors, attributes, nlist=16, metric=metric)
    for filters in FILTERS:
        scores, ids, used, distances = index.search(queries, k=10, filters=filters, nprobe=16, strategy=strategy)
        # pre-filtering computes distances only for passing items, post-filtering for every probed item
        assert (distances == (len(vectors) if strategy == "post" else passing(attributes, filters).sum())).all()
        assert used == strategy
        expected_scores, expected_ids = brute_force(vectors, queries, passing(attributes, filters), 10, metric)
        np.testing.assert_allclose(scores[:, : expected_ids.shape[1]], expected_scores, rtol=1e-4, atol=1e-4)
        assert (ids[:, : expected_ids.shape[1]] == expected_ids).all(), filters
        assert passing(attributes, filters)[ids[ids >= 0]].all()


def test_bitmaps_and_selectivity_switch():
    vectors, attributes, queries = data()
    index = FilteredIVF(vectors, attributes, nlist=16)
    for filters in FILTERS:
        mask = np.unpackbits(index.filter_mask(filters), count=len(vectors)).astype(bool)
        assert (mask == passing(attributes, filters)[index.ids]).all()
    assert index.estimate_selectivity({"lang": [0, 1]}) == 1.0
    assert index.estimate_selectivity({"section": [3]}) == pytest.approx(passing(attributes, {"section": [3]}).mean())
    rare, middle, broad = {"year": [7], "section": [0]}, {"section": [1, 2]}, {"section": list(range(9))}
    assert index.estimate_selectivity(rare) < 0.01 < index.estimate_selectivity(middle) < 0.5 < index.estimate_selectivity(broad)
    assert [index.search(queries, 5, f)[2] for f in (rare, middle, broad)] == ["brute", "pre", "post"]


def test_partial_probe_returns_only_passing_items_and_good_recall():
    vectors, attributes, queries = data(seed=1)
    index = FilteredIVF(vectors, attributes, nlist=16)
    filters = {"section": [1, 2, 5]}
    _, ids, used, _ = index.search(queries, k=10, filters=filters, nprobe=6)
    _, expected = brute_force(vectors, queries, passing(attributes, filters), 10)
    assert used == "pre" and passing(attributes, filters)[ids].all()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, expected)])
    assert 0.6 < recall, recall


def test_argument_checks():
    vectors, attributes, queries = data(n=100)
    with pytest.raises(ValueError, match="nlist"):
        FilteredIVF(vectors, attributes, nlist=0)
    with pytest.raises(ValueError, match="attribute"):
        FilteredIVF(vectors, {"x": np.arange(99)}, nlist=4)
    index = FilteredIVF(vectors, attributes, nlist=4)
    with pytest.raises(ValueError, match="unknown attribute"):
        index.search(queries, filters={"colour": [1]})
    with pytest.raises(ValueError, match="strategy"):
        index.search(queries, strategy="later")
