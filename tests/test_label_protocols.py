"""Label protocols of the supervised wing (reprzoo.datamodules.labels) on any image datamodule: zero-shot class
split, symmetric/asymmetric label noise, a few labels per class."""

from __future__ import annotations

import pytest
import torch

from reprzoo.datamodules import Digits
from reprzoo.datamodules.labels import few_labels, noise_transition, noisy_labels


@pytest.mark.parametrize("kind", ["symmetric", "asymmetric"])
def test_noise_transition_rows_are_distributions_with_the_rate_off_the_diagonal(kind):
    t = noise_transition(kind, 0.4, 5)
    torch.testing.assert_close(t.sum(1), torch.ones(5))
    torch.testing.assert_close(t.diagonal(), torch.full((5,), 0.6))
    if kind == "asymmetric":  # class i flips to i + 1 only
        assert all(t[i, (i + 1) % 5] == pytest.approx(0.4) for i in range(5))


def test_noisy_labels_flip_exactly_the_rate_and_follow_the_transition():
    labels = torch.arange(10).repeat(200)  # 2000 labels
    sym = noisy_labels(labels, "symmetric", 0.4, 10, seed=3)
    assert (sym != labels).sum() == 800  # exactly round(rate x n), never to the same class
    # among the flipped, every other class appears about equally (1/9 each)
    shares = torch.bincount((sym - labels)[sym != labels] % 10, minlength=10)[1:].float() / 800
    assert shares.min() > 0.07 and shares.max() < 0.16
    asym = noisy_labels(labels, "asymmetric", 0.2, 10, seed=3)
    flipped = asym != labels
    assert flipped.sum() == 400 and torch.equal(asym[flipped], (labels[flipped] + 1) % 10)
    assert torch.equal(noisy_labels(labels, "symmetric", 0.4, 10, seed=3), sym)  # seeded
    with pytest.raises(ValueError, match="kind"):
        noisy_labels(labels, "pairwise", 0.4, 10)
    with pytest.raises(ValueError, match="rate"):
        noisy_labels(labels, "symmetric", 1.0, 10)


def test_few_labels_keeps_n_per_class():
    labels = torch.arange(4).repeat(30)
    kept = few_labels(labels, 5, seed=0)
    assert torch.equal(torch.bincount(kept[kept >= 0]), torch.full((4,), 5))
    assert torch.equal(kept[kept >= 0], labels[kept >= 0])
    with pytest.raises(ValueError, match="fewer than"):
        few_labels(labels, 31)


def test_digits_under_each_protocol():
    zs = Digits(class_split="zero_shot")
    assert zs.num_classes == 5
    zs.setup()
    assert set(zs._train.labels.tolist()) == set(zs._test.labels.tolist()) == set(range(5))
    assert len(zs._train) + len(zs._test) == 1797  # both splits of the seen / unseen classes
    assert len(zs.val_dataloader()) == 1  # one loader of unseen classes

    noisy = Digits(label_noise={"kind": "symmetric", "rate": 0.4})
    noisy.setup()
    assert noisy.num_classes == 10
    assert abs((noisy._train.labels != noisy.clean_train_labels).float().mean().item() - 0.4) < 1e-3
    test_labels = torch.cat([b[1] for b in noisy.val_dataloader()[1]])
    clean = Digits()
    clean.setup()
    assert torch.equal(test_labels, clean._test.labels)  # evaluation labels stay clean

    few = Digits(labels_per_class=4)
    few.setup()
    assert (few._train.labels >= 0).sum() == 40 and len(few._bank_train) == 40
    with pytest.raises(ValueError, match="class_split"):
        Digits(class_split="half")
