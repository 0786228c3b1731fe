"""Losses of generative retrievers (a Differentiable Search Index: a seq2seq model that writes document identifiers).

Docid sequences here are integer tokens with a padding id after their end-of-docid token; a decoder is trained by
teacher forcing on ``[BOS] docid[:-1]`` to predict ``docid``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def docid_sequence_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """DSI's seq2seq objective: the mean cross-entropy of every non-padding docid token (teacher forcing).

    Args:
        logits: ``(n, t, vocabulary)`` decoder scores at each position.
        targets: ``(n, t)`` docid tokens, ``pad_id`` after the end of each docid.
        pad_id: padding token (ignored).

    Returns:
        A scalar: the token-averaged negative log-likelihood of the docids.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (n, t, V) and targets (n, t), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if not bool(targets.ne(pad_id).any()):
        raise ValueError("every target is padding: no docid token to learn")
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id)


def constrained_log_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-probabilities renormalised over the tokens a prefix trie allows (``-inf`` elsewhere): the next-token
    distribution of constrained decoding, so the probabilities of all valid docids sum to one.

    Args:
        logits: ``(n, vocabulary)`` next-token scores.
        allowed: ``(n, vocabulary)`` booleans, at least one True per row.
    """
    if logits.shape != allowed.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and allowed {tuple(allowed.shape)} differ")
    if not bool(allowed.any(dim=-1).all()):
        raise ValueError("a row allows no token")
    return F.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)


__all__ = ["constrained_log_softmax", "docid_sequence_loss"]
