"""DOLG (arXiv:2108.02927): orthogonal fusion and GeM against independent computations, and the descriptor's shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprzoo.lightning_modules.retrieval.dolg import DOLG, gem_pool, orthogonal_fusion


def test_orthogonal_fusion_is_orthogonal_to_the_global_vector_and_equals_a_loop():
    torch.manual_seed(0)
    local, glob = torch.randn(3, 5, 4, 2, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    out = orthogonal_fusion(local, glob)
    # orthogonal to f_g at every location
    torch.testing.assert_close((out * glob[:, :, None, None]).sum(1), torch.zeros(3, 4, 2, dtype=torch.float64))
    expected = torch.empty_like(local)
    for n in range(3):
        g = glob[n]
        for i in range(4):
            for j in range(2):
                f = local[n, :, i, j]
                expected[n, :, i, j] = f - (f @ g) / (g @ g) * g
    torch.testing.assert_close(out, expected)
    # the projection plus the orthogonal part rebuilds the local feature; a local feature along f_g vanishes
    along = glob[:, :, None, None].expand(-1, -1, 4, 2) * 2.5
    torch.testing.assert_close(orthogonal_fusion(along, glob), torch.zeros_like(along))
    with pytest.raises(ValueError):
        orthogonal_fusion(local, glob[:, :4])


def test_gem_is_average_pooling_at_p1_and_tends_to_max_pooling():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64) + 0.01
    torch.testing.assert_close(gem_pool(x, p=1.0), F.adaptive_avg_pool2d(x, 1).flatten(1))
    big = gem_pool(x, p=200.0)
    torch.testing.assert_close(big, x.amax(dim=(2, 3)), rtol=0.03, atol=0.0)
    # GeM grows with p between the mean and the max
    assert bool((gem_pool(x, p=3.0) > gem_pool(x, p=1.0)).all()) and bool((big > gem_pool(x, p=3.0)).all())
    with pytest.raises(ValueError):
        gem_pool(x.flatten(2), p=3.0)


def test_descriptor_is_a_unit_vector_and_trains():
    torch.manual_seed(0)
    model = DOLG(backbone="resnet_tiny_cifar", num_classes=4, local_dim=16, embedding_dim=8, dilations=(1, 2), online_probe=False)
    x, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])
    out = model.training_loss([x], labels)
    assert torch.isfinite(out.loss) and out.embeddings.shape == (6, 8)
    out.loss.backward()
    assert model.local.conv.weight.grad is not None and model.backbone.stem[0].weight.grad is not None
    model.eval()
    z = model.embed(x)
    assert z.shape == (6, model.embedding_dim) == (6, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))


def test_descriptor_reads_a_timm_resnet_through_forward_intermediates():
    model = DOLG(backbone="resnet18_cifar", num_classes=3, local_dim=16, embedding_dim=8, online_probe=False).eval()
    with torch.no_grad():
        assert model.embed(torch.randn(2, 3, 32, 32)).shape == (2, 8)
