"""Index-time token pooling (reprzoo/index/token_pooling.py) against scikit-learn's Ward clustering, and MaxSim
before/after pooling on clustered tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import AgglomerativeClustering

from reprzoo.index.token_pooling import cluster_tokens, pool_documents, pool_tokens
from reprzoo.metrics.retrieval import maxsim_scores


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return {frozenset(np.flatnonzero(a == v)) for v in np.unique(a)} == {frozenset(np.flatnonzero(b == v)) for v in np.unique(b)}


def test_ward_clusters_match_sklearn_agglomerative_clustering():
    g = torch.Generator().manual_seed(0)
    x = unit(torch.randn(23, 8, generator=g, dtype=torch.float64))
    for k in (2, 5, 11):
        ours = cluster_tokens(x, k)
        observations = (1 - x @ x.T).numpy()  # the authors' observations: rows of the cosine-distance matrix
        reference = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(observations)
        assert len(np.unique(ours)) == k and same_partition(ours, reference), k


def test_pooled_vectors_are_renormalised_cluster_means_and_protected_tokens_kept():
    g = torch.Generator().manual_seed(1)
    x = unit(torch.randn(13, 8, generator=g, dtype=torch.float64))
    pooled = pool_tokens(x, pool_factor=3, protected_tokens=1)
    assert pooled.shape == (1 + 12 // 3, 8)
    torch.testing.assert_close(pooled[0], x[0])
    labels = cluster_tokens(x[1:], 4)
    expected = torch.stack([unit(x[1:][torch.as_tensor(labels == c)].mean(0)) for c in range(4)])
    torch.testing.assert_close(pooled[1:], expected)
    raw = 3 * torch.randn(6, 8, generator=g, dtype=torch.float64)  # not unit-norm: plain means
    labels = cluster_tokens(raw, 3)
    torch.testing.assert_close(pool_tokens(raw, 2), torch.stack([raw[torch.as_tensor(labels == c)].mean(0) for c in range(3)]))


def test_padding_ignored_and_output_repadded():
    g = torch.Generator().manual_seed(2)
    docs = unit(torch.randn(3, 10, 8, generator=g))
    docs[1, 6:] = 0
    docs[2, 1:] = 0
    out = pool_documents(docs, pool_factor=2)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out[0], pool_tokens(docs[0], 2))
    torch.testing.assert_close(out[1, :3], pool_tokens(docs[1, :6], 2))
    assert out[1, 3:].abs().sum() == 0
    torch.testing.assert_close(out[2, 0], docs[2, 0])  # one real token: nothing to pool
    assert out[2, 1:].abs().sum() == 0


def test_maxsim_changes_little_on_clustered_tokens():
    g = torch.Generator().manual_seed(0)
    centres = unit(torch.randn(40, 32, generator=g))
    topics = torch.stack([torch.randperm(40, generator=g)[:6] for _ in range(20)])  # 6 topics per document
    docs = unit(centres[topics.repeat_interleave(4, dim=1)] + 0.05 * torch.randn(20, 24, 32, generator=g))
    queries = unit(centres[topics[:, :3]] + 0.2 * torch.randn(20, 3, 32, generator=g))
    pooled = pool_documents(docs, pool_factor=4)
    assert pooled.shape == (20, 6, 32)
    before, after = maxsim_scores(queries, docs), maxsim_scores(queries, pooled)
    assert (after - before).abs().mean() < 0.2 * before.abs().mean()
    assert correlation(before, after) > 0.98
    assert (before.argmax(1) == after.argmax(1)).float().mean() >= 0.9
    subset = docs[:, torch.randperm(24, generator=g)[:6]]  # as few vectors, chosen at random: a worse stand-in
    assert correlation(before, maxsim_scores(queries, subset)) < correlation(before, after) - 0.03


def test_argument_checks():
    with pytest.raises(ValueError, match="pool_factor"):
        pool_tokens(torch.ones(4, 3), pool_factor=0)
    with pytest.raises(ValueError, match=r"\(n, dim\)"):
        pool_tokens(torch.ones(2, 4, 3))
    with pytest.raises(ValueError, match=r"\(n, m, dim\)"):
        pool_documents(torch.ones(4, 3))
    with pytest.raises(ValueError, match="pool_factor"):
        pool_documents(torch.ones(2, 4, 3), pool_factor=0)
