"""Window-filtered search (reprzoo/index/window_filters.py): exact node indexes equal brute-force filtered search
and visit O(log n) nodes; HNSW node indexes keep high recall."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reprzoo.index.window_filters import WindowSearchTree


def data(seed: int = 0, n: int = 3000, dim: int = 16, queries: int = 25):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    labels = rng.integers(0, 1000, n)  # repeated labels on purpose
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    lo = rng.integers(0, 900, queries)
    windows = np.stack([lo, lo + rng.integers(5, 400, queries)], axis=1)
    return vectors, labels, q, windows


def brute_force(vectors, labels, queries, windows, k, metric="ip"):
    out = []
    for query, (lo, hi) in zip(queries, windows):
        inside = np.flatnonzero((labels >= lo) & (labels <= hi))
        sims = vectors[inside] @ query if metric == "ip" else -((vectors[inside] - query) ** 2).sum(1)
        top = np.argsort(-sims, kind="stable")[:k]
        out.append((sims[top], inside[top]))
    return out


@pytest.mark.parametrize("metric,branching", [("ip", 2), ("l2", 4)])
def test_exact_nodes_equal_brute_force_filtered_search(metric, branching):
    vectors, labels, queries, windows = data()
    tree = WindowSearchTree(vectors, labels, branching=branching, leaf_size=32, brute_force_below=50, metric=metric)
    scores, ids, visited = tree.search(queries, windows, k=10)
    for i, (sims, expected) in enumerate(brute_force(vectors, labels, queries, windows, 10, metric)):
        np.testing.assert_allclose(scores[i, : len(sims)], sims, rtol=1e-4, atol=1e-4)
        assert set(ids[i, : len(sims)].tolist()) == set(expected.tolist())
        lo, hi = windows[i]
        assert ((labels[ids[i, : len(sims)]] >= lo) & (labels[ids[i, : len(sims)]] <= hi)).all()
    leaves = math.ceil(len(vectors) / 32)
    bound = 2 * (branching - 1) * math.ceil(math.log(leaves, branching)) + 2  # canonical nodes + two ragged leaves
    assert 1 <= visited.min() and visited.max() <= bound, (visited, bound)
    spanned = np.array([((labels >= lo) & (labels <= hi)).sum() / 32 for lo, hi in windows])  # leaves a window covers
    wide = spanned > 25
    assert wide.sum() >= 5 and (visited[wide] < spanned[wide] / 2).all(), (visited[wide], spanned[wide])


def test_short_or_empty_windows_and_padding():
    vectors, labels, queries, _ = data(n=500)
    tree = WindowSearchTree(vectors, labels, leaf_size=16, brute_force_below=40)
    windows = np.array([[2000, 3000], [labels[0], labels[0]]] + [[0, 999]] * (len(queries) - 2))
    scores, ids, visited = tree.search(queries, windows, k=5)
    assert (ids[0] == -1).all() and np.isinf(scores[0]).all() and visited[0] == 0
    same = np.flatnonzero(labels == labels[0])
    assert set(ids[1][ids[1] >= 0].tolist()) <= set(same.tolist()) and (ids[1] >= 0).sum() == min(5, len(same))
    full = brute_force(vectors, labels, queries[2:], windows[2:], 5)
    assert all(set(ids[2 + i].tolist()) == set(e.tolist()) for i, (_, e) in enumerate(full))


def test_hnsw_nodes_recall():
    vectors, labels, queries, windows = data(seed=1)
    tree = WindowSearchTree(
        vectors, labels, leaf_size=64, brute_force_below=100, node_index="hnsw", min_index_size=128, ef_search=64
    )
    _, ids, _ = tree.search(queries, windows, k=10)
    recall = np.mean(
        [
            len(set(ids[i].tolist()) & set(e.tolist())) / len(e)
            for i, (_, e) in enumerate(brute_force(vectors, labels, queries, windows, 10))
        ]
    )
    assert recall > 0.9, recall


def test_argument_checks():
    vectors, labels, queries, windows = data(n=100)
    with pytest.raises(ValueError, match="branching"):
        WindowSearchTree(vectors, labels, branching=1)
    with pytest.raises(ValueError, match="labels"):
        WindowSearchTree(vectors, labels[:10])
    with pytest.raises(ValueError, match="node_index"):
        WindowSearchTree(vectors, labels, node_index="ivf")
    tree = WindowSearchTree(vectors, labels)
    with pytest.raises(ValueError, match="windows"):
        tree.search(queries, windows[:3])
    with pytest.raises(ValueError, match="k must"):
        tree.search(queries, windows, k=0)
