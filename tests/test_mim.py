"""MIM / cMIM losses against direct computations of their formulas, and the cMIM module's behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprzoo.lightning_modules import CMIM, METHODS, CMIMFramework
from reprzoo.losses import a_mim_loss, cmim_contrastive_loss, gaussian_log_prob


def test_gaussian_log_prob_matches_density():
    x, mean, logvar = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    for i in range(2):
        expected = sum(
            math.log(1 / math.sqrt(2 * math.pi * math.exp(logvar[i, d])))
            - (x[i, d] - mean[i, d]).item() ** 2 / (2 * math.exp(logvar[i, d]))
            for d in range(3)
        )
        assert math.isclose(gaussian_log_prob(x, mean, logvar)[i].item(), expected, rel_tol=1e-5)
    assert torch.allclose(gaussian_log_prob(x, mean, 0.0), gaussian_log_prob(x, mean, torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="differs from mean shape"):
        gaussian_log_prob(x, mean[:1], 0.0)


def test_a_mim_loss_is_half_the_negative_joint_cross_entropies():
    a, b, c = torch.randn(4), torch.randn(4), torch.randn(4)
    expected = sum(-0.5 * (a[i] + b[i] + c[i]).item() for i in range(4)) / 4
    assert math.isclose(a_mim_loss(a, b, c).item(), expected, rel_tol=1e-5)
    with pytest.raises(ValueError, match=r"three \(batch,\) tensors"):
        a_mim_loss(a, b, c[:3])


def test_cmim_contrastive_loss_loop_formula():
    anchors, positives, t = torch.randn(5, 4), torch.randn(5, 4), 0.3
    an, pn = F.normalize(anchors, dim=1), F.normalize(positives, dim=1)
    total = 0.0
    for i in range(5):
        pos = math.exp(float(an[i] @ pn[i]) / t)
        mean_neg = sum(math.exp(float(an[i] @ pn[j]) / t) for j in range(5) if j != i) / 4
        total += -math.log(pos / (pos + mean_neg))
    assert math.isclose(cmim_contrastive_loss(anchors, positives, t).item(), total / 5, rel_tol=1e-5)


def test_cmim_contrastive_loss_does_not_grow_with_batch_like_infonce():
    torch.manual_seed(0)
    small = cmim_contrastive_loss(torch.randn(8, 16), torch.randn(8, 16), 0.5).item()
    large = cmim_contrastive_loss(torch.randn(512, 16), torch.randn(512, 16), 0.5).item()
    assert abs(large - small) < 0.3 < math.log(512 / 8)  # InfoNCE at chance grows by log(N) between the two


def test_cmim_contrastive_loss_argument_checks():
    with pytest.raises(ValueError, match="one shape"):
        cmim_contrastive_loss(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="temperature must be positive"):
        cmim_contrastive_loss(torch.randn(3, 4), torch.randn(3, 4), 0.0)
    with pytest.raises(ValueError, match="at least two samples"):
        cmim_contrastive_loss(torch.randn(1, 4), torch.randn(1, 4))


@pytest.mark.parametrize("embedding,dim", [("informative", 8 + 32), ("mean", 8)])
def test_cmim_embeddings_and_loss(embedding, dim):
    model = CMIM(backbone="resnet_tiny_cifar", latent_dim=8, image_size=16, decoder_width=32, embedding=embedding, num_classes=3)
    x = torch.randn(6, 3, 16, 16)
    out = model.training_loss([x])
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.features.shape == (6, dim) == (6, model.embedding_dim)
    assert model.probe.classifier.in_features == dim
    model.eval()
    assert model.embed(x).shape == (6, dim)
    assert torch.equal(model.embed(x)[:, :8], model.encode(x)[0])
    assert model.q_logvar.weight.grad is not None and model.decoder.fc[0].weight.grad is not None


def test_cmim_without_contrastive_term_is_a_mim():
    model = CMIM(backbone="resnet_tiny_cifar", latent_dim=4, image_size=8, decoder_width=16, contrastive_weight=0.0)
    x = torch.randn(3, 3, 8, 8)
    torch.manual_seed(1)
    loss = model.training_loss([x]).loss
    torch.manual_seed(1)
    mean, logvar = model.encode(x)
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    expected = a_mim_loss(
        gaussian_log_prob(x, model.decoder(z), 0.0), gaussian_log_prob(z, mean, logvar), gaussian_log_prob(z, 0 * z, 0.0)
    )
    assert torch.allclose(loss, expected)
    with pytest.raises(ValueError, match="embedding must be"):
        CMIM(backbone="resnet_tiny_cifar", embedding="hidden")


def test_both_catalogue_rows_resolve_to_one_implementation():
    assert issubclass(CMIMFramework, CMIM) and CMIMFramework.training_loss is CMIM.training_loss
    assert METHODS["CMIM"].title.startswith("Contrastive Mutual Information Learning")
    assert METHODS["CMIMFramework"].title.startswith("cMIM: A Contrastive Mutual Information Framework")
