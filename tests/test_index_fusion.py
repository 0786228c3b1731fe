"""Reciprocal Rank Fusion (reprzoo.index.fusion) against the paper's formula computed independently."""

import random

import pytest

from reprzoo.errors import ReprzooError
from reprzoo.index.fusion import ranked, reciprocal_rank_fusion


def test_rrf_by_hand():
    a = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    b = {"q": {"d3": 0.9, "d4": 0.5, "d1": 0.1}}
    fused = reciprocal_rank_fusion([a, b], k=60)["q"]
    assert fused == pytest.approx({"d1": 1 / 61 + 1 / 63, "d3": 1 / 63 + 1 / 61, "d2": 1 / 62, "d4": 1 / 62})
    assert list(fused)[:2] == ["d1", "d3"]  # equal fused scores: ids ascending


def test_rrf_matches_a_naive_loop_over_random_runs():
    rng = random.Random(0)
    docs = [f"d{i}" for i in range(40)]
    runs = []
    for _ in range(3):
        run = {}
        for q in ("q1", "q2", "q3"):
            chosen = rng.sample(docs, rng.randint(0, 30))
            run[q] = {d: rng.choice([0.0, 0.5, 1.0, rng.random()]) for d in chosen}
        runs.append(run)
    weights = [1.0, 0.5, 2.0]
    fused = reciprocal_rank_fusion(runs, k=10, depth=15, weights=weights)
    for q in ("q1", "q2", "q3"):
        expected = {}
        for run, w in zip(runs, weights):
            # rank = 1 + number of documents strictly ahead (higher score, or equal score and smaller id)
            for d, s in run[q].items():
                r = 1 + sum(1 for e, t in run[q].items() if t > s or (t == s and e < d))
                expected[d] = expected.get(d, 0.0) + w / (10 + r)
        top = sorted(expected.items(), key=lambda x: (-x[1], x[0]))[:15]
        assert list(fused[q]) == [d for d, _ in top]
        assert [fused[q][d] for d, _ in top] == pytest.approx([s for _, s in top])


def test_rrf_refuses_bad_arguments():
    with pytest.raises(ReprzooError, match="at least one run"):
        reciprocal_rank_fusion([])
    with pytest.raises(ReprzooError, match="2 weights for 1 runs"):
        reciprocal_rank_fusion([{"q": {}}], weights=[1, 2])
    assert ranked({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]
