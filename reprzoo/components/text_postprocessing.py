"""Post-hoc transforms of trained text embeddings.

- :func:`zipfian_whitening` and :func:`zipfian_symmetry`: "Zipfian Whitening" (Yokoi, Bao, Kurita & Shimodaira,
  NeurIPS 2024, arXiv:2411.00680): PCA whitening under the words' empirical frequencies instead of a uniform
  measure, and the paper's frequency-weighted symmetry scores (1st moment: centrality; 2nd moment: isotropy).
- :func:`iterative_nullspace_projection`: "Null It Out: Guarding Protected Attributes by Iterative Nullspace
  Projection" (Ravfogel, Elazar, Gonen, Twiton & Goldberg, ACL 2020, arXiv:2004.07667): a projection ``P`` after
  which a protected attribute is no longer linearly predictable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch


def _weights(vectors: torch.Tensor, frequencies) -> tuple[torch.Tensor, torch.Tensor]:
    vectors = torch.as_tensor(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (num_words, dim), got shape {tuple(vectors.shape)}")
    p = torch.as_tensor(frequencies, dtype=torch.float64, device=vectors.device)
    if p.shape != (vectors.shape[0],):
        raise ValueError(f"frequencies must be ({vectors.shape[0]},), one per vector, got {tuple(p.shape)}")
    if (p < 0).any() or not p.sum() > 0:
        raise ValueError("frequencies must be non-negative with a positive sum")
    return vectors, p / p.sum()


def zipfian_whitening(vectors, frequencies, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frequency-weighted PCA whitening (the paper's Algorithm 1, as the authors' ``ZipfianWhitening.fit``).

    With ``p(w)`` the normalised frequencies: ``mu = sum_w p(w) v_w``, ``Sigma = sum_w p(w) (v_w - mu)(v_w -
    mu)^T``; the SVD of ``sqrt(p) (V - mu)`` gives ``Sigma = U_S diag(s^2) U_S^T`` and the transform
    ``U_S diag(1/s)`` (``Sigma^(-1/2)`` in the principal axes), so that ``(v - mu) @ transform`` has zero weighted
    mean and identity weighted covariance. Uniform frequencies give ordinary PCA whitening (population covariance).

    Args:
        vectors: ``(num_words, dim)`` embeddings (a tensor or array).
        frequencies: ``(num_words,)`` counts or probabilities of the words (normalised here).
        eps: relative size below which a singular value means the weighted vectors do not span ``dim``
            dimensions (then a ``ValueError``: there is no whitening).

    Returns:
        ``(whitened (num_words, dim), mean (dim,), transform (dim, dim))``; new vectors are whitened as
        ``(x - mean) @ transform``. Computed in float64 and returned in the vectors' dtype.
    """
    vectors, p = _weights(vectors, frequencies)
    x = vectors.to(torch.float64)
    mean = p @ x
    centered = x - mean
    _, s, vt = torch.linalg.svd(centered * p.sqrt()[:, None], full_matrices=False)
    if s.numel() < x.shape[1] or s.min() <= eps * s.max():
        raise ValueError("the frequency-weighted vectors do not span their dimensions: the covariance has no inverse")
    transform = vt.T / s
    dtype = vectors.dtype if vectors.is_floating_point() else torch.float32
    return (centered @ transform).to(dtype), mean.to(dtype), transform.to(dtype)


def zipfian_symmetry(vectors, frequencies) -> tuple[float, float]:
    """The paper's frequency-weighted symmetry scores (as the authors' ``calc_zipfian_isotropy_score``), both 1
    for a perfectly symmetric embedding space.

    - 1st moment (centrality): ``1 - ||sum_w p(w) v_w|| / sum_w p(w) ||v_w||``.
    - 2nd moment (isotropy): the entropy of the weighted covariance's normalised eigenvalues over ``log dim``.
    """
    vectors, p = _weights(vectors, frequencies)
    x = vectors.to(torch.float64)
    mean = p @ x
    centrality = 1.0 - float(mean.norm() / (p @ x.norm(dim=1)))
    eigen = torch.linalg.svdvals((x - mean) * p.sqrt()[:, None]) ** 2
    share = eigen / eigen.sum()
    share = share[share > 0]
    isotropy = float(-(share * share.log()).sum() / np.log(x.shape[1]))
    return centrality, isotropy


def rowspace_projection(w: np.ndarray) -> np.ndarray:
    """The orthogonal projection onto the row space of ``w`` (``(k, dim)``): ``B B^T`` for an orthonormal basis
    ``B`` of ``w^T``'s columns (zero for a zero ``w``)."""
    from scipy.linalg import orth

    w = np.atleast_2d(w)
    if np.allclose(w, 0):
        return np.zeros((w.shape[1], w.shape[1]))
    basis = orth(w.T)
    return basis @ basis.T


def nullspace_intersection_projection(rowspace_projections: list[np.ndarray], dim: int) -> np.ndarray:
    """The projection onto the intersection of the classifiers' nullspaces, ``N(w_1) & ... & N(w_n) = N(P_R(w_1) +
    ... + P_R(w_n))`` (Ben-Israel's formula, as the authors compute it): ``I - P_R(sum of the rowspace
    projections)``."""
    if not rowspace_projections:
        return np.eye(dim)
    return np.eye(dim) - rowspace_projection(np.sum(rowspace_projections, axis=0))


@dataclass
class INLPResult:
    """What :func:`iterative_nullspace_projection` found.

    Attributes:
        projection: ``(dim, dim)`` ``P``, symmetric and idempotent; guarded vectors are ``x @ P`` (= ``P x``).
        rowspace_projections: each kept classifier's rowspace projection.
        weights: each kept classifier's ``coef_`` (``(classes or 1, dim)``).
        accuracies: every iteration's classifier accuracy on the evaluation vectors, before its projection.
    """

    projection: np.ndarray
    rowspace_projections: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


def _linear_svc(**options: Any):
    from sklearn.svm import LinearSVC

    return LinearSVC(**{"fit_intercept": False, "class_weight": None, "dual": False, "random_state": 0, **options})


def iterative_nullspace_projection(
    vectors,
    labels,
    num_classifiers: int = 35,
    eval_vectors=None,
    eval_labels=None,
    classifier: Callable[[], Any] | None = None,
    min_accuracy: float = 0.0,
) -> INLPResult:
    """Iterative Nullspace Projection (the authors' ``debias.get_debiasing_projection``, autoregressive).

    Repeat ``num_classifiers`` times: fit a linear classifier of the protected attribute on the vectors projected
    so far; keep its weights ``W`` if its accuracy on the evaluation vectors reaches ``min_accuracy``; project the
    original vectors onto the intersection of the nullspaces of all kept classifiers (recomputed from the sum of
    their rowspace projections, for stability). The final ``P`` is that intersection's projection.

    Args:
        vectors: ``(n, dim)`` training vectors.
        labels: ``(n,)`` protected attribute.
        num_classifiers: iterations (each removes up to ``classes - 1`` or 1 direction; the authors' word-vector
            setting: 35).
        eval_vectors, eval_labels: held-out vectors for the accuracies (the training ones when omitted).
        classifier: a factory of an sklearn linear classifier (``coef_`` after ``fit``); the authors' default,
            ``LinearSVC(fit_intercept=False, dual=False, random_state=0)``, when omitted (e.g. ``lambda:
            LogisticRegression(max_iter=1000)`` instead).
        min_accuracy: classifiers below this accuracy are not projected out.
    """
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"vectors must be (n, dim) and labels (n,), got {x.shape} and {y.shape}")
    if num_classifiers < 1:
        raise ValueError(f"num_classifiers must be >= 1, got {num_classifiers}")
    if (eval_vectors is None) != (eval_labels is None):
        raise ValueError("give both eval_vectors and eval_labels, or neither")
    x_eval = x if eval_vectors is None else np.asarray(eval_vectors, dtype=np.float64)
    y_eval = y if eval_labels is None else np.asarray(eval_labels)
    make = classifier or _linear_svc
    dim = x.shape[1]
    result = INLPResult(projection=np.eye(dim))
    x_train, x_dev = x, x_eval
    for _ in range(num_classifiers):
        model = make().fit(x_train, y)
        accuracy = float(model.score(x_dev, y_eval))
        result.accuracies.append(accuracy)
        if accuracy < min_accuracy:
            continue
        w = np.atleast_2d(model.coef_)
        result.weights.append(w)
        result.rowspace_projections.append(rowspace_projection(w))
        result.projection = nullspace_intersection_projection(result.rowspace_projections, dim)
        x_train, x_dev = x @ result.projection, x_eval @ result.projection  # P is symmetric: (P x^T)^T
    return result


__all__ = [
    "INLPResult",
    "iterative_nullspace_projection",
    "nullspace_intersection_projection",
    "rowspace_projection",
    "zipfian_symmetry",
    "zipfian_whitening",
]
