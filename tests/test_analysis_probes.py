"""Probes on frozen features against sklearn / hand loops, and the property each paper states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB

from reprzoo.metrics.analysis.probes import (
    feature_norm_probe,
    gaussian_naive_bayes,
    instance_retrieval_map,
    naive_bayes_vs_logistic,
    off_the_shelf_svm,
    rashomon_ratio,
    sparse_probe,
)


def gaussian_classes(n_per_class: int, seed: int, classes: int = 3, dim: int = 64):
    """Gaussian class-conditional data with diagonal covariance of very different scales per dimension."""
    g = np.random.default_rng(0)
    means, scales = g.standard_normal((classes, dim)) * 0.5, np.exp(g.uniform(-2, 2, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    x = (means[y] + np.random.default_rng(seed).standard_normal((len(y), dim))) * scales
    return torch.tensor(x), torch.tensor(y)


def test_gaussian_naive_bayes_matches_sklearn_and_a_pooled_loop():
    x, y = gaussian_classes(20, seed=1, dim=8)
    test, _ = gaussian_classes(30, seed=2, dim=8)
    ours = gaussian_naive_bayes(x, y, test, shared_variance=False)
    assert torch.equal(ours, torch.as_tensor(GaussianNB().fit(x.numpy(), y.numpy()).predict(test.numpy())))
    xs, ys = x.numpy(), y.numpy()
    means = {c: xs[ys == c].mean(0) for c in range(3)}
    pooled = np.mean([(xs[i] - means[ys[i]]) ** 2 for i in range(len(xs))], axis=0) + 1e-9 * xs.var(0).max()
    expected = [max(range(3), key=lambda c: -0.5 * np.sum((t - means[c]) ** 2 / pooled) + np.log(1 / 3)) for t in test.numpy()]
    assert gaussian_naive_bayes(x, y, test).tolist() == expected


def test_naive_bayes_reaches_its_asymptote_with_fewer_samples():
    x, y = gaussian_classes(50, seed=1)
    test_x, test_y = gaussian_classes(100, seed=2)
    result = naive_bayes_vs_logistic(x, y, test_x, test_y, shots=(5, 50), repeats=5)
    nb, lr = result["naive_bayes_accuracy"], result["logistic_accuracy"]
    assert nb[0] > lr[0] + 0.15
    assert result["naive_bayes_full"] - nb[0] < 0.1 < result["logistic_full"] - lr[0]
    assert nb[1] == result["naive_bayes_full"] and lr[1] == result["logistic_full"]  # 50 shots = the whole split
    with pytest.raises(ValueError, match="smallest class count"):
        naive_bayes_vs_logistic(x, y, test_x, test_y, shots=(51,))


def test_sparse_probe_finds_the_one_unit_that_carries_the_label():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 32, generator=g)
    y = (x[:, 7] > 0).long()
    result = sparse_probe(x, y, ks=(1, 2, 32))
    assert result["ranking"][0] == 7 and result["f1"][0] > 0.95
    # k = D is the full logistic probe: the same fit as sklearn's on the same split
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(x.double().numpy(), y.numpy(), test_size=0.3, random_state=0, stratify=y)
    full = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    assert result["f1"][2] == pytest.approx(f1_score(y_test, full.predict(x_test)))
    order = np.argsort(-np.abs(x_train[y_train == 1].mean(0) - x_train[y_train == 0].mean(0)), kind="stable")
    assert result["ranking"].tolist() == order.tolist()
    with pytest.raises(ValueError, match="every k"):
        sparse_probe(x, y, ks=(33,))


def two_blobs(gap: float, n: int = 200, dim: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, dim, generator=g) * 0.3
    x[:, 0] = x[:, 0].abs() + gap / 2
    x[:, 0] *= 2 * y - 1
    return x, y


def test_rashomon_ratio_matches_a_grid_over_the_ball():
    x, y = two_blobs(gap=1.0)
    result = rashomon_ratio(x, y, thetas=(0.0, 0.05, 0.2), radius=0.8, num_models=20000)
    assert result["best_loss"] == result["probe_loss"] == 0.0
    z = ((x - x.mean(0)) / x.std(0, unbiased=False)).double().numpy()
    centre = result["probe"].numpy()[0]
    axis = np.linspace(-1, 1, 41)
    grid = np.stack(np.meshgrid(axis, axis, axis), -1).reshape(-1, 3)
    grid = grid[np.linalg.norm(grid, axis=1) <= 1]
    models = centre + 0.8 * np.linalg.norm(centre) * grid
    losses = ((z @ models[:, :2].T + models[:, 2] > 0).astype(int) != y.numpy()[:, None]).mean(0)
    for theta, ratio in zip(result["theta"], result["rashomon_ratio"]):
        assert ratio == pytest.approx((losses <= theta + 1e-12).mean(), abs=0.02)


def test_rashomon_ratio_grows_with_theta_and_with_the_margin():
    easy, hard = rashomon_ratio(*two_blobs(gap=2.0, dim=8)), rashomon_ratio(*two_blobs(gap=0.0, dim=8))
    for result in (easy, hard):
        assert result["rashomon_ratio"] == sorted(result["rashomon_ratio"])
    assert easy["rashomon_ratio"][1] > hard["rashomon_ratio"][1] + 0.5
    g = torch.Generator().manual_seed(0)
    y = torch.arange(150) % 3
    three = rashomon_ratio(torch.randn(150, 4, generator=g) * 0.3 + torch.eye(3, 4)[y] * 3, y)
    assert three["probe"].shape == (3, 5) and three["best_loss"] == 0.0
    assert three["rashomon_ratio"] == sorted(three["rashomon_ratio"]) and three["rashomon_ratio"][0] > 0.5


def test_off_the_shelf_svm_is_blind_to_the_feature_norm():
    x, y = gaussian_classes(40, seed=1, dim=16)
    test_x, test_y = gaussian_classes(40, seed=2, dim=16)
    base = off_the_shelf_svm(x, y, test_x, test_y)["svm_accuracy"]
    scale = torch.rand(len(test_x), 1, generator=torch.Generator().manual_seed(0)) * 10 + 0.1
    assert off_the_shelf_svm(x, y, test_x * scale, test_y)["svm_accuracy"] == base > 0.6  # chance: 1/3


def test_instance_retrieval_map_matches_sklearn_average_precision():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (60,), generator=g)
    x = torch.randn(60, 8, generator=g) + y[:, None] * 0.5
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    aps = []
    for q in range(60):
        rest = torch.arange(60) != q
        aps.append(average_precision_score((y[rest] == y[q]).numpy(), -torch.cdist(xn[q : q + 1], xn[rest])[0].numpy()))
    assert instance_retrieval_map(x, y)["map"] == pytest.approx(np.mean(aps))
    separated = torch.nn.functional.one_hot(y, 4).double() + 0.01 * x[:, :4]
    assert instance_retrieval_map(separated, y)["map"] == pytest.approx(1.0)
    assert instance_retrieval_map(x, y, max_samples=30)["num_queries"] <= 30


def test_feature_norm_probe_reads_linear_features_and_not_random_ones():
    g = np.random.default_rng(0)
    words = torch.tensor(g.standard_normal((120, 16)))
    linear = (words.numpy() @ g.standard_normal((16, 3)) > 0).astype(int)
    random = (g.uniform(size=(120, 3)) < 0.4).astype(int)
    norms = torch.tensor(np.concatenate([linear, random], axis=1))
    result = feature_norm_probe(words, norms)
    splitter = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for f in range(6):
        predicted = cross_val_predict(LogisticRegression(max_iter=1000), words.numpy(), norms[:, f].numpy(), cv=splitter)
        assert result["f1"][f].item() == pytest.approx(f1_score(norms[:, f].numpy(), predicted))
    assert result["f1"][:3].min() > 0.8 > 0.6 > result["f1"][3:].max()
    with pytest.raises(ValueError, match="at least 5 positive"):
        feature_norm_probe(words, torch.zeros(120, 1))
