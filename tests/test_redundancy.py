"""Barlow Twins and VICReg losses against loop-by-loop computations of the papers' formulas; method specifics."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.lightning_modules import BarlowTwins, VICReg
from reprzoo.losses import barlow_twins_loss, covariance_loss, cross_correlation, variance_loss, vicreg_loss
from reprzoo.losses.redundancy import off_diagonal


def _column_stats(z: torch.Tensor, j: int, unbiased: bool) -> tuple[float, float]:
    values = [float(z[b, j]) for b in range(z.shape[0])]
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - (1 if unbiased else 0))
    return mean, var


def test_barlow_twins_matches_equation_1():
    z1, z2, lam, eps = torch.randn(7, 4), torch.randn(7, 4), 5e-3, 1e-5
    n, d = z1.shape
    stats1 = [_column_stats(z1, j, unbiased=False) for j in range(d)]
    stats2 = [_column_stats(z2, j, unbiased=False) for j in range(d)]
    c = [[0.0] * d for _ in range(d)]
    for i in range(d):
        for j in range(d):
            (m1, v1), (m2, v2) = stats1[i], stats2[j]
            c[i][j] = (
                sum((float(z1[b, i]) - m1) / math.sqrt(v1 + eps) * (float(z2[b, j]) - m2) / math.sqrt(v2 + eps) for b in range(n))
                / n
            )
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    expected = sum((1 - c[i][i]) ** 2 for i in range(d)) + lam * off
    assert torch.allclose(cross_correlation(z1, z2, eps), torch.tensor(c), atol=1e-5)
    assert torch.allclose(barlow_twins_loss(z1, z2, lam, eps), torch.tensor(expected), atol=1e-4)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.linalg.qr(torch.randn(64, 8))[0] * 8  # orthogonal columns; centred below
    z = z - z.mean(0)
    z = torch.linalg.qr(z)[0]
    loss = barlow_twins_loss(z, z, eps=0.0)
    assert loss < 0.05  # near zero: C is (almost) the identity for identical whitened views


def test_vicreg_matches_equation_6():
    z1, z2 = torch.randn(6, 3) * 0.5, torch.randn(6, 3) * 2
    lam, mu, nu, gamma, eps = 25.0, 25.0, 1.0, 1.0, 1e-4
    n, d = z1.shape
    invariance = sum(float(z1[b, j] - z2[b, j]) ** 2 for b in range(n) for j in range(d)) / (n * d)

    def v(z):
        return sum(max(0.0, gamma - math.sqrt(_column_stats(z, j, unbiased=True)[1] + eps)) for j in range(d)) / d

    def c(z):
        means = [_column_stats(z, j, unbiased=True)[0] for j in range(d)]
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = sum((float(z[b, i]) - means[i]) * (float(z[b, j]) - means[j]) for b in range(n)) / (n - 1)
                    total += cov**2
        return total / d

    expected = lam * invariance + mu * (v(z1) + v(z2)) / 2 + nu * (c(z1) + c(z2))
    assert math.isclose(float(variance_loss(z1, gamma, eps)), v(z1), rel_tol=1e-5)
    assert math.isclose(float(covariance_loss(z2)), c(z2), rel_tol=1e-5)
    assert math.isclose(float(vicreg_loss(z1, z2, lam, mu, nu, gamma, eps)), expected, rel_tol=1e-5)


def test_off_diagonal():
    m = torch.arange(9.0).view(3, 3)
    assert off_diagonal(m).tolist() == [1.0, 2.0, 3.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="square"):
        off_diagonal(torch.zeros(2, 3))


def test_argument_checks():
    with pytest.raises(ValueError, match="equal shape"):
        barlow_twins_loss(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="lambda_ must be non-negative"):
        barlow_twins_loss(torch.randn(4, 3), torch.randn(4, 3), lambda_=-1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        barlow_twins_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="equal shape"):
        vicreg_loss(torch.randn(4, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="non-negative"):
        vicreg_loss(torch.randn(4, 3), torch.randn(4, 3), std_coeff=-1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        vicreg_loss(torch.randn(1, 3), torch.randn(1, 3))


def test_variance_term_prevents_collapse():
    collapsed = torch.zeros(512, 4)
    spread = torch.randn(512, 4) * 1.5
    assert vicreg_loss(collapsed, collapsed) > vicreg_loss(spread, spread)
    assert torch.isclose(variance_loss(collapsed, eps=0.0), torch.tensor(1.0))


def test_barlow_twins_bias_lr_and_decay_groups():
    model = BarlowTwins(backbone="resnet_tiny_cifar", proj_hidden_dim=32, proj_output_dim=16, num_classes=None)
    groups = {g["name"]: g for g in model.param_groups()}
    assert all(p.ndim > 1 for _, p in groups["weights"]["params"])
    assert all(p.ndim <= 1 for _, p in groups["biases"]["params"])
    assert groups["biases"]["lr"] == pytest.approx(0.2 * 0.0048 / 0.2)
    # the paper's projector: 3 linear layers without bias, BN + ReLU after the first two
    linears = [m for m in model.projector.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and all(m.bias is None for m in linears)


def test_vicreg_defaults_are_the_papers():
    model = VICReg(backbone="resnet_tiny_cifar", proj_hidden_dim=32, proj_output_dim=16, num_classes=None)
    hp = model.hparams
    assert (hp.sim_coeff, hp.std_coeff, hp.cov_coeff, hp.gamma, hp.eps) == (25.0, 25.0, 1.0, 1.0, 1e-4)
    assert (hp.optimizer, hp.lr, hp.weight_decay) == ("lars", 0.2, 1e-6)
    out = model.training_loss([torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)])
    assert out.embeddings.shape == (8, 16) and torch.isfinite(out.loss)
