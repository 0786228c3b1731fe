"""fastText's skip-gram objective (Bojanowski, Grave, Joulin & Mikolov, TACL 2017, arXiv:1607.04606): the input
vector of a word is built from its character n-grams, then scored against a context word and noise words as in
skip-gram with negative sampling. Pure functions of vectors; the module looks the vectors up."""

from __future__ import annotations

import torch

from reprzoo.losses.word2vec import negative_sampling_loss


def subword_hidden(
    word_vectors: torch.Tensor, ngram_sums: torch.Tensor, ngram_counts: torch.Tensor, mean_gradient: bool = False
) -> torch.Tensor:
    """The input vector of each word, ``(z_w + sum_g z_g) / (1 + |G_w|)``: the mean of its word row and its n-gram
    rows (``Model::computeHidden`` averages the input rows; the paper writes the sum, a scale the learning rate
    absorbs).

    The gradient follows the authors' code: fastText's ``Model::update`` adds the full gradient of the hidden vector
    to every input row for skip-gram and CBOW (``normalizeGradient`` is on only for supervised models), not the
    ``1 / (1 + |G_w|)`` share the mean would give; ``mean_gradient=True`` gives the exact gradient of the mean.

    Args:
        word_vectors: ``(n, d)`` the words' own rows (zeros for a word outside the vocabulary).
        ngram_sums: ``(n, d)`` the sum of each word's n-gram rows.
        ngram_counts: ``(n,)`` rows summed per word (word row included).
    """
    summed = word_vectors + ngram_sums
    mean = summed / ngram_counts.clamp(min=1).unsqueeze(-1).to(summed.dtype)
    if mean_gradient:
        return mean
    return mean.detach() + (summed - summed.detach())  # value: the mean; gradient to each row: the mean's


def fasttext_loss(hidden: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """fastText's ``NegativeSamplingLoss``: ``-log s(h . v_o) - sum_k log s(-h . v_k)`` per (word, context) pair,
    summed over pairs, with ``h`` from :func:`subword_hidden` (the binary logistic loss of ``loss.cc``)."""
    return negative_sampling_loss(hidden, positive, negatives)


__all__ = ["fasttext_loss", "subword_hidden"]
