"""Densified sparse representations (reprzoo/index/densify.py) against loops and the exact sparse dot product."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.index.densify import densified_scores, densify, term_ids


def sparse_weights(n: int, vocabulary: int, nonzeros: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, vocabulary)
    for i in range(n):
        x[i, torch.randperm(vocabulary, generator=g)[:nonzeros]] = torch.rand(nonzeros, generator=g) + 0.1
    return x


def loop_densify(x: torch.Tensor, n_slices: int, layout: str):
    width = math.ceil(x.shape[1] / n_slices)
    values = torch.zeros(len(x), n_slices)
    positions = torch.zeros(len(x), n_slices, dtype=torch.long)
    for i in range(len(x)):
        for s in range(n_slices):
            terms = [s * width + p if layout == "contiguous" else p * n_slices + s for p in range(width)]
            slice_values = [x[i, t].item() if t < x.shape[1] else 0.0 for t in terms]
            best = max(range(width), key=lambda p: (slice_values[p], -p))
            values[i, s], positions[i, s] = slice_values[best], best
    return values, positions


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_densify_and_gated_scores_match_loops(layout):
    q, d = sparse_weights(4, 103, 20, 0), sparse_weights(6, 103, 30, 1)
    qv, qp = densify(q, 10, layout)
    dv, dp = densify(d, 10, layout)
    lqv, lqp = loop_densify(q, 10, layout)
    torch.testing.assert_close(qv, lqv)
    assert torch.equal(qp, lqp)
    torch.testing.assert_close(q.gather(1, term_ids(qp, 103, layout)), qv)  # the kept term holds the kept value
    expected = torch.tensor(
        [[sum(qv[i, s] * dv[j, s] for s in range(10) if qp[i, s] == dp[j, s]) for j in range(6)] for i in range(4)]
    )
    torch.testing.assert_close(densified_scores(qv, qp, dv, dp, chunk=3), expected)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_gated_product_is_exact_with_one_nonzero_per_slice_and_a_lower_bound_otherwise(layout):
    vocabulary, n_slices = 120, 12
    g = torch.Generator().manual_seed(2)
    x = torch.zeros(8, vocabulary)
    for i in range(8):  # at most one non-zero term in every slice
        for s in range(n_slices):
            if torch.rand(1, generator=g) < 0.7:
                p = int(torch.randint(0, vocabulary // n_slices, (1,), generator=g))
                x[i, s * 10 + p if layout == "contiguous" else p * n_slices + s] = torch.rand(1, generator=g).item() + 0.1
    v, p = densify(x, n_slices, layout)
    torch.testing.assert_close(densified_scores(v[:3], p[:3], v, p), x[:3] @ x.T)
    dense = sparse_weights(10, vocabulary, 40, 3)  # several terms per slice: the gate drops some products
    v, p = densify(dense, n_slices, layout)
    gated, exact = densified_scores(v, p, v, p), dense @ dense.T
    assert (gated <= exact + 1e-5).all() and (gated < exact - 1e-3).any()


def test_argument_checks():
    x = torch.rand(2, 10)
    with pytest.raises(ValueError, match="n_slices"):
        densify(x, 11)
    with pytest.raises(ValueError, match="layout"):
        densify(x, 2, layout="random")
    with pytest.raises(ValueError, match="expected"):
        densify(x[0], 2)
    v, p = densify(x, 2)
    with pytest.raises(ValueError, match="same shape"):
        densified_scores(v, p[:, :1], v, p)
