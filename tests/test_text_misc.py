"""The byte convolutional auto-encoder, the RCNN document encoder, KaLM-Embedding-V2's losses and spaCy's
MultiHashEmbed: losses against loops, shapes and the component's hashing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprzoo.components.multi_hash_embed import HashEmbed, MultiHashEmbed, token_keys, word_shape
from reprzoo.lightning_modules.text.byte_conv_autoencoder import ByteConvAutoEncoder
from reprzoo.lightning_modules.text.kalm import KaLMEmbedding
from reprzoo.lightning_modules.text.rcnn import RCNN, RCNNEncoder
from reprzoo.losses.text_misc import byte_reconstruction_loss, focal_info_nce_loss, mix_hard_negatives


# ------------------------------------------------------------------ byte reconstruction
def test_byte_reconstruction_loss_is_the_mean_negative_log_likelihood():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7), torch.randint(7, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    terms = [[-math.log(math.exp(logits[b, t, targets[b, t]]) / logits[b, t].exp().sum()) for t in range(5)] for b in range(2)]
    assert byte_reconstruction_loss(logits, targets).item() == pytest.approx(sum(map(sum, terms)) / 10, rel=1e-5)
    kept = sum(terms[b][t] for b in range(2) for t in range(5) if mask[b, t])
    assert byte_reconstruction_loss(logits, targets, mask).item() == pytest.approx(kept / 8, rel=1e-5)
    with pytest.raises(ValueError, match="logits must be"):
        byte_reconstruction_loss(logits, targets[:, :3])
    with pytest.raises(ValueError, match="mask must match"):
        byte_reconstruction_loss(logits, targets, mask[:, :2])


def test_byte_auto_encoder_codes_fixed_length_and_reconstructs_every_position():
    model = ByteConvAutoEncoder(vocab_size=261, length=32, channels=8, layers=1, code_length=4, dim=16)
    batch = {"input_ids": torch.randint(5, 261, (3, 20)), "attention_mask": torch.ones(3, 20, dtype=torch.long)}
    code = model.embed(batch)
    assert code.shape == (3, 16)
    assert model.decoder(code).shape == (3, 32, 261)
    longer = {"input_ids": torch.cat([batch["input_ids"], torch.zeros(3, 40, dtype=torch.long)], 1)}
    torch.testing.assert_close(model.embed(longer), code)  # padding to the fixed length: extra pads change nothing
    out = model.training_loss([batch])
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.backbone.embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="power of two"):
        ByteConvAutoEncoder(vocab_size=261, length=48, code_length=4)


# ------------------------------------------------------------------ KaLM: focal InfoNCE, hard-negative mixing
def _focal_loop(q, d, temperature, gamma, extra=None):
    total = 0.0
    for i in range(len(q)):
        sims = [F.cosine_similarity(q[i], d[j], dim=0).item() / temperature for j in range(len(d))]
        if extra is not None:
            sims += [F.cosine_similarity(q[i], e, dim=0).item() / temperature for e in extra[i]]
        p = math.exp(sims[i]) / sum(math.exp(s) for s in sims)
        total += -((1 - p) ** gamma) * math.log(p)
    return total / len(q)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_focal_info_nce_matches_a_loop(gamma):
    torch.manual_seed(1)
    q, d, extra = torch.randn(5, 6), torch.randn(5, 6), torch.randn(5, 3, 6)
    got = focal_info_nce_loss(q, d, temperature=0.5, gamma=gamma)
    assert got.item() == pytest.approx(_focal_loop(q, d, 0.5, gamma), rel=1e-5)
    got = focal_info_nce_loss(q, d, temperature=0.5, gamma=gamma, extra_negatives=extra)
    assert got.item() == pytest.approx(_focal_loop(q, d, 0.5, gamma, extra), rel=1e-5)


def test_focal_info_nce_with_gamma_zero_is_cross_entropy_and_checks_arguments():
    torch.manual_seed(2)
    q, d = torch.randn(4, 3), torch.randn(4, 3)
    scores = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / 0.1
    torch.testing.assert_close(focal_info_nce_loss(q, d, 0.1, 0.0), F.cross_entropy(scores, torch.arange(4)))
    with pytest.raises(ValueError, match="documents must be"):
        focal_info_nce_loss(q, d[:3])
    with pytest.raises(ValueError, match="temperature"):
        focal_info_nce_loss(q, d, temperature=0.0)
    with pytest.raises(ValueError, match="gamma"):
        focal_info_nce_loss(q, d, gamma=-1.0)
    with pytest.raises(ValueError, match="extra_negatives"):
        focal_info_nce_loss(q, d, extra_negatives=torch.randn(4, 3))


def test_mixed_negatives_lie_between_the_hardest_negatives_and_the_query():
    torch.manual_seed(3)
    q, d = F.normalize(torch.randn(6, 4), dim=-1), F.normalize(torch.randn(6, 4), dim=-1)
    mixed = mix_hard_negatives(
        q, d, num_hardest=2, num_pair_mixes=3, num_query_mixes=3, generator=torch.Generator().manual_seed(0)
    )
    assert mixed.shape == (6, 6, 4) and not mixed.requires_grad
    torch.testing.assert_close(mixed.norm(dim=-1), torch.ones(6, 6))
    scores = (q @ d.T).fill_diagonal_(-2)
    for i in range(6):  # each synthetic negative is in the cone of {2 hardest negatives} (+ the query)
        hard = d[scores[i].topk(2).indices]
        basis = torch.cat([hard, q[i : i + 1]])
        for m, vector in enumerate(mixed[i]):
            coef = torch.linalg.lstsq(basis.T, vector.unsqueeze(1)).solution.squeeze(1)
            torch.testing.assert_close(basis.T @ coef, vector, atol=1e-4, rtol=0)
            assert (coef > -1e-4).all()
            if m < 3:  # negative-negative mixes: no share of the query
                assert abs(coef[2]) < 1e-3
            else:  # query-negative mixes: the query's share is below the negatives'
                assert coef[2] <= coef[:2].sum() + 1e-4
    with pytest.raises(ValueError, match="at least 2 pairs"):
        mix_hard_negatives(q[:1], d[:1])
    with pytest.raises(ValueError, match="documents must be"):
        mix_hard_negatives(q, d[:, :2])


def test_kalm_training_loss_is_finite_and_reaches_the_encoder():
    model = KaLMEmbedding(vocab_size=50, backbone="bert_tiny", backbone_kwargs={"pooling": "mean", "max_length": 16})
    ids = torch.randint(5, 50, (2, 6, 10))
    views = [{"input_ids": v, "attention_mask": torch.ones_like(v)} for v in ids]
    out = model.training_loss(views)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.backbone.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ RCNN
def test_rcnn_contexts_see_only_the_words_on_their_side_and_never_padding():
    torch.manual_seed(4)
    encoder = RCNNEncoder(vocab_size=30, dim=4, context=3, hidden=5).eval()
    ids = torch.tensor([[5, 6, 7, 8, 0, 0]])
    batch = {"input_ids": ids, "attention_mask": ids.ne(0).long()}
    states = encoder.token_states(batch)
    changed = ids.clone()
    changed[0, 3] = 9  # the last word: only the words before it see it (in their right context), and itself
    after = encoder.token_states({"input_ids": changed, "attention_mask": batch["attention_mask"]})
    assert not torch.allclose(after[0, :3], states[0, :3])
    changed = ids.clone()
    changed[0, 0] = 9  # the first word: seen by every word's left context
    after = encoder.token_states({"input_ids": changed, "attention_mask": batch["attention_mask"]})
    assert not torch.allclose(after[0, 1:4], states[0, 1:4])
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0, 0, 0]])  # more padding: real words' states unchanged
    again = encoder.token_states({"input_ids": padded, "attention_mask": padded.ne(0).long()})
    torch.testing.assert_close(again[0, :4], states[0, :4])
    # an independent y_i for the middle word: tanh(W2 [c_l; e; c_r] + b2) with the recurrences unrolled
    e = encoder.embedding(ids[0, :4])
    rnn = encoder.contexts
    c_l = torch.zeros(3)
    for t in range(2):
        c_l = torch.tanh(rnn.weight_ih_l0 @ e[t] + rnn.bias_ih_l0 + rnn.weight_hh_l0 @ c_l + rnn.bias_hh_l0)
    c_r = torch.zeros(3)
    for t in (3,):
        c_r = torch.tanh(
            rnn.weight_ih_l0_reverse @ e[t] + rnn.bias_ih_l0_reverse + rnn.weight_hh_l0_reverse @ c_r + rnn.bias_hh_l0_reverse
        )
    expected = torch.tanh(encoder.projection(torch.cat([c_l, e[2], c_r])))
    torch.testing.assert_close(states[0, 2], expected, atol=1e-5, rtol=1e-5)


def test_rcnn_needs_labels():
    model = RCNN(vocab_size=30, num_classes=2)
    batch = {"input_ids": torch.randint(5, 30, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    out = model.training_loss([batch], torch.tensor([0, 1, -1, 1]))
    assert torch.isfinite(out.loss) and out.embeddings.shape == (4, 100)
    with pytest.raises(Exception, match="need labels"):
        model.training_loss([batch], torch.full((4,), -1))


# ------------------------------------------------------------------ MultiHashEmbed
def test_word_shape_and_keys_are_spacy_like_and_deterministic():
    assert word_shape("Apple2024!!") == "Xxxxxdddd!!" and word_shape("C3PO") == "XdXX"
    keys = token_keys(["Apple", "apple", "APPLE"])
    assert keys.shape == (3, 4) and keys.dtype == torch.long and (keys >= 0).all()
    assert keys[0, 0] == keys[1, 0] == keys[2, 0]  # NORM: the lowercased form
    assert keys[0, 3] != keys[1, 3]  # SHAPE differs
    torch.testing.assert_close(token_keys(["Apple"]), keys[:1])  # stable


def test_hash_embed_resolves_a_collision_with_its_other_seeds():
    embed = HashEmbed(rows=7, width=4, seed=8)
    keys = torch.arange(1, 200) * 1_000_003
    buckets = embed.buckets(keys)
    assert buckets.shape == (199, 4) and (buckets >= 0).all() and (buckets < 7).all()
    torch.testing.assert_close(HashEmbed(rows=7, width=4, seed=8).buckets(keys), buckets)  # deterministic
    assert not torch.equal(HashEmbed(rows=7, width=4, seed=9).buckets(keys), buckets)  # another seed, other hashes
    same_first = (buckets[:, :1] == buckets[:, 0]).nonzero()  # pairs colliding under the first hash
    pairs = [(int(a), int(b)) for a, b in same_first if a < b]
    assert pairs
    a, b = next((a, b) for a, b in pairs if not torch.equal(buckets[a], buckets[b]))
    assert buckets[a, 0] == buckets[b, 0] and not torch.allclose(embed(keys[a]), embed(keys[b]))
    # the embedding is the sum of the key's rows
    torch.testing.assert_close(embed(keys[:3]), torch.stack([embed.table[buckets[i]].sum(0) for i in range(3)]))


def test_multi_hash_embed_concatenates_attribute_embeddings_into_a_maxout():
    torch.manual_seed(5)
    embed = MultiHashEmbed(width=8, rows=(50, 10, 20, 20), pieces=3)
    vectors = embed.embed_words(["The", "cat", "sat", "the"])
    assert vectors.shape == (4, 8)
    keys = token_keys(["The", "cat"])
    concat = torch.cat([embed.embeds[i](keys[:, i]) for i in range(4)], -1)
    torch.testing.assert_close(embed.concatenated(keys), concat)
    pieces = (concat @ embed.maxout.weight.T + embed.maxout.bias).view(2, 8, 3).max(-1).values
    torch.testing.assert_close(embed(keys), F.layer_norm(pieces, (8,), embed.norm.weight, embed.norm.bias))
    assert not torch.allclose(vectors[0], vectors[3])  # "The" and "the": same NORM, other SHAPE and PREFIX
    with pytest.raises(ValueError, match="one table size per attribute"):
        MultiHashEmbed(rows=(10, 10))
    with pytest.raises(ValueError, match="one column per attribute"):
        embed(keys[:, :2])
