"""Each loss against an independent, naive computation of its paper's formula."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.losses import (
    byol_loss,
    byol_regression_loss,
    directpred_weight,
    feature_correlation,
    negative_cosine_similarity,
    simsiam_loss,
    update_correlation,
)


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_negative_cosine_matches_loop():
    p, z = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    expected = -sum(_cos(p[i].tolist(), z[i].tolist()) for i in range(5)) / 5
    assert negative_cosine_similarity(p, z).item() == pytest.approx(expected, rel=1e-10)


def test_negative_cosine_stops_gradient_into_target():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    negative_cosine_similarity(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_simsiam_loss_is_symmetrised_half_sum():
    p1, p2, z1, z2 = (torch.randn(6, 8, dtype=torch.float64) for _ in range(4))
    expected = (
        0.5 * -torch.nn.functional.cosine_similarity(p1, z2).mean() + 0.5 * -torch.nn.functional.cosine_similarity(p2, z1).mean()
    )
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected.item(), rel=1e-10)
    assert simsiam_loss(z1, z2, z1, z2).item() >= -1.0 - 1e-9
    assert simsiam_loss(z2, z1, z1, z2).item() == pytest.approx(-1.0)  # p equal to the other view's z


def test_byol_regression_is_squared_distance_of_unit_vectors():
    p, z = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    pn = [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in p.tolist()]
    zn = [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in z.tolist()]
    expected = sum(sum((a - b) ** 2 for a, b in zip(pr, zr)) for pr, zr in zip(pn, zn)) / 5
    assert byol_regression_loss(p, z).item() == pytest.approx(expected, rel=1e-10)
    assert byol_loss(p, p, z, z).item() == pytest.approx(2 * expected, rel=1e-10)


@pytest.mark.parametrize("fn", [negative_cosine_similarity, byol_regression_loss])
def test_pair_losses_check_shapes(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        fn(torch.randn(4), torch.randn(4))


def test_feature_correlation_is_mean_outer_product():
    f = torch.randn(10, 3, dtype=torch.float64)
    expected = sum(torch.outer(row, row) for row in f) / 10
    torch.testing.assert_close(feature_correlation(f).double(), expected, rtol=1e-6, atol=1e-6)


def test_update_correlation_is_ema():
    running, batch = torch.eye(3), torch.ones(3, 3)
    torch.testing.assert_close(update_correlation(running, batch, 0.3), 0.3 * torch.eye(3) + 0.7 * torch.ones(3, 3))
    with pytest.raises(ValueError, match="rho"):
        update_correlation(running, batch, 1.0)


def test_directpred_weight_on_known_eigenbasis():
    """W_p = U diag(sqrt(s_j / s_max) + eps) U^T on a matrix built from a known rotation and spectrum."""
    torch.manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    s = torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=torch.float64)
    corr = u @ torch.diag(s) @ u.T
    eps = 0.1
    p = torch.tensor([math.sqrt(x / 4.0) + eps for x in s.tolist()], dtype=torch.float64)
    expected = u @ torch.diag(p) @ u.T
    # sqrt amplifies the ~1e-16 round-off of the zero eigenvalue to ~1e-8
    torch.testing.assert_close(directpred_weight(corr, eps=eps), expected, rtol=1e-6, atol=1e-7)


def test_directpred_weight_clamps_negative_eps_and_rejects_zero():
    w = directpred_weight(torch.diag(torch.tensor([1.0, 0.0])), eps=-0.5)
    torch.testing.assert_close(torch.linalg.eigvalsh(w), torch.tensor([1e-4, 0.5]))
    with pytest.raises(ValueError, match="no positive eigenvalue"):
        directpred_weight(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="square"):
        directpred_weight(torch.zeros(3, 2))
