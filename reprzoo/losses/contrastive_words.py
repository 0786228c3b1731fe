"""The Contrastive Word Model's objective (Ri, Lee & Verma, "Contrastive Loss is All You Need to Recover Analogies
as Parallel Lines", RepL4NLP 2023, arXiv:2306.08221): a margin loss on cosine similarities of co-occurring words
against sampled non-co-occurring ones. A pure function of vectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_word_loss(
    words: torch.Tensor,
    contexts: torch.Tensor,
    negatives: torch.Tensor,
    keep: torch.Tensor | None = None,
    margin: float = 0.15,
    lambda_positive: float = 1.0,
    lambda_negative: float = 1.0,
) -> torch.Tensor:
    """``sum_i sum_k [m - l1 cos(u_i, v_i) + l2 cos(u_i, v'_ik)]_+``, summed over pairs and noise words (the
    authors' ``train.c`` takes one SGD step per (pair, noise word) on this hinge; the sum keeps their learning
    rate meaningful at any batch size).

    Args:
        words: ``(n, d)`` vectors ``u`` of the words.
        contexts: ``(n, d)`` vectors ``v`` of a word co-occurring with each.
        negatives: ``(n, k, d)`` vectors ``v'`` of k noise words per pair.
        keep: ``(n, k)`` False where a noise word is skipped (the context word itself).
        margin: ``m``.
        lambda_positive, lambda_negative: ``l1`` and ``l2``, the weights of the two cosines.
    """
    if words.shape != contexts.shape or negatives.shape[0] != words.shape[0] or negatives.shape[-1] != words.shape[-1]:
        raise ValueError(
            f"shapes do not match: words {tuple(words.shape)}, contexts {tuple(contexts.shape)}, negatives {tuple(negatives.shape)}"
        )
    positive = F.cosine_similarity(words, contexts, dim=-1, eps=1e-12)  # (n,)
    negative = F.cosine_similarity(words.unsqueeze(1), negatives, dim=-1, eps=1e-12)  # (n, k)
    hinge = torch.clamp(margin - lambda_positive * positive.unsqueeze(1) + lambda_negative * negative, min=0)
    if keep is not None:
        hinge = hinge * keep.to(hinge.dtype)
    return hinge.sum()


__all__ = ["contrastive_word_loss"]
