"""Block-Max Pruning (BMP) for learned sparse retrieval: "Faster Learned Sparse Retrieval with Block-Max Pruning"
(Mallia, Suel, Tonellotto, SIGIR 2024, arXiv:2405.01117).

The documents (after an optional reordering that puts similar documents next to each other; the paper uses
recursive graph bisection) are cut into consecutive blocks of ``block_size`` ids. For every block and term the index
keeps the largest weight of the term in the block (the block-max matrix). A query's upper bound for block ``b`` is
``sum_t q_t * blockmax[b, t]``; blocks are visited in decreasing upper-bound order, each scored exactly through a
forward index, and the search stops at the first block whose bound cannot beat the current k-th score. Safe mode
(``alpha = 1``) returns exactly the exhaustive top-k; ``alpha < 1`` stops once ``alpha * bound <= k-th score``
(approximate, fewer blocks).

Ours:
    - scipy CSR matrices for the forward index and the block-max matrix (the authors' Rust stores quantised
      per-term block-max arrays and a compressed forward index); bounds are one sparse mat-vec per query;
    - no query-term pruning (the paper's ``beta``) and no block reordering algorithm of our own: ``order`` accepts
      any permutation (e.g. documents sorted by cluster); weights are floats, not 8-bit quantised;
    - the top-k keeps the smaller document id among equal scores; a document in a skipped block whose score only
      ties the k-th one is not visited (the paper's ``bound <= threshold`` stop), so with ties the ids may differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


def _as_csr(matrix: torch.Tensor | np.ndarray | sp.spmatrix) -> sp.csr_matrix:
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    out = sp.csr_matrix(matrix, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D (n, vocabulary) matrix, got {out.shape}")
    return out


@dataclass
class BlockMaxIndex:
    """An inverted index of non-negative sparse document vectors with per-block term maxima.

    Attributes:
        forward: ``(n, vocabulary)`` CSR document weights, rows in block order (``order`` applied).
        block_max: ``(num_blocks, vocabulary)`` CSR per-block per-term maxima.
        doc_ids: ``(n,)`` original document id of each row of ``forward``.
        block_size: documents per block (the last block may be shorter).
    """

    forward: sp.csr_matrix
    block_max: sp.csr_matrix
    doc_ids: np.ndarray
    block_size: int

    @classmethod
    def build(
        cls, documents: torch.Tensor | np.ndarray | sp.spmatrix, block_size: int = 32, order: np.ndarray | None = None
    ) -> "BlockMaxIndex":
        """Index ``(n, vocabulary)`` non-negative weights (SPLADE's), optionally reordered by ``order`` (a permutation
        of ``range(n)``: row ``i`` of the index is document ``order[i]``)."""
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        forward = _as_csr(documents)
        n = forward.shape[0]
        if forward.nnz and forward.data.min() < 0:
            raise ValueError("block-max bounds need non-negative document weights")
        doc_ids = np.arange(n) if order is None else np.asarray(order)
        if sorted(doc_ids.tolist()) != list(range(n)):
            raise ValueError("order must be a permutation of range(n)")
        forward = forward[doc_ids]
        vocabulary, num_blocks = forward.shape[1], -(-n // block_size)
        coo = forward.tocoo()  # per (block, term) maxima over the stored entries, never densified
        keys = (coo.row // block_size).astype(np.int64) * vocabulary + coo.col
        by_key = np.argsort(keys, kind="stable")
        keys, starts = np.unique(keys[by_key], return_index=True)
        maxima = np.maximum.reduceat(coo.data[by_key], starts) if len(keys) else np.zeros(0, np.float32)
        block_max = sp.csr_matrix((maxima, (keys // vocabulary, keys % vocabulary)), shape=(num_blocks, vocabulary))
        return cls(forward, block_max, doc_ids, block_size)

    @property
    def num_blocks(self) -> int:
        return self.block_max.shape[0]

    def search(
        self, queries: torch.Tensor | np.ndarray | sp.spmatrix, k: int = 10, alpha: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` documents of every ``(q, vocabulary)`` non-negative query by dot product.

        Returns:
            ``(scores, ids, blocks_visited)``: ``(q, k)`` float32 scores best first, ``(q, k)`` original document ids
            (-1 beyond the collection), ``(q,)`` number of blocks scored.
        """
        if k < 1 or not 0 < alpha <= 1:
            raise ValueError(f"k must be >= 1 and alpha in (0, 1], got {k} and {alpha}")
        q = _as_csr(queries)
        if q.shape[1] != self.forward.shape[1]:
            raise ValueError(f"queries have {q.shape[1]} terms, the index {self.forward.shape[1]}")
        if q.nnz and q.data.min() < 0:
            raise ValueError("block-max bounds need non-negative query weights")
        n = self.forward.shape[0]
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        visited = np.zeros(q.shape[0], dtype=np.int64)
        bounds = np.asarray((self.block_max @ q.T).todense()).T  # (q, num_blocks)
        for i in range(q.shape[0]):
            query = q[i].T.tocsc()
            best_scores, best_rows = np.empty(0, np.float32), np.empty(0, np.int64)
            for block in np.argsort(-bounds[i], kind="stable"):
                threshold = best_scores[-1] if len(best_scores) == min(k, n) else -np.inf
                if alpha * bounds[i, block] <= threshold:
                    break
                start = block * self.block_size
                rows = np.arange(start, min(start + self.block_size, n))
                block_scores = np.asarray((self.forward[start : rows[-1] + 1] @ query).todense()).ravel()
                all_scores = np.concatenate([best_scores, block_scores.astype(np.float32)])
                all_rows = np.concatenate([best_rows, rows])
                keep = np.lexsort((self.doc_ids[all_rows], -all_scores))[:k]
                best_scores, best_rows = all_scores[keep], all_rows[keep]
                visited[i] += 1
            scores[i, : len(best_scores)] = best_scores
            ids[i, : len(best_rows)] = self.doc_ids[best_rows]
        return scores, ids, visited
