"""Hydra's gated class-pair contrastive loss against loop-by-loop computations, and the Hydra module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprzoo.lightning_modules import Hydra
from reprzoo.lightning_modules.vision_ssl.hydra import FeatureFilter
from reprzoo.losses import class_pair_contrastive_loss, gate_entropy, gated_cosine


def test_gated_cosine_matches_masking_each_pair():
    q, k, g = torch.randn(3, 5), torch.randn(4, 5), torch.rand(3, 5)
    sims = gated_cosine(q, k, g)
    for i in range(3):
        for j in range(4):
            assert math.isclose(sims[i, j].item(), float(F.cosine_similarity(q[i] * g[i], k[j] * g[i], dim=0)), abs_tol=1e-5)


def test_closed_gate_dimensions_do_not_count():
    q, k = torch.randn(2, 4), torch.randn(3, 4)
    g = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    k_changed = k.clone()
    k_changed[:, 2:] += 10 * torch.randn(3, 2)
    assert torch.allclose(gated_cosine(q, k, g)[0], gated_cosine(q, k_changed, g)[0], atol=1e-6)
    assert not torch.allclose(gated_cosine(q, k, g)[1], gated_cosine(q, k_changed, g)[1])


def test_class_pair_loss_matches_the_authors_multi_positive_formula():
    torch.manual_seed(3)
    n, t = 6, 0.2
    q, k, g = torch.randn(n, 4), torch.randn(n, 4), torch.rand(n, 4)
    y1, y2 = torch.tensor([0, 1, 2, 0, 1, -1]), torch.tensor([1, 1, 0, 2, 0, 2])
    total, count = 0.0, 0
    for i in range(n):
        if y1[i] < 0:
            continue
        sims = [float(F.cosine_similarity(q[i] * g[i], k[j] * g[i], dim=0)) / t for j in range(n)]
        negatives = [j for j in range(n) if y1[j] not in (y1[i], y2[i])]
        for p in (j for j in range(n) if y1[j] == y2[i]):
            total += -math.log(math.exp(sims[p]) / (math.exp(sims[p]) + sum(math.exp(sims[m]) for m in negatives)))
            count += 1
    assert math.isclose(class_pair_contrastive_loss(q, k, g, y1, y2, t).item(), total / count, rel_tol=1e-5)


def test_class_pair_loss_argument_checks_and_empty_batches():
    q, g, y = torch.randn(3, 4), torch.rand(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="one \\(n, d\\) shape"):
        class_pair_contrastive_loss(q, torch.randn(3, 5), g, y, y)
    with pytest.raises(ValueError, match="one class per query"):
        class_pair_contrastive_loss(q, q, g, y[:2], y)
    with pytest.raises(ValueError, match="temperature must be positive"):
        class_pair_contrastive_loss(q, q, g, y, y, 0.0)
    unlabelled = torch.full((3,), -1)
    assert class_pair_contrastive_loss(q, q, g, unlabelled, unlabelled).item() == 0.0


def test_gate_entropy_is_mean_bernoulli_entropy():
    g = torch.tensor([[0.5, 0.1], [0.9, 0.999]])
    expected = sum(-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in g.flatten().tolist()) / 4
    assert math.isclose(gate_entropy(g).item(), expected, rel_tol=1e-5)


def test_feature_filter_gates_are_symmetric_in_the_pair_and_in_unit_interval():
    filt = FeatureFilter(num_classes=5, out_dim=6, label_dim=8, hidden_dim=16).eval()
    y1, y2 = torch.tensor([0, 3, 4]), torch.tensor([2, 3, 1])
    gates = filt(y1, y2)
    assert gates.shape == (3, 6) and ((gates > 0) & (gates < 1)).all()
    assert torch.allclose(gates, filt(y2, y1))


def test_hydra_module_loss_and_requirements():
    model = Hydra(
        backbone="resnet_tiny_cifar", num_classes=4, proj_hidden_dim=32, proj_output_dim=16, label_dim=8, gate_hidden_dim=16
    )
    views, labels = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)], torch.tensor([0, 1, 2, 3, 0, -1])
    out = model.training_loss(views, labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.filter.label_embedding.weight.grad is not None
    assert out.features.shape == (6, model.feature_dim) and out.embeddings.shape == (6, 16)
    with pytest.raises(ValueError, match="needs the batch's labels"):
        model.training_loss(views, None)
    with pytest.raises(ValueError, match="num_classes is required"):
        Hydra(backbone="resnet_tiny_cifar")
