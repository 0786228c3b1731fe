"""Deep metric learning losses: pair-based (Multi-Similarity with its miner), classification-based on the
hypersphere (normalised softmax, CosFace, ArcFace), and GPM's place proxies and their nearest neighbours.

Every function takes the model's outputs (embeddings, a classifier's weight matrix, labels), never the model.
Labels of -1 mark unlabelled samples: they take part in no pair and no classification term. The supervised
contrastive loss (Khosla et al., 2020) lives in :mod:`reprzoo.losses.contrastive` as
:func:`~reprzoo.losses.contrastive.supervised_contrastive`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_labels(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (batch, dim), got shape {tuple(embeddings.shape)}")
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(f"labels must be ({embeddings.shape[0]},), got shape {tuple(labels.shape)}")


# ----------------------------------------------------------------------------- Multi-Similarity (Wang et al., 2019)
def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` boolean ``(n, n)`` masks of the labelled pairs: same label (not the sample itself),
    different label. Rows and columns of unlabelled samples (-1) are all False."""
    labelled = labels >= 0
    both = labelled[:, None] & labelled[None, :]
    same = (labels[:, None] == labels[None, :]) & both
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, both & ~same


def multi_similarity_mining(
    similarity: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mining step of the MS loss (arXiv:1904.06627, Sec. 4.1, Eqs. 7-8): informative pairs by their relative
    similarity to the anchor's hardest pair of the other kind.

    A negative pair ``{i, j}`` is kept when ``S_ij > min_{y_k = y_i} S_ik - epsilon``, a positive pair when
    ``S_ij < max_{y_k != y_i} S_ik + epsilon``. An anchor without positives keeps no negative, one without
    negatives keeps no positive.

    Args:
        similarity: ``(n, n)`` similarities (cosine for normalised embeddings).
        labels: ``(n,)`` labels, -1 for unlabelled samples.
        epsilon: the mining margin.

    Returns:
        ``(positive, negative)`` boolean ``(n, n)`` masks of the mined pairs.
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square (n, n) matrix, got shape {tuple(similarity.shape)}")
    if labels.shape != similarity.shape[:1]:
        raise ValueError(f"labels must be ({similarity.shape[0]},), got shape {tuple(labels.shape)}")
    positive, negative = pair_masks(labels)
    inf = torch.tensor(float("inf"), dtype=similarity.dtype, device=similarity.device)
    hardest_positive = torch.where(positive, similarity, inf).min(dim=1, keepdim=True).values
    hardest_negative = torch.where(negative, similarity, -inf).max(dim=1, keepdim=True).values
    mined_negative = negative & (similarity > hardest_positive - epsilon)
    mined_positive = positive & (similarity < hardest_negative + epsilon)
    return mined_positive, mined_negative


def multi_similarity_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    epsilon: float | None = 0.1,
) -> torch.Tensor:
    """Multi-Similarity loss (Wang, Han, Huang, Dong & Scott, CVPR 2019, arXiv:1904.06627, Eq. 12) on the pairs
    that :func:`multi_similarity_mining` keeps:

    ``1/m sum_i [1/alpha log(1 + sum_{k in P_i} exp(-alpha (S_ik - lambda)))
    + 1/beta log(1 + sum_{k in N_i} exp(beta (S_ik - lambda)))]``

    over the ``m`` labelled anchors of the batch, with cosine similarities ``S``.

    Args:
        embeddings: ``(n, d)``; L2-normalised here.
        labels: ``(n,)``, -1 for unlabelled samples (no anchor, no pair).
        alpha: weight of the positive pairs (paper: 2).
        beta: weight of the negative pairs (paper: 50).
        base: lambda, the similarity margin (paper: 0.5, written ``base`` as in PML and the authors' code).
        epsilon: the mining margin (paper: 0.1); ``None`` weights every pair without mining.
    """
    _check_labels(embeddings, labels)
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"alpha and beta must be positive, got alpha={alpha}, beta={beta}")
    labelled = labels >= 0
    if not bool(labelled.any()):
        return embeddings.sum() * 0.0
    z = F.normalize(embeddings[labelled], dim=1)
    labels = labels[labelled]
    similarity = z @ z.T
    if epsilon is None:
        positive, negative = pair_masks(labels)
    else:
        positive, negative = multi_similarity_mining(similarity.detach(), labels, epsilon)
    positive_term = _log1p_sum_exp(-alpha * (similarity - base), positive) / alpha
    negative_term = _log1p_sum_exp(beta * (similarity - base), negative) / beta
    return (positive_term + negative_term).mean()


def _log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum_{j in mask_i} exp(x_ij))`` per row, stably (0 for an empty row)."""
    x = x.masked_fill(~mask, float("-inf"))
    zeros = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
    return torch.logsumexp(torch.cat([zeros, x], dim=1), dim=1)


# ----------------------------------------------------------------------------- the classic pair and triplet losses
def _mean_nonzero(losses: torch.Tensor) -> torch.Tensor:
    """Mean over the terms that are still active (> 0), 0 when none is: the reduction of "A Metric Learning Reality
    Check" and of PML's ``AvgNonZeroReducer`` (inactive pairs would otherwise dilute the gradient as training goes)."""
    active = losses > 0
    if not bool(active.any()):
        return losses.sum() * 0.0
    return losses[active].mean()


def _distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between L2-normalised embeddings ``(n, n)`` (0 on the diagonal, with a safe gradient)."""
    z = F.normalize(embeddings, dim=1)
    squared = (2 - 2 * z @ z.T).clamp_min(0)
    return torch.sqrt(squared + 1e-12) * (squared > 0)


def contrastive_pair_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, pos_margin: float = 0.0, neg_margin: float = 1.0
) -> torch.Tensor:
    """The contrastive loss of Hadsell, Chopra & LeCun ("Dimensionality Reduction by Learning an Invariant Mapping",
    CVPR 2006) in the form of "A Metric Learning Reality Check" (Musgrave, Belongie & Lim, ECCV 2020,
    arXiv:2003.08505): every positive pair is pulled to within ``pos_margin``, every negative pair pushed beyond
    ``neg_margin``, on the Euclidean distance of L2-normalised embeddings: ``[d_ap - m_pos]_+`` and
    ``[m_neg - d_an]_+``, each kind averaged over its active pairs, the two averages summed.

    Args:
        embeddings: ``(n, d)``; normalised here.
        labels: ``(n,)``; -1 marks unlabelled samples (in no pair).
        pos_margin: distance below which positives stop contributing.
        neg_margin: distance beyond which negatives stop contributing.
    """
    _check_labels(embeddings, labels)
    if pos_margin < 0 or neg_margin <= pos_margin:
        raise ValueError(f"need 0 <= pos_margin < neg_margin, got {pos_margin} and {neg_margin}")
    positive, negative = pair_masks(labels)
    d = _distances(embeddings)
    return _mean_nonzero(F.relu(d[positive] - pos_margin)) + _mean_nonzero(F.relu(neg_margin - d[negative]))


def triplet_margin_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """The triplet margin loss ("FaceNet: A Unified Embedding for Face Recognition and Clustering", Schroff,
    Kalenichenko & Philbin, CVPR 2015, arXiv:1503.03832) over every valid triplet of the batch ("batch all",
    Hermans et al. 2017; the setting of "A Metric Learning Reality Check"): ``[d_ap - d_an + margin]_+`` on the
    Euclidean distance of L2-normalised embeddings, averaged over the active triplets.

    Args:
        embeddings: ``(n, d)``; normalised here.
        labels: ``(n,)``; -1 marks unlabelled samples (in no triplet).
        margin: the margin alpha.
    """
    _check_labels(embeddings, labels)
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    positive, negative = pair_masks(labels)
    d = _distances(embeddings)
    valid = positive[:, :, None] & negative[:, None, :]  # (anchor, positive, negative)
    losses = d[:, :, None] - d[:, None, :] + margin
    return _mean_nonzero(F.relu(losses[valid]))


# ----------------------------------------------------------------------------- classifiers on the hypersphere
def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``cos(theta_ij)`` between each embedding ``(n, d)`` and each class weight ``(classes, d)``: ``(n, classes)``."""
    if embeddings.ndim != 2 or weight.ndim != 2 or embeddings.shape[1] != weight.shape[1]:
        raise ValueError(
            f"embeddings (n, d) and weight (classes, d) must share d, got {tuple(embeddings.shape)} and {tuple(weight.shape)}"
        )
    return F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T


def normalized_softmax_loss(
    embeddings: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05
) -> torch.Tensor:
    """Normalised softmax (Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019,
    arXiv:1811.12649): cross-entropy over ``cos(theta) / temperature``, with embeddings and class weights on the
    unit hypersphere. Unlabelled samples (-1) are ignored."""
    _check_labels(embeddings, labels)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return F.cross_entropy(cosine_logits(embeddings, weight) / temperature, labels, ignore_index=-1)


def cosface_logits(cosine: torch.Tensor, labels: torch.Tensor, margin: float = 0.35, scale: float = 64.0) -> torch.Tensor:
    """CosFace / large margin cosine loss (Wang et al., CVPR 2018, arXiv:1801.09414, Eq. 4): ``s (cos theta_y - m)``
    for the target class, ``s cos theta_j`` for the others. Rows with label -1 get no margin."""
    return scale * (cosine - margin * _target_mask(cosine, labels))


def arcface_logits(cosine: torch.Tensor, labels: torch.Tensor, margin: float = 0.5, scale: float = 64.0) -> torch.Tensor:
    """ArcFace / additive angular margin (Deng et al., CVPR 2019, arXiv:1801.07698, Eq. 3): ``s cos(theta_y + m)``
    for the target class, ``s cos theta_j`` for the others.

    Where ``theta_y + m`` would pass pi the target logit is ``cos theta_y - m sin m`` instead, which keeps it
    decreasing in ``theta_y`` (the authors' released code and PML do the same). Rows with label -1 get no margin.
    """
    if not 0 <= margin < math.pi:
        raise ValueError(f"margin must be an angle in [0, pi) radians, got {margin}")
    theta = torch.acos(cosine.clamp(-1.0, 1.0))
    target = torch.where(theta <= math.pi - margin, torch.cos(theta + margin), cosine - margin * math.sin(margin))
    return scale * torch.where(_target_mask(cosine, labels), target, cosine)


def _target_mask(cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if cosine.ndim != 2 or labels.shape != cosine.shape[:1]:
        raise ValueError(f"cosine must be (n, classes) and labels (n,), got {tuple(cosine.shape)} and {tuple(labels.shape)}")
    classes = torch.arange(cosine.shape[1], device=cosine.device)
    return labels[:, None] == classes[None, :]  # all False for -1


def margin_softmax_loss(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    kind: str = "arcface",
    margin: float | None = None,
    scale: float = 64.0,
) -> torch.Tensor:
    """Cross-entropy over ArcFace (``kind="arcface"``, margin 0.5 rad by default) or CosFace (``"cosface"``, margin
    0.35) logits of ``embeddings`` ``(n, d)`` against class weights ``(classes, d)``; labels -1 are ignored."""
    _check_labels(embeddings, labels)
    cosine = cosine_logits(embeddings, weight)
    if kind == "arcface":
        logits = arcface_logits(cosine, labels, 0.5 if margin is None else margin, scale)
    elif kind == "cosface":
        logits = cosface_logits(cosine, labels, 0.35 if margin is None else margin, scale)
    else:
        raise ValueError(f"kind must be 'arcface' or 'cosface', got {kind!r}")
    return F.cross_entropy(logits, labels, ignore_index=-1)


# ----------------------------------------------------------------------------- GPM (Ali-bey et al., 2022)
def place_proxies(descriptors: torch.Tensor, labels: torch.Tensor, num_places: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GPM's place proxies (arXiv:2302.14217, Sec. 3): the mean of the proxy-head descriptors of each place's images.

    Args:
        descriptors: ``(n, d)`` proxy descriptors.
        labels: ``(n,)`` place (class) ids; -1 rows are left out.
        num_places: number of places.

    Returns:
        ``(sums, counts)``: ``(num_places, d)`` summed descriptors and ``(num_places,)`` image counts, so that
        batches can be accumulated over an epoch (and across ranks) before :func:`nearest_places` divides.
    """
    _check_labels(descriptors, labels)
    keep = labels >= 0
    if bool((labels[keep] >= num_places).any()):
        raise ValueError(f"labels must be below num_places={num_places}, got {int(labels.max())}")
    sums = descriptors.new_zeros(num_places, descriptors.shape[1]).index_add_(0, labels[keep], descriptors[keep])
    counts = torch.bincount(labels[keep], minlength=num_places).to(descriptors.dtype)
    return sums, counts


def nearest_places(sums: torch.Tensor, counts: torch.Tensor, k: int) -> torch.Tensor:
    """The global index of GPM: for every place, its ``k`` nearest other places by cosine similarity of their
    proxies (``sums / counts``), nearest first. Places never seen (count 0) are nobody's neighbour and get the
    neighbours ``-1``.

    Returns:
        ``(num_places, k)`` long tensor of place ids.
    """
    num_places = sums.shape[0]
    if not 0 <= k < num_places:
        raise ValueError(f"k must be in [0, {num_places - 1}] for {num_places} places, got {k}")
    seen = counts > 0
    proxies = F.normalize(sums / counts.clamp_min(1)[:, None], dim=1)
    similarity = proxies @ proxies.T
    similarity.fill_diagonal_(float("-inf"))
    similarity[:, ~seen] = float("-inf")
    values, neighbours = similarity.topk(k, dim=1)
    neighbours[~torch.isfinite(values)] = -1
    neighbours[~seen] = -1
    return neighbours


__all__ = [
    "arcface_logits",
    "contrastive_pair_loss",
    "cosface_logits",
    "cosine_logits",
    "margin_softmax_loss",
    "multi_similarity_loss",
    "multi_similarity_mining",
    "nearest_places",
    "normalized_softmax_loss",
    "pair_masks",
    "place_proxies",
    "triplet_margin_loss",
]
