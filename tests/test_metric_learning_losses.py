"""The metric-learning losses against pytorch-metric-learning (where it implements the same loss) and against loops
that re-derive each paper's equation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprzoo.losses.contrastive import supervised_contrastive
from reprzoo.losses.metric_learning import (
    arcface_logits,
    cosface_logits,
    cosine_logits,
    margin_softmax_loss,
    multi_similarity_loss,
    multi_similarity_mining,
    nearest_places,
    normalized_softmax_loss,
    place_proxies,
)

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")


def batch(n=24, d=16, classes=5, seed=0, unlabelled=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    labels[:unlabelled] = -1
    return z, labels


# ----------------------------------------------------------------------------- Multi-Similarity
def ms_loop(z, labels, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    """Eq. 12 of arXiv:1904.06627 anchor by anchor, with the mining of Eqs. 7-8, in Python numbers."""
    keep = [i for i in range(len(labels)) if labels[i] >= 0]
    z = F.normalize(z[keep], dim=1).tolist()
    y = [int(labels[i]) for i in keep]
    sim = [[sum(a * b for a, b in zip(u, v)) for v in z] for u in z]
    total = 0.0
    for i in range(len(y)):
        pos = [sim[i][k] for k in range(len(y)) if k != i and y[k] == y[i]]
        neg = [sim[i][k] for k in range(len(y)) if y[k] != y[i]]
        if epsilon is not None:
            mined_neg = [s for s in neg if pos and s > min(pos) - epsilon]
            mined_pos = [s for s in pos if neg and s < max(neg) + epsilon]
        else:
            mined_pos, mined_neg = pos, neg
        total += math.log(1 + sum(math.exp(-alpha * (s - base)) for s in mined_pos)) / alpha
        total += math.log(1 + sum(math.exp(beta * (s - base)) for s in mined_neg)) / beta
    return total / len(y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_similarity_matches_pml_loss_with_its_miner(seed):
    z, labels = batch(seed=seed)
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.1)
    expected = pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)(z, labels, miner(z, labels))
    torch.testing.assert_close(multi_similarity_loss(z, labels), expected)


def test_multi_similarity_mining_selects_the_pairs_of_pml_miner():
    z, labels = batch(n=30, seed=3)
    a1, p, a2, n = pml_miners.MultiSimilarityMiner(epsilon=0.1)(z, labels)
    similarity = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T
    positive, negative = multi_similarity_mining(similarity, labels, 0.1)
    assert set(zip(a1.tolist(), p.tolist())) == set(map(tuple, positive.nonzero().tolist()))
    assert set(zip(a2.tolist(), n.tolist())) == set(map(tuple, negative.nonzero().tolist()))
    assert 0 < positive.sum() < (labels[:, None] == labels[None, :]).sum() - len(labels)  # it mined, not all


@pytest.mark.parametrize("epsilon", [0.1, None])
def test_multi_similarity_matches_the_paper_loop_and_ignores_unlabelled(epsilon):
    z, labels = batch(seed=4, unlabelled=5)
    expected = ms_loop(z, labels, epsilon=epsilon)
    assert multi_similarity_loss(z, labels, epsilon=epsilon).item() == pytest.approx(expected, rel=1e-9)
    # the unlabelled rows change nothing: the loss of the labelled rows alone
    assert multi_similarity_loss(z[5:], labels[5:], epsilon=epsilon).item() == pytest.approx(expected, rel=1e-9)


def test_multi_similarity_gradient_matches_pml():
    z, labels = batch(seed=5)
    ours = z.clone().requires_grad_(True)
    theirs = z.clone().requires_grad_(True)
    multi_similarity_loss(ours, labels).backward()
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.1)
    pml_losses.MultiSimilarityLoss()(theirs, labels, miner(theirs, labels)).backward()
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_multi_similarity_checks_its_arguments():
    z, labels = batch()
    with pytest.raises(ValueError, match="labels must be"):
        multi_similarity_loss(z, labels[:-1])
    with pytest.raises(ValueError, match="alpha and beta must be positive"):
        multi_similarity_loss(z, labels, alpha=0.0)
    with pytest.raises(ValueError, match="square"):
        multi_similarity_mining(z @ z[:3].T, labels)
    assert multi_similarity_loss(z, torch.full_like(labels, -1)).item() == 0.0


# ----------------------------------------------------------------------------- SupCon (reused from contrastive.py)
def test_supervised_contrastive_matches_pml_supcon():
    z, labels = batch(n=32, seed=6)
    labels[0] = 4
    labels[1:] = labels[1:] % 4  # class 4 has a single sample: an anchor without positives, skipped by both
    expected = pml_losses.SupConLoss(temperature=0.1)(z, labels)
    torch.testing.assert_close(supervised_contrastive(z, labels, temperature=0.1), expected)


def test_supervised_contrastive_takes_no_unlabelled_anchor():
    """Rows labelled -1 are no anchor and nobody's positive; they stay in the denominators as negatives (the
    shared loss's choice): the loss equals PML's on the labelled anchors with the unlabelled rows given labels of
    their own."""
    z, labels = batch(n=32, seed=6, unlabelled=4)
    own = labels.clone()
    own[:4] = torch.arange(100, 104)  # singletons: negatives of everyone, anchors without positives
    expected = pml_losses.SupConLoss(temperature=0.1)(z, own)
    torch.testing.assert_close(supervised_contrastive(z, labels, temperature=0.1), expected)


# ----------------------------------------------------------------------------- classifiers on the hypersphere
def pml_with_weights(loss, weight):
    loss.W.data = weight.T.clone()  # PML holds its own (dim, classes) matrix
    return loss


@pytest.mark.parametrize("seed", [0, 1])
def test_arcface_matches_pml(seed):
    z, labels = batch(d=8, seed=seed)
    weight = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
    pml = pml_with_weights(pml_losses.ArcFaceLoss(5, 8, margin=np.degrees(0.5), scale=64), weight)
    torch.testing.assert_close(margin_softmax_loss(z, weight, labels, "arcface"), pml(z, labels))


def test_cosface_matches_pml():
    z, labels = batch(d=8, seed=2)
    weight = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    pml = pml_with_weights(pml_losses.CosFaceLoss(5, 8, margin=0.35, scale=64), weight)
    torch.testing.assert_close(margin_softmax_loss(z, weight, labels, "cosface"), pml(z, labels))


def test_normalized_softmax_matches_pml():
    z, labels = batch(d=8, seed=7)
    weight = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    pml = pml_with_weights(pml_losses.NormalizedSoftmaxLoss(5, 8, temperature=0.05), weight)
    torch.testing.assert_close(normalized_softmax_loss(z, weight, labels, 0.05), pml(z, labels))


def test_margin_logits_follow_the_papers_formulas_entry_by_entry():
    cosine = torch.tensor([[0.9, -0.2, 0.1], [-0.95, 0.3, 0.0], [0.5, 0.5, 0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, -1])
    arc, cos = arcface_logits(cosine, labels, 0.5, 64.0), cosface_logits(cosine, labels, 0.35, 64.0)
    for i in range(3):
        for j in range(3):
            c = cosine[i, j].item()
            if labels[i] == j:
                theta = math.acos(c)
                target = math.cos(theta + 0.5) if theta + 0.5 <= math.pi else c - 0.5 * math.sin(0.5)
                assert arc[i, j].item() == pytest.approx(64 * target)
                assert cos[i, j].item() == pytest.approx(64 * (c - 0.35))
            else:  # other classes, and every class of an unlabelled row: no margin
                assert arc[i, j].item() == pytest.approx(64 * c) and cos[i, j].item() == pytest.approx(64 * c)
    # theta = acos(-0.95) = 2.82 > pi - 0.5: the monotone fallback branch was exercised above
    assert math.acos(-0.95) > math.pi - 0.5


def test_classifier_losses_ignore_unlabelled_and_check_arguments():
    z, labels = batch(d=8, seed=9, unlabelled=6)
    weight = torch.randn(5, 8, dtype=torch.float64)
    for kind in ("arcface", "cosface"):
        torch.testing.assert_close(
            margin_softmax_loss(z, weight, labels, kind), margin_softmax_loss(z[6:], weight, labels[6:], kind)
        )
    torch.testing.assert_close(normalized_softmax_loss(z, weight, labels), normalized_softmax_loss(z[6:], weight, labels[6:]))
    with pytest.raises(ValueError, match="kind must be"):
        margin_softmax_loss(z, weight, labels, "sphereface")
    with pytest.raises(ValueError, match="share d"):
        cosine_logits(z, weight[:, :4])
    with pytest.raises(ValueError, match="temperature must be positive"):
        normalized_softmax_loss(z, weight, labels, 0.0)
    with pytest.raises(ValueError, match="margin must be an angle"):
        arcface_logits(cosine_logits(z, weight), labels, margin=4.0)


# ----------------------------------------------------------------------------- GPM's proxies and index
def test_place_proxies_and_nearest_places_match_a_loop():
    z, labels = batch(n=40, d=6, classes=6, seed=11, unlabelled=3)
    labels[labels == 5] = 4  # place 5 has no image
    sums, counts = place_proxies(z, labels, 6)
    for p in range(6):
        members = [i for i in range(len(labels)) if labels[i] == p]
        assert counts[p].item() == len(members)
        expected = z[members].sum(0) if members else torch.zeros(6, dtype=z.dtype)
        torch.testing.assert_close(sums[p], expected)
    neighbours = nearest_places(sums, counts, 2)
    proxies = {p: F.normalize(sums[p] / counts[p], dim=0) for p in range(6) if counts[p] > 0}
    for p in proxies:
        ranked = sorted((q for q in proxies if q != p), key=lambda q: -float(proxies[p] @ proxies[q]))
        assert neighbours[p].tolist() == ranked[:2]
    assert neighbours[5].tolist() == [-1, -1] and 5 not in neighbours.flatten().tolist()


def test_place_proxies_accumulate_over_batches_and_check_arguments():
    z, labels = batch(n=30, d=4, classes=3, seed=12)
    whole = place_proxies(z, labels, 3)
    parts = [place_proxies(z[s : s + 10], labels[s : s + 10], 3) for s in (0, 10, 20)]
    torch.testing.assert_close(sum(p[0] for p in parts), whole[0])
    torch.testing.assert_close(sum(p[1] for p in parts), whole[1])
    with pytest.raises(ValueError, match="below num_places"):
        place_proxies(z, labels, 2)
    with pytest.raises(ValueError, match="k must be in"):
        nearest_places(*whole, k=3)


# ----------------------------------------------------------------------------- contrastive and triplet losses
def pair_loops(z, labels, pos_margin=0.0, neg_margin=1.0, margin=0.05):
    """The contrastive and triplet losses pair by pair and triplet by triplet, in Python numbers, averaging the
    non-zero terms (the Reality Check's reduction)."""
    z = F.normalize(z, dim=1)
    n = len(labels)
    dist = [[float((z[i] - z[j]).norm()) for j in range(n)] for i in range(n)]
    y = [int(v) for v in labels]
    pos = [dist[i][j] for i in range(n) for j in range(n) if i != j and y[i] >= 0 and y[i] == y[j]]
    neg = [dist[i][j] for i in range(n) for j in range(n) if y[i] >= 0 and y[j] >= 0 and y[i] != y[j]]

    def avg_nonzero(values):
        values = [v for v in values if v > 0]
        return sum(values) / len(values) if values else 0.0

    contrastive = avg_nonzero([max(d - pos_margin, 0) for d in pos]) + avg_nonzero([max(neg_margin - d, 0) for d in neg])
    triplets = [
        max(dist[a][p] - dist[a][q] + margin, 0)
        for a in range(n)
        for p in range(n)
        for q in range(n)
        if a != p and y[a] >= 0 and y[a] == y[p] and y[q] >= 0 and y[q] != y[a]
    ]
    return contrastive, avg_nonzero(triplets)


@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_and_triplet_losses_match_pml(seed):
    from reprzoo.losses.metric_learning import contrastive_pair_loss, triplet_margin_loss

    z, labels = batch(seed=seed)
    expected = pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)(z, labels)
    torch.testing.assert_close(contrastive_pair_loss(z, labels, 0.0, 1.0), expected)
    expected = pml_losses.TripletMarginLoss(margin=0.05)(z, labels)
    torch.testing.assert_close(triplet_margin_loss(z, labels, 0.05), expected)


def test_contrastive_and_triplet_losses_match_loops_and_ignore_unlabelled():
    from reprzoo.losses.metric_learning import contrastive_pair_loss, triplet_margin_loss

    z, labels = batch(n=12, seed=3, unlabelled=3)
    contrastive, triplet = pair_loops(z, labels, 0.2, 0.8, 0.3)
    assert contrastive_pair_loss(z, labels, 0.2, 0.8).item() == pytest.approx(contrastive, rel=1e-9)
    assert triplet_margin_loss(z, labels, 0.3).item() == pytest.approx(triplet, rel=1e-9)
    z.requires_grad_(True)
    (contrastive_pair_loss(z, labels) + triplet_margin_loss(z, labels)).backward()
    assert torch.isfinite(z.grad).all() and z.grad[:3].abs().sum() == 0  # unlabelled rows take part in nothing
    with pytest.raises(ValueError, match="pos_margin"):
        contrastive_pair_loss(z, labels, 0.5, 0.5)
    with pytest.raises(ValueError, match="margin"):
        triplet_margin_loss(z, labels, 0.0)
