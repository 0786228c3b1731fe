"""Du-IN (arXiv:2405.11459): its vector quantizer and masked code modelling against independent loops, and the
two stages of the method (VQ-VAE, then masked code prediction on the frozen tokenizer's codes)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from reprzoo.lightning_modules import DuIN
from reprzoo.lightning_modules.retrieval.du_in import DuINEncoder
from reprzoo.losses.du_in import (
    commitment_loss,
    ema_codebook_update,
    masked_code_cross_entropy,
    nearest_codes,
    random_patch_mask,
    spherical_kmeans,
    symmetric_masked_code_cross_entropy,
)

TINY = dict(
    in_chans=3, length=32, patch_len=8, fusion_dim=4, conv_filters=[8, 4], conv_kernels=[3, 3], conv_strides=[2, 1],
    depth=1, heads=2, mlp_ratio=2.0, dropout=0.0,
)  # fmt: skip


def tiny_duin(**kwargs) -> DuIN:
    options = dict(backbone_kwargs=TINY, num_classes=3, codebook_size=16, code_dim=4, decoder_depth=1, decoder_hidden=8)
    return DuIN(**{**options, **kwargs})


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ----------------------------------------------------------------------------------------------- vector quantizer
def test_nearest_codes_match_a_loop():
    z, codebook = torch.randn(2, 5, 3), torch.randn(7, 3)
    expected = torch.tensor([[min(range(7), key=lambda k: float(((v - codebook[k]) ** 2).sum())) for v in row] for row in z])
    assert torch.equal(nearest_codes(z, codebook), expected)
    zn, cn = F.normalize(z, dim=-1), F.normalize(codebook, dim=-1)  # on the sphere: the most cosine-similar code
    assert torch.equal(nearest_codes(zn, cn), (zn @ cn.t()).argmax(-1))
    with pytest.raises(ValueError):
        nearest_codes(z, torch.randn(7, 4))


def test_commitment_loss_is_the_mse_to_the_codes_and_moves_only_the_encoder():
    z_e, z_q = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    loss = commitment_loss(z_e, z_q, beta=0.5)
    expected = 0.5 * sum(float(((a - b) ** 2).sum()) for a, b in zip(z_e.detach(), z_q.detach())) / 12
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert z_q.grad is None and z_e.grad is not None
    with pytest.raises(ValueError):
        commitment_loss(z_e, z_q[:2])


def test_ema_codebook_update_matches_a_loop():
    codebook, z = unit(6, 4), unit(10, 4, seed=1)
    codes = torch.tensor([0, 0, 2, 2, 2, 5, 0, 2, 5, 5])
    got = ema_codebook_update(codebook, z, codes, decay=0.9)
    for k in range(6):
        members = [z[i] for i in range(10) if int(codes[i]) == k]
        target = F.normalize(sum(members) / len(members), dim=0) if members else codebook[k]
        torch.testing.assert_close(got[k], F.normalize(0.9 * codebook[k] + 0.1 * target, dim=0))
    torch.testing.assert_close(got[[1, 3, 4]], codebook[[1, 3, 4]])  # unused codes stay
    with pytest.raises(ValueError):
        ema_codebook_update(codebook, z, codes, decay=1.5)


def test_spherical_kmeans_matches_lloyd_steps_in_a_loop():
    samples, init = torch.randn(30, 3), unit(4, 3, seed=2)
    got = spherical_kmeans(samples, 4, iterations=3, init=init)
    x, centroids = F.normalize(samples, dim=1), init.clone()
    for _ in range(3):
        assigned = [max(range(4), key=lambda k: float(v @ centroids[k])) for v in x]
        for k in range(4):
            members = [x[i] for i in range(30) if assigned[i] == k]
            if members:
                centroids[k] = F.normalize(sum(members), dim=0)
    torch.testing.assert_close(got, centroids)
    drawn = spherical_kmeans(samples, 40, iterations=0, generator=torch.Generator().manual_seed(0))  # more codes than samples
    assert drawn.shape == (40, 3) and all(any(torch.allclose(c, s) for s in x) for c in drawn)


# ----------------------------------------------------------------------------------------------- masked code modelling
def test_random_patch_mask_hides_a_fixed_share_at_random():
    mask = random_patch_mask(64, 10, 0.5, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and torch.equal(mask.sum(1), torch.full((64,), 5))
    assert len({tuple(row.tolist()) for row in mask}) > 32
    assert torch.equal(random_patch_mask(8, 40, 0.75).sum(1), torch.full((8,), 30))  # keep int(40 * 0.25) = 10
    with pytest.raises(ValueError):
        random_patch_mask(2, 10, 1.0)


def test_masked_code_cross_entropies_match_loops():
    logits, codes = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    complement = torch.randn(2, 5, 7)
    mask = torch.tensor([[True, False, True, False, False], [False, True, True, True, False]])

    def ce(row, target):
        return float(-torch.log_softmax(row, 0)[target])

    hidden = [(b, n) for b in range(2) for n in range(5) if mask[b, n]]
    expected = sum(ce(logits[b, n], codes[b, n]) for b, n in hidden) / len(hidden)
    assert masked_code_cross_entropy(logits, codes, mask).item() == pytest.approx(expected, rel=1e-5)
    both = [ce((logits if mask[b, n] else complement)[b, n], codes[b, n]) for b in range(2) for n in range(5)]
    got = symmetric_masked_code_cross_entropy(logits, complement, codes, mask).item()
    assert got == pytest.approx(sum(both) / 10, rel=1e-5)
    with pytest.raises(ValueError):
        masked_code_cross_entropy(logits, codes, torch.zeros_like(mask))


# ----------------------------------------------------------------------------------------------- the method
def test_paper_defaults_build_the_sEEG_model():
    model = DuIN(num_classes=61)
    encoder = model.backbone
    assert isinstance(encoder, DuINEncoder) and model.encoder() is encoder
    assert (encoder.num_patches, encoder.num_features, len(encoder.blocks), len(model.decoder)) == (40, 160, 8, 4)
    assert tuple(model.quantizer.codebook.shape) == (2048, 64) and model.code_head.out_features == 2048
    hp = model.hparams
    assert (hp.mask_ratio, hp.symmetric_masking, hp.codebook_decay, hp.commitment_weight, hp.weight_decay) == (
        0.5,
        True,
        0.99,
        1.0,
        0.05,
    )
    model.eval()
    with torch.no_grad():
        assert model.embed(torch.randn(2, 16, 4000)).shape == (2, 160)


def test_representation_is_the_mean_of_the_token_states():
    model = tiny_duin().eval()
    x = torch.randn(5, 3, 32)
    with torch.no_grad():
        states = model.backbone.contextualise(model.backbone.tokens(x))
        assert states.shape == (5, 4, model.backbone.num_features)
        torch.testing.assert_close(model.embed(x), states.mean(1))


def test_vqvae_stage_reconstructs_and_moves_the_codebook():
    torch.manual_seed(0)
    model = tiny_duin()
    model.stage = lambda: 1
    assert not bool(model.quantizer.initialised)
    before = model.quantizer.codebook.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.training_loss([torch.randn(6, 3, 32)])
    assert bool(model.quantizer.initialised) and not torch.allclose(model.quantizer.codebook, before)  # k-means, EMA
    torch.testing.assert_close(model.quantizer.codebook.norm(dim=1), torch.ones(16))
    out.loss.backward()
    assert model.backbone.fusion.weight.grad is not None and model.reconstruct[0].weight.grad is not None
    assert model.code_head.weight.grad is None and not bool(model.tokenizer_frozen)


@pytest.mark.parametrize("mae_init", ["random", "tokenizer"])
def test_mae_stage_predicts_the_frozen_tokenizers_codes(mae_init):
    torch.manual_seed(0)
    model = tiny_duin(mae_init=mae_init)
    x = torch.randn(6, 3, 32)
    model.stage = lambda: 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.training_loss([x]).loss.backward()
        stage1 = copy.deepcopy(model.backbone.state_dict())
        model.stage = lambda: 2
        codebook = model.quantizer.codebook.clone()
        model.zero_grad()
        out = model.training_loss([x])
    assert bool(model.tokenizer_frozen)
    for key, value in model.tokenizer_encoder.state_dict().items():  # the tokenizer is the stage-1 encoder
        torch.testing.assert_close(value, stage1[key])
    restarted = not torch.equal(model.backbone.fusion.weight, stage1["fusion.weight"])
    assert restarted == (mae_init == "random")
    assert not model.tokenizer_encoder.training and not model.train().tokenizer_encoder.training
    out.loss.backward()
    assert model.mask_token.grad is not None and model.code_head.weight.grad is not None
    assert all(p.grad is None for p in model.tokenizer_encoder.parameters())
    assert all(p.grad is None for p in model.quantizer.parameters())
    torch.testing.assert_close(model.quantizer.codebook, codebook)  # stage 2 leaves the codebook alone
    # the targets are the frozen tokenizer's codes: the loss is the cross-entropy to them
    codes = model.tokenize(x)
    assert codes.shape == (6, 4) and int(codes.max()) < 16
    torch.testing.assert_close(model.tokenize(x), codes)


def test_argument_checks():
    with pytest.raises(ValueError):
        tiny_duin(mask_ratio=0.0)
    with pytest.raises(ValueError):
        tiny_duin(mae_init="bert")
    with pytest.raises(ValueError):
        DuINEncoder(length=30, patch_len=8)
