"""CodeSage (arXiv:2402.01935): the stage I masking and stage II loss against independent computations, the code
fixture's identifiers, and a few CPU steps of both stages."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprzoo.datamodules.text.code import (
    CodePairs,
    defined_names,
    identifier_spans,
    python_functions,
    without_signature,
)
from reprzoo.losses.code import code_denoising_mask, hard_negative_contrastive

CODE = "def scale(values, factor=2):\n    out = [v * factor for v in values]\n    return sorted(out)\n"


def test_hard_negative_contrastive_is_infonce_at_beta_0_and_equals_a_loop():
    torch.manual_seed(0)
    q, d = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    s = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / 0.1
    torch.testing.assert_close(hard_negative_contrastive(q, d, 0.1, beta=0.0), F.cross_entropy(s, torch.arange(5)))
    beta, losses = 0.7, []
    for i in range(5):
        negatives = [j for j in range(5) if j != i]
        z = sum(math.exp(beta * s[i, j].item()) for j in negatives)
        total = math.exp(s[i, i].item()) + sum(
            (len(negatives) * math.exp(beta * s[i, j].item()) / z) * math.exp(s[i, j].item()) for j in negatives
        )
        losses.append(-s[i, i].item() + math.log(total))
    got = hard_negative_contrastive(q, d, 0.1, beta=beta)
    assert got.item() == pytest.approx(sum(losses) / 5, rel=1e-9)
    with pytest.raises(ValueError):
        hard_negative_contrastive(q[:1], d[:1])


def test_code_denoising_mask_deobfuscates_whole_identifiers_or_masks_randomly():
    ids = torch.arange(40).reshape(2, 20)
    maskable = torch.ones(2, 20, dtype=torch.bool)
    maskable[:, 0] = False
    identifiers = torch.zeros(2, 20, dtype=torch.bool)
    identifiers[0, [3, 4, 9]] = True  # row 1 has no identifiers: always random masking
    g = torch.Generator().manual_seed(0)
    out = code_denoising_mask(ids, maskable, identifiers, rate=0.5, dobf_probability=1.0, generator=g)
    assert out[0].equal(identifiers[0])
    assert not bool(out[1, 0]) and 0 < int(out[1].sum()) < 20
    never = code_denoising_mask(ids, maskable, identifiers, rate=1.0, dobf_probability=0.0)
    assert never.equal(maskable)  # rate 1: every maskable token, no deobfuscation
    with pytest.raises(ValueError):
        code_denoising_mask(ids, maskable, identifiers[:, :5])


def test_identifiers_and_signature_of_a_function():
    assert defined_names(CODE) == {"scale", "values", "factor", "out", "v"}
    spans = identifier_spans(CODE)
    assert sorted({CODE[a:b] for a, b in spans}) == ["factor", "out", "scale", "v", "values"]
    assert len(spans) == 9  # every occurrence: scale, values x2, factor x2, out x2, v x2
    assert without_signature(CODE) == "    out = [v * factor for v in values]\n    return sorted(out)\n"


def test_fixture_comes_from_third_party_packages_and_keeps_docstrings_out_of_code():
    records = python_functions()
    assert len(records) > 3000
    assert {r["package"].split("==")[0] for r in records} <= {
        "scikit-learn", "sympy", "networkx", "click", "joblib", "jsonargparse", "imageio", "attrs",
    }  # fmt: skip
    assert all(r["docstring"] not in r["code"] for r in records[:500])


def test_code_pairs_flag_identifier_tokens():
    data = CodePairs(max_pairs=200, vocab_size=500, max_length=64, batch_size=4)
    data.setup("fit")
    (docstring, code, flags), _ = data._train[0]
    assert code.shape == flags.shape and 0 < int(flags.sum()) < len(code)
    data.hard_positives = False
    ids, flags = data.encode_code([CODE])
    tokens = data.tokenizer.decode(ids[0][flags[0].bool()].tolist()).replace(" ##", "")
    assert "scale" in tokens and "factor" in tokens and "sorted" not in tokens and "return" not in tokens
    data.hard_positives = True
    body_ids, body_flags = data.encode_code([CODE])
    body = data.tokenizer.decode(body_ids[0][body_flags[0].bool()].tolist()).replace(" ##", "")
    assert "scale" not in body and "factor" in body and "out" in body  # the signature is gone, its names stay


def test_both_stages_train():
    from reprzoo.lightning_modules.retrieval.codesage import CodeSage

    data = CodePairs(max_pairs=200, vocab_size=500, max_length=64, batch_size=8)
    data.setup("fit")
    model = CodeSage(vocab_size=data.vocab_size, backbone_kwargs={"max_length": 64}, mlm_epochs=1)
    views, labels = data.collate([data._train[i] for i in range(8)])
    for stage in (1, 2):
        model.stage = lambda stage=stage: stage
        out = model.training_loss(views, labels)
        assert torch.isfinite(out.loss) and out.features.shape == (8, model.feature_dim)
        out.loss.backward()
        assert model.backbone.model.embeddings.word_embeddings.weight.grad is not None
        model.zero_grad()
