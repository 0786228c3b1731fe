"""Pseudo-labels for contrastive learning: k-means, the online cluster upkeep of InterCLR, and G-SimCLR's NT-Xent
without same-pseudo-class negatives. Pure tensor functions, deterministic for a given ``seed``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather, rank


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean distance) of every row of ``x``."""
    return (2 * x @ centroids.T - (centroids**2).sum(dim=1)).argmax(dim=1)


def cluster_means(x: torch.Tensor, labels: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """The mean of each cluster's rows; a cluster without rows keeps its ``previous`` centroid.

    Args:
        x: ``(n, d)`` points.
        labels: ``(n,)`` cluster of each point, in ``[0, k)``.
        previous: ``(k, d)`` centroids to keep for empty clusters.
    """
    k = previous.shape[0]
    sums = torch.zeros_like(previous, dtype=x.dtype).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    means = sums / counts.clamp(min=1)[:, None]
    return torch.where(counts[:, None] > 0, means.to(previous.dtype), previous)


def kmeans(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding; an emptied cluster is re-seeded at the point farthest from its centroid.

    Args:
        x: ``(n, d)`` points.
        k: number of clusters, ``1 <= k <= n``.
        iterations: Lloyd iterations.
        seed: seed of the k-means++ draws.

    Returns:
        ``(centroids (k, d), labels (n,))``.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] for {n} points, got {k}")
    x = x.float()
    g = _generator(x.device, seed)
    centroids = x[torch.randint(n, (1,), generator=g, device=x.device)]
    closest = ((x - centroids) ** 2).sum(dim=1)
    for _ in range(1, k):  # k-means++: the next seed drawn with probability proportional to the squared distance
        weights = closest if closest.sum() > 0 else torch.ones_like(closest)
        new = x[torch.multinomial(weights, 1, generator=g)]
        centroids = torch.cat([centroids, new])
        closest = torch.minimum(closest, ((x - new) ** 2).sum(dim=1))
    labels = _assign(x, centroids)
    for _ in range(iterations):
        centroids = cluster_means(x, labels, centroids)
        labels = _assign(x, centroids)
        for empty in torch.nonzero(torch.bincount(labels, minlength=k) == 0).flatten().tolist():
            far = ((x - centroids[labels]) ** 2).sum(dim=1).argmax()
            centroids[empty] = x[far]
            labels[far] = empty
    return cluster_means(x, labels, centroids), labels


def reassign_small_clusters(
    x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, min_size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """InterCLR's (and ODC's) upkeep of online clusters: the points of every cluster smaller than ``min_size`` move
    to the most similar (largest dot product) remaining centroid, then each emptied cluster takes one half of the
    largest cluster, split by 2-means (by a random halving if 2-means leaves a side empty).

    Args:
        x: ``(n, d)`` memory features.
        labels: ``(n,)`` cluster of each feature.
        centroids: ``(k, d)`` centroids.
        min_size: the smallest cluster kept as it is.
        seed: seed of the 2-means splits.

    Returns:
        ``(labels, centroids)``, new tensors; unchanged when no cluster is small or every cluster is.
    """
    k = centroids.shape[0]
    counts = torch.bincount(labels, minlength=k)
    small = counts < min_size
    if not small.any() or small.all():
        return labels, centroids
    labels, centroids = labels.clone(), centroids.clone()
    kept = torch.nonzero(~small).flatten()
    moving = small[labels]
    labels[moving] = kept[(x[moving] @ centroids[kept].T).argmax(dim=1)]
    for i, empty in enumerate(torch.nonzero(small).flatten().tolist()):
        largest = int(torch.bincount(labels, minlength=k).argmax())
        members = torch.nonzero(labels == largest).flatten()
        if len(members) < 2:
            break
        _, halves = kmeans(x[members], 2, seed=seed + i)
        if halves.min() == halves.max():
            order = torch.randperm(len(members), generator=_generator(torch.device("cpu"), seed + i)).to(members.device)
            halves = torch.zeros_like(members)
            halves[order[: len(members) // 2]] = 1
        labels[members[halves == 1]] = empty
        for c in (largest, empty):
            centroids[c] = x[labels == c].mean(dim=0).to(centroids.dtype)
    return labels, centroids


def guided_nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, pseudo_labels: torch.Tensor, temperature: float = 0.5, normalize: bool = True
) -> torch.Tensor:
    """NT-Xent (SimCLR, arXiv:2002.05709, Eq. 1) whose negatives exclude every view of an image with the anchor's
    pseudo-label: the loss of a batch that holds no two images of one pseudo-class (G-SimCLR's guided batches).

    Args:
        z1: ``(n, d)`` projections of the first views (this rank's).
        z2: ``(n, d)`` projections of the second views.
        pseudo_labels: ``(n,)`` pseudo-class of each image; -1 marks an image without one (it excludes nothing).
        temperature: the temperature tau.
        normalize: L2-normalise the projections first (cosine similarities).

    Embeddings and pseudo-labels are gathered across ranks (embeddings with gradients). With all pseudo-labels
    distinct this is :func:`reprzoo.losses.nt_xent`.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if z1.shape != z2.shape or pseudo_labels.shape != z1.shape[:1]:
        raise ValueError(
            f"expected z1, z2 of shape (n, d) and pseudo_labels (n,), got {tuple(z1.shape)}, "
            f"{tuple(z2.shape)}, {tuple(pseudo_labels.shape)}"
        )
    if normalize:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = z1.shape[0]
    g1, g2, g_labels = gather(z1), gather(z2), gather(pseudo_labels)
    big_n = g1.shape[0]
    keys, key_labels = torch.cat([g1, g2]), torch.cat([g_labels, g_labels])
    anchor_labels = torch.cat([pseudo_labels, pseudo_labels])
    rows = torch.arange(2 * n, device=z1.device)
    own = torch.where(rows < n, rows + rank() * n, rows - n + rank() * n + big_n)
    positive = torch.where(rows < n, own + big_n, own - big_n)
    excluded = (anchor_labels[:, None] == key_labels[None, :]) & (anchor_labels[:, None] >= 0)
    excluded[rows, positive] = False
    excluded[rows, own] = True  # an anchor is not its own negative
    logits = (torch.cat([z1, z2]) @ keys.T / temperature).masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, positive)
