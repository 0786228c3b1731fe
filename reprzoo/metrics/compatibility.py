"""Compatibility of representations across model updates: cross-model retrieval, the compatibility matrix, the
empirical compatibility criterion (ECC), average compatibility (AC) and average multi-model accuracy (AM).

Cross-model retrieval searches a gallery embedded by one model with queries embedded by another (cosine
similarity): a compatible successor can serve queries against the gallery of its predecessor without
re-embedding it ("backfilling"). "Towards Backward-Compatible Representation Learning" (Shen et al.,
CVPR 2020, arXiv:2003.11942) states the empirical compatibility criterion: a new model is compatible with an old one when
``M(phi_new queries, phi_old gallery) > M(phi_old queries, phi_old gallery)``.

Over a sequence of T models, ``matrix[t, j] = M(model t's queries, model j's gallery)`` (lower triangle: t >= j).
"CL2R: Compatible Lifelong Learning Representations" (Biondi et al., ACM TOMM 2023) defines

- AC = 2 / (T (T - 1)) * sum_{t=2..T} sum_{j=1..t-1} 1[matrix[t, j] > matrix[j, j]]  (the fraction of model pairs
  meeting ECC), and
- AM = 2 / (T (T + 1)) * sum_{t=1..T} sum_{j=1..t} matrix[t, j]  (the mean of the lower triangle with diagonal),

also the metrics of "Stationary Representations: Optimally Approximating Compatibility and Implications for Improved
Model Replacements" (Biondi et al., CVPR 2024).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

RETRIEVAL_METRICS = ("top1", "map")


def retrieval_scores(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Top-1 accuracy and mean average precision of cosine-similarity retrieval.

    A query's top-1 is correct when its most similar gallery item has its label; its average precision is the mean,
    over the gallery items of its label, of the precision at their rank (queries whose label is absent from the
    gallery are left out of mAP). Ties keep gallery order.

    Args:
        query: ``(n, d)`` query embeddings (one model).
        query_labels: ``(n,)`` integer labels.
        gallery: ``(m, d)`` gallery embeddings (possibly another model, same ``d``).
        gallery_labels: ``(m,)`` integer labels.
    Returns:
        ``{"top1": float, "map": float}``.
    """
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query and gallery must be (n, d) and (m, d) of one width, got {tuple(query.shape)} and {tuple(gallery.shape)}"
        )
    if len(query) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("features and labels differ in length")
    if len(query) == 0 or len(gallery) == 0:
        raise ValueError("retrieval needs at least one query and one gallery item")
    gallery = F.normalize(gallery.float(), dim=1)
    gallery_labels = gallery_labels.to(gallery.device)
    correct, ap_sum, ap_count = 0.0, 0.0, 0
    for start in range(0, len(query), chunk_size):
        q = F.normalize(query[start : start + chunk_size].float().to(gallery.device), dim=1)
        y = query_labels[start : start + chunk_size].to(gallery.device)
        order = (q @ gallery.T).argsort(dim=1, descending=True, stable=True)
        relevant = (gallery_labels[order] == y[:, None]).float()  # (chunk, m) in rank order
        correct += relevant[:, 0].sum().item()
        hits = relevant.cumsum(dim=1)
        ranks = torch.arange(1, relevant.shape[1] + 1, device=relevant.device)
        num_relevant = relevant.sum(dim=1)
        has = num_relevant > 0
        ap = (relevant * hits / ranks).sum(dim=1)[has] / num_relevant[has]
        ap_sum, ap_count = ap_sum + ap.sum().item(), ap_count + int(has.sum())
    return {"top1": correct / len(query), "map": ap_sum / ap_count if ap_count else float("nan")}


class CrossModelRetrieval(Metric):
    """Retrieval of queries embedded by one model in a gallery embedded by another, accumulated over batches and
    gathered across ranks; ``compute()`` returns ``{"top1", "map"}`` (see :func:`retrieval_scores`).

    ``update(features, labels, gallery=True)`` adds gallery items, ``update(features, labels)`` queries.
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("query_features", "query_labels", "gallery_features", "gallery_labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, labels: torch.Tensor, gallery: bool = False) -> None:
        if gallery:
            self.gallery_features.append(features.detach().float())
            self.gallery_labels.append(labels.detach())
        else:
            self.query_features.append(features.detach().float())
            self.query_labels.append(labels.detach())

    def compute(self) -> dict[str, torch.Tensor]:
        states = [dim_zero_cat(s) for s in (self.query_features, self.query_labels, self.gallery_features, self.gallery_labels)]
        scores = retrieval_scores(*states)
        return {k: torch.tensor(v) for k, v in scores.items()}


def compatibility_matrix(
    query_features: Sequence[torch.Tensor],
    query_labels: torch.Tensor,
    gallery_features: Sequence[torch.Tensor],
    gallery_labels: torch.Tensor,
    metric: str = "top1",
    upper: bool = False,
    compatible_dims: Sequence[int | None] | None = None,
) -> torch.Tensor:
    """``matrix[t, j]``: ``metric`` of model t's query embeddings searched in model j's gallery embeddings.

    Args:
        query_features: one ``(n, d_t)`` tensor per model, the same queries in model order (oldest first).
        query_labels: ``(n,)`` labels of the queries.
        gallery_features: one ``(m, d_t)`` tensor per model, the same gallery.
        gallery_labels: ``(m,)`` labels of the gallery.
        metric: ``top1`` or ``map``.
        upper: also fill t < j (an old model's queries in a newer gallery); otherwise those entries are NaN. Pairs of
            different embedding widths are NaN, unless ``compatible_dims[t]`` (a successor that adds dimensions: BT^2,
            OCA, DER) equals the gallery's width: then its queries' prefix of that width is searched.
    Returns:
        ``(T, T)`` float tensor.
    """
    if metric not in RETRIEVAL_METRICS:
        raise ValueError(f"metric must be one of {RETRIEVAL_METRICS}, got {metric!r}")
    if len(query_features) != len(gallery_features) or not query_features:
        raise ValueError(
            f"need one query and one gallery tensor per model, got {len(query_features)} and {len(gallery_features)}"
        )
    num = len(query_features)
    matrix = torch.full((num, num), float("nan"))
    prefixes = list(compatible_dims) if compatible_dims is not None else [None] * num
    for t in range(num):
        for j in range(num):
            queries, width = query_features[t], gallery_features[j].shape[1]
            if t != j and prefixes[t] == width and queries.shape[1] > width:
                queries = queries[:, :width]
            if (j > t and not upper) or queries.shape[1] != width:
                continue
            matrix[t, j] = retrieval_scores(queries, query_labels, gallery_features[j], gallery_labels)[metric]
    return matrix


def empirical_compatibility(matrix: torch.Tensor, new: int, old: int) -> bool:
    """ECC (arXiv:2003.11942): ``matrix[new, old] > matrix[old, old]``."""
    if not new > old:
        raise ValueError(f"the new model must come after the old one, got new={new}, old={old}")
    return bool(matrix[new, old] > matrix[old, old])


def average_compatibility(matrix: torch.Tensor) -> float:
    """AC (CL2R): the fraction of pairs j < t whose ``matrix[t, j]`` beats ``matrix[j, j]``."""
    num = _check_square(matrix)
    if num < 2:
        raise ValueError("average compatibility needs at least two models")
    hits = sum(empirical_compatibility(matrix, t, j) for t in range(1, num) for j in range(t))
    return 2.0 * hits / (num * (num - 1))


def average_multimodel_accuracy(matrix: torch.Tensor) -> float:
    """AM (CL2R): the mean of the lower triangle of the matrix, diagonal included."""
    num = _check_square(matrix)
    total = sum(float(matrix[t, j]) for t in range(num) for j in range(t + 1))
    return 2.0 * total / (num * (num + 1))


def _check_square(matrix: torch.Tensor) -> int:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a compatibility matrix is square, got shape {tuple(matrix.shape)}")
    return matrix.shape[0]


def compatibility_figure(matrix: torch.Tensor, names: Sequence[str] | None = None, metric: str = "top1"):
    """The matrix as an annotated matplotlib heatmap (rows: query model, columns: gallery model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num = _check_square(matrix)
    names = list(names) if names is not None else [f"model {i}" for i in range(num)]
    values = matrix.detach().cpu().float().numpy()
    figure, axis = plt.subplots(figsize=(1.2 * num + 2.5, 1.0 * num + 2), dpi=100)
    image = axis.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    axis.set_xticks(range(num), names, rotation=45, ha="right")
    axis.set_yticks(range(num), names)
    axis.set_xlabel("gallery model")
    axis.set_ylabel("query model")
    for t in range(num):
        for j in range(num):
            if values[t, j] == values[t, j]:  # not NaN
                axis.text(j, t, f"{values[t, j]:.3f}", ha="center", va="center", color="w" if values[t, j] < 0.6 else "k")
    figure.colorbar(image, ax=axis, label=metric)
    figure.tight_layout()
    return figure


def log_compatibility_matrix(
    logger,
    matrix: torch.Tensor,
    names: Sequence[str] | None = None,
    step: int = 0,
    tag: str = "compatibility/matrix",
    metric: str = "top1",
) -> bool:
    """Add the heatmap to a TensorBoard logger (anything whose ``experiment`` has ``add_figure``); False if it has
    none."""
    experiment = getattr(logger, "experiment", None)
    if not hasattr(experiment, "add_figure"):
        return False
    experiment.add_figure(tag, compatibility_figure(matrix, names, metric), global_step=step)
    return True


__all__ = [
    "CrossModelRetrieval",
    "average_compatibility",
    "average_multimodel_accuracy",
    "compatibility_figure",
    "compatibility_matrix",
    "empirical_compatibility",
    "log_compatibility_matrix",
    "retrieval_scores",
]
