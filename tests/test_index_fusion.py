"""Reciprocal Rank Fusion (reprzoo.index.fusion) against the paper's formula computed independently."""

import random

import pytest

from reprzoo.errors import ReprzooError
from reprzoo.index.fusion import normalized_score_fusion, ranked, reciprocal_rank_fusion


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


def test_normalized_score_fusion_by_hand_and_against_numpy():
    import numpy as np

    a = {"q": {"d1": 10.0, "d2": 6.0, "d3": 2.0}, "only": {"x": 5.0}}
    b = {"q": {"d3": 0.9, "d4": 0.5, "d1": 0.1}}
    fused = normalized_score_fusion([a, b], weights=[1.0, 2.0])
    # a: d1 1, d2 0.5, d3 0; b: d3 1, d4 0.5, d1 0
    assert fused["q"] == pytest.approx({"d1": 1.0, "d2": 0.5, "d3": 2.0, "d4": 1.0})
    assert list(fused["q"]) == ["d3", "d1", "d4", "d2"]
    assert fused["only"] == {"x": 1.0}  # one document: normalised to 1, not 0
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(30)]
    runs = [{"q": {d: float(v) for d, v in zip(docs, rng.normal(size=30)) if rng.random() < 0.7}} for _ in range(2)]
    matrix = np.zeros((2, 30))
    for r, run in enumerate(runs):
        v = np.array([run["q"].get(d, np.nan) for d in docs])
        matrix[r] = np.nan_to_num((v - np.nanmin(v)) / (np.nanmax(v) - np.nanmin(v)), nan=0.0)
    expected = 0.3 * matrix[0] + 0.7 * matrix[1]
    present = [i for i, d in enumerate(docs) if any(d in run["q"] for run in runs)]
    order = sorted(present, key=lambda i: (-expected[i], docs[i]))[:12]
    got = normalized_score_fusion(runs, depth=12, weights=[0.3, 0.7])["q"]
    assert list(got) == [docs[i] for i in order]
    assert list(got.values()) == pytest.approx([expected[i] for i in order])
