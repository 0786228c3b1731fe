"""Block-Max Pruning (reprzoo/index/block_max.py): safe mode equals exhaustive dot-product top-k while scoring
fewer blocks; alpha < 1 scores fewer still."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprzoo.index.block_max import BlockMaxIndex

VOCAB = 300


def topical_corpus(seed: int = 0, n: int = 640, topics: int = 20):
    """Sparse non-negative vectors: each document draws ~12 terms from its topic's 15-term slice plus 3 random ones;
    queries use 4 terms of one topic. Returns the documents shuffled, their topics, and the queries."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, topics, n)
    docs = np.zeros((n, VOCAB), dtype=np.float32)
    for i, t in enumerate(topic):
        terms = np.concatenate([t * 15 + rng.choice(15, 12, replace=False), rng.choice(VOCAB, 3)])
        docs[i, terms] = rng.gamma(2.0, 1.0, len(terms))
    queries = np.zeros((12, VOCAB), dtype=np.float32)
    for i in range(12):
        queries[i, (i % topics) * 15 + rng.choice(15, 4, replace=False)] = rng.uniform(0.5, 2.0, 4)
    return docs, topic, queries


def brute_force(docs: np.ndarray, queries: np.ndarray, k: int):
    scores = torch.from_numpy(queries) @ torch.from_numpy(docs).T
    return scores.topk(k, dim=1)


@pytest.mark.parametrize("reorder", [False, True])
def test_safe_mode_equals_exhaustive_top_k(reorder):
    docs, topic, queries = topical_corpus()
    order = np.argsort(topic, kind="stable") if reorder else None
    index = BlockMaxIndex.build(docs, block_size=16, order=order)
    scores, ids, visited = index.search(queries, k=10)
    expected = brute_force(docs, queries, 10)
    np.testing.assert_allclose(scores, expected.values.numpy(), rtol=1e-5)
    assert (ids == expected.indices.numpy()).all()
    assert (visited <= index.num_blocks).all() and visited.min() >= 1
    rows = docs[index.doc_ids]  # block maxima re-derived densely, block by block
    expected_max = np.stack([rows[s : s + 16].max(0) for s in range(0, len(rows), 16)])
    np.testing.assert_array_equal(index.block_max.toarray(), expected_max)


def test_reordered_blocks_are_pruned():
    docs, topic, queries = topical_corpus()
    clustered = BlockMaxIndex.build(docs, block_size=16, order=np.argsort(topic, kind="stable"))
    _, _, visited = clustered.search(queries, k=10)
    assert clustered.num_blocks == 40 and visited.mean() < 0.25 * clustered.num_blocks
    _, _, visited_shuffled = BlockMaxIndex.build(docs, block_size=16).search(queries, k=10)
    assert visited.mean() < 0.5 * visited_shuffled.mean()  # blocks of similar documents have tighter bounds


def test_approximate_mode_visits_fewer_blocks_and_keeps_most_results():
    docs, topic, queries = topical_corpus(seed=1)
    index = BlockMaxIndex.build(docs, block_size=16, order=np.argsort(topic, kind="stable"))
    _, safe_ids, safe_visited = index.search(queries, k=10)
    _, ids, visited = index.search(queries, k=10, alpha=0.5)
    assert (visited <= safe_visited).all() and visited.sum() < safe_visited.sum()
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, safe_ids)])
    assert overlap > 0.7, overlap


def test_small_collection_and_sparse_input():
    import scipy.sparse as sp

    docs, _, queries = topical_corpus(n=7)
    index = BlockMaxIndex.build(sp.csr_matrix(docs), block_size=3)
    scores, ids, visited = index.search(torch.from_numpy(queries[:2]), k=10)
    assert (ids[:, 7:] == -1).all() and np.isinf(scores[:, 7:]).all() and (visited == 3).all()
    expected = brute_force(docs, queries[:2], 7)
    np.testing.assert_allclose(scores[:, :7], expected.values.numpy(), rtol=1e-5)
    for row, full in zip(ids, queries[:2] @ docs.T):
        assert sorted(row[:7].tolist()) == list(range(7))
        assert (np.diff(full[row[:7]]) <= 0).all()


def test_argument_checks():
    docs, _, queries = topical_corpus(n=20)
    with pytest.raises(ValueError, match="block_size"):
        BlockMaxIndex.build(docs, block_size=0)
    with pytest.raises(ValueError, match="permutation"):
        BlockMaxIndex.build(docs, order=np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="non-negative"):
        BlockMaxIndex.build(-docs - 1)
    index = BlockMaxIndex.build(docs)
    with pytest.raises(ValueError, match="alpha"):
        index.search(queries, alpha=0)
    with pytest.raises(ValueError, match="terms"):
        index.search(queries[:, :10])
