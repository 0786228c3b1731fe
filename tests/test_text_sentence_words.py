"""Sent2Vec, CMOW and Binary Paragraph Vector: their pure functions against independent computations, and the
parts of each method that the registry-driven smoke tests (tests/test_methods.py) do not look into."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprzoo.lightning_modules.text.cmow import CMOW
from reprzoo.lightning_modules.text.paragraph_vector import BinaryParagraphVector
from reprzoo.lightning_modules.text.sent2vec import Sent2Vec
from reprzoo.lightning_modules.text.sentence_words import MASK_ID, compact_words
from reprzoo.losses.sentence_words import (
    document_code_gradient,
    document_softmax_loss,
    hashed_bigrams,
    mean_negative_sampling_loss,
    ordered_matrix_product,
    sentence_mean_gradient,
    straight_through_round,
)

# [CLS]=2 ... [SEP]=3, padding 0, [UNK]=1: words are ids >= 5
BATCH = {
    "input_ids": torch.tensor([[2, 7, 9, 1, 11, 3, 0], [2, 5, 6, 8, 10, 12, 3]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]]),
}


def test_compact_words_drops_specials_and_keeps_order():
    ids, mask = compact_words(BATCH)
    assert ids[0][mask[0]].tolist() == [7, 9, 11] and ids[1][mask[1]].tolist() == [5, 6, 8, 10, 12]


def test_hashed_bigrams_is_the_authors_unsigned_hash():
    ids = torch.randint(0, 2**31, (3, 6))
    got = hashed_bigrams(ids, 1000, 4_000_000)
    for b in range(3):
        for j in range(5):
            h = (int(ids[b, j]) * 116049371 + int(ids[b, j + 1])) % 2**64  # uint64_t arithmetic
            assert int(got[b, j]) == 1000 + h % 4_000_000
    with pytest.raises(ValueError, match="bucket"):
        hashed_bigrams(ids, 10, 0)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        hashed_bigrams(ids[0], 10, 5)


def test_mean_negative_sampling_loss_matches_a_loop():
    h, pos, neg = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 5, 3)
    expected = 0.0
    for i in range(4):
        term = -math.log(1 / (1 + math.exp(-float(h[i] @ pos[i]))))
        term -= sum(math.log(1 / (1 + math.exp(float(h[i] @ neg[i, k])))) for k in range(5)) / 5
        expected += term / 4
    assert mean_negative_sampling_loss(h, pos, neg).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="shapes do not match"):
        mean_negative_sampling_loss(h, pos, neg[:, :, :2])


def test_ordered_matrix_product_matches_numpy_with_identity_padding():
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    got = ordered_matrix_product(x, mask)
    for i in range(3):
        expected = np.eye(4)
        for j in range(5):
            if mask[i, j]:
                expected = expected @ x[i, j].numpy()
        np.testing.assert_allclose(got[i].numpy(), expected, rtol=1e-10)
    rescaled = ordered_matrix_product(x, mask, max_log_norm=60.0)
    torch.testing.assert_close(rescaled, got)
    capped = ordered_matrix_product(x * 100, mask, max_log_norm=1.0)  # norms far above e: the direction only
    plain = ordered_matrix_product(x * 100, mask)
    torch.testing.assert_close(F.normalize(capped.flatten(1), dim=1), F.normalize(plain.flatten(1), dim=1))
    assert capped[:2].flatten(1).norm(dim=1).allclose(torch.full((2,), math.e, dtype=torch.float64))
    with pytest.raises(ValueError, match="need matrices"):
        ordered_matrix_product(x[:, :, :3], mask)


def test_straight_through_round_rounds_forward_and_passes_gradients():
    p = torch.tensor([0.2, 0.7, 0.51], requires_grad=True)
    out = straight_through_round(p)
    assert out.tolist() == [0.0, 1.0, 1.0]
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert p.grad.tolist() == [1.0, 2.0, 3.0]


def test_document_softmax_loss_matches_a_loop():
    codes, w = torch.rand(2, 3), torch.randn(6, 3)
    words, mask = torch.tensor([[1, 4, 4], [5, 0, 0]]), torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    expected = 0.0
    for d in range(2):
        scores = [float(codes[d] @ w[v]) for v in range(6)]
        log_z = math.log(sum(math.exp(s) for s in scores))
        expected -= sum(scores[int(words[d, j])] - log_z for j in range(3) if mask[d, j])
    assert document_softmax_loss(codes, w, words, mask).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="need codes"):
        document_softmax_loss(codes, w[:, :2], words, mask)


@pytest.mark.parametrize("rounded", [False, True])
def test_document_code_gradient_is_autograds(rounded):
    e = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 4, dtype=torch.float64)
    words = torch.tensor([[1, 2, 2, 6], [3, 0, 0, 0], [5, 5, 4, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    codes = straight_through_round(torch.sigmoid(e)) if rounded else torch.sigmoid(e)
    log_p = torch.log_softmax(codes @ w.T, -1)
    per_doc = -(torch.gather(log_p, 1, words) * mask).sum(1) / mask.sum(1)  # the mean word loss of each document
    per_doc.sum().backward()
    got = document_code_gradient(e.detach(), codes.detach(), w, words, mask)
    torch.testing.assert_close(got, e.grad)
    with pytest.raises(ValueError, match="logits"):
        document_code_gradient(e.detach(), codes.detach()[:2], w, words, mask)


def test_sent2vec_contexts_mask_the_target_and_hash_its_bigrams():
    model = Sent2Vec(vocab_size=20, bucket=50, dropout_k=0, sample=0.0)
    ids, mask = compact_words(BATCH)
    rows, keep, targets, sentences = model.contexts(ids, mask)
    assert len(targets) == 8 and sentences.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]  # every word of both sentences
    first = rows[0][keep[0]].tolist()  # sentence [7, 9, 11] with 7 masked: unigrams then bigrams
    assert first[:3] == [MASK_ID, 9, 11] and len(first) == 5
    assert first[3:] == hashed_bigrams(torch.tensor([[MASK_ID, 9, 11]]), 20, 50)[0].tolist()
    dropped = Sent2Vec(vocab_size=20, bucket=50, dropout_k=2, sample=0.0)
    rows, keep, _, _ = dropped.contexts(ids, mask)
    unigrams = keep[:, : ids.shape[1]].sum(1)
    bigrams = keep[:, ids.shape[1] :].sum(1)
    assert (unigrams[:3] == 3).all() and (bigrams[:3] <= 1).all()  # 3 words: 1 position dropped (n - 2)
    assert (bigrams[3:] <= 2).all()  # 5 words: 2 positions dropped break at least 2 of the 4 bigrams


def test_sentence_mean_gradient_averages_a_row_over_the_sentences_that_use_it():
    torch.manual_seed(0)
    table = torch.randn(6, 3, requires_grad=True)
    rows = torch.tensor([[1, 2, 0], [1, 3, 3], [1, 4, 5], [2, 2, 5]])
    keep = torch.tensor([[True, True, False], [True, True, True], [True, True, True], [True, True, False]])
    sentences = torch.tensor([0, 0, 1, 2])
    coef = torch.randn(4, 3, 3)
    looked_up = table[rows]
    out = sentence_mean_gradient(looked_up, rows, keep, sentences)
    torch.testing.assert_close(out, looked_up)  # the identity forward
    (out * coef * keep.unsqueeze(-1)).sum().backward()
    expected = torch.zeros(6, 3)  # each use's gradient over the number of sentences using the row: a loop
    for n in range(4):
        for j in range(3):
            if keep[n, j]:
                r = int(rows[n, j])
                users = {int(sentences[m]) for m in range(4) for i in range(3) if keep[m, i] and int(rows[m, i]) == r}
                expected[r] += coef[n, j] / len(users)
    torch.testing.assert_close(table.grad, expected)
    # row 1: in sentences 0 (twice), 1: half of its summed gradient; row 3: twice in sentence 0, summed
    torch.testing.assert_close(table.grad[3], coef[1, 1] + coef[1, 2])
    with pytest.raises(ValueError, match="sentences"):
        sentence_mean_gradient(looked_up, rows, keep, sentences[:2])


def test_sent2vec_trains_each_view_as_its_own_sentence():
    from reprzoo.lightning_modules.text.sent2vec import sentences_of

    query = {
        "input_ids": torch.tensor([[2, 7, 9, 3], [2, 6, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }
    document = {"input_ids": torch.tensor([[2, 8, 10, 12, 3], [2, 11, 3, 0, 0]]), "attention_mask": torch.ones(2, 5)}
    document["attention_mask"][1, 3:] = 0
    ids, mask = sentences_of([query, document])
    assert [row[m].tolist() for row, m in zip(ids, mask)] == [[7, 9], [6], [8, 10, 12], [11]]


def test_sent2vec_encoder_is_the_mean_of_unigram_and_bigram_rows():
    model = Sent2Vec(vocab_size=20, bucket=50)
    table = model.backbone.embedding.weight.detach()
    got = model.embed(BATCH)
    words = [7, 9, 11]
    rows = words + hashed_bigrams(torch.tensor([words]), 20, 50)[0].tolist()
    torch.testing.assert_close(got[0], table[rows].mean(0))


def test_cmow_windows_remove_one_word_and_keep_the_order():
    torch.manual_seed(0)
    model = CMOW(vocab_size=20, matrix_side=2, context_size=2)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    context, mask, targets = model.windows(ids, torch.ones_like(ids, dtype=torch.bool))
    for row, m, t in zip(context, mask, targets):
        kept = row[m].tolist()
        assert t.item() not in kept and kept == sorted(kept) and len(kept) <= 4
        window = sorted(kept + [t.item()])
        assert window == list(range(window[0], window[0] + len(window)))  # contiguous around the removed word


def test_cmow_hybrid_encoder_is_cbow_sum_then_ordered_product():
    model = CMOW(vocab_size=20, matrix_side=3, hybrid=True)
    got = model.embed(BATCH)
    assert got.shape == (2, 18)
    words = [7, 9, 11]
    mats = model.backbone.embedding.weight.detach()[words].view(3, 3, 3)
    torch.testing.assert_close(got[0, 9:], (mats[0] @ mats[1] @ mats[2]).flatten())
    torch.testing.assert_close(got[0, :9], model.cbow.weight.detach()[words].sum(0))
    assert CMOW(vocab_size=20, matrix_side=3, hybrid=False).embed(BATCH).shape == (2, 9)


def test_binary_paragraph_vector_infers_deterministic_binary_codes_under_inference_mode():
    model = BinaryParagraphVector(vocab_size=20, code_bits=16, infer_steps=5).eval()
    with torch.inference_mode():
        codes = model.embed(BATCH)
        again = model.embed({k: v[:1] for k, v in BATCH.items()})
    assert codes.shape == (2, 16) and set(codes.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(again[0], codes[0])  # a document's code does not depend on its batch
