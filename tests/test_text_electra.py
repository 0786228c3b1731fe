"""ELECTRA: its two losses against loops, the authors' masking, the corruption labels and the shared embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.lightning_modules.text.electra import CLS_ID, ELECTRA, MASK_ID, SEP_ID, corrupt, mask_inputs
from reprzoo.losses.electra import masked_lm_loss, replaced_token_detection_loss


def _batch(batch=6, length=20, vocab=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    lengths = torch.randint(3, length + 1, (batch,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length) < lengths[:, None]).long()
    ids = ids * mask
    ids[:, 0] = CLS_ID
    ids[torch.arange(batch), lengths - 1] = SEP_ID
    return ids, mask


def test_masked_lm_loss_matches_a_loop_over_masked_positions():
    torch.manual_seed(0)
    ids, _ = _batch()
    logits = torch.randn(*ids.shape, 300)
    masked = torch.rand(ids.shape) < 0.3
    terms = [
        -torch.log_softmax(logits[b, t], -1)[ids[b, t]] for b in range(ids.shape[0]) for t in range(ids.shape[1]) if masked[b, t]
    ]
    expected = torch.stack(terms).mean()
    assert torch.allclose(masked_lm_loss(logits, ids, masked), expected, atol=1e-5)
    # the generator's form: logits at the masked positions only, row-major
    assert torch.allclose(masked_lm_loss(logits[masked], ids, masked), expected, atol=1e-5)
    # unmasked positions do not matter
    changed = logits.clone()
    changed[~masked] = torch.randn_like(changed[~masked]) * 10
    assert torch.allclose(masked_lm_loss(changed, ids, masked), expected, atol=1e-5)
    assert masked_lm_loss(logits, ids, torch.zeros_like(masked)).item() == 0.0


def test_masked_lm_loss_checks_its_arguments():
    ids, _ = _batch()
    masked = torch.zeros(ids.shape, dtype=torch.bool)
    masked[0, 1] = True
    with pytest.raises(ValueError, match="targets and masked"):
        masked_lm_loss(torch.randn(1, 10), ids, masked[:, :-1])
    with pytest.raises(ValueError, match="do not match"):
        masked_lm_loss(torch.randn(2, 3, 10), ids, masked)
    with pytest.raises(ValueError, match="masked positions=1"):
        masked_lm_loss(torch.randn(2, 10), ids, masked)


def test_replaced_token_detection_loss_matches_a_loop_over_real_tokens():
    torch.manual_seed(1)
    ids, mask = _batch()
    logits = torch.randn(ids.shape) * 3
    replaced = torch.rand(ids.shape) < 0.2
    terms = []
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if mask[b, t]:
                p = 1 / (1 + math.exp(-logits[b, t].item()))
                terms.append(-math.log(p) if replaced[b, t] else -math.log(1 - p))
    expected = sum(terms) / len(terms)
    assert replaced_token_detection_loss(logits, replaced, mask).item() == pytest.approx(expected, rel=1e-5)
    padded = logits.masked_fill(mask == 0, 50.0)  # padding never counts
    assert replaced_token_detection_loss(padded, replaced, mask).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="must all be"):
        replaced_token_detection_loss(logits, replaced[:, :-1], mask)


def test_mask_inputs_follows_the_authors_masking():
    torch.manual_seed(2)
    ids, mask = _batch(batch=400, length=40)
    masked_ids, masked = mask_inputs(ids, mask, mask_prob=0.15, mask_token_prob=0.85)
    expected = torch.round(mask.sum(1) * 0.15).clamp(min=1)
    assert torch.equal(masked.sum(1).float(), expected)  # max(1, round(15% of the real tokens)) per text
    special = (ids == CLS_ID) | (ids == SEP_ID) | (mask == 0)
    assert not (masked & special).any()  # never [CLS], [SEP] or padding
    assert torch.equal(masked_ids[~masked], ids[~masked])
    shown_as_mask = (masked_ids == MASK_ID)[masked].float().mean().item()
    assert shown_as_mask == pytest.approx(0.85, abs=0.03)
    kept = masked & (masked_ids != MASK_ID)
    assert torch.equal(masked_ids[kept], ids[kept])  # the other 15% keep their token: no random replacement
    # positions are uniform over the candidates: every position of the full-length text gets masked sometimes
    assert (masked[:, 1:-1].float().mean(0) > 0).all()


def test_corrupt_labels_samples_equal_to_the_original_as_original():
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 21, 3, 0]])
    masked = torch.tensor([[False, True, True, False, False], [False, False, True, False, False]])
    sampled = torch.tensor([10, 99, 7])  # the first sample reproduces the original token
    corrupted, replaced = corrupt(ids, masked, sampled)
    assert corrupted.tolist() == [[2, 10, 99, 12, 3], [2, 20, 7, 3, 0]]
    assert replaced.tolist() == [[False, False, True, False, False], [False, False, True, False, False]]


def test_electra_shares_embeddings_and_trains_both_networks():
    torch.manual_seed(3)
    model = ELECTRA(vocab_size=300, backbone="bert_tiny", backbone_kwargs={"pooling": "mean"})
    disc = model.backbone.model.embeddings
    assert model.generator.embeddings.shared is disc  # token, position and segment embeddings shared
    assert model.generator.config.hidden_size == model.backbone.config.hidden_size // 4
    assert model.generator.config.num_hidden_layers == model.backbone.config.num_hidden_layers
    ids, mask = _batch(vocab=300)
    out = model.training_loss([{"input_ids": ids, "attention_mask": mask}])
    out.loss.backward()
    for part in (disc.word_embeddings, disc.position_embeddings, model.generator.encoder, model.backbone.model.encoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert model.encoder() is model.backbone  # the discriminator, pooled, is what is exported
    assert model.embed({"input_ids": ids, "attention_mask": mask}).shape == (ids.shape[0], 64)


def test_electra_needs_a_transformer_backbone():
    with pytest.raises(ValueError, match="transformer backbone"):
        ELECTRA(vocab_size=300, backbone="text_cnn")


def _repeated_batch(vocab=300, batch=16, length=24, seed=0):
    """Texts written with 35 of the ``vocab`` tokens: a generator's early sample is mostly a foreign token."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = CLS_ID, SEP_ID
    return ids, torch.ones_like(ids)


def test_discriminator_reads_the_corrupted_text_and_its_labels_mark_the_changes():
    torch.manual_seed(4)
    model = ELECTRA(vocab_size=300, backbone="bert_tiny", backbone_kwargs={"pooling": "mean"})
    ids, mask = _repeated_batch()
    seen, labels = {}, {}
    token_states = model.backbone.token_states

    def record(batch):
        seen["ids"] = batch["input_ids"]
        return token_states(batch)

    model.backbone.token_states = record
    import reprzoo.lightning_modules.text.electra as electra_module

    loss = electra_module.replaced_token_detection_loss

    def record_labels(logits, replaced, attention_mask):
        labels["replaced"], labels["logits"] = replaced, logits
        return loss(logits, replaced, attention_mask)

    electra_module.replaced_token_detection_loss = record_labels
    try:
        model.training_loss([{"input_ids": ids, "attention_mask": mask}])
    finally:
        electra_module.replaced_token_detection_loss = loss
    corrupted, replaced = seen["ids"], labels["replaced"]
    assert not (corrupted == MASK_ID).any()  # every masked position holds the generator's sample, not [MASK]
    assert torch.equal(replaced, corrupted != ids)  # labels: exactly the positions whose token changed
    assert replaced.sum() > 0 and labels["logits"].shape == ids.shape  # one score per token


def test_discriminator_learns_to_detect_replacements_on_a_repeated_batch():
    """A few dozen steps on one batch: the discriminator's loss falls clearly below the prior (the binary entropy of
    the replaced share: what a discriminator that cannot see the replacements reaches)."""
    torch.manual_seed(5)
    model = ELECTRA(vocab_size=300, backbone="bert_tiny", backbone_kwargs={"pooling": "mean", "dropout": 0.0})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids, mask = _repeated_batch()
    logged: dict[str, float] = {}
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    losses, shares = [], []
    for _ in range(40):
        out = model.training_loss([{"input_ids": ids, "attention_mask": mask}])
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(logged["train/disc_loss"])
        shares.append(logged["train/replaced_fraction"] * round(ids.shape[1] * 0.15) / ids.shape[1])
    p = sum(shares[-15:]) / 15
    prior = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert sum(losses[-15:]) / 15 < 0.75 * prior, (losses[-15:], prior)
