"""ELR, MixUp, AdaMixUp and BatchFormer as modules: ELR's per-sample targets, AdaMixUp's losses re-derived step by
step, BatchFormer attending across the batch in training and absent at test time."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprzoo.lightning_modules import ELR, AdaMixUp, BatchFormer, MixUp

BACKBONE = "resnet_tiny_cifar"


def test_elr_keeps_one_ensemble_row_per_training_sample():
    torch.manual_seed(0)
    model = ELR(backbone=BACKBONE, num_classes=10, online_probe=False).eval()  # eval: deterministic logits
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([1, 2, 3, 4])
    indices = torch.tensor([7, 2, 11, 0])
    model.training_loss([x], labels, indices)
    assert model.targets.shape == (12, 10)
    p = model.logits(model.embed(x)).softmax(1).clamp(1e-4, 1 - 1e-4).detach()
    p = p / p.sum(1, keepdim=True)
    torch.testing.assert_close(model.targets[indices], 0.3 * p)  # from zeros: (1 - beta) p
    untouched = [i for i in range(12) if i not in indices.tolist()]
    assert model.targets[untouched].abs().sum() == 0
    out = model.training_loss([x], labels, indices)  # second visit: beta t + (1 - beta) p = (0.7 * 0.3 + 0.3) p
    torch.testing.assert_close(model.targets[indices], 0.51 * p)
    reg = torch.log(1 - (0.51 * p * p).sum(1)).mean()
    expected = F.cross_entropy(model.logits(model.embed(x)), labels) + 3.0 * reg
    torch.testing.assert_close(out.loss, expected)


def test_elr_targets_travel_in_the_checkpoint_not_in_the_weights():
    model = ELR(backbone=BACKBONE, num_classes=10, online_probe=False)
    model.targets = torch.rand(5, 10)
    assert "targets" not in model.state_dict()
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    restored = ELR(backbone=BACKBONE, num_classes=10, online_probe=False)
    restored.on_load_checkpoint(checkpoint)
    torch.testing.assert_close(restored.targets, model.targets)


def test_elr_needs_indices():
    model = ELR(backbone=BACKBONE, num_classes=10, online_probe=False)
    with pytest.raises(ValueError, match="indices"):
        model.training_loss([torch.randn(2, 3, 32, 32)], torch.tensor([0, 1]), None)


def test_mixup_trains_on_the_mixed_batch_with_mixed_labels():
    torch.manual_seed(3)
    model = MixUp(backbone=BACKBONE, num_classes=10, online_probe=False).eval()
    x, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5])
    torch.manual_seed(4)
    loss = model.training_loss([x], labels).loss
    torch.manual_seed(4)  # the same draws: lam ~ Beta(1, 1), then the permutation
    lam = torch.distributions.Beta(1.0, 1.0).sample()
    perm = torch.randperm(6)
    logits = model.logits(model.embed(lam * x + (1 - lam) * x[perm]))
    expected = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[perm])
    torch.testing.assert_close(loss, expected)


def test_adamixup_losses_against_a_re_derivation():
    torch.manual_seed(5)
    model = AdaMixUp(backbone=BACKBONE, num_classes=10, online_probe=False).eval()
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    torch.manual_seed(6)
    got = model.adamixup_losses(x, y)

    torch.manual_seed(6)  # the same draws in the same order: partners, the generator's noise, u
    half = 4
    partners = torch.randperm(8)[:half]
    x1, x2, y1, y2 = x[:half], x[partners], y[:half], y[partners]
    m1 = torch.nn.init.trunc_normal_(torch.empty_like(x1), a=-2.0, b=2.0)
    m2 = torch.nn.init.trunc_normal_(torch.empty_like(x2), a=-2.0, b=2.0)
    scores = model.policy.head(model.policy.backbone((m1 * x1 + m2 * x2) / 2))
    u = torch.rand(half)
    classification, intrusion = 0.0, 0.0
    mixed = []
    for i in range(half):
        a, d, _ = [math.exp(v) / sum(math.exp(w) for w in scores[i].tolist()) for v in scores[i].tolist()]
        lam = a + u[i].item() * d
        assert a <= lam <= a + d <= 1
        mixed.append(lam * x1[i] + (1 - lam) * x2[i])
        logp = model.logits(model.embed(mixed[-1][None]))[0].log_softmax(0)
        classification -= lam * logp[y1[i]] + (1 - lam) * logp[y2[i]]
        intrusion -= model.discriminator(model.embed(mixed[-1][None]))[0].log_softmax(0)[0]  # mixed: class 0
    for i in range(half):
        classification -= model.logits(model.embed(x1[i][None]))[0].log_softmax(0)[y1[i]]
    for original in torch.cat([x1, x[half:]]):  # x1 and the held-out half: class 1
        intrusion -= model.discriminator(model.embed(original[None]))[0].log_softmax(0)[1]
    torch.testing.assert_close(got["classification"], classification / (2 * half), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["intrusion"], intrusion / (3 * half), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["total"], got["classification"] + got["intrusion"])


def test_adamixup_policy_gets_gradients_from_both_losses():
    model = AdaMixUp(backbone=BACKBONE, num_classes=10, online_probe=False)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for name in ("classification", "intrusion"):
        model.zero_grad()
        model.adamixup_losses(x, y)[name].backward()
        grads = [p.grad for p in model.policy.head.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name


def test_batchformer_attends_across_the_batch_in_training():
    torch.manual_seed(7)
    model = BatchFormer(backbone=BACKBONE, num_classes=10, dropout=0.0, online_probe=False).train()
    z = torch.randn(5, model.representation_dim)
    labels = torch.arange(5)
    features, targets = model.two_stream(z, labels)
    assert features.shape == (10, model.representation_dim) and targets.tolist() == [0, 1, 2, 3, 4] * 2
    torch.testing.assert_close(features[:5], z)  # the first stream is the representation itself
    changed = z.clone()
    changed[0] += 1.0
    after = model.two_stream(changed, labels)[0]
    assert not torch.allclose(after[6:], features[6:])  # the other samples' second stream moved


def test_batchformer_is_absent_at_test_time():
    torch.manual_seed(8)
    model = BatchFormer(backbone=BACKBONE, num_classes=10, online_probe=False).eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        full = model.embed(x)
        torch.testing.assert_close(full[:1], model.embed(x[:1]))  # no dependence on the rest of the batch
        torch.testing.assert_close(full, model.backbone(x))  # the exported representation is the backbone's
    layer = {id(p) for p in model.batchformer.parameters()}
    assert not any(id(p) in layer for p in model.encoder().parameters())


def test_batchformer_loss_is_the_cross_entropy_of_both_streams():
    torch.manual_seed(9)
    model = BatchFormer(backbone=BACKBONE, num_classes=10, dropout=0.0, online_probe=False).eval()
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4])
    loss = model.training_loss([x], labels).loss
    z = model.embed(x)
    after = model.batchformer.layer(z[:, None])[:, 0]
    expected = (F.cross_entropy(model.classifier(z), labels) + F.cross_entropy(model.classifier(after), labels)) / 2
    torch.testing.assert_close(loss, expected)
