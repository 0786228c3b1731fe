"""SIE: the loss against a naive computation of its terms, the hypernetwork predictor, and the rotation_pairs views."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.datamodules.rotation_pairs import RotationPairsTransform
from reprzoo.datamodules.transforms import AUGMENTATIONS
from reprzoo.lightning_modules import SIE
from reprzoo.lightning_modules.vision_ssl.equivariant import HyperNetworkPredictor
from reprzoo.losses import sie_loss


def _var_hinge(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> float:
    n, d = z.shape
    total = 0.0
    for j in range(d):
        col = [float(z[b, j]) for b in range(n)]
        mean = sum(col) / n
        var = sum((v - mean) ** 2 for v in col) / (n - 1)
        total += max(0.0, gamma - math.sqrt(var + eps))
    return total / d


def _cov_term(z: torch.Tensor) -> float:
    n, d = z.shape
    means = [sum(float(z[b, j]) for b in range(n)) / n for j in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                c = sum((float(z[b, i]) - means[i]) * (float(z[b, j]) - means[j]) for b in range(n)) / (n - 1)
                total += c * c
    return total / d


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum(float(a[i, j] - b[i, j]) ** 2 for i in range(a.shape[0]) for j in range(a.shape[1])) / a.numel()


def test_sie_loss_matches_its_terms():
    inv1, inv2 = torch.randn(6, 3) * 0.7, torch.randn(6, 3)
    eq1, eq2, pred = torch.randn(6, 2), torch.randn(6, 2) * 2, torch.randn(6, 2) * 0.3
    sim, std, cov, factor = 10.0, 10.0, 1.0, 0.45
    z1, z2 = torch.cat([inv1, eq1], 1), torch.cat([inv2, eq2], 1)
    expected = (
        sim * _mse(inv1, inv2)
        + factor * sim * _mse(pred, eq2)
        + std * ((_var_hinge(z1) + _var_hinge(z2)) / 2 + _var_hinge(pred) / 2)
        + cov * (_cov_term(z1) + _cov_term(z2))
    )
    got = sie_loss(inv1, inv2, eq1, eq2, pred, sim, std, cov, factor)
    assert math.isclose(float(got), expected, rel_tol=1e-5)
    no_var = sie_loss(inv1, inv2, eq1, eq2, pred, sim, std, cov, factor, pred_std=False)
    assert math.isclose(float(got - no_var), std * _var_hinge(pred) / 2, rel_tol=1e-4)


def test_sie_loss_argument_checks():
    a, b = torch.randn(4, 3), torch.randn(4, 2)
    with pytest.raises(ValueError, match="invariant embeddings"):
        sie_loss(a, torch.randn(4, 5), b, b, b)
    with pytest.raises(ValueError, match="equivariant embeddings"):
        sie_loss(a, a, b, b, torch.randn(4, 3))
    with pytest.raises(ValueError, match="different batch sizes"):
        sie_loss(a, a, torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="non-negative"):
        sie_loss(a, a, b, b, b, equi_factor=-1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        sie_loss(a[:1], a[:1], b[:1], b[:1], b[:1])


def test_hypernetwork_predictor_is_a_linear_map_chosen_by_g():
    pred = HyperNetworkPredictor(dim=5, param_dim=2)
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    weights = pred.weights(g)
    assert weights.shape == (3, 5, 5)  # one (out, in) matrix per sample
    # a linear hypernetwork: W(g) = g_1 A_1 + g_2 A_2
    assert torch.allclose(weights[2], 0.6 * weights[0] + 0.8 * weights[1], atol=1e-6)
    z = torch.randn(3, 5)
    assert torch.allclose(pred(z, g), torch.einsum("boi,bi->bo", weights, z), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        pred(z, torch.randn(3, 3))
    with pytest.raises(ValueError, match="hypernetwork must be"):
        HyperNetworkPredictor(4, 2, hypernetwork="quadratic")


def test_hypernetwork_can_represent_the_rotation_group():
    """With A_1 = I and A_2 = the 90-degree rotation, W(cos t, sin t) is the rotation by t: the equivariant part can be
    an exact representation of the in-plane rotations that rotation_pairs encodes."""
    pred = HyperNetworkPredictor(dim=2, param_dim=2)
    with torch.no_grad():
        pred.hypernet.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [1.0, 0.0]]))
    t = torch.tensor([0.3, 2.0])
    g = torch.stack([t.cos(), t.sin()], dim=1)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = torch.stack([torch.stack([t[0].cos(), t[0].sin()]), torch.stack([-t[1].sin(), t[1].cos()])])
    assert torch.allclose(pred(z, g), expected, atol=1e-6)


def test_sie_uses_the_transformation_parameters():
    torch.manual_seed(0)
    model = SIE(backbone="resnet_tiny_cifar", proj_hidden_dim=32, proj_output_dim=16, num_classes=None)
    assert model.equi_dim == 64 and model.predictor.weights(torch.randn(2, 2)).shape == (2, 8, 8)
    x1, x2 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    g = torch.randn(8, 2, requires_grad=True)
    model.train()
    out = model.training_loss({"views": [x1, x2], "params": g})
    (grad,) = torch.autograd.grad(out.loss, g)
    assert grad.abs().sum() > 0  # the loss depends on g through the predictor
    assert out.embeddings.shape == (8, 16) and out.features.shape == (8, 128)
    with pytest.raises(ValueError, match="rotation_pairs"):
        model.training_loss([x1, x2])
    with pytest.raises(ValueError, match="equi_dim"):
        SIE(backbone="resnet_tiny_cifar", equi_dim=128, num_classes=None)


def test_rotation_pairs_returns_views_and_relative_rotation():
    import random

    transform = AUGMENTATIONS["rotation_pairs"](size=16, mean=(0.5,) * 3, std=(0.5,) * 3, crop_scale=(1.0, 1.0))
    assert isinstance(transform, RotationPairsTransform) and transform.param_dim == 2
    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    image[:, 2:6, 7:9] = 255  # a bar above the centre
    random.seed(1)
    out = transform(image)
    x1, x2 = out["views"]
    assert x1.shape == x2.shape == (3, 16, 16) and out["params"].shape == (2,)
    assert torch.isclose(out["params"].norm(), torch.tensor(1.0))
    # g is exact: rotating view 1 by the relative angle gives view 2 (up to interpolation at the borders)
    from torchvision.transforms.v2 import functional as TF

    angle = math.degrees(math.atan2(float(out["params"][1]), float(out["params"][0])))
    assert (TF.rotate(x1, angle, fill=-1.0) - x2).abs().mean() < 0.15
    coloured = RotationPairsTransform(size=16, color_params=True, jitter_prob=1.0)
    assert coloured.param_dim == 6 and coloured(image)["params"].shape == (6,)
    with pytest.raises(ValueError, match="max_degrees"):
        RotationPairsTransform(max_degrees=200)
