"""AdANNS-IVF: approximate nearest-neighbour search over nested (Matryoshka) embeddings with a different prefix for
each stage: "AdANNS: A Framework for Adaptive Semantic Search" (Rege et al., NeurIPS 2023, arXiv:2305.19435).

An inverted file (IVF) clusters the database with k-means on a short prefix d_c (cheap clustering and list
assignment), and ranks the candidates of the probed lists with a longer prefix d_s; a rigid IVF uses one size for
both. Euclidean distances, as in the paper's IVF. All in torch (no faiss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reprzoo.losses.pseudo_labels import kmeans


@dataclass
class AdaptiveIVF:
    """An IVF index built on the first ``cluster_dim`` coordinates of the database.

    Use :meth:`build`, then :meth:`search`.

    Attributes:
        database: ``(n, d)`` the full nested embeddings.
        centroids: ``(num_lists, cluster_dim)`` k-means centroids on the prefix d_c.
        assignments: ``(n,)`` the list of each database vector.
    """

    database: torch.Tensor
    centroids: torch.Tensor
    assignments: torch.Tensor

    @property
    def cluster_dim(self) -> int:
        return self.centroids.shape[1]

    @classmethod
    def build(
        cls, database: torch.Tensor, cluster_dim: int, num_lists: int, iterations: int = 20, seed: int = 0
    ) -> "AdaptiveIVF":
        """k-means with ``num_lists`` clusters on ``database[:, :cluster_dim]``."""
        if database.ndim != 2 or not 1 <= cluster_dim <= database.shape[1]:
            raise ValueError(f"cluster_dim must be in [1, {database.shape[-1]}] for a (n, d) database, got {cluster_dim}")
        centroids, assignments = kmeans(database[:, :cluster_dim].float(), num_lists, iterations, seed)
        return cls(database.float(), centroids, assignments)

    def search(self, queries: torch.Tensor, k: int, search_dim: int | None = None, probes: int = 1) -> torch.Tensor:
        """Indices ``(q, k)`` of the nearest database vectors, nearest first.

        Each query is routed with its first ``cluster_dim`` coordinates to the ``probes`` nearest lists; their
        members are ranked by Euclidean distance on the first ``search_dim`` coordinates (default: all). A query
        with fewer than ``k`` candidates is padded with -1.
        """
        d = self.database.shape[1]
        search_dim = d if search_dim is None else search_dim
        if not 1 <= search_dim <= d:
            raise ValueError(f"search_dim must be in [1, {d}], got {search_dim}")
        probes = min(probes, self.centroids.shape[0])
        queries = queries.float()
        lists = torch.cdist(queries[:, : self.cluster_dim], self.centroids).topk(probes, dim=1, largest=False).indices
        out = torch.full((queries.shape[0], k), -1, dtype=torch.long, device=queries.device)
        for row in range(queries.shape[0]):  # candidate sets differ in size per query
            candidates = torch.nonzero(torch.isin(self.assignments, lists[row])).flatten()
            if candidates.numel() == 0:
                continue
            dist = torch.cdist(queries[row : row + 1, :search_dim], self.database[candidates, :search_dim])[0]
            top = dist.topk(min(k, candidates.numel()), largest=False).indices
            out[row, : top.numel()] = candidates[top]
        return out


def exact_search(queries: torch.Tensor, database: torch.Tensor, k: int, dim: int | None = None) -> torch.Tensor:
    """Brute-force Euclidean k-NN on the first ``dim`` coordinates (all by default): indices ``(q, k)``."""
    dim = database.shape[1] if dim is None else dim
    return torch.cdist(queries[:, :dim].float(), database[:, :dim].float()).topk(k, dim=1, largest=False).indices


def recall_at_k(found: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean fraction of the reference neighbours ``(q, k)`` that ``found`` ``(q, k')`` contains."""
    hits = (found[:, :, None] == reference[:, None, :]).any(dim=1).float()
    return hits.mean().item()
