"""The learned-sparse-retrieval losses (reprzoo.losses.sparse_retrieval) against loops and sentence-transformers."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from reprzoo.losses.sparse_retrieval import (
    flops_regularizer,
    in_batch_ranking_loss,
    kl_distillation,
    margin_mse,
    quadratic_lambda,
    saturated_pooling,
    topk_binarize,
)


def test_saturated_pooling_matches_a_loop_for_sum_and_max():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7) * 3
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    for pooling in ("sum", "max"):
        got = saturated_pooling(logits, mask, pooling)
        for b in range(3):
            for j in range(7):
                values = [math.log(1 + max(0.0, logits[b, i, j].item())) for i in range(5) if mask[b, i]]
                want = sum(values) if pooling == "sum" else max(values)
                assert got[b, j].item() == pytest.approx(want, abs=1e-5)
    assert (saturated_pooling(logits, mask) >= 0).all()
    with pytest.raises(ValueError):
        saturated_pooling(logits, mask, "mean")
    with pytest.raises(ValueError):
        saturated_pooling(logits, mask[:, :3])


def test_flops_matches_a_loop_and_sentence_transformers():
    torch.manual_seed(0)
    w = torch.relu(torch.randn(6, 9))
    loop = sum((sum(abs(w[i, j].item()) for i in range(6)) / 6) ** 2 for j in range(9))
    assert flops_regularizer(w).item() == pytest.approx(loop, rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers.sparse_encoder.losses import FlopsLoss
    assert flops_regularizer(w).item() == pytest.approx(FlopsLoss(None).compute_loss_from_embeddings(w).item(), rel=1e-6)
    with pytest.raises(ValueError):
        flops_regularizer(w[0])


def test_quadratic_lambda_warms_up_quadratically():
    assert quadratic_lambda(1e-3, 0, 100) == 0.0
    assert quadratic_lambda(1e-3, 50, 100) == pytest.approx(2.5e-4)
    assert quadratic_lambda(1e-3, 100, 100) == pytest.approx(1e-3)
    assert quadratic_lambda(1e-3, 500, 100) == pytest.approx(1e-3)
    assert quadratic_lambda(1e-3, 7, 0) == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        quadratic_lambda(-1.0, 0, 10)


def test_in_batch_ranking_loss_matches_a_loop_and_sentence_transformers():
    torch.manual_seed(0)
    q, d, n = torch.rand(4, 6), torch.rand(4, 6), torch.rand(4, 6)
    for negatives in (None, n):
        candidates = d if negatives is None else torch.cat([d, negatives])
        loop = 0.0
        for i in range(4):
            scores = [2.0 * float(q[i] @ c) for c in candidates]
            loop += -(scores[i] - math.log(sum(math.exp(s) for s in scores)))
        assert in_batch_ranking_loss(q, d, negatives, scale=2.0).item() == pytest.approx(loop / 4, rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers import util
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    reference = MultipleNegativesRankingLoss(None, scale=1.0, similarity_fct=util.dot_score)
    want = reference.compute_loss_from_embeddings([q, d, n], None).item()
    assert in_batch_ranking_loss(q, d, n).item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError):
        in_batch_ranking_loss(q, d[:3])


def test_margin_mse_matches_a_loop_and_sentence_transformers():
    torch.manual_seed(0)
    q, p, n = torch.randn(3, 5, 6)
    teacher_p, teacher_n = torch.randn(5), torch.randn(5)
    sp, sn = (q * p).sum(-1), (q * n).sum(-1)
    loop = sum(((sp[i] - sn[i]) - (teacher_p[i] - teacher_n[i])).item() ** 2 for i in range(5)) / 5
    got = margin_mse(sp, sn, teacher_p, teacher_n).item()
    assert got == pytest.approx(loop, rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers.sentence_transformer.losses import MarginMSELoss
    want = MarginMSELoss(None).compute_loss_from_embeddings([q, p, n], teacher_p - teacher_n).item()
    assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError):
        margin_mse(sp, sn[:4], teacher_p, teacher_n)


def test_kl_distillation_matches_a_loop():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    loop = 0.0
    for i in range(4):
        ps, pt = torch.softmax(s[i], 0), torch.softmax(t[i], 0)
        loop += sum(pt[j].item() * math.log(pt[j].item() / ps[j].item()) for j in range(3))
    assert kl_distillation(s, t).item() == pytest.approx(loop / 4, rel=1e-5)
    assert kl_distillation(t, t).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        kl_distillation(s[:, :1], t[:, :1])


def test_topk_binarize_forward_and_straight_through_gradient():
    x = torch.tensor([[0.5, -1.0, 2.0, 0.1, 3.0], [-0.5, -2.0, -0.1, -3.0, 1.0]], requires_grad=True)
    codes = topk_binarize(x, 2)
    # row 0: winners 3.0 and 2.0; row 1: winners 1.0 and -0.1, the negative winner stays 0
    assert codes.tolist() == [[0, 0, 1, 0, 1], [0, 0, 0, 0, 1]]
    upstream = torch.arange(10.0).view(2, 5)
    codes.backward(upstream)
    winners = torch.tensor([[0, 0, 1, 0, 1], [0, 0, 1, 0, 1]], dtype=torch.float)
    torch.testing.assert_close(x.grad, upstream * winners)
    assert topk_binarize(torch.randn(3, 4, 50), 5).sum(-1).le(5).all()
    with pytest.raises(ValueError):
        topk_binarize(x, 0)
