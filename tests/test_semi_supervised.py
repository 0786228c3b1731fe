"""Semi-supervised learning: FixMatch's and ShrinkMatch's losses against per-sample loops (ShrinkMatch's against a
port of the authors' ``shrink_loss``), the batch sampler's composition and determinism, the fixmatch augmentation,
and a few training steps of both methods on digits with 5 labels per class."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from reprzoo.datamodules import Digits
from reprzoo.datamodules.base import TransformedDataset
from reprzoo.datamodules.images import TensorImageDataset
from reprzoo.datamodules.labels import dataset_labels
from reprzoo.datamodules.semi_supervised import (
    MAX_CYCLES,
    SemiSupervisedSampler,
    semi_supervised_loader,
    split_labelled,
)
from reprzoo.datamodules.transforms import Cutout, build_augmentation
from reprzoo.lightning_modules import FixMatch, ShrinkMatch
from reprzoo.losses.semi_supervised import align_distribution, fixmatch_loss, shrink_loss, shrunk_class_space


def peaked_probs(n: int, classes: int, seed: int) -> torch.Tensor:
    """Predictions from nearly uniform to very confident: some pass the threshold, some pass only after shrinking,
    some never (the nearly uniform ones: top-1 and last class alone give about 1/2)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.cat([torch.full((4,), 0.01), torch.linspace(0.5, 12.0, n - 4)])[:, None]
    return (torch.randn(n, classes, generator=g) * scale).softmax(-1)


# ------------------------------------------------------------------ FixMatch's loss
def fixmatch_loop(probs, logits_strong, threshold):
    total = 0.0
    for p, s in zip(probs, logits_strong):
        if p.max() >= threshold:
            total = total - torch.log_softmax(s, -1)[p.argmax()]
    return total / len(probs)


def test_fixmatch_loss_matches_a_per_sample_loop_and_stops_gradients_at_the_pseudo_labels():
    logits_weak = (torch.randn(40, 10) * torch.linspace(0.1, 8, 40)[:, None]).requires_grad_()
    logits_strong = torch.randn(40, 10, requires_grad=True)
    probs = logits_weak.softmax(-1)
    loss, mask = fixmatch_loss(probs, logits_strong, 0.95)
    assert 0 < mask.sum() < 40, "the batch should hold confident and unconfident samples"
    torch.testing.assert_close(mask, (probs.max(-1).values >= 0.95).float())
    torch.testing.assert_close(loss, fixmatch_loop(probs.detach(), logits_strong, 0.95))
    loss.backward()
    assert logits_weak.grad is None  # the pseudo-labels are fixed targets
    assert logits_strong.grad is not None and logits_strong.grad[mask == 0].abs().sum() == 0


def test_fixmatch_loss_checks_its_arguments_and_handles_an_empty_batch():
    with pytest.raises(ValueError, match="both be"):
        fixmatch_loss(torch.rand(4, 3), torch.rand(4, 5))
    with pytest.raises(ValueError, match="threshold"):
        fixmatch_loss(torch.rand(4, 3), torch.rand(4, 3), threshold=1.5)
    loss, mask = fixmatch_loss(torch.rand(0, 3), torch.rand(0, 3, requires_grad=True))
    assert loss.item() == 0 and mask.numel() == 0 and loss.requires_grad


def test_align_distribution_divides_by_the_prior_and_renormalises():
    probs, prior = torch.tensor([[0.6, 0.3, 0.1]]), torch.tensor([0.5, 0.25, 0.25])
    ratio = torch.tensor([1.2, 1.2, 0.4])
    torch.testing.assert_close(align_distribution(probs, prior), (ratio / ratio.sum())[None])
    with pytest.raises(ValueError, match="class_prior"):
        align_distribution(probs, torch.ones(4))


# ------------------------------------------------------------------ ShrinkMatch's loss
def authors_shrink_loss(pseudo_label, logits_u_s, conf_thresh):
    """The authors' ``shrink_loss`` (github.com/LiheYoung/ShrinkMatch, CIFAR/shrinkmatch.py), on CPU."""
    removed_class_idx = []
    loss_u_shrink_batch = 0
    B, C = pseudo_label.shape
    max_probs = pseudo_label.max(dim=-1)[0]
    mask = pseudo_label.ge(conf_thresh).float()
    sorted_prob_w, sorted_idx = pseudo_label.topk(C, dim=-1, sorted=True)
    sorted_logits_s = logits_u_s.gather(dim=-1, index=sorted_idx)
    if mask.mean().item() == 1:
        loss_u_shrink_batch = 0
    else:
        for b in range(B):
            if max_probs[b] >= conf_thresh:
                continue
            for c in range(2, C):
                sub_conf = sorted_prob_w[b, 0] / (sorted_prob_w[b, 0] + sorted_prob_w[b, c:].sum())
                if (sub_conf >= conf_thresh) or (c == C - 1):
                    sub_logits_s = torch.cat([sorted_logits_s[b, :1], sorted_logits_s[b, c:]], dim=0)
                    loss_u_shrink = F.cross_entropy(sub_logits_s[None,], torch.zeros(1).long(), reduction="none")[0]
                    loss_u_shrink *= max_probs[b] * (sub_conf >= conf_thresh)
                    loss_u_shrink_batch += loss_u_shrink
                    removed_class_idx.append(c)
                    break
    return loss_u_shrink_batch, removed_class_idx


@pytest.mark.parametrize("threshold", [0.95, 0.7])
@pytest.mark.parametrize("classes", [10, 4])
def test_shrink_loss_matches_the_authors_loop(threshold, classes):
    probs = peaked_probs(64, classes, seed=classes)
    logits_strong = torch.randn(64, classes, requires_grad=True)
    loss, removed = shrink_loss(probs, logits_strong, threshold)
    expected, removed_idx = authors_shrink_loss(probs, logits_strong, threshold)
    torch.testing.assert_close(loss, expected / len(probs))
    assert removed.tolist() == [c - 1 for c in removed_idx]  # the authors' c: classes 1 .. c-1 removed
    _, passed = shrunk_class_space(probs[probs.max(-1).values < threshold], threshold)[1:]
    assert passed.any() and (~passed).any()  # some pass after shrinking, some stay uncertain
    (grad,) = torch.autograd.grad(loss, logits_strong)
    assert grad[probs.max(-1).values >= threshold].abs().sum() == 0  # certain samples are FixMatch's


def test_shrunk_class_space_by_hand():
    probs = torch.tensor([[0.3, 0.05, 0.5, 0.05, 0.1], [0.4, 0.35, 0.25, 0.0, 0.0]])
    keep, confidence, passed = shrunk_class_space(probs[:, :5], 0.8)
    # row 0 sorted: 0.5 (class 2), 0.3 (0), 0.1 (4), 0.05, 0.05: removing class 0 gives 0.5/0.7 < 0.8, removing
    # classes 0 and 4 gives 0.5/0.6 >= 0.8
    assert keep[0].tolist() == [False, True, True, True, False]
    assert math.isclose(confidence[0].item(), 0.5 / 0.6, rel_tol=1e-6) and passed[0]
    # row 1: removing class 1 gives 0.4/0.65; removing classes 1 and 2 leaves only zero-probability classes: 1.0
    assert keep[1].tolist() == [True, False, False, True, True] and confidence[1] == 1.0
    probs3 = torch.tensor([[0.4, 0.35, 0.25]])
    keep, confidence, passed = shrunk_class_space(probs3, 0.95)
    assert keep.tolist() == [[True, False, True]] and not passed[0]
    assert math.isclose(confidence.item(), 0.4 / 0.65, rel_tol=1e-6)
    loss, _ = shrink_loss(probs3, torch.randn(1, 3, requires_grad=True), 0.95)
    assert loss.item() == 0  # below the threshold even when shrunk: weighted by 0
    with pytest.raises(ValueError, match="at least 3 classes"):
        shrunk_class_space(torch.rand(4, 2))


# ------------------------------------------------------------------ the batch sampler
def test_sampler_composition():
    labelled, unlabelled = list(range(0, 100, 10)), [i for i in range(100) if i % 10]
    sampler = SemiSupervisedSampler(labelled, unlabelled, batch_size=4, unlabelled_ratio=3, seed=1)
    batches = sampler.batches()
    assert len(batches) == sampler.num_batches == 90 // 12
    assert list(sampler) == [key for batch in batches for key in batch] and len(sampler) == len(list(sampler))
    for batch in batches:
        assert len(batch) == 16
        assert all(i in labelled for i, _ in batch[:4]) and all(i in unlabelled for i, _ in batch[4:])
        assert all(r == 0 for _, r in batch[4:])  # unlabelled keys: the epoch
    seen = [i for batch in batches for i, _ in batch[4:]]
    assert len(seen) == len(set(seen)) == 7 * 12  # no unlabelled sample twice in an epoch
    draws = [key for batch in batches for key in batch[:4]]
    assert len(set(draws)) == len(draws), "a labelled sample drawn twice must get another augmentation round"
    counts = torch.bincount(torch.tensor([i for i, _ in draws]), minlength=100)[labelled]
    assert counts.max() - counts.min() <= 1  # cycled: each labelled sample once per pass


def test_sampler_is_deterministic_per_seed_and_epoch_and_resumes():
    def make(seed):
        return SemiSupervisedSampler(range(5), range(5, 105), batch_size=2, unlabelled_ratio=5, seed=seed)

    a, b = make(0), make(0)
    assert list(a) == list(b)
    first = a.batches()
    a.set_epoch(1)
    second = a.batches()
    assert second != first and {r for batch in second for _, r in batch[:2]} <= set(range(MAX_CYCLES, 2 * MAX_CYCLES))
    assert make(1).batches() != first
    b.set_epoch(1)
    b.start_at(3)
    assert list(b) == [key for batch in second[3:] for key in batch]
    b.set_epoch(2)  # a new epoch starts from its first batch
    assert len(list(b)) == len(b) == b.num_batches * 12


def test_sampler_shards_the_unlabelled_samples_across_ranks():
    shards = [SemiSupervisedSampler(range(4), range(4, 84), 2, 4, seed=3, rank=r, world_size=2).batches() for r in (0, 1)]
    unl = [{i for batch in s for i, _ in batch[2:]} for s in shards]
    assert unl[0] and unl[1] and not unl[0] & unl[1]
    assert len(shards[0]) == len(shards[1]) == 80 // 2 // 8


def test_sampler_checks_its_arguments():
    with pytest.raises(ValueError, match="at least one labelled"):
        SemiSupervisedSampler([], range(10), 2)
    with pytest.raises(ValueError, match="positive"):
        SemiSupervisedSampler([0], range(10), 0)
    with pytest.raises(ValueError, match="make no batch"):
        SemiSupervisedSampler([0], range(10), 2, unlabelled_ratio=7)


def test_loader_gives_labelled_then_unlabelled_with_distinct_views_of_repeated_samples():
    images = torch.randint(0, 255, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1] + [-1] * 38)
    base = TensorImageDataset(images, labels)
    assert dataset_labels(base).tolist() == labels.tolist() and split_labelled(labels) == ([0, 1], list(range(2, 40)))
    transform = build_augmentation("fixmatch", 32, (0.5,) * 3, (0.25,) * 3)
    loader = semi_supervised_loader(TransformedDataset(base, transform, with_index=True), 2, 3, seed=0)
    (weak, strong), batch_labels, indices = next(iter(loader))
    assert weak.shape == strong.shape == (8, 3, 32, 32) and len(loader) == 38 // 6
    assert batch_labels[:2].tolist() in ([0, 1], [1, 0]) and (batch_labels[2:] == -1).all()
    views = [v for batch in loader for v, i in zip(batch[0][0], batch[2]) if i == 0]
    assert len(views) >= 2 and not torch.equal(views[0], views[1])
    again = [v for batch in loader for v, i in zip(batch[0][0], batch[2]) if i == 0]
    torch.testing.assert_close(torch.stack(views), torch.stack(again))  # the same epoch, the same views


# ------------------------------------------------------------------ the augmentation
def test_fixmatch_augmentation_gives_a_weak_and_a_strong_view():
    transform = build_augmentation("fixmatch", 32, (0.5,) * 3, (0.25,) * 3, hflip_prob=0.0)
    image = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    weak, strong = transform(image)
    assert weak.shape == strong.shape == (3, 32, 32) and weak.dtype == torch.float32
    assert not torch.equal(weak, strong)
    digits = Digits(augmentation="fixmatch", batch_size=4)  # the Digits defaults (crop_scale) are accepted
    digits.setup()
    assert [v.shape for v in digits.train_transform(digits._train[0][0])] == [(3, 32, 32)] * 2


def test_cutout_fills_a_clipped_square_with_grey():
    torch.manual_seed(0)
    for _ in range(20):
        out = Cutout(0.5)(torch.zeros(3, 32, 32, dtype=torch.uint8))
        filled = (out[0] == 127).sum().item()
        assert 0 < filled <= 256 and ((out == 127).sum(0) % 3 == 0).all()
        rows, cols = (out[0] == 127).nonzero().unbind(1)
        assert filled == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one rectangle
    with pytest.raises(ValueError, match="fraction"):
        Cutout(1.5)


# ------------------------------------------------------------------ the methods
def confident_half(model, views, labels) -> float:
    """Sharpen the classifier (predictions at init are nearly uniform) and set the threshold at the median
    confidence on the unlabelled weak views: half the batch is certain."""
    with torch.no_grad():
        model.classifier.weight.mul_(200.0)
        probs = model.logits(model.represent(views[0][labels < 0])).softmax(-1)
        model.hparams.threshold = float(probs.max(-1).values.median())
    return model.hparams.threshold


def batch(n_labelled=4, n_unlabelled=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(n_labelled + n_unlabelled, 3, 32, 32, generator=g) for _ in range(2)]
    labels = torch.cat([torch.arange(n_labelled) % 10, torch.full((n_unlabelled,), -1)])
    return views, labels


def test_fixmatch_loss_is_supervised_plus_lambda_u_times_the_pseudo_label_loss():
    torch.manual_seed(0)
    model = FixMatch(backbone="resnet_tiny_cifar", num_classes=10, lambda_u=2.0).eval()
    views, labels = batch()
    tau = confident_half(model, views, labels)
    with torch.no_grad():  # eval mode: batch norm per sample, so the reference can run the views apart
        got = model.training_loss(views, labels).loss
        lab, unl = labels >= 0, labels < 0
        sup = F.cross_entropy(model.logits(model.represent(views[0][lab])), labels[lab])
        probs = model.logits(model.represent(views[0][unl])).softmax(-1)
        expected = sup + 2.0 * fixmatch_loop(probs, model.logits(model.represent(views[1][unl])), tau)
    assert 0 < (probs.max(-1).values >= tau).sum() < len(probs)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_shrinkmatch_loss_adds_the_reweighted_shrunk_loss_of_its_auxiliary_head():
    torch.manual_seed(0)
    model = ShrinkMatch(backbone="resnet_tiny_cifar", num_classes=10, distribution_alignment=False).eval()
    views, labels = batch()
    tau = confident_half(model, views, labels)
    with torch.no_grad():
        got = model.training_loss(views, labels).loss
        lab, unl = labels >= 0, labels < 0
        sup = F.cross_entropy(model.logits(model.represent(views[0][lab])), labels[lab])
        probs = model.logits(model.represent(views[0][unl])).softmax(-1)
        strong = model.represent(views[1][unl])
        certain_ratio = (probs.max(-1).values >= tau).float().mean()  # the first batch sets the moving ratio
        shrunk, _ = authors_shrink_loss(probs, model.aux_head(strong), tau)
        expected = sup + fixmatch_loop(probs, model.logits(strong), tau) + certain_ratio * shrunk / len(probs)
    assert 0 < certain_ratio < 1 and shrunk > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.certain_ratio, certain_ratio)


def test_distribution_alignment_keeps_a_running_prior_in_training():
    model = FixMatch(backbone="resnet_tiny_cifar", num_classes=10, distribution_alignment=True, alignment_momentum=0.9)
    logits = torch.randn(6, 10)
    first = model.pseudo_label_probs(logits)
    prior = logits.softmax(-1).mean(0)
    torch.testing.assert_close(model.class_prior, prior)
    torch.testing.assert_close(first, align_distribution(logits.softmax(-1), prior))
    second = torch.randn(6, 10)
    model.pseudo_label_probs(second)
    torch.testing.assert_close(model.class_prior, 0.9 * prior + 0.1 * second.softmax(-1).mean(0))


def test_methods_check_their_arguments():
    with pytest.raises(ValueError, match="threshold"):
        FixMatch(backbone="resnet_tiny_cifar", num_classes=10, threshold=2.0)
    with pytest.raises(ValueError, match="at least 3"):
        ShrinkMatch(backbone="resnet_tiny_cifar", num_classes=2)
    with pytest.raises(ValueError, match="weak, strong"):
        FixMatch(backbone="resnet_tiny_cifar", num_classes=10).training_loss([torch.randn(2, 3, 32, 32)], torch.zeros(2).long())


class FewLabelDigits(Digits):
    """Digits with ``labels_per_class`` and semi-supervised batches: the loader the datamodules build when
    ``unlabelled_ratio`` is set (until then, here)."""

    def __init__(self, unlabelled_ratio: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.unlabelled_ratio = unlabelled_ratio

    def train_dataloader(self):
        self.setup()
        dataset = TransformedDataset(self._train, self.train_transform, with_index=True)
        return semi_supervised_loader(dataset, self.batch_size, self.unlabelled_ratio, self.training_seed())


@pytest.mark.parametrize("cls", [FixMatch, ShrinkMatch])
def test_trains_a_few_steps_on_few_labels(cls, tiny_trainer_kwargs):
    L.seed_everything(0)
    data = FewLabelDigits(labels_per_class=5, augmentation="fixmatch", augmentation_kwargs={"crop_scale": None}, batch_size=4)
    model = cls(backbone="resnet_tiny_cifar", num_classes=10, threshold=0.5)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer = L.Trainer(**{**tiny_trainer_kwargs, "limit_train_batches": 3})
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and "val/classifier_top1" in metrics
    assert "train/confident_ratio" in metrics and len(data.train_dataloader()) == (1437 - 50) // 12
    if cls is ShrinkMatch:
        assert "train/shrink_loss" in metrics and 0 <= model.certain_ratio <= 1
    assert any(not torch.equal(v, before[k]) for k, v in model.backbone.state_dict().items() if v.is_floating_point())
