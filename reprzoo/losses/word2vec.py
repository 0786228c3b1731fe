"""The objectives of word2vec (Mikolov et al., 2013a, arXiv 1301.3781; 2013b, arXiv 1310.4546): negative sampling,
hierarchical softmax over a Huffman tree of the vocabulary, and the full softmax. Pure functions of vectors; the
module looks the vectors up."""

from __future__ import annotations

import heapq

import numpy as np
import torch
import torch.nn.functional as F


def negative_sampling_loss(hidden: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """``-log s(h . v_o) - sum_k log s(-h . v_k)`` per example, summed over examples (word2vec's SGD takes one
    step per example: the sum keeps the paper's learning rate meaningful at any batch size).

    Args:
        hidden: ``(n, d)`` input-side vectors (skip-gram: the centre word; CBOW: the context mean).
        positive: ``(n, d)`` output vectors of the true word.
        negatives: ``(n, k, d)`` output vectors of k noise words.
    """
    if hidden.shape != positive.shape or negatives.shape[0] != hidden.shape[0] or negatives.shape[-1] != hidden.shape[-1]:
        raise ValueError(
            f"shapes do not match: hidden {tuple(hidden.shape)}, positive {tuple(positive.shape)}, negatives {tuple(negatives.shape)}"
        )
    pos = F.logsigmoid((hidden * positive).sum(-1))
    neg = F.logsigmoid(-torch.einsum("nd,nkd->nk", hidden, negatives)).sum(-1)
    return -(pos + neg).sum()


def grouped_negative_sampling_loss(
    hidden: torch.Tensor,
    positives: torch.Tensor,
    positive_mask: torch.Tensor,
    negatives: torch.Tensor,
    negative_weights: torch.Tensor,
) -> torch.Tensor:
    """Negative sampling with the predictions of one input vector grouped and its noise words shared:
    ``sum_c [ sum_{o in P(c)} -log s(h_c . v_o) - m_c sum_j w_j log s(-h_c . v_j) ]`` where ``m_c = |P(c)|``.

    With ``v_j`` K words drawn from the noise distribution and ``w_j = k / K``, the expectation over the draws is
    :func:`negative_sampling_loss`'s (k noise words per pair); with every word of the vocabulary and ``w_j = k
    q_j`` it is that expectation exactly. Sharing the draws turns the negative scores into one matrix product.

    Args:
        hidden: ``(n, d)`` input-side vectors.
        positives: ``(n, P, d)`` output vectors of each input's true words (padded).
        positive_mask: ``(n, P)`` True on the real ones.
        negatives: ``(K, d)`` output vectors of the shared noise words.
        negative_weights: ``(K,)`` the weight of each noise word's term.
    """
    if positives.shape[0] != hidden.shape[0] or positives.shape[:2] != positive_mask.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)}, positives {tuple(positives.shape)}, mask {tuple(positive_mask.shape)}")
    if negatives.shape[0] != negative_weights.shape[0]:
        raise ValueError(f"{negatives.shape[0]} noise vectors but {negative_weights.shape[0]} weights")
    mask = positive_mask.to(hidden.dtype)
    pos = (F.logsigmoid(torch.einsum("nd,npd->np", hidden, positives)) * mask).sum()
    neg = (F.logsigmoid(-(hidden @ negatives.T)) @ negative_weights.to(hidden.dtype)) @ mask.sum(1)
    return -(pos + neg)


def hierarchical_softmax_loss(hidden: torch.Tensor, nodes: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``-sum_l log s((1 - 2 c_l) h . v_{n_l})`` along each target word's Huffman path (word2vec.c: the label of
    inner node n_l is ``1 - code``), summed over examples.

    Args:
        hidden: ``(n, d)``.
        nodes: ``(n, L, d)`` vectors of the inner nodes on each target's path (padded to L).
        codes: ``(n, L)`` the path's binary code (0/1).
        mask: ``(n, L)`` True on the real path entries.
    """
    if nodes.shape[:2] != codes.shape or codes.shape != mask.shape:
        raise ValueError(f"nodes {tuple(nodes.shape)}, codes {tuple(codes.shape)} and mask {tuple(mask.shape)} do not match")
    sign = 1.0 - 2.0 * codes.to(hidden.dtype)
    logits = torch.einsum("nd,nld->nl", hidden, nodes)
    return -(F.logsigmoid(sign * logits) * mask.to(hidden.dtype)).sum()


def full_softmax_loss(hidden: torch.Tensor, output_vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax over the whole vocabulary, ``-log softmax(h W^T)_o``, summed over examples."""
    return F.cross_entropy(hidden @ output_vectors.T, targets, reduction="sum")


def huffman_tree(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Huffman coding of a vocabulary by counts (word2vec.c's ``CreateBinaryTree``): ``(points, codes,
    lengths)``, where row w of ``points`` lists the inner nodes (0..V-2) from the root to word w, ``codes`` the
    branch taken at each (0/1), both padded to the longest path, and ``lengths`` the path lengths."""
    n = len(counts)
    if n < 2:
        raise ValueError("hierarchical softmax needs at least two words")
    heap = [(int(c), i) for i, c in enumerate(counts)]  # leaves 0..n-1, inner nodes n..2n-2
    heapq.heapify(heap)
    parent = np.zeros(2 * n - 1, dtype=np.int64)
    branch = np.zeros(2 * n - 1, dtype=np.int64)
    next_id = n
    while len(heap) > 1:
        c1, a = heapq.heappop(heap)
        c2, b = heapq.heappop(heap)
        parent[a], parent[b], branch[b] = next_id, next_id, 1
        heapq.heappush(heap, (c1 + c2, next_id))
        next_id += 1
    root = 2 * n - 2
    paths, codes = [], []
    for w in range(n):
        node, p, c = w, [], []
        while node != root:
            c.append(branch[node])
            node = parent[node]
            p.append(node - n)  # inner node index 0..n-2
        paths.append(p[::-1])
        codes.append(c[::-1])
    lengths = np.array([len(p) for p in paths])
    width = int(lengths.max())
    points = np.zeros((n, width), dtype=np.int64)
    code_arr = np.zeros((n, width), dtype=np.int64)
    for w in range(n):
        points[w, : lengths[w]] = paths[w]
        code_arr[w, : lengths[w]] = codes[w]
    return points, code_arr, lengths


__all__ = [
    "full_softmax_loss",
    "grouped_negative_sampling_loss",
    "hierarchical_softmax_loss",
    "huffman_tree",
    "negative_sampling_loss",
]
