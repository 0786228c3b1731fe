"""The robust-supervised losses (reprzoo.losses.robust) against per-sample loops written from the papers' equations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprzoo.losses.robust import (
    adamixup_ratios,
    elr_loss,
    elr_update_targets,
    intrusion_loss,
    mixup,
    mixup_cross_entropy,
    soft_cross_entropy,
)


def _softmax_row(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_elr_target_update_is_the_temporal_ensemble_of_clamped_renormalised_predictions():
    torch.manual_seed(0)
    logits = torch.randn(5, 4) * 6  # large enough that some probabilities hit the clamp
    targets = torch.rand(5, 4)
    beta, clamp = 0.7, 1e-2
    got = elr_update_targets(targets, logits, beta, clamp)
    for i in range(5):
        p = [min(max(v, clamp), 1 - clamp) for v in _softmax_row(logits[i].tolist())]
        for c in range(4):
            expected = beta * targets[i, c].item() + (1 - beta) * p[c] / sum(p)
            assert got[i, c].item() == pytest.approx(expected, rel=1e-5)


def test_elr_loss_matches_a_loop_and_ignores_unlabelled_samples_in_the_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 2, 1, -1, 2, 0])
    targets = torch.softmax(torch.randn(6, 3), dim=1)
    lam, clamp = 3.0, 1e-4
    ce, reg, labelled = 0.0, 0.0, 0
    for i in range(6):
        p = _softmax_row(logits[i].tolist())
        if labels[i] >= 0:
            ce += -math.log(p[labels[i]])
            labelled += 1
        p = [min(max(v, clamp), 1 - clamp) for v in p]
        reg += math.log(1 - sum(t * q for t, q in zip(targets[i].tolist(), p)))
    expected = ce / labelled + lam * reg / 6
    assert elr_loss(logits, labels, targets, lam, clamp).item() == pytest.approx(expected, rel=1e-5)


def test_elr_regulariser_pulls_the_prediction_towards_its_target():
    # the gradient of log(1 - <p, t>) raises the logit of the target's class
    logits = torch.zeros(1, 3, requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 0.0]])
    elr_loss(logits, torch.tensor([-1]), targets, lam=1.0).backward()
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]


def test_elr_argument_checks():
    with pytest.raises(ValueError, match="differ in shape"):
        elr_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="beta"):
        elr_update_targets(torch.zeros(2, 3), torch.zeros(2, 3), beta=1.0)


def test_mixup_inputs_and_targets_against_a_hand_computation():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    permutation = torch.tensor([2, 0, 1])
    mixed = mixup(x, 0.25, permutation)
    expected = torch.tensor([[0.25 * 1 + 0.75 * 4, 0.75 * 4], [0.25 * 0 + 0.75 * 1, 0.25 * 2], [0.25 * 4, 0.25 * 4 + 0.75 * 2]])
    torch.testing.assert_close(mixed, expected)
    # per-pair ratios (AdaMixUp)
    lam = torch.tensor([1.0, 0.5, 0.0])
    torch.testing.assert_close(mixup(x, lam, permutation), torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.0, 2.0]]))


def test_mixup_cross_entropy_is_the_ratio_weighted_sum_of_the_two_cross_entropies():
    torch.manual_seed(2)
    logits = torch.randn(4, 5)
    labels = torch.tensor([1, 3, 0, 3])
    permutation = torch.tensor([3, 2, 1, 0])
    lam = 0.3
    expected = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[permutation])
    torch.testing.assert_close(mixup_cross_entropy(logits, labels, permutation, lam), expected)
    with pytest.raises(ValueError, match="labelled"):
        mixup_cross_entropy(logits, torch.tensor([1, -1, 0, 3]), permutation, lam)


def test_soft_cross_entropy_against_a_loop():
    logits = torch.tensor([[0.1, 2.0, -1.0], [1.0, 1.0, 0.0]])
    targets = torch.tensor([[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]])
    expected = 0.0
    for i in range(2):
        p = _softmax_row(logits[i].tolist())
        expected -= sum(t * math.log(q) for t, q in zip(targets[i].tolist(), p))
    assert soft_cross_entropy(logits, targets).item() == pytest.approx(expected / 2, rel=1e-6)


def test_adamixup_ratios_lie_in_the_policy_region():
    policy = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, -1.0]])
    noise = torch.tensor([0.5, 0.9])
    lam, alpha, delta = adamixup_ratios(policy, noise)
    for i in range(2):
        a, d, _ = _softmax_row(policy[i].tolist())
        assert alpha[i].item() == pytest.approx(a) and delta[i].item() == pytest.approx(d)
        assert lam[i].item() == pytest.approx(a + noise[i].item() * d)
        assert a <= lam[i].item() <= a + d <= 1.0


def test_intrusion_loss_labels_originals_one_and_mixed_zero():
    original = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    mixed = torch.tensor([[0.5, 0.0]])
    expected = -(
        math.log(_softmax_row([0.0, 1.0])[1]) + math.log(_softmax_row([2.0, -1.0])[1]) + math.log(_softmax_row([0.5, 0.0])[0])
    )
    assert intrusion_loss(original, mixed).item() == pytest.approx(expected / 3, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        intrusion_loss(torch.zeros(2, 3), mixed)
