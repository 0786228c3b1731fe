"""IVF-Flat search with attribute filters: "Billion-scale Similarity Search Using a Hybrid Indexing Approach with
Advanced Filtering" (Emanuilov, Dimov, 2025, arXiv:2501.13442).

The classical inverted file (k-means lists, ``nprobe`` nearest lists scanned) is extended with discrete attributes
stored per list: every item carries a few integer attributes (a section, a language, a year bucket), a filter asks
for items whose every constrained attribute takes one of the allowed values, and the filter is evaluated on the
list's attribute metadata BEFORE any distance is computed, so a list's filtered-out items cost no distance.
Per (attribute, value) the index keeps a packed bitmap over the list-ordered items; a filter is an AND over
attributes of ORs over values, done on the packed words.

The strategy follows the filter's selectivity (the share of items that pass it), estimated from the per-value
counts assuming independent attributes:
    - ``"brute"`` below ``brute_below``: so few items pass that scanning exactly all of them beats the lists;
    - ``"pre"`` in between: probe ``nprobe`` lists, distances only for the items whose bit is set;
    - ``"post"`` above ``post_above``: an unfiltered IVF search for ``ceil(k / selectivity * expansion)``
      candidates, then the filter; cheap when nearly everything passes.

Ours:
    - numpy/faiss in memory (the paper's index is disk-based, with its own storage layout and multi-threading);
      lists from ``faiss.Kmeans``; bitmaps via ``numpy.packbits`` rather than a Roaring library;
    - the selectivity thresholds and the post-filter expansion are our defaults, the paper's estimator is not
      specified here; ``strategy`` can be forced;
    - ``metric="ip"`` or ``"l2"``; returned scores are similarities (negated squared distance for l2).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import faiss
import numpy as np

STRATEGIES = ("auto", "brute", "pre", "post")


class FilteredIVF:
    """IVF over ``(n, dim)`` vectors with ``attributes``: name -> ``(n,)`` non-negative ints.

    Attributes:
        centroids: ``(nlist, dim)``; list_offsets: ``(nlist + 1,)`` item ranges of each list in list order;
        ids: ``(n,)`` item id of each list-ordered row; bitmaps: ``{name: {value: packed (ceil(n / 8),) uint8}}``.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        attributes: Mapping[str, np.ndarray],
        nlist: int = 64,
        metric: str = "ip",
        seed: int = 0,
        brute_below: float = 0.01,
        post_above: float = 0.5,
        expansion: float = 2.0,
    ) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not 1 <= nlist <= len(vectors):
            raise ValueError(f"expected (n, dim) vectors and 1 <= nlist <= n, got {vectors.shape} and {nlist}")
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
        if not 0 <= brute_below <= post_above <= 1 or expansion < 1:
            raise ValueError("need 0 <= brute_below <= post_above <= 1 and expansion >= 1")
        for name, values in attributes.items():
            values = np.asarray(values)
            if values.shape != (len(vectors),) or values.dtype.kind not in "iu" or (len(values) and values.min() < 0):
                raise ValueError(f"attribute {name!r} must be (n,) non-negative ints")
        self.metric, self.brute_below, self.post_above, self.expansion = metric, brute_below, post_above, expansion
        kmeans = faiss.Kmeans(vectors.shape[1], nlist, niter=20, seed=seed, spherical=metric == "ip")
        kmeans.train(vectors)
        self.centroids = kmeans.centroids
        assignment = self._nearest_lists(vectors, 1)[:, 0]
        self.ids = np.argsort(assignment, kind="stable")
        self.list_offsets = np.searchsorted(assignment[self.ids], np.arange(nlist + 1))
        self.vectors = vectors[self.ids]
        self.size = len(vectors)
        self.bitmaps = {
            name: {int(v): np.packbits(np.asarray(values)[self.ids] == v) for v in np.unique(values)}
            for name, values in attributes.items()
        }

    def _similarities(self, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        if self.metric == "ip":
            return queries @ vectors.T
        return -((queries[:, None, :] - vectors[None]) ** 2).sum(-1)

    def _nearest_lists(self, queries: np.ndarray, nprobe: int) -> np.ndarray:
        return np.argsort(-self._similarities(queries, self.centroids), axis=1, kind="stable")[:, :nprobe]

    def filter_mask(self, filters: Mapping[str, Sequence[int]]) -> np.ndarray:
        """Packed bitmap ``(ceil(n / 8),)`` of the list-ordered items passing ``filters`` (AND of ORs)."""
        mask = np.packbits(np.ones(self.size, dtype=bool))
        for name, allowed in filters.items():
            if name not in self.bitmaps:
                raise ValueError(f"unknown attribute {name!r}; the index has {sorted(self.bitmaps)}")
            either = np.zeros_like(mask)
            for value in allowed:
                if int(value) in self.bitmaps[name]:
                    either |= self.bitmaps[name][int(value)]
            mask &= either
        return mask

    def estimate_selectivity(self, filters: Mapping[str, Sequence[int]]) -> float:
        """Share of items passing ``filters``, from per-value counts assuming independent attributes."""
        share = 1.0
        for name, allowed in filters.items():
            if name not in self.bitmaps:
                raise ValueError(f"unknown attribute {name!r}; the index has {sorted(self.bitmaps)}")
            bitmaps = self.bitmaps[name]
            count = sum(int(np.unpackbits(bitmaps[int(v)]).sum()) for v in set(allowed) if int(v) in bitmaps)
            share *= count / self.size
        return share

    def choose_strategy(self, selectivity: float) -> str:
        if selectivity < self.brute_below:
            return "brute"
        return "post" if selectivity > self.post_above else "pre"

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        filters: Mapping[str, Sequence[int]] | None = None,
        nprobe: int = 8,
        strategy: str = "auto",
    ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
        """Top-``k`` filtered items of every ``(q, dim)`` query.

        Returns:
            ``(scores, ids, strategy, distances)``: ``(q, k)`` similarities best first (-inf where fewer than k items
            were found), ``(q, k)`` item ids (-1 there), the strategy used, and ``(q,)`` the number of item
            distances computed for each query (centroid distances not counted).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"expected (q, {self.vectors.shape[1]}) queries, got {queries.shape}")
        if k < 1 or nprobe < 1 or strategy not in STRATEGIES:
            raise ValueError(f"need k >= 1, nprobe >= 1, strategy in {STRATEGIES}; got {k}, {nprobe}, {strategy!r}")
        filters = filters or {}
        passing = np.unpackbits(self.filter_mask(filters), count=self.size).astype(bool)
        if strategy == "auto":
            strategy = self.choose_strategy(self.estimate_selectivity(filters))
        nprobe = min(nprobe, len(self.centroids))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        lists = self._nearest_lists(queries, nprobe)
        distances = np.zeros(len(queries), dtype=np.int64)
        for i, query in enumerate(queries):
            if strategy == "brute":
                rows = np.flatnonzero(passing)
            else:
                rows = np.concatenate([np.arange(self.list_offsets[c], self.list_offsets[c + 1]) for c in lists[i]])
                if strategy == "pre":
                    rows = rows[passing[rows]]  # filter before any distance
            sims = self._similarities(query[None], self.vectors[rows])[0]
            distances[i] = len(rows)
            if strategy == "post":
                share = max(passing.mean(), 1.0 / self.size)
                depth = min(len(rows), math.ceil(k / share * self.expansion))
                top = np.lexsort((self.ids[rows], -sims))[:depth]
                rows, sims = rows[top], sims[top]
                rows, sims = rows[passing[rows]], sims[passing[rows]]
            top = np.lexsort((self.ids[rows], -sims))[:k]
            scores[i, : len(top)] = sims[top]
            ids[i, : len(top)] = self.ids[rows[top]]
        return scores, ids, strategy, distances
