"""The Contrastive Word Model (Ri, Lee & Verma, 2023): the margin loss against a loop, its gradient against the
closed form of the authors' ``train.c``, the module's pairs and initialisation, and a few training steps."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from reprzoo.lightning_modules.text.contrastive_words import ContrastiveWordModel
from reprzoo.losses.contrastive_words import contrastive_word_loss


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    u, v, neg = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    keep = torch.rand(5, 3, generator=g) > 0.2
    m, l1, l2 = 0.4, 1.3, 0.7
    expected = 0.0
    for i in range(5):
        for k in range(3):
            if keep[i, k]:
                expected += max(0.0, m - l1 * _cos(u[i], v[i]) + l2 * _cos(u[i], neg[i, k]))
    got = contrastive_word_loss(u, v, neg, keep, m, l1, l2)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0
    with pytest.raises(ValueError, match="shapes"):
        contrastive_word_loss(u, v[:4], neg)


def test_gradient_is_the_authors_closed_form():
    """train.c's u_grad, v_grad and v'_grad for one active hinge term."""
    g = torch.Generator().manual_seed(1)
    u, v, w = (torch.randn(6, generator=g, dtype=torch.float64) for _ in range(3))
    l1, l2 = 1.0, 0.8
    U, V, W = (t.clone().requires_grad_(True) for t in (u, v, w))
    loss = contrastive_word_loss(U[None], V[None], W[None, None], None, 2.0, l1, l2)  # margin 2: active
    loss.backward()
    nu, nv, nw = u.norm(), v.norm(), w.norm()
    cos_uv, cos_uw = u @ v / (nu * nv), u @ w / (nu * nw)
    u_grad = l1 * (-v / (nu * nv) + cos_uv * u / nu**2) + l2 * (w / (nu * nw) - cos_uw * u / nu**2)
    v_grad = l1 * (-u / (nu * nv) + cos_uv * v / nv**2)
    w_grad = l2 * (u / (nu * nw) - cos_uw * w / nw**2)
    torch.testing.assert_close(U.grad, u_grad)
    torch.testing.assert_close(V.grad, v_grad)
    torch.testing.assert_close(W.grad, w_grad)
    # an inactive hinge (margin met) contributes nothing
    U.grad = None
    inactive = contrastive_word_loss(U[None], U[None].detach() * 2, -U[None, None].detach(), None, 0.15)
    assert inactive.item() == 0.0


def test_rows_start_at_unit_length_and_the_table_is_both_sides():
    model = ContrastiveWordModel(vocab_size=50, dim=8, sparse=False)
    torch.testing.assert_close(model.word_vectors.norm(dim=1), torch.ones(50))
    assert not hasattr(model, "output")
    assert model.hparams.negatives == 2 and model.hparams.margin == 0.15 and model.hparams.lr == 0.04


def test_training_loss_covers_every_real_pair(monkeypatch):
    model = ContrastiveWordModel(vocab_size=10, dim=4, sparse=False)
    batch = {
        "center": torch.tensor([0, 1]),
        "context": torch.tensor([[2, 3], [4, 0]]),
        "context_mask": torch.tensor([[True, True], [True, False]]),
    }
    noise = torch.tensor([[5, 6], [7, 2], [8, 9]])
    keep = torch.tensor([[True, True], [True, True], [True, False]])
    monkeypatch.setattr(model, "sample_negatives", lambda targets, k=None: (noise, keep))
    with torch.no_grad():
        got = model.training_loss([batch]).loss.item()
    w = model.word_vectors.detach()
    expected = 0.0
    for (c, t), ns, ks in zip([(0, 2), (0, 3), (1, 4)], noise.tolist(), keep.tolist()):
        for n, k in zip(ns, ks):
            if k:
                expected += max(0.0, 0.15 - _cos(w[c], w[t]) + _cos(w[c], w[n]))
    assert got == pytest.approx(expected, rel=1e-5)


def test_a_few_steps_lower_the_loss(tmp_path):
    from reprzoo.datamodules.text.words import WordWindows

    torch.manual_seed(0)
    data = WordWindows(corpus="wordnet", max_sentences=2000, batch_size=256, similarity=("wordsim353",), analogies=False)
    model = ContrastiveWordModel(vocab_size=data.vocab_size, dim=16, lr=0.2)
    data.setup()
    first = next(iter(data.train_dataloader()))
    model.noise = data.vocabulary.noise_distribution(0.75)  # what training uses, so before and after compare
    with torch.no_grad():
        torch.manual_seed(1)
        before = model.training_loss(first[0]).loss.item()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=data)
    with torch.no_grad():
        torch.manual_seed(1)
        after = model.training_loss(first[0]).loss.item()
    assert math.isfinite(after) and after < before
    assert "val/wordsim353_spearman" in trainer.callback_metrics
