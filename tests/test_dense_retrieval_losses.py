"""The dense and multi-vector retrievers' scores and losses (reprzoo.losses.dense_retrieval), each against an
independent computation: loops, torch.distributions' KL, scikit-learn's k-means, scipy's assignment solver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reprzoo.losses.dense_retrieval import (
    in_batch_ranking_loss,
    kl_document_vector,
    kl_query_vector,
    max_inner_product,
    negative_kl,
    pq_assign,
    pq_decode,
    pseudo_query_scores,
    repconc_loss,
    sparse_dense_hybrid,
    token_kmeans,
)
from reprzoo.metrics.retrieval import maxsim_scores


def test_in_batch_ranking_loss_is_the_mean_negative_log_softmax_of_the_diagonal():
    torch.manual_seed(0)
    scores = torch.randn(4, 6)
    expected = 0.0
    for i in range(4):
        expected += -(scores[i, i] / 0.5 - math.log(sum(math.exp(s / 0.5) for s in scores[i].tolist())))
    torch.testing.assert_close(in_batch_ranking_loss(scores, 0.5), expected / 4)
    with pytest.raises(ValueError):
        in_batch_ranking_loss(torch.randn(4, 3))


def test_max_inner_product_is_a_loop_over_document_vectors_and_equals_maxsim_with_one_query_vector():
    torch.manual_seed(0)
    queries, documents = torch.randn(3, 5), torch.randn(4, 6, 5)
    documents[1, 3:] = 0  # a short document: padding rows
    expected = torch.tensor(
        [[max(float(queries[i] @ documents[j, t]) for t in range(6 if j != 1 else 3)) for j in range(4)] for i in range(3)]
    )
    torch.testing.assert_close(max_inner_product(queries, documents), expected)
    torch.testing.assert_close(maxsim_scores(queries, documents), expected)  # what the evaluator ranks by
    torch.testing.assert_close(sparse_dense_hybrid(expected, torch.ones(3, 4), 0.5), expected + 0.5)


def test_pq_decode_and_unconstrained_codes_are_the_nearest_centroids():
    torch.manual_seed(0)
    centroids, x = torch.randn(3, 4, 2), torch.randn(5, 6)
    codes = pq_assign(x, centroids)
    for i in range(5):
        for m in range(3):
            dists = [float(((x[i, 2 * m : 2 * m + 2] - centroids[m, k]) ** 2).sum()) for k in range(4)]
            assert codes[i, m] == int(np.argmin(dists))
    decoded = pq_decode(codes, centroids)
    for i in range(5):
        torch.testing.assert_close(decoded[i], torch.cat([centroids[m, codes[i, m]] for m in range(3)]))


def test_constrained_codes_solve_the_equal_size_assignment():
    """Sinkhorn's plan with a small epsilon, rounded by argmax, is the optimal assignment of 8 sub-vectors to 4
    centroids with 2 each (scipy's Hungarian solver on the centroids repeated twice), even when most points sit
    near one centroid (where the nearest-centroid codes are unbalanced)."""
    from scipy.optimize import linear_sum_assignment

    torch.manual_seed(0)
    centroids = torch.randn(1, 4, 3)
    x = centroids[0, 0] + 0.3 * torch.randn(8, 3)
    x[:2] = centroids[0, 3] + 0.3 * torch.randn(2, 3)
    assert torch.bincount(pq_assign(x, centroids)[:, 0], minlength=4).max() > 2
    codes = pq_assign(x, centroids, constrained=True, epsilon=0.003, iterations=500)[:, 0]
    cost = ((x[:, None] - centroids[0][None]) ** 2).sum(-1).numpy()
    rows, cols = linear_sum_assignment(np.repeat(cost, 2, axis=1))
    optimal = cols // 2
    assert sorted(torch.bincount(codes, minlength=4).tolist()) == [2, 2, 2, 2]
    assert cost[np.arange(8), codes.numpy()].sum() == pytest.approx(cost[rows, optimal].sum(), rel=1e-5)


def test_repconc_loss_value_and_its_gradients_reach_encoder_and_centroids():
    torch.manual_seed(0)
    centroids = torch.randn(2, 3, 2, requires_grad=True)
    queries, documents = torch.randn(4, 4), torch.randn(4, 4, requires_grad=True)
    codes = pq_assign(documents, centroids)
    quantized = pq_decode(codes, centroids)
    loss = repconc_loss(queries, documents, quantized, mse_weight=0.1)
    q = quantized.detach()
    scores = queries @ q.T
    expected = -torch.log_softmax(scores, 1).diagonal().mean() + 0.1 * ((q - documents.detach()) ** 2).sum(-1).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert documents.grad.abs().sum() > 0 and centroids.grad.abs().sum() > 0


def test_negative_kl_matches_torch_distributions_and_the_expanded_inner_product_equals_it():
    from torch.distributions import Independent, Normal, kl_divergence

    torch.manual_seed(0)
    mu_q, var_q = torch.randn(3, 5, dtype=torch.float64), torch.rand(3, 5, dtype=torch.float64) + 0.2
    mu_d, var_d = torch.randn(4, 5, dtype=torch.float64), torch.rand(4, 5, dtype=torch.float64) + 0.2
    expected = torch.zeros(3, 4, dtype=torch.float64)
    for i in range(3):
        for j in range(4):
            p = Independent(Normal(mu_q[i], var_q[i].sqrt()), 1)
            q = Independent(Normal(mu_d[j], var_d[j].sqrt()), 1)
            expected[i, j] = -kl_divergence(p, q)
    torch.testing.assert_close(negative_kl(mu_q, var_q, mu_d, var_d), expected)
    dot = kl_query_vector(mu_q, var_q) @ kl_document_vector(mu_d, var_d).T
    torch.testing.assert_close(dot, expected)  # served from an inner-product index: the same ranking, the same scores


def test_token_kmeans_matches_sklearn_lloyd_from_the_same_start():
    from sklearn.cluster import KMeans

    torch.manual_seed(0)
    states = torch.randn(2, 12, 3, dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 9:] = 0
    got = token_kmeans(states, mask, k=3, iterations=4)
    for b, length in ((0, 12), (1, 9)):
        x = states[b, :length].numpy()
        init = x[[int(j * length / 3) for j in range(3)]]
        km = KMeans(3, init=init, n_init=1, max_iter=4, tol=0.0, algorithm="lloyd").fit(x)
        # sklearn's last step re-assigns without moving: compare the centres of the same 4 updates
        np.testing.assert_allclose(np.sort(got[b].numpy(), axis=0), np.sort(km.cluster_centers_, axis=0), atol=1e-8)
    short = token_kmeans(states[:1], torch.tensor([[1, 1] + [0] * 10]), k=3, iterations=2)
    assert short[0, 2].abs().sum() == 0 and short[0, :2].abs().sum() > 0  # fewer tokens than k: a padding row


def test_pseudo_query_scores_are_the_query_attending_over_centroids():
    torch.manual_seed(0)
    queries, centroids = torch.randn(2, 4), torch.randn(3, 5, 4)
    centroids[2, 4] = 0
    expected = torch.zeros(2, 3)
    for i in range(2):
        for j in range(3):
            c = centroids[j, :4] if j == 2 else centroids[j]
            a = torch.softmax(c @ queries[i], 0)
            expected[i, j] = queries[i] @ (a[:, None] * c).sum(0)
    torch.testing.assert_close(pseudo_query_scores(queries, centroids), expected)


def test_bag_of_words_targets_loss_and_pooling_against_loops():
    from reprzoo.losses.dense_retrieval import bag_of_words_loss, bag_of_words_targets, max_pooled_logits

    ids = torch.tensor([[2, 7, 5, 7, 3], [2, 6, 3, 0, 0]])  # [CLS]=2, [SEP]=3, padding 0
    mask = (ids != 0).long()
    targets = bag_of_words_targets(ids, mask, 10, special=(2, 3))
    expected = torch.zeros(2, 10)
    expected[0, 7], expected[0, 5] = 1 / 3, 1 / 3  # 3 ordinary tokens, 7 twice (the authors' weights)
    expected[1, 6] = 1.0
    torch.testing.assert_close(targets, expected)
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 10)
    pooled = max_pooled_logits(logits, mask)
    for b, real in ((0, 5), (1, 3)):
        torch.testing.assert_close(pooled[b], logits[b, 1:real].amax(0))
    loss = bag_of_words_loss(pooled, targets)
    manual = 0.0
    for b in range(2):
        log_p = pooled[b] - torch.logsumexp(pooled[b], 0)
        manual += -sum(float(targets[b, v]) * float(log_p[v]) for v in range(10))
    assert loss.item() == pytest.approx(manual / 2, rel=1e-5)
