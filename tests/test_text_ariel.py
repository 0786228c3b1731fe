"""AriEL: the volume code against an independent computation, decode(encode(s)) == s, volumes equal the product of
the tokens' probabilities, and the language model learns (its loss drops)."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.datamodules.text.sentences import pad_ids
from reprzoo.lightning_modules.text.ariel import CLS_ID, SEP_ID, AriEL, volume_code


def _model(vocab: int = 40, dim: int = 4, seed: int = 0) -> AriEL:
    torch.manual_seed(seed)
    return AriEL(vocab_size=vocab, dim=dim, embedding_dim=16, hidden=32).eval()


def _sentences(vocab: int, lengths: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = [
        torch.cat([torch.tensor([CLS_ID]), torch.randint(5, vocab, (n,), generator=g), torch.tensor([SEP_ID])]) for n in lengths
    ]
    return pad_ids(rows)


def _naive_box(probabilities: list[list[float]], tokens: list[int], dim: int) -> tuple[list[float], list[float]]:
    """Arithmetic coding written out with Python floats, one token at a time."""
    low, width = [0.0] * dim, [1.0] * dim
    for t, (p, token) in enumerate(zip(probabilities, tokens)):
        axis = t % dim
        low[axis] += width[axis] * sum(p[:token])
        width[axis] *= p[token]
    return low, width


def test_volume_code_matches_a_naive_arithmetic_coder():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 7, 6).log_softmax(-1)
    tokens = torch.randint(0, 6, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    low, width = volume_code(log_probs, tokens, mask, dim=3)
    for i in range(3):
        n = int(mask[i].sum())
        probs = log_probs[i, :n].double().exp().tolist()
        naive_low, naive_width = _naive_box(probs, tokens[i, :n].tolist(), 3)
        torch.testing.assert_close(low[i], torch.tensor(naive_low, dtype=torch.float64))
        torch.testing.assert_close(width[i], torch.tensor(naive_width, dtype=torch.float64))


def test_volume_code_checks_its_arguments():
    with pytest.raises(ValueError, match="need log_probs"):
        volume_code(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), 2)
    with pytest.raises(ValueError, match="dim must be"):
        volume_code(torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2), 0)


def test_a_sentence_volume_is_the_product_of_its_token_probabilities():
    model = _model()
    batch = _sentences(40, [3, 5, 2])
    with torch.no_grad():
        _, width = model.ariel.volumes(batch)
        lm = model.backbone
        for i in range(3):
            ids = batch["input_ids"][i, : int(batch["attention_mask"][i].sum())]
            log_p = 0.0
            for t in range(1, len(ids)):  # the probability of each token given its prefix, one prefix at a time
                log_p += lm.step(ids[None, :t])[0][0, -1, ids[t]].item()
            assert math.isclose(width[i].prod().item(), math.exp(log_p), rel_tol=1e-5)
    assert torch.all(width > 0) and torch.all(width <= 1)


def test_decode_of_encode_recovers_short_sentences():
    model = _model(dim=4)
    batch = _sentences(40, [1, 2, 4, 6, 3])
    with torch.no_grad():
        points = model.embed(batch)
        decoded = model.decode(points)
    assert points.dtype == torch.float64 and torch.all((points > 0) & (points < 1))
    for i, tokens in enumerate(decoded):
        n = int(batch["attention_mask"][i].sum())
        assert tokens == batch["input_ids"][i, 1 : n - 1].tolist()


def test_uniform_samples_decode_to_sentences_and_never_to_special_tokens():
    model = _model()
    sentences = model.sample(20, max_tokens=8, generator=torch.Generator().manual_seed(0))
    assert len(sentences) == 20
    assert all(token not in (0, CLS_ID, 4) for s in sentences for token in s)  # no [PAD], [CLS], [MASK]
    with torch.no_grad():  # a sampled sentence's own point decodes back to it
        short = [s for s in sentences if len(s) < 8][:5]
        batch = pad_ids([torch.tensor([CLS_ID, *s, SEP_ID]) for s in short])
        assert model.decode(model.embed(batch)) == short


def test_training_lowers_the_language_model_loss():
    model = _model(vocab=30).train()
    batch = _sentences(30, [4] * 16, seed=3)
    batch["input_ids"][:, 1:5] = torch.tensor([7, 8, 9, 10])  # one repeated sentence: learnable
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.language_model_loss(batch).item()
    for _ in range(30):
        optimizer.zero_grad()
        model.training_loss([batch]).loss.backward()
        optimizer.step()
    after = model.language_model_loss(batch).item()
    assert after < before / 4, (before, after)
    with torch.no_grad():  # the learned sentence now owns most of the cube
        assert model.eval().ariel.volumes({k: v[:1] for k, v in batch.items()})[1].prod() > 0.5


def test_held_out_loss_survives_a_validate_before_fit():
    """``trainer.validate`` (inference mode) resets the metric's states to inference tensors; the validation of a
    later ``fit`` (no_grad only) must still update them (the learning test validates at init, then fits)."""
    from types import SimpleNamespace

    from torchmetrics import MeanMetric

    from reprzoo.metrics.text import HeldOutLossEvaluator

    metric = MeanMetric()
    evaluator = HeldOutLossEvaluator(metric, lambda inputs: inputs.float().mean(), "lm_nll")
    batch = SimpleNamespace(inputs=torch.tensor([1.0, 3.0]))
    with torch.inference_mode():  # trainer.validate: update, log, reset
        evaluator.update(None, None, bank=False, module=None, batch=batch)
        evaluator.reset()
    with torch.no_grad():  # validation inside fit
        evaluator.update(None, None, bank=False, module=None, batch=batch)
        evaluator.update(None, None, bank=False, module=None, batch=SimpleNamespace(inputs=torch.tensor([4.0])))
    logged = {}
    evaluator.compute_and_log(lambda name, value: logged.__setitem__(name, float(value)), "val", None)
    assert logged == {"val/lm_nll": 3.0}  # the mean of 2.0 and 4.0: nothing of the validate run left
