"""Continual-learning objectives: PODNet's pooled-output distillation and local similarity classifier, DER's
auxiliary loss, and the pieces of Neural Weight Search and PICLE that are pure tensor functions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pod_spatial(old_maps: list[torch.Tensor], new_maps: list[torch.Tensor], normalize: bool = True) -> torch.Tensor:
    """POD-spatial (PODNet, arXiv:2004.13513, Sec. 3.1): per stage, the feature maps ``(n, c, h, w)`` pooled along
    the width (``(n, c, h)``) and along the height (``(n, c, w)``), concatenated, compared by L2 distance between
    the old and the new model; averaged over the batch and the stages.

    As in the authors' code, activations are squared before pooling and each pooled vector is L2-normalised.

    Args:
        old_maps: the frozen old model's stage outputs (no gradient needed).
        new_maps: the current model's stage outputs, same shapes.
        normalize: L2-normalise the pooled vectors.
    """
    if len(old_maps) != len(new_maps) or not old_maps:
        raise ValueError(f"need the same non-zero number of old and new maps, got {len(old_maps)} and {len(new_maps)}")
    total = new_maps[0].new_zeros(())
    for old, new in zip(old_maps, new_maps):
        if old.shape != new.shape or new.ndim != 4:
            raise ValueError(f"maps must be (n, c, h, w) of equal shapes, got {tuple(old.shape)} and {tuple(new.shape)}")
        pooled = []
        for a in (old.pow(2), new.pow(2)):
            width_pooled = a.sum(dim=3).flatten(1)  # (n, c * h)
            height_pooled = a.sum(dim=2).flatten(1)  # (n, c * w)
            v = torch.cat([width_pooled, height_pooled], dim=1)
            pooled.append(F.normalize(v, dim=1) if normalize else v)
        total = total + (pooled[0] - pooled[1]).norm(dim=1).mean()
    return total / len(new_maps)


def pod_flat(old_features: torch.Tensor, new_features: torch.Tensor) -> torch.Tensor:
    """POD-flat: keep the final embedding ``(n, d)`` close to the old model's. The authors' code measures it by the
    cosine embedding loss ``mean(1 - cos(h_old, h_new))``, which is what this returns."""
    if old_features.shape != new_features.shape:
        raise ValueError(f"feature shapes differ: {tuple(old_features.shape)} and {tuple(new_features.shape)}")
    return (1 - F.cosine_similarity(new_features, old_features.detach(), dim=1)).mean()


def pod_weight(base: float, num_seen_classes: int, num_new_classes: int) -> float:
    """PODNet's adaptive weight of a distillation term, ``lambda * sqrt(N / T)`` for N seen and T new classes."""
    if num_new_classes < 1 or num_seen_classes < num_new_classes:
        raise ValueError(f"need 1 <= new classes <= seen classes, got {num_new_classes} and {num_seen_classes}")
    return base * math.sqrt(num_seen_classes / num_new_classes)


def local_similarity(features: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    """PODNet's local similarity classifier (LSC, Sec. 3.2) as the authors' code computes it
    (``CosineClassifier`` with ``distance: neg_stable_cosine_distance``, ``merging: softmax``, gamma 1, scaling 1):
    the proxy similarity is the negative squared distance of the unit-normalised feature and proxy,
    ``s_{c,k} = -||x/|x| - w_{c,k}/|w_{c,k}|||^2 = 2 cos(x, w_{c,k}) - 2``, and the class similarity
    ``y_c = sum_k softmax_k(s_{c,k}) s_{c,k}``. (The paper writes the cosine similarity itself; the two differ by the
    affine map, which doubles the softmax's sharpness and shifts the scores into [-4, 0].)

    Args:
        features: ``(n, d)``.
        proxies: ``(C, K, d)``, K proxies per class.

    Returns:
        ``(n, C)`` class similarities in [-4, 0].
    """
    if proxies.ndim != 3 or features.ndim != 2 or proxies.shape[-1] != features.shape[-1]:
        raise ValueError(f"need features (n, d) and proxies (C, K, d), got {tuple(features.shape)} and {tuple(proxies.shape)}")
    cos = torch.einsum("nd,ckd->nck", F.normalize(features, dim=-1), F.normalize(proxies, dim=-1))
    s = 2 * cos - 2  # -||x - w||^2 of unit vectors
    return (s.softmax(dim=-1) * s).sum(dim=-1)


def nca_loss(
    similarities: torch.Tensor, labels: torch.Tensor, margin: float = 0.6, scale: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """PODNet's NCA loss as the authors' code computes it (``inclearn/lib/losses/base.py``, ``nca`` with
    ``exclude_pos_denominator=True`` and its default ``hinge_proxynca=False``, the CIFAR-100 configuration):

        l_i = eta (y_true - delta) - max_c eta (y_c - delta)                      (the shifted true logit)
        loss = mean_i [ -l_i + log( exp(0) + sum_{c != true} exp(eta (y_c - delta) - max_c eta (y_c - delta)) ) ]

    i.e. the true class's slot of the denominator holds exp(0) after the max-shift rather than being dropped.

    The paper's formula, [ -log( exp(eta (y_true - delta)) / sum_{c != true} exp(eta y_c) ) ]_+, differs: the
    authors' code subtracts delta from every class similarity (its per-class ``margins`` tensor is built and never
    used), so after the max-shift delta cancels and has no effect on the loss or its gradient; the positive is not
    dropped from the denominator but replaced by exp(0); there is no hinge. We follow the code.

    Args:
        similarities: ``(n, C)`` class similarities (``local_similarity``).
        labels: ``(n,)`` classes in ``0 .. C - 1``.
        margin: delta (0.6 in the authors' configuration; cancels, see above).
        scale: eta (PODNet learns it, starting at 1).
    """
    n, num_classes = similarities.shape
    if num_classes < 2:
        raise ValueError("the NCA loss needs at least two classes")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    logits = scale * (similarities - margin)
    logits = logits - logits.max(dim=1, keepdim=True).values  # stability, as the authors' code (not detached)
    positive = logits.gather(1, labels[:, None]).squeeze(1)
    denominator = logits.masked_fill(F.one_hot(labels, num_classes).bool(), 0.0)  # the true slot: exp(0)
    return (torch.logsumexp(denominator, dim=1) - positive).mean()


def der_auxiliary_targets(labels: torch.Tensor, num_old_classes: int) -> torch.Tensor:
    """DER's auxiliary labels (arXiv:2103.16788, Sec. 3.3): every old class becomes the single class 0 ("other");
    new class ``c`` becomes ``c - num_old_classes + 1``."""
    return torch.where(labels < num_old_classes, torch.zeros_like(labels), labels - num_old_classes + 1)


def der_auxiliary_loss(aux_logits: torch.Tensor, labels: torch.Tensor, num_old_classes: int) -> torch.Tensor:
    """Cross-entropy of the auxiliary classifier on the NEW extractor's features over ``|new classes| + 1`` outputs
    (``aux_logits``: ``(n, num_new + 1)``), old classes merged into one."""
    targets = der_auxiliary_targets(labels, num_old_classes)
    if targets.max() >= aux_logits.shape[1]:
        raise ValueError(f"auxiliary logits have {aux_logits.shape[1]} outputs, labels need {int(targets.max()) + 1}")
    return F.cross_entropy(aux_logits, targets)


def nearest_pool_items(weights: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index of the pool item nearest (L2) to each row of ``weights``: ``(m, k)`` rows, ``(P, k)`` pool -> ``(m,)``."""
    if weights.shape[-1] != pool.shape[-1]:
        raise ValueError(f"weights have {weights.shape[-1]} entries per item, the pool {pool.shape[-1]}")
    return torch.cdist(weights, pool).argmin(dim=1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """Mean log-density of the rows of ``x`` ``(n, d)`` under ``N(mean, covariance)`` (PICLE's model of a module's
    training inputs)."""
    d = x.shape[1]
    chol = torch.linalg.cholesky(covariance)
    z = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False)  # (d, n)
    log_det = 2 * chol.diagonal().log().sum()
    return (-0.5 * (z.pow(2).sum(0) + log_det + d * math.log(2 * math.pi))).mean()


def composition_log_prior(path: list[int], history: list[list[int]], library_sizes: list[int], alpha: float = 1.0) -> float:
    """Log prior of a composition of pre-trained modules (PICLE's prior knowledge about good compositions, in our
    form): the first module uniform over its layer's library, then each module given the one before it by the
    Dirichlet-smoothed frequency with which that pair was composed in earlier problems' paths,

        p(m_{i+1} | m_i) = (count(m_i -> m_{i+1}) + alpha) / (count(m_i -> .) + alpha * |library_{i+1}|).

    Args:
        path: library indices of the reused prefix, one per layer from the first.
        history: the earlier problems' paths (library indices; -1 marks a module not in the library).
        library_sizes: modules per layer in the library.
        alpha: smoothing pseudo-count.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if not path or any(not 0 <= m < library_sizes[i] for i, m in enumerate(path)):
        raise ValueError(f"path {path} does not index the library {library_sizes}")
    log_p = -math.log(library_sizes[0])
    for i in range(len(path) - 1):
        pairs = [(p[i], p[i + 1]) for p in history if len(p) > i + 1 and p[i] == path[i] and p[i + 1] >= 0]
        together = sum(1 for _, nxt in pairs if nxt == path[i + 1])
        log_p += math.log((together + alpha) / (len(pairs) + alpha * library_sizes[i + 1]))
    return log_p
