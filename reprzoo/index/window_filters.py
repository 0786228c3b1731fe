"""Window-filtered nearest-neighbour search: "Approximate Nearest Neighbor Search with Window Filters" (Engels,
Landrum, Yu, Dhulipala, Shun, ICML 2024, arXiv:2402.00943).

Every item carries a numeric label (a timestamp, a price); a query asks for its nearest items whose label lies in a
window ``[lo, hi]``. The paper's window search tree (the beta-WST, beta = ``branching``) sorts the items by label and
builds a beta-ary tree over the sorted order, each node holding an ANN index over its contiguous range. A window is a
contiguous range of the sorted order; it is answered by the O(beta log n) nodes that tile it (canonical
decomposition), each searched for k, merged; ranges smaller than ``brute_force_below`` (and the ragged ends inside
leaves) are scanned exactly. Every level holds every item once, so the node indexes hold O(n log n) vectors.

Ours:
    - node indexes: ``"exact"`` (a matmul over the node's slice: exact answers, for tests and small corpora) or
      ``"hnsw"`` (``faiss.IndexHNSWFlat`` per node with at least ``min_index_size`` items; smaller nodes scanned);
      the paper plugs in Vamana/HNSW and also studies optimised post-filtering, not built here;
    - similarities, not distances: ``metric="ip"`` (inner product) or ``"l2"`` (negated squared distance), larger
      is better in the returned scores;
    - items with equal labels are ordered by id; the window is inclusive on both ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

METRICS = ("ip", "l2")
NODE_INDEXES = ("exact", "hnsw")


@dataclass
class _Node:
    start: int
    end: int  # [start, end) of the label-sorted order
    children: list["_Node"] = field(default_factory=list)
    index: faiss.Index | None = None


class WindowSearchTree:
    """A window search tree over ``(n, dim)`` vectors with ``(n,)`` labels. :meth:`search` answers ``(q, dim)``
    queries, each with its own window."""

    def __init__(
        self,
        vectors: np.ndarray,
        labels: np.ndarray,
        branching: int = 2,
        leaf_size: int = 64,
        brute_force_below: int = 256,
        node_index: str = "exact",
        metric: str = "ip",
        hnsw_m: int = 16,
        ef_search: int = 64,
        min_index_size: int = 256,
    ) -> None:
        vectors, labels = np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(labels)
        if vectors.ndim != 2 or labels.shape != (len(vectors),):
            raise ValueError(f"expected (n, dim) vectors and (n,) labels, got {vectors.shape} and {labels.shape}")
        if branching < 2 or leaf_size < 1 or brute_force_below < 0:
            raise ValueError(
                f"need branching >= 2, leaf_size >= 1, brute_force_below >= 0, got {branching}, {leaf_size}, {brute_force_below}"
            )
        if node_index not in NODE_INDEXES or metric not in METRICS:
            raise ValueError(
                f"node_index must be one of {NODE_INDEXES} and metric one of {METRICS}, got {node_index!r}, {metric!r}"
            )
        self.order = np.lexsort((np.arange(len(labels)), labels))  # sorted position -> item id
        self.labels = labels[self.order]
        self.vectors = vectors[self.order]
        self.branching, self.leaf_size, self.brute_force_below = branching, leaf_size, brute_force_below
        self.node_index, self.metric, self.ef_search, self.min_index_size = node_index, metric, ef_search, min_index_size
        self.hnsw_m = hnsw_m
        self.root = self._build(0, len(labels))

    def _build(self, start: int, end: int) -> _Node:
        node = _Node(start, end)
        if self.node_index == "hnsw" and end - start >= self.min_index_size:
            faiss_metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
            node.index = faiss.IndexHNSWFlat(self.vectors.shape[1], self.hnsw_m, faiss_metric)
            node.index.add(self.vectors[start:end])
            node.index.hnsw.efSearch = self.ef_search
        if end - start > self.leaf_size:
            bounds = np.linspace(start, end, self.branching + 1).round().astype(int)
            node.children = [self._build(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        return node

    def _scan(self, query: np.ndarray, start: int, end: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        block = self.vectors[start:end]
        sims = block @ query if self.metric == "ip" else -((block - query) ** 2).sum(1)
        top = np.argsort(-sims, kind="stable")[:k]
        return sims[top], top + start

    def _node_search(self, query: np.ndarray, node: _Node, k: int) -> tuple[np.ndarray, np.ndarray]:
        if node.index is None:
            return self._scan(query, node.start, node.end, k)
        values, positions = node.index.search(query[None], min(k, node.end - node.start))
        keep = positions[0] >= 0
        sims = values[0][keep] if self.metric == "ip" else -values[0][keep]
        return sims, positions[0][keep] + node.start

    def _decompose(self, node: _Node, a: int, b: int, out: list) -> None:
        """Nodes tiling ``[a, b)``: ``("node", node)`` fully covered, ``("scan", lo, hi)`` ragged leaf ends."""
        if b <= node.start or a >= node.end:
            return
        if a <= node.start and node.end <= b:
            out.append(("node", node))
        elif not node.children:
            out.append(("scan", max(a, node.start), min(b, node.end)))
        else:
            for child in node.children:
                self._decompose(child, a, b, out)

    def search(self, queries: np.ndarray, windows: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` items of every query among those with ``lo <= label <= hi``.

        Args:
            queries: ``(q, dim)``; windows: ``(q, 2)`` rows ``[lo, hi]``.

        Returns:
            ``(scores, ids, nodes_visited)``: ``(q, k)`` similarities best first (-inf past the window's items),
            ``(q, k)`` item ids (-1 there), ``(q,)`` tree nodes searched (0 for a brute-force window).
        """
        queries, windows = np.ascontiguousarray(queries, dtype=np.float32), np.asarray(windows)
        if queries.ndim != 2 or queries.shape[1] != self.vectors.shape[1] or windows.shape != (len(queries), 2):
            raise ValueError(
                f"expected (q, {self.vectors.shape[1]}) queries and (q, 2) windows, got {queries.shape} and {windows.shape}"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        visited = np.zeros(len(queries), dtype=np.int64)
        for i, (query, (lo, hi)) in enumerate(zip(queries, windows)):
            a, b = np.searchsorted(self.labels, lo, "left"), np.searchsorted(self.labels, hi, "right")
            if b <= a:
                continue
            if b - a < self.brute_force_below:
                sims, positions = self._scan(query, a, b, k)
            else:
                parts: list = []
                self._decompose(self.root, a, b, parts)
                found = []
                for part in parts:
                    found.append(
                        self._node_search(query, part[1], k) if part[0] == "node" else self._scan(query, part[1], part[2], k)
                    )
                visited[i] = len(parts)
                sims, positions = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
                top = np.lexsort((positions, -sims))[:k]
                sims, positions = sims[top], positions[top]
            scores[i, : len(sims)] = sims
            ids[i, : len(sims)] = self.order[positions]
        return scores, ids, visited
