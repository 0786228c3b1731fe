"""Scores and losses of dense and multi-vector retrievers (issue 16): ME-BERT's max inner product over a document's
first token vectors, RepCONC's constrained product quantisation, the multivariate (Gaussian) retriever's negative
KL divergence and its inner-product form, the pseudo-query k-means over a document's token vectors and its
attention score, and the in-batch softmax ranking loss they share. Pure functions: no Lightning here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.losses.sinkhorn import sinkhorn


def in_batch_ranking_loss(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax cross-entropy of each query's positive against the other documents of the batch:
    ``-log softmax_j(scores[i, j] / temperature)`` at ``j = i``, averaged over queries (the ranking loss of
    ME-BERT, RepCONC, the multivariate and the pseudo-query retrievers, with in-batch negatives).

    Args:
        scores: ``(n, n + m)`` relevance of query i to document j; the first n documents are the queries'
            positives in order, the m others extra negatives.
        temperature: divides the scores.
    """
    if scores.ndim != 2 or scores.shape[1] < scores.shape[0]:
        raise ValueError(f"need (n, n + m) scores with a positive per query, got {tuple(scores.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    targets = torch.arange(scores.shape[0], device=scores.device)
    return F.cross_entropy(scores / temperature, targets)


def max_inner_product(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """ME-BERT's relevance: ``s(q, d) = max_j <q, d_j>`` over a document's m vectors; all-zero document vectors are
    padding (a document shorter than m tokens) and take no part in the max.

    Args:
        queries: ``(n, dim)`` one vector per query.
        documents: ``(N, m, dim)`` m vectors per document (at least one non-zero).
    Returns:
        ``(n, N)`` scores.
    """
    if queries.ndim != 2 or documents.ndim != 3 or queries.shape[-1] != documents.shape[-1]:
        raise ValueError(f"need (n, dim) queries and (N, m, dim) documents, got {tuple(queries.shape)}, {tuple(documents.shape)}")
    sims = torch.einsum("qd,nmd->qnm", queries, documents)
    padding = documents.abs().sum(-1) == 0  # (N, m)
    return sims.masked_fill(padding[None], float("-inf")).amax(-1)


def sparse_dense_hybrid(dense: torch.Tensor, sparse: torch.Tensor, weight: float) -> torch.Tensor:
    """ME-BERT's hybrid relevance (Luan et al., 2021, section 6): ``dense + weight * sparse`` (the sparse score a
    BM25 score of the same query-document pair; the weight tuned on development data)."""
    if dense.shape != sparse.shape:
        raise ValueError(f"dense and sparse scores differ in shape: {tuple(dense.shape)} vs {tuple(sparse.shape)}")
    return dense + weight * sparse


# ----------------------------------------------------------------------------------------------------- RepCONC
def subvector_distances(embeddings: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances of each sub-vector to its sub-space's centroids.

    Args:
        embeddings: ``(n, M * d)`` continuous embeddings, split into M sub-vectors of d.
        centroids: ``(M, K, d)`` K centroids per sub-space.
    Returns:
        ``(M, n, K)``.
    """
    m, _, d = centroids.shape
    if embeddings.ndim != 2 or embeddings.shape[1] != m * d:
        raise ValueError(f"embeddings {tuple(embeddings.shape)} do not split into {m} sub-vectors of {d}")
    sub = embeddings.reshape(len(embeddings), m, d).transpose(0, 1)  # (M, n, d)
    return ((sub[:, :, None] - centroids[:, None]) ** 2).sum(-1)


def pq_assign(
    embeddings: torch.Tensor,
    centroids: torch.Tensor,
    constrained: bool = False,
    epsilon: float = 0.003,
    iterations: int = 100,
) -> torch.Tensor:
    """Product-quantisation codes ``(n, M)``: each sub-vector's centroid.

    Unconstrained: the nearest centroid. Constrained (RepCONC's uniform clustering, Zhan et al. 2022, section 4.3):
    the batch's sub-vectors are assigned to the K centroids of each sub-space in equal shares, an optimal-transport
    problem solved approximately by Sinkhorn-Knopp (entropic ``epsilon``, on distances scaled to [-1, 1] per
    sub-space as the authors' code does), then the largest entry of each row. No gradient.
    """
    with torch.no_grad():
        distances = subvector_distances(embeddings, centroids)
        if not constrained:
            return distances.argmin(-1).T.contiguous()
        hi = distances.amax(dim=(1, 2), keepdim=True)
        lo = distances.amin(dim=(1, 2), keepdim=True)
        middle, amplitude = (hi + lo) / 2, (hi - lo) / 2 + 1e-5
        scaled = ((distances - middle) / amplitude).double()
        plan = sinkhorn(-scaled, epsilon=epsilon, iterations=iterations)  # rows: samples (mass 1), columns n/K
        return plan.argmax(-1).T.contiguous()


def pq_decode(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The reconstructed embeddings ``(n, M * d)`` of codes ``(n, M)``: each sub-space's chosen centroid, concatenated
    (differentiable in the centroids)."""
    m, k, d = centroids.shape
    if codes.ndim != 2 or codes.shape[1] != m:
        raise ValueError(f"codes {tuple(codes.shape)} do not have one entry per sub-space ({m})")
    if codes.numel() and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(f"codes must be in [0, {k})")
    chosen = centroids[torch.arange(m, device=codes.device)[None, :], codes]  # (n, M, d)
    return chosen.reshape(len(codes), m * d)


def repconc_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    quantized: torch.Tensor,
    mse_weight: float = 1e-4,
    temperature: float = 1.0,
) -> torch.Tensor:
    """RepCONC's objective: the in-batch ranking loss of the queries against the quantised documents, whose
    gradient reaches both the centroids and (straight through the quantiser, as the authors' gradient cache does)
    the document encoder, plus ``mse_weight`` times the clustering loss ``mean ||quantized - documents||^2``.

    Args:
        queries: ``(n, D)`` continuous query embeddings.
        documents: ``(n, D)`` continuous document embeddings (each query's positive, in order).
        quantized: ``(n, D)`` their reconstructions from the codes (``pq_decode``).
    """
    if not queries.shape == documents.shape == quantized.shape:
        raise ValueError(f"shapes differ: {tuple(queries.shape)}, {tuple(documents.shape)}, {tuple(quantized.shape)}")
    straight = documents + quantized - documents.detach()  # value: quantized; gradient: documents and centroids
    ranking = in_batch_ranking_loss(queries @ straight.T, temperature)
    return ranking + mse_weight * ((quantized - documents) ** 2).sum(-1).mean()


# ------------------------------------------------------------------------------------------------ multivariate
def negative_kl(mu_q: torch.Tensor, var_q: torch.Tensor, mu_d: torch.Tensor, var_d: torch.Tensor) -> torch.Tensor:
    """``-KL(N(mu_q, diag var_q) || N(mu_d, diag var_d))`` for every query-document pair: ``(n, N)``.

    ``KL = 1/2 sum_i [log var_d - log var_q - 1 + var_q / var_d + (mu_d - mu_q)^2 / var_d]``.
    """
    if mu_q.shape != var_q.shape or mu_d.shape != var_d.shape or mu_q.shape[-1] != mu_d.shape[-1]:
        raise ValueError("means and variances must be (n, k) and (N, k) with the same k")
    inv = 1.0 / var_d  # (N, k)
    log_ratio = var_d.log().sum(-1)[None] - var_q.log().sum(-1)[:, None]
    trace = var_q @ inv.T
    quad = (mu_q**2) @ inv.T - 2 * mu_q @ (mu_d * inv).T + (mu_d**2 * inv).sum(-1)[None]
    return -0.5 * (log_ratio - mu_q.shape[-1] + trace + quad)


def kl_query_vector(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """A query's expanded vector ``[1/2 sum log var + k/2, 1, var + mu^2, mu]`` (``2k + 2``): its inner product with
    :func:`kl_document_vector` is exactly ``-KL(query || document)`` (Zamani & Bendersky, 2023, section 3.3: the
    multivariate score served from an inner-product index)."""
    k = mu.shape[-1]
    const = 0.5 * var.log().sum(-1, keepdim=True) + k / 2
    return torch.cat([const, torch.ones_like(const), var + mu**2, mu], dim=-1)


def kl_document_vector(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """A document's expanded vector ``[1, -1/2 sum (log var + mu^2 / var), -1 / (2 var), mu / var]`` (``2k + 2``)."""
    inv = 1.0 / var
    bias = -0.5 * (var.log() + mu**2 * inv).sum(-1, keepdim=True)
    return torch.cat([torch.ones_like(bias), bias, -0.5 * inv, mu * inv], dim=-1)


# ------------------------------------------------------------------------------------------------ pseudo queries
def token_kmeans(states: torch.Tensor, mask: torch.Tensor, k: int, iterations: int = 3) -> torch.Tensor:
    """Lloyd's k-means over each document's token vectors: ``(B, L, D)`` states and a ``(B, L)`` mask ->
    ``(B, k, D)`` centroids, the pseudo query embeddings of Tang et al. (2021).

    Initial centroids: k tokens evenly spaced over the document's real tokens (deterministic, so a document always
    gets the same representation). Each iteration assigns tokens to the nearest centroid (no gradient) and moves
    each centroid to the mean of its tokens (differentiable in the states). A cluster left empty keeps its
    centroid; a document with fewer than k tokens gets all-zero (padding) rows for the centroids it lacks.
    """
    if states.ndim != 3 or mask.shape != states.shape[:2]:
        raise ValueError(f"need (B, L, D) states and a (B, L) mask, got {tuple(states.shape)}, {tuple(mask.shape)}")
    if k < 1 or iterations < 0:
        raise ValueError(f"need k >= 1 and iterations >= 0, got {k}, {iterations}")
    mask = mask.bool()
    lengths = mask.sum(1)  # (B,)
    # real tokens first (stable), then k evenly spaced of them
    order = torch.sort((~mask).long(), dim=1, stable=True).indices
    slots = torch.arange(k, device=states.device)[None].float()
    starts = (slots * lengths[:, None].float() / k).floor().long().clamp(max=states.shape[1] - 1)
    picks = order.gather(1, starts)
    centroids = states.gather(1, picks[..., None].expand(-1, -1, states.shape[-1]))
    valid = slots < lengths[:, None]  # (B, k): a centroid exists only for documents with enough tokens
    for _ in range(iterations):
        with torch.no_grad():
            dist = torch.cdist(states, centroids) ** 2  # (B, L, k)
            dist = dist.masked_fill(~valid[:, None, :], float("inf"))
            assign = F.one_hot(dist.argmin(-1), k).to(states.dtype) * mask[..., None]  # (B, L, k)
        counts = assign.sum(1)  # (B, k)
        means = torch.einsum("blk,bld->bkd", assign, states) / counts.clamp(min=1)[..., None]
        centroids = torch.where(counts[..., None] > 0, means, centroids)
    return centroids * valid[..., None]


def pseudo_query_scores(queries: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The pseudo-query relevance (Tang et al., 2021, Eqs. 4-6): the query attends over a document's centroids,
    ``a_j = softmax_j <q, c_j>``, and is scored against their weighted sum: ``s(q, d) = <q, sum_j a_j c_j>``.
    All-zero (padding) centroids get no weight.

    Args:
        queries: ``(n, D)``.
        centroids: ``(N, k, D)``.
    Returns:
        ``(n, N)``.
    """
    if queries.ndim != 2 or centroids.ndim != 3 or queries.shape[-1] != centroids.shape[-1]:
        raise ValueError(f"need (n, D) queries and (N, k, D) centroids, got {tuple(queries.shape)}, {tuple(centroids.shape)}")
    sims = torch.einsum("qd,nkd->qnk", queries, centroids)
    padding = centroids.abs().sum(-1) == 0
    weights = sims.masked_fill(padding[None], float("-inf")).softmax(-1)
    return (weights * sims).sum(-1)  # <q, sum_j a_j c_j> = sum_j a_j <q, c_j>


# -------------------------------------------------------------------------------------------------- RetroMAE v2
def max_pooled_logits(token_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """DupMAE's ordinary-token vector: the vocabulary logits ``(B, L, V)`` of the tokens after [CLS], max-pooled
    over the real ones, ``(B, V)`` (the authors' ``ot_embedding``; padding pushed down by 1000 as they do)."""
    if token_logits.shape[:2] != attention_mask.shape:
        raise ValueError(f"logits {tuple(token_logits.shape)} and mask {tuple(attention_mask.shape)} differ")
    penalty = (1 - attention_mask[:, 1:, None].to(token_logits.dtype)) * -1000.0
    return (token_logits[:, 1:] + penalty).amax(1)


def bag_of_words_targets(
    ids: torch.Tensor, attention_mask: torch.Tensor, vocab_size: int, special: tuple[int, ...]
) -> torch.Tensor:
    """``(B, V)`` bag-of-words weights of each text as the authors' collator builds them: ``1 / n`` at every distinct
    token of the text's ``n`` ordinary (non-special, real) tokens (a repeated token counts once in the numerator and
    every time in ``n``)."""
    ordinary = attention_mask.bool()
    for token in special:
        ordinary &= ids != token
    counts = ordinary.sum(1, keepdim=True).clamp(min=1).to(torch.float32)
    present = torch.zeros(ids.shape[0], vocab_size, device=ids.device)
    present.scatter_(1, ids * ordinary, ordinary.to(torch.float32))  # masked-out positions write 0 at id 0
    return present / counts


def bag_of_words_loss(pooled_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """DupMAE's BoW loss: ``mean_b -sum_v targets[b, v] log softmax(pooled_logits[b])_v``."""
    if pooled_logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(pooled_logits.shape)} and targets {tuple(targets.shape)} differ")
    return -(targets * F.log_softmax(pooled_logits, dim=-1)).sum(-1).mean()


# ------------------------------------------------------------------------------------------------------- SESA
def concept_targets(concept_ids: torch.Tensor, num_concepts: int) -> torch.Tensor:
    """Multi-hot ``(B, num_concepts)`` targets from ``(B, n)`` concept ids shifted by one (0 pads)."""
    if concept_ids.numel() and (concept_ids.min() < 0 or concept_ids.max() > num_concepts):
        raise ValueError(f"concept ids must be in [0, {num_concepts}] (0 pads)")
    hot = torch.zeros(concept_ids.shape[0], num_concepts + 1, device=concept_ids.device)
    return hot.scatter_(1, concept_ids, 1.0)[:, 1:]


def concept_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SESA's concept supervision: mean binary cross-entropy of the concept logits ``(B, C)`` against multi-hot
    targets, over the texts that have at least one concept (untagged texts are not negatives of every concept:
    their tags are unknown). 0 for a batch without any."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    tagged = targets.sum(-1) > 0
    if not tagged.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[tagged], targets[tagged])


__all__ = [
    "bag_of_words_loss",
    "bag_of_words_targets",
    "max_pooled_logits",
    "concept_loss",
    "concept_targets",
    "in_batch_ranking_loss",
    "kl_document_vector",
    "kl_query_vector",
    "max_inner_product",
    "negative_kl",
    "pq_assign",
    "pq_decode",
    "pseudo_query_scores",
    "repconc_loss",
    "sparse_dense_hybrid",
    "subvector_distances",
    "token_kmeans",
]
