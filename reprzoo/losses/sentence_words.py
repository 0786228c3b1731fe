"""Pure functions of the word-based sentence methods: Sent2Vec's hashed bigrams and the gradient of its
mini-batches (Pagliardini et al., 2018, arXiv 1703.02507), CMOW's ordered matrix product and its negative-sampling
loss (Mai et al., 2019, arXiv 1902.06423), and Binary Paragraph Vector's binary bottleneck, softmax loss and
inference gradient (Grzegorczyk & Kurdziel, 2017, arXiv 1611.01116; Grzegorczyk, 2019). Sent2Vec's loss is word2vec's :func:`~reprzoo.losses.word2vec.negative_sampling_loss`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: the multiplier of sent2vec's n-gram hash (``Dictionary::addNgrams``: ``h = h * 116049371 + id``)
NGRAM_HASH_MULTIPLIER = 116049371


def hashed_bigrams(ids: torch.Tensor, vocab_size: int, bucket: int) -> torch.Tensor:
    """Rows of the word bigrams ``(ids[:, j], ids[:, j + 1])``: ``vocab_size + (a * 116049371 + b) mod bucket``.

    Args:
        ids: ``(B, L)`` word ids (non-negative, below 2^32: the product stays inside int64, so the result is the
            authors' unsigned 64-bit hash exactly).
        vocab_size: rows of the unigrams (the bigram rows follow them).
        bucket: rows of the bigram table.

    Returns:
        ``(B, L - 1)`` row ids.
    """
    if ids.ndim != 2:
        raise ValueError(f"ids must be (B, L), got shape {tuple(ids.shape)}")
    if bucket < 1:
        raise ValueError(f"bucket must be >= 1, got {bucket}")
    ids = ids.long()
    return vocab_size + (ids[:, :-1] * NGRAM_HASH_MULTIPLIER + ids[:, 1:]) % bucket


def sentence_mean_gradient(
    vectors: torch.Tensor, rows: torch.Tensor, keep: torch.Tensor, sentences: torch.Tensor
) -> torch.Tensor:
    """The identity forward; backward, the gradient of each looked-up vector divided by the number of distinct
    sentences of the batch that use its row: a row used by several sentences takes the mean of their gradients,
    the predictions of one sentence still add up (Sent2Vec's mini-batches, see its "Ours").

    Args:
        vectors: ``(n, m, d)`` rows looked up for n predictions (m rows each).
        rows: ``(n, m)`` their row ids (non-negative).
        keep: ``(n, m)`` True where a row is used (padding and dropped rows count for no sentence).
        sentences: ``(n,)`` the sentence of each prediction.

    Returns:
        ``vectors`` (same values), with the scaled gradient.
    """
    if vectors.ndim != 3 or vectors.shape[:2] != rows.shape or rows.shape != keep.shape or sentences.shape != rows.shape[:1]:
        raise ValueError(
            f"need vectors (n, m, d), rows and keep (n, m), sentences (n,): got {tuple(vectors.shape)}, "
            f"{tuple(rows.shape)}, {tuple(keep.shape)}, {tuple(sentences.shape)}"
        )
    if not keep.any():
        return vectors
    rows, sentences = rows.long(), sentences.long()
    stride = int(sentences.max()) + 1
    pairs = torch.unique(rows[keep] * stride + sentences.unsqueeze(1).expand_as(rows)[keep])  # distinct (row, sentence)
    users = torch.bincount(pairs // stride, minlength=int(rows.max()) + 1)
    scale = 1.0 / users[rows].clamp(min=1).to(vectors.dtype).unsqueeze(-1)
    return vectors.detach() + (vectors - vectors.detach()) * scale


def mean_negative_sampling_loss(hidden: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """CMOW's objective (the authors' ``CBOWNet``): ``-log s(h . v_o) - (1/k) sum_j log s(-h . v_j)``, averaged over
    the n predictions (word2vec sums over the k noise words and the examples; the authors' code averages both).

    Args:
        hidden: ``(n, d)`` encoded contexts.
        positive: ``(n, d)`` output vectors of the missing words.
        negatives: ``(n, k, d)`` output vectors of k noise words.
    """
    if hidden.shape != positive.shape or negatives.ndim != 3 or negatives.shape[::2] != hidden.shape:
        raise ValueError(
            f"shapes do not match: hidden {tuple(hidden.shape)}, positive {tuple(positive.shape)}, negatives {tuple(negatives.shape)}"
        )
    pos = F.logsigmoid((hidden * positive).sum(-1))
    neg = F.logsigmoid(-torch.einsum("nd,nkd->nk", hidden, negatives)).mean(-1)
    return -(pos + neg).mean()


def ordered_matrix_product(matrices: torch.Tensor, mask: torch.Tensor, max_log_norm: float | None = None) -> torch.Tensor:
    """``X_1 X_2 ... X_L`` of each sequence (CMOW's sentence matrix), masked positions read as the identity (the
    neutral element, as the authors' padding word).

    Args:
        matrices: ``(n, L, m, m)`` word matrices.
        mask: ``(n, L)`` True on the real words.
        max_log_norm: ``None``: the plain product. A number: the product is accumulated rescaled (each step divided
            by its Frobenius norm, the log-norms summed) and returned with norm ``exp(min(log-norm, max_log_norm))``:
            exact while the true norm is below ``e^max_log_norm``, the same direction (cosine) beyond it, where the
            plain product of a long text would overflow.

    Returns:
        ``(n, m, m)``.
    """
    if matrices.ndim != 4 or matrices.shape[-1] != matrices.shape[-2] or matrices.shape[:2] != mask.shape:
        raise ValueError(f"need matrices (n, L, m, m) and mask (n, L), got {tuple(matrices.shape)} and {tuple(mask.shape)}")
    n, length, m, _ = matrices.shape
    eye = torch.eye(m, dtype=matrices.dtype, device=matrices.device).expand(n, m, m)
    out = eye
    log_norm = torch.zeros(n, dtype=matrices.dtype, device=matrices.device)
    for j in range(length):
        step = torch.where(mask[:, j, None, None], matrices[:, j], eye)
        out = torch.bmm(out, step)
        if max_log_norm is not None:
            norm = out.flatten(1).norm(dim=1).clamp(min=torch.finfo(out.dtype).tiny)
            out = out / norm[:, None, None]
            log_norm = log_norm + norm.log()
    if max_log_norm is None:
        return out
    return out * log_norm.clamp(max=max_log_norm).exp()[:, None, None]


def straight_through_round(probabilities: torch.Tensor) -> torch.Tensor:
    """``round(p)`` forward, the identity backward (Bengio et al., 2013): Binary Paragraph Vector's binary codes."""
    return probabilities + (torch.round(probabilities) - probabilities).detach()


def document_softmax_loss(codes: torch.Tensor, output: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PV-DBOW's objective: each document's code predicts each of its words through a softmax over the vocabulary,
    ``-sum_d sum_{w in d} log softmax(W c_d)_w`` (summed over words and documents, as per-word SGD steps).

    Args:
        codes: ``(B, d)`` document representations.
        output: ``(V, d)`` output word vectors W.
        words: ``(B, L)`` word ids of each document (padded).
        mask: ``(B, L)`` True on the real words.
    """
    if codes.ndim != 2 or output.ndim != 2 or codes.shape[1] != output.shape[1] or words.shape != mask.shape:
        raise ValueError(
            f"need codes (B, d), output (V, d), words and mask (B, L): got {tuple(codes.shape)}, "
            f"{tuple(output.shape)}, {tuple(words.shape)}, {tuple(mask.shape)}"
        )
    log_p = torch.log_softmax(codes @ output.T, dim=-1)
    return -(torch.gather(log_p, 1, words.long()) * mask.to(log_p.dtype)).sum()


def document_code_gradient(
    logits: torch.Tensor, codes: torch.Tensor, output: torch.Tensor, words: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The gradient of :func:`document_softmax_loss` (divided by each document's word count) with respect to the
    pre-sigmoid document vectors ``e``, with ``codes = round(sigmoid(e))`` through the straight-through estimator
    (or ``sigmoid(e)`` itself): ``s'(e) * W^T (n p - counts) / n``, ``p = softmax(W codes)``. In closed form, so that
    inference for new documents needs no autograd (it runs inside evaluation's ``no_grad``).

    Args:
        logits: ``(B, d)`` pre-sigmoid vectors e.
        codes: ``(B, d)`` what the forward pass used (rounded or not).
        output: ``(V, d)`` W.
        words, mask: ``(B, L)`` each document's words.
    """
    if logits.shape != codes.shape or words.shape != mask.shape or words.shape[0] != codes.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)}, codes {tuple(codes.shape)}, words {tuple(words.shape)}, mask {tuple(mask.shape)}"
        )
    counts = torch.zeros(codes.shape[0], output.shape[0], dtype=codes.dtype, device=codes.device)
    counts.scatter_add_(1, words.long(), mask.to(codes.dtype))
    n = counts.sum(1, keepdim=True).clamp(min=1.0)
    p = torch.softmax(codes @ output.T, dim=-1)
    s = torch.sigmoid(logits)
    return s * (1 - s) * (((counts.sum(1, keepdim=True) * p - counts) @ output) / n)


__all__ = [
    "NGRAM_HASH_MULTIPLIER",
    "document_code_gradient",
    "document_softmax_loss",
    "hashed_bigrams",
    "mean_negative_sampling_loss",
    "ordered_matrix_product",
    "sentence_mean_gradient",
    "straight_through_round",
]
