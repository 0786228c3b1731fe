"""Probes on frozen features: naive Bayes vs logistic regression, k-sparse probing, the Rashomon ratio, the
off-the-shelf SVM / retrieval protocol and the semantic feature-norm probe.

Each function takes frozen features ``(N, D)`` and labels and returns a dict of named scalars, plus lists or
tensors where the paper's result is a curve. sklearn fits the discriminative classifiers; everything else is
written out here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _check_features(features: torch.Tensor, labels: torch.Tensor, name: str = "features") -> None:
    if features.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(features.shape)}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"labels must be (N,) with N = {len(features)}, got shape {tuple(labels.shape)}")


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def gaussian_naive_bayes(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    shared_variance: bool = True,
    var_smoothing: float = 1e-9,
) -> torch.Tensor:
    """Predict the class of each test sample with Gaussian naive Bayes fitted on the training samples.

    p(y = c | x) is proportional to pi_c prod_d N(x_d; mu_{c,d}, sigma^2_{(c,)d}): per-class means, and a diagonal
    variance that is shared by all classes (the pooled within-class variance, which makes naive Bayes a linear
    classifier like the logistic regression it is compared with) or per class (sklearn's ``GaussianNB``).
    ``var_smoothing`` times the largest feature variance is added to every variance, as sklearn does.

    Returns:
        ``(M,)`` predicted labels (values of ``train_labels``).
    """
    x, y, t = _numpy(train_features), train_labels.cpu().numpy(), _numpy(test_features)
    classes, y_index = np.unique(y, return_inverse=True)
    counts = np.bincount(y_index).astype(float)
    means = np.stack([x[y_index == c].mean(axis=0) for c in range(len(classes))])
    squares = (x - means[y_index]) ** 2
    if shared_variance:
        variances = np.broadcast_to(squares.mean(axis=0), means.shape)
    else:
        variances = np.stack([squares[y_index == c].mean(axis=0) for c in range(len(classes))])
    variances = variances + var_smoothing * x.var(axis=0).max()
    log_likelihood = -0.5 * (((t[:, None, :] - means) ** 2 / variances) + np.log(2 * np.pi * variances)).sum(axis=2)
    return torch.as_tensor(classes[(log_likelihood + np.log(counts / counts.sum())).argmax(axis=1)])


def naive_bayes_vs_logistic(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    shots: Sequence[int] = (1, 2, 5, 10, 20, 50),
    repeats: int = 5,
    shared_variance: bool = True,
    C: float = 1.0,
    seed: int = 0,
) -> dict:
    """Sample efficiency of naive Bayes against logistic regression as linear-evaluation classifiers.

    "Revisiting Discriminative vs. Generative Classifiers: Theory and Implications" (Zheng et al., 2023,
    arXiv:2302.02334): on frozen features, multiclass naive Bayes needs O(log n) samples to approach its
    asymptotic error where logistic regression needs O(n) (n the feature dimension), so naive Bayes is ahead with
    few labels and logistic regression catches up as labels grow. Both classifiers are fitted on ``shot`` seeded
    samples per class and scored on the whole test split; accuracies are averaged over ``repeats`` draws.

    Args:
        shots: labelled training samples per class, each at most the smallest class count.
        repeats: seeded draws per budget.
        shared_variance: naive Bayes with a variance shared by the classes (linear) or per class.
        C: inverse L2 strength of sklearn's ``LogisticRegression``.

    Returns:
        ``shots`` (list), ``naive_bayes_accuracy`` and ``logistic_accuracy`` (lists, mean over repeats per budget),
        ``naive_bayes_full`` and ``logistic_full`` (floats, fitted on the whole training split: the asymptotes).
        Cost: ``len(shots) * repeats`` fits.
    """
    from sklearn.linear_model import LogisticRegression

    _check_features(train_features, train_labels, "train_features")
    _check_features(test_features, test_labels, "test_features")
    y = train_labels.cpu().numpy()
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError("naive_bayes_vs_logistic needs at least two classes in the training labels")
    if max(shots) > counts.min():
        raise ValueError(f"the largest shot ({max(shots)}) exceeds the smallest class count ({counts.min()})")
    x, x_test, y_test = _numpy(train_features), _numpy(test_features), test_labels.cpu().numpy()

    def accuracies(index: np.ndarray) -> tuple[float, float]:
        nb = gaussian_naive_bayes(train_features[index], train_labels[index], test_features, shared_variance)
        lr = LogisticRegression(C=C, max_iter=1000).fit(x[index], y[index])
        return float((nb.numpy() == y_test).mean()), float((lr.predict(x_test) == y_test).mean())

    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in classes]
    nb_curve, lr_curve = [], []
    for shot in shots:
        draws = [accuracies(np.concatenate([rng.choice(i, shot, replace=False) for i in by_class])) for _ in range(repeats)]
        nb_curve.append(float(np.mean([d[0] for d in draws])))
        lr_curve.append(float(np.mean([d[1] for d in draws])))
    nb_full, lr_full = accuracies(np.arange(len(y)))
    return {
        "shots": list(shots),
        "naive_bayes_accuracy": nb_curve,
        "logistic_accuracy": lr_curve,
        "naive_bayes_full": nb_full,
        "logistic_full": lr_full,
    }


def sparse_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    ks: Sequence[int] = (1, 2, 4, 8, 16),
    positive_class: int = 1,
    test_fraction: float = 0.3,
    C: float = 1.0,
    seed: int = 0,
) -> dict:
    """k-sparse probing: F1 of a logistic probe restricted to the k top-ranked units, against k.

    "Finding Neurons in a Haystack: Case Studies with Sparse Probing" (Gurnee et al., 2023, arXiv:2305.01610):
    for a binary feature, rank the units by a cheap score, the absolute difference of the class-conditional means
    |E[x_j | y = 1] - E[x_j | y = 0]|, keep the top k and fit a logistic probe on them; F1 against k tells how
    localised the feature is (a high F1 at k = 1 points at a dedicated neuron). The ranking and the probes use a
    seeded stratified training split; F1 is measured on the held-out split.

    Args:
        labels: ``(N,)`` class labels; the task is ``positive_class`` against the rest.
        ks: the numbers of units, each at most D.

    Returns:
        ``k`` (list), ``f1`` (list, held-out F1 of the positive class per k), ``ranking`` (``(D,)`` unit indices,
        best first).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    _check_features(features, labels)
    if max(ks) > features.shape[1] or min(ks) < 1:
        raise ValueError(f"every k must lie in [1, D = {features.shape[1]}], got {list(ks)}")
    x, y = _numpy(features), (labels.cpu().numpy() == positive_class).astype(int)
    if y.sum() < 2 or (1 - y).sum() < 2:
        raise ValueError(f"need at least two samples of class {positive_class} and two of the rest")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    score = np.abs(x_train[y_train == 1].mean(axis=0) - x_train[y_train == 0].mean(axis=0))
    ranking = np.argsort(-score, kind="stable")
    f1 = []
    for k in ks:
        units = ranking[:k]
        probe = LogisticRegression(C=C, max_iter=1000).fit(x_train[:, units], y_train)
        f1.append(float(f1_score(y_test, probe.predict(x_test[:, units]), zero_division=0)))
    return {"k": list(ks), "f1": f1, "ranking": torch.as_tensor(ranking)}


def rashomon_ratio(
    features: torch.Tensor,
    labels: torch.Tensor,
    thetas: Sequence[float] = (0.01, 0.02, 0.05, 0.1),
    radius: float = 0.5,
    num_models: int = 2000,
    C: float = 1.0,
    seed: int = 0,
) -> dict:
    """Monte-Carlo Rashomon ratio of linear classifiers on frozen features.

    "On the Existence of Simpler Machine Learning Models" (Semenova, Rudin & Parr, 2022, arXiv:1908.01755): the
    Rashomon set R(F, theta) = {f in F : L(f) <= L(f*) + theta} holds the models of the hypothesis space F whose
    empirical loss is within theta of the best one, and the Rashomon ratio is Vol(R(F, theta)) / Vol(F); a large
    ratio suggests that simpler accurate models exist. The paper estimates it by sampling models from F.

    Ours: F is a ball of linear classifiers around the logistic probe fitted on the z-scored features: parameters
    (W, b) = P* + radius * ||P*||_F * U with U uniform in the unit ball, so the ratio does not depend on the
    probe's overall scale. L is the 0-1 loss on the given samples, and L(f*) the lowest loss among the probe and
    the sampled models.

    Returns:
        ``theta`` and ``rashomon_ratio`` (lists, the share of sampled models in the Rashomon set per theta; non-
        decreasing in theta), ``best_loss`` and ``probe_loss`` (floats), ``probe`` (the ``(rows, D + 1)`` centre
        P* = [W | b]; one row for two classes). Cost: O(num_models * N * D * rows).
    """
    from sklearn.linear_model import LogisticRegression

    _check_features(features, labels)
    x, y = _numpy(features), labels.cpu().numpy()
    if len(np.unique(y)) < 2:
        raise ValueError("rashomon_ratio needs at least two classes")
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    probe = LogisticRegression(C=C, max_iter=1000).fit(x, y)
    centre = np.concatenate([probe.coef_, probe.intercept_[:, None]], axis=1)
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((num_models, centre.size))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    offsets = directions * rng.uniform(size=(num_models, 1)) ** (1 / centre.size)
    models = centre + radius * np.linalg.norm(centre) * offsets.reshape(num_models, *centre.shape)
    scores = np.einsum("nd,mrd->mnr", x, models[:, :, :-1]) + models[:, None, :, -1]
    predicted = (scores[..., 0] > 0).astype(int) if centre.shape[0] == 1 else scores.argmax(axis=2)
    losses = (probe.classes_[predicted] != y).mean(axis=1)
    probe_loss = float((probe.predict(x) != y).mean())
    best = min(probe_loss, float(losses.min()))
    return {
        "theta": list(thetas),
        "rashomon_ratio": [float((losses <= best + theta + 1e-12).mean()) for theta in thetas],
        "best_loss": best,
        "probe_loss": probe_loss,
        "probe": torch.as_tensor(centre),
    }


def off_the_shelf_svm(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    C: float = 1.0,
) -> dict[str, float]:
    """Linear-SVM accuracy on L2-normalised frozen features.

    "CNN Features off-the-shelf: an Astounding Baseline for Recognition" (Razavian et al., 2014, arXiv:1403.6382):
    the penultimate features of a frozen network are L2-normalised and a linear SVM is trained on them per task.
    Ours: no jittered crops (average the features of augmented views before calling, if wanted); sklearn's
    ``LinearSVC`` (one-vs-rest, squared hinge) is the SVM.

    Returns:
        ``svm_accuracy``: test accuracy.
    """
    from sklearn.svm import LinearSVC

    _check_features(train_features, train_labels, "train_features")
    _check_features(test_features, test_labels, "test_features")
    svm = LinearSVC(C=C).fit(_l2_normalise(_numpy(train_features)), train_labels.cpu().numpy())
    predicted = svm.predict(_l2_normalise(_numpy(test_features)))
    return {"svm_accuracy": float((predicted == test_labels.cpu().numpy()).mean())}


def instance_retrieval_map(
    features: torch.Tensor, labels: torch.Tensor, max_samples: int | None = None, seed: int = 0
) -> dict[str, float]:
    """Mean average precision of L2 nearest-neighbour retrieval on L2-normalised features, each sample a query.

    The retrieval protocol of "CNN Features off-the-shelf" (Razavian et al., 2014, arXiv:1403.6382): every query
    ranks the other samples by the L2 distance of their normalised features; the relevant items are those with the
    query's label. AP = (1/|rel|) sum over relevant items of precision at their rank; mAP averages over queries
    that have at least one relevant item. Ours: no spatial search over sub-patches.

    Args:
        max_samples: a seeded subset of at most this many samples (the cost is O(N^2 D)); None keeps all.

    Returns:
        ``map`` and ``num_queries`` (queries with a relevant item).
    """
    _check_features(features, labels)
    if max_samples is not None and len(features) > max_samples:
        keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:max_samples]
        features, labels = features[keep], labels[keep]
    x = torch.nn.functional.normalize(features.detach().double(), dim=1)
    distances = torch.cdist(x, x).fill_diagonal_(float("inf"))
    order = distances.argsort(dim=1)[:, :-1]  # the query itself sorts last
    relevant = (labels[order] == labels[:, None]).double()
    hits = relevant.cumsum(dim=1)
    precision_at_hits = hits / torch.arange(1, order.shape[1] + 1, dtype=torch.double) * relevant
    has_relevant = relevant.sum(dim=1) > 0
    if not has_relevant.any():
        raise ValueError("no query has another sample with its label")
    ap = precision_at_hits.sum(dim=1)[has_relevant] / relevant.sum(dim=1)[has_relevant]
    return {"map": float(ap.mean()), "num_queries": int(has_relevant.sum())}


def feature_norm_probe(embeddings: torch.Tensor, norms: torch.Tensor, folds: int = 5, C: float = 1.0, seed: int = 0) -> dict:
    """Per-feature cross-validated F1 of linear classifiers predicting human semantic-norm features of words.

    "Are distributional representations ready for the real world? Evaluating word vectors for grounded perceptual
    meaning" (Lucy & Gauthier, 2017, arXiv:1705.11168): for each feature of a semantic-norm dataset (McRae, CSLB:
    "is_round", "has_wheels", ...), a binary logistic-regression classifier predicts from a concept's word vector
    whether participants listed the feature for it; the per-feature F1 shows which perceptual and conceptual
    features a representation encodes. Here each feature's F1 pools the predictions of a seeded stratified
    ``folds``-fold cross-validation over words.

    Args:
        embeddings: ``(W, D)`` word vectors of the W concepts.
        norms: ``(W, F)`` binary matrix, 1 where the feature is listed for the concept; every feature needs at
            least ``folds`` positive and ``folds`` negative concepts (filter rare features first, as the paper does).

    Returns:
        ``f1`` (``(F,)`` tensor, the held-out F1 per feature) and ``mean_f1``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if embeddings.ndim != 2 or norms.ndim != 2 or len(embeddings) != len(norms):
        raise ValueError(f"need (W, D) embeddings and (W, F) norms, got {tuple(embeddings.shape)}, {tuple(norms.shape)}")
    y = norms.cpu().numpy().astype(int)
    positives = y.sum(axis=0)
    if min(positives.min(), (len(y) - positives).min()) < folds:
        raise ValueError(f"every feature needs at least {folds} positive and {folds} negative words")
    x = _numpy(embeddings)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    f1 = [
        f1_score(y[:, f], cross_val_predict(LogisticRegression(C=C, max_iter=1000), x, y[:, f], cv=splitter))
        for f in range(y.shape[1])
    ]
    return {"f1": torch.tensor(f1), "mean_f1": float(np.mean(f1))}
