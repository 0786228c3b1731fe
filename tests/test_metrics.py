"""Shared metrics against independent computations (scikit-learn, loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reprzoo.metrics import EffectiveRank, EmbeddingStd, KNNAccuracy, OnlineLinearProbe, effective_rank, normalized_std
from reprzoo.metrics.knn import weighted_knn_predict


def _naive_weighted_knn(query, bank, labels, num_classes, k, t):
    preds = []
    for q in query:
        sims = [float(np.dot(q, b) / (np.linalg.norm(q) * np.linalg.norm(b))) for b in bank]
        top = sorted(range(len(bank)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in top:
            votes[int(labels[i])] += math.exp(sims[i] / t)
        preds.append(int(np.argmax(votes)))
    return preds


def test_weighted_knn_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    bank, query = torch.randn(60, 5, generator=g), torch.randn(17, 5, generator=g)
    labels = torch.randint(0, 4, (60,), generator=g)
    ours = weighted_knn_predict(query, bank, labels, 4, k=7, temperature=0.1, chunk_size=5)
    assert ours.tolist() == _naive_weighted_knn(query.numpy(), bank.numpy(), labels.numpy(), 4, 7, 0.1)


def test_knn_with_huge_temperature_is_majority_vote_like_sklearn():
    from sklearn.neighbors import KNeighborsClassifier

    g = torch.Generator().manual_seed(1)
    bank = torch.nn.functional.normalize(torch.randn(80, 6, generator=g), dim=1)
    query = torch.nn.functional.normalize(torch.randn(30, 6, generator=g), dim=1)
    labels = torch.randint(0, 3, (80,), generator=g)
    ours = weighted_knn_predict(query, bank, labels, 3, k=5, temperature=1e6)
    ref = KNeighborsClassifier(5, metric="cosine").fit(bank.numpy(), labels.numpy()).predict(query.numpy())
    # ties aside, equal-weight votes are sklearn's majority vote
    assert (ours.numpy() == ref).mean() > 0.9


def test_knn_accuracy_metric_and_ignored_labels():
    metric = KNNAccuracy(num_classes=2, k=1)
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    metric.update(bank, torch.tensor([0, 1]), bank=True)
    metric.update(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.0, 1.0]]), torch.tensor([0, 0, -1]))
    assert metric.compute().item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="num_classes"):
        KNNAccuracy(num_classes=1)


def test_knn_argument_checks():
    with pytest.raises(ValueError, match="temperature"):
        weighted_knn_predict(torch.randn(2, 3), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 2, temperature=0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        weighted_knn_predict(torch.randn(2, 3), torch.randn(4, 5), torch.zeros(4, dtype=torch.long), 2)


def test_normalized_std_collapsed_and_spread():
    assert normalized_std(torch.ones(16, 8)).item() == pytest.approx(0.0, abs=1e-6)
    spread = normalized_std(torch.randn(20000, 64)).item()
    assert spread == pytest.approx(1 / math.sqrt(64), rel=0.05)


def test_effective_rank_against_formula():
    x = torch.randn(50, 6, dtype=torch.float64)
    s = np.linalg.svd((x - x.mean(0)).numpy(), compute_uv=False)
    p = s / s.sum()
    expected = math.exp(-(p * np.log(p)).sum())
    assert effective_rank(x).item() == pytest.approx(expected, rel=1e-5)
    rank_one = torch.randn(40, 1) @ torch.randn(1, 5)
    assert effective_rank(rank_one).item() == pytest.approx(1.0, abs=1e-3)


def test_statistic_metrics_accumulate_batches():
    x = torch.randn(30, 4)
    std, rank = EmbeddingStd(), EffectiveRank()
    for chunk in x.split(7):
        std.update(chunk)
        rank.update(chunk)
    assert std.compute().item() == pytest.approx(normalized_std(x).item(), rel=1e-5)
    assert rank.compute().item() == pytest.approx(effective_rank(x).item(), rel=1e-5)


def test_online_probe_is_detached_and_ignores_unlabelled():
    probe = OnlineLinearProbe(4, 3)
    features = torch.randn(6, 4, requires_grad=True)
    loss = probe.training_loss(features, torch.tensor([0, 1, 2, -1, -1, 0]))
    loss.backward()
    assert features.grad is None
    assert probe.classifier.weight.grad is not None
    unlabelled = probe.training_loss(torch.randn(3, 4), torch.full((3,), -1))
    assert unlabelled.item() == 0.0
