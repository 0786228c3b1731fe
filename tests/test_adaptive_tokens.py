"""Variable-length tokenizers (ALIT, KARL, Nugget): the losses against loop-by-loop computations, the selection and
halting rules, the decoder's attention bias, and method-specific behaviour."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from reprzoo.lightning_modules import ALIT, KARL, Nugget
from reprzoo.lightning_modules.nested.adaptive_tokens import NuggetSelector, PixelDecoder, masked_mean
from reprzoo.losses.adaptive_tokens import (
    ALIT_VAE_HALTING_THRESHOLD,
    ALIT_VQGAN_HALTING_THRESHOLD,
    Nuggets,
    alit_rollout_weights,
    budget_reconstruction_loss,
    discretize_loss,
    halting_loss,
    halting_targets,
    nugget_attention_bias,
    nugget_counts,
    patchify,
    per_sample_l1,
    reconstructed_tokens,
    sampled_halting,
    select_nuggets,
)

VIT = dict(img_size=16, patch_size=4, depth=2, embed_dim=32, num_heads=2)
DECODER = dict(decoder_width=32, decoder_depth=1, decoder_num_heads=2)
SMALL = dict(backbone_kwargs=VIT, num_classes=10, **DECODER)


# ------------------------------------------------------------------------------------------------ losses
def test_patchify_matches_loop():
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 48)
    for b in range(2):
        for row in range(2):
            for col in range(3):
                n = row * 3 + col
                for i in range(4):
                    for j in range(4):
                        for c in range(3):
                            assert patches[b, n, (i * 4 + j) * 3 + c] == images[b, c, row * 4 + i, col * 4 + j]
    with pytest.raises(ValueError, match="divisible"):
        patchify(torch.randn(1, 3, 10, 8), 4)


def test_budget_reconstruction_loss_is_the_weighted_sum_of_per_budget_errors():
    target = torch.randn(3, 5, 4)
    predictions = [torch.randn(3, 5, 4, requires_grad=True) for _ in range(3)]
    weights = alit_rollout_weights(3)
    total, per_budget = budget_reconstruction_loss(predictions, target, weights)
    expected_total = 0.0
    for w, pred, got in zip(weights, predictions, per_budget):
        squared = [float(pred[b, n, d].detach() - target[b, n, d]) ** 2 for b in range(3) for n in range(5) for d in range(4)]
        mse = sum(squared) / len(squared)
        assert got.item() == pytest.approx(mse, rel=1e-5)
        expected_total += w * mse
    assert total.item() == pytest.approx(expected_total, rel=1e-5)
    total.backward()
    assert all(p.grad is not None for p in predictions)
    with pytest.raises(ValueError, match="weights"):
        budget_reconstruction_loss(predictions, target, [1.0])
    with pytest.raises(ValueError, match="shape"):
        budget_reconstruction_loss([torch.randn(3, 5, 2)], target)


def test_alit_rollout_weights_are_the_papers():
    assert alit_rollout_weights(6) == [2.5, 2.0, 1.5, 1.25, 1.0, 1.0]
    assert alit_rollout_weights(2) == [2.5, 2.0]


def test_reconstructed_tokens_thresholds_the_mean_absolute_error():
    target = torch.zeros(1, 3, 2)
    reconstruction = torch.tensor([[[0.05, -0.05], [0.3, 0.0], [0.09, 0.12]]])
    # errors 0.05, 0.15, 0.105
    assert reconstructed_tokens(reconstruction, target, 0.1).tolist() == [[True, False, False]]
    assert reconstructed_tokens(reconstruction, target, 0.11).tolist() == [[True, False, True]]


def test_alit_halting_defaults_are_the_released_codes():
    """adaptive_tokenizers/configs: 0.025 on the continuous (VAE) code error, 0.55 on the VQGAN code probability;
    ALIT (continuous tokens) defaults to the continuous variant's threshold."""
    assert (ALIT_VAE_HALTING_THRESHOLD, ALIT_VQGAN_HALTING_THRESHOLD) == (0.025, 0.55)
    assert inspect.signature(ALIT).parameters["halting_threshold"].default == ALIT_VAE_HALTING_THRESHOLD
    assert inspect.signature(reconstructed_tokens).parameters["threshold"].default == ALIT_VAE_HALTING_THRESHOLD
    assert inspect.signature(sampled_halting).parameters["threshold"].default == ALIT_VQGAN_HALTING_THRESHOLD


def test_sampled_halting_is_bernoulli_on_the_gt_probability_above_the_threshold():
    """The released VQGAN rule: drop = bernoulli(p); drop[p < 0.55] = 0."""
    p = torch.tensor([0.0, 0.3, 0.549, 0.55, 0.8, 1.0]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    rate = sampled_halting(p, generator=gen).float().mean(0)
    assert rate[:3].tolist() == [0.0, 0.0, 0.0]  # below the threshold: never, however likely the code
    assert rate[5].item() == 1.0
    assert rate[3].item() == pytest.approx(0.55, abs=0.015) and rate[4].item() == pytest.approx(0.8, abs=0.015)
    same = sampled_halting(p, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same, sampled_halting(p, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="gt_probability"):
        sampled_halting(torch.tensor([1.5]))


def test_discretize_loss_takes_the_smallest_bin_at_or_above():
    bins = torch.tensor([0.1, 0.2, 0.4])
    losses = torch.tensor([0.0, 0.1, 0.15, 0.2, 0.3, 0.9])
    expected = []
    for loss in losses.tolist():
        above = [i for i, b in enumerate(bins.tolist()) if b >= loss]
        expected.append(above[0] if above else len(bins) - 1)
    assert discretize_loss(losses, bins).tolist() == expected == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="increasing"):
        discretize_loss(losses, torch.tensor([0.2, 0.1]))


def test_halting_targets_and_loss_follow_the_definition():
    num_active = torch.tensor([2, 4, 0])
    targets = halting_targets(4, num_active)
    for b, n in enumerate(num_active.tolist()):
        assert targets[b].tolist() == [0.0] * n + [1.0] * (4 - n)
    logits = torch.randn(3, 4, requires_grad=True)
    active_terms, halted_terms = [], []
    for b in range(3):
        for t in range(4):
            p = 1 / (1 + math.exp(-logits[b, t].item()))
            if targets[b, t] == 0:
                active_terms.append(-math.log(1 - p))
            else:
                halted_terms.append(-math.log(p))
    expected = sum(active_terms) / len(active_terms) + sum(halted_terms) / len(halted_terms)
    loss = halting_loss(logits, num_active)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert logits.grad is not None
    # all active: only the "continue" term
    all_active = halting_loss(logits.detach(), torch.tensor([4, 4, 4]))
    expected = sum(-math.log(1 - 1 / (1 + math.exp(-v))) for v in logits.detach().flatten().tolist()) / 12
    assert all_active.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="num_active"):
        halting_targets(4, torch.tensor([5]))


def test_per_sample_l1():
    a, b = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    expected = [sum(abs(float(x - y)) for x, y in zip(a[i].flatten(), b[i].flatten())) / 20 for i in range(3)]
    assert per_sample_l1(a, b).tolist() == pytest.approx(expected, rel=1e-5)


def test_nugget_counts():
    assert nugget_counts(torch.tensor([1, 9, 10, 11, 64]), 0.1).tolist() == [1, 1, 1, 2, 7]
    assert nugget_counts(torch.tensor([3]), 1.0).tolist() == [3]
    with pytest.raises(ValueError, match="ratio"):
        nugget_counts(torch.tensor([3]), 0.0)


def test_select_nuggets_takes_exactly_the_top_k_in_input_order():
    encodings, scores = torch.randn(4, 10, 3), torch.randn(4, 10)
    nuggets = select_nuggets(encodings, scores, ratio=0.3)
    assert nuggets.encodings.shape == (4, 3, 3) and nuggets.mask.all()
    for b in range(4):
        ranked = sorted(range(10), key=lambda i: -scores[b, i].item())[:3]
        assert nuggets.index[b].tolist() == sorted(ranked)
        for slot, i in enumerate(sorted(ranked)):
            assert torch.equal(nuggets.encodings[b, slot], encodings[b, i])
            assert nuggets.scores[b, slot] == scores[b, i]


def test_select_nuggets_respects_padding():
    encodings, scores = torch.randn(2, 10, 3), torch.randn(2, 10)
    padding = torch.ones(2, 10, dtype=torch.bool)
    padding[1, 4:] = False  # a sequence of 4 tokens: 1 nugget at ratio 0.25, the other has 3
    scores[1, 6] = 100.0  # a padded token with the top score must not be picked
    nuggets = select_nuggets(encodings, scores, 0.25, padding)
    assert nuggets.mask.tolist() == [[True, True, True], [True, False, False]]
    assert nuggets.index[1, 0].item() == int(scores[1, :4].argmax())
    bias = nugget_attention_bias(nuggets)
    assert torch.isinf(bias[1, 1:]).all() and torch.isfinite(bias[0]).all()


def test_nugget_attention_bias_forms():
    scores = torch.randn(2, 3, requires_grad=True)
    nuggets = Nuggets(torch.randn(2, 3, 4), scores, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))
    assert torch.equal(nugget_attention_bias(nuggets, "residual"), scores)
    st = nugget_attention_bias(nuggets, "straight_through")
    assert torch.equal(st, torch.zeros(2, 3))
    (st * torch.arange(3.0)).sum().backward()
    assert scores.grad.tolist() == [[0.0, 1.0, 2.0]] * 2
    with pytest.raises(ValueError, match="residual"):
        nugget_attention_bias(nuggets, "gumbel")


# ------------------------------------------------------------------------------------------------ decoder
def test_pixel_decoder_bias_removes_a_token_and_carries_gradient():
    decoder = PixelDecoder((2, 2), patch_dim=6, memory_dim=5, width=16, depth=2, num_heads=2).eval()
    memory = torch.randn(2, 3, 5)
    halted = torch.tensor([[False, False, True], [False, False, True]])
    bias = torch.zeros(2, 3).masked_fill(halted, float("-inf"))
    out = decoder(memory, bias)
    assert out.shape == (2, 4, 6)
    changed = memory.clone()
    changed[:, 2] = torch.randn(2, 5) * 10  # a removed token cannot change the output
    assert torch.allclose(decoder(changed, bias), out, atol=1e-5)
    assert not torch.allclose(decoder(changed), decoder(memory), atol=1e-5)
    scores = torch.zeros(2, 3, requires_grad=True)
    decoder(memory, scores).pow(2).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_masked_mean():
    tokens = torch.arange(12.0).view(1, 4, 3)
    keep = torch.tensor([[True, False, True, False]])
    assert masked_mean(tokens, keep).tolist() == [[3.0, 4.0, 5.0]]
    assert masked_mean(tokens, None).tolist() == [[4.5, 5.5, 6.5]]


# ------------------------------------------------------------------------------------------------ methods
def test_alit_adds_tokens_per_rollout_and_halts_reconstructed_patches():
    model = ALIT(tokens_per_rollout=2, num_rollouts=3, halting_threshold=1e9, **SMALL)
    images = torch.randn(2, 3, 16, 16)
    outputs = model.rollouts(images)
    assert [latents.shape[1] for latents, _ in outputs] == [2, 4, 6]
    assert all(rec.shape == (2, 16, 48) for _, rec in outputs)
    assert model.embed(images).shape == (2, 32) and model.pooled_tokens(images, num_rollouts=1).shape == (2, 32)
    # with a threshold no error exceeds, every patch is halted after rollout 1: from rollout 2 on, the encoder's
    # image tokens are the mask token at each position, the same for every image
    inputs = []
    hook = model.backbone.blocks[0].register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    model.rollouts(images)
    model.hparams.dynamic_halting = False
    model.rollouts(images)
    hook.remove()
    halted, not_halted = inputs[1][:, :16], inputs[4][:, :16]
    assert torch.allclose(halted[0], halted[1]) and not torch.allclose(inputs[0][0, :16], inputs[0][1, :16])
    assert not torch.allclose(not_halted[0], not_halted[1])
    assert inputs[1].shape[1] == 16 + 4 and inputs[2].shape[1] == 16 + 6
    with pytest.raises(ValueError, match="num_rollouts"):
        model.rollouts(images, num_rollouts=4)


def test_alit_loss_sums_weighted_rollout_losses():
    model = ALIT(tokens_per_rollout=2, num_rollouts=2, dynamic_halting=False, **SMALL)
    images = torch.randn(3, 3, 16, 16)
    torch.manual_seed(1)
    out = model.training_loss([images])
    recs = [rec for _, rec in model.rollouts(images)]
    target = patchify(images, 4)
    expected = 2.5 * ((recs[0] - target) ** 2).mean() + 2.0 * ((recs[1] - target) ** 2).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None and model.latent_tokens.grad is not None


def test_karl_training_trains_the_halting_head_and_counts_tokens():
    model = KARL(max_tokens=8, token_counts=[2, 4], halting_hidden=16, loss_bins=[0.1, 0.5, 1.0, 2.0], **SMALL)
    images = torch.randn(2, 3, 16, 16)
    out = model.training_loss([images])
    out.loss.backward()
    assert model.halting_head[-1].weight.grad.abs().sum() > 0
    assert model.quality_embed.grad is not None and model.backbone.blocks[0].attn.qkv.weight.grad is not None
    counts = model.token_count(images, 0.3)
    assert counts.shape == (2,) and ((0 <= counts) & (counts <= 8)).all()
    with torch.no_grad():  # a head that never halts keeps the full budget; one that always halts keeps nothing
        model.halting_head[-1].weight.zero_()
        model.halting_head[-1].bias.fill_(-5.0)
        assert model.token_count(images, 0.3).tolist() == [8, 8]
        model.halting_head[-1].bias.fill_(5.0)
        assert model.token_count(images, 0.3).tolist() == [0, 0]
    assert model.embed(images).shape == (2, 32)
    with pytest.raises(ValueError, match="token_counts"):
        KARL(max_tokens=8, token_counts=[16], **SMALL)


def test_karl_halting_objective_matches_pass_targets(monkeypatch):
    """Pass 1 asks every token of the budget to stay active, pass 2 asks the tokens past the budget to halt."""
    model = KARL(max_tokens=8, token_counts=[3], halting_hidden=16, **SMALL)
    seen = []
    import reprzoo.lightning_modules.nested.adaptive_tokens as module

    def spy(logits, num_active):
        seen.append((logits.shape[1], num_active.tolist()))
        return halting_loss(logits, num_active)

    monkeypatch.setattr(module, "halting_loss", spy)
    model.training_loss([torch.randn(2, 3, 16, 16)])
    assert seen == [(3, [3, 3]), (8, [3, 3])]


def test_nugget_selects_k_patches_and_the_scorer_learns_through_the_decoder():
    model = Nugget(ratio=0.25, scorer_layer=1, **SMALL)
    images = torch.randn(2, 3, 16, 16)
    nuggets = model.nuggets(images)
    assert nuggets.encodings.shape == (2, 4, 32) and nuggets.mask.all()
    assert all(len(set(row)) == 4 for row in nuggets.index.tolist())
    out = model.training_loss([images])
    out.loss.backward()
    scorer_grad = sum(p.grad.abs().sum() for p in model.selector.scorer.parameters())
    assert scorer_grad > 0, "the residual connection must carry the decoder's gradient into the scorer"
    assert model.selector.type_embedding.grad.abs().sum() > 0
    assert model.embed(images).shape == (2, 32)


@pytest.mark.parametrize("residual", ["residual", "straight_through"])
def test_nugget_scorer_gradient_in_both_residual_forms(residual):
    model = Nugget(ratio=0.25, residual=residual, **SMALL)
    model.training_loss([torch.randn(2, 3, 16, 16)]).loss.backward()
    assert model.selector.scorer[0].weight.grad.abs().sum() > 0


def test_nugget_selector_is_modality_agnostic():
    selector = NuggetSelector(dim=6, ratio=0.5)
    hidden = torch.randn(2, 7, 6)
    padding = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    nuggets, marked = selector(hidden, padding)
    assert nuggets.mask.sum(1).tolist() == [4, 2]
    assert (nuggets.index[1][nuggets.mask[1]] < 3).all()
    final = torch.randn(2, 7, 6)
    gathered = NuggetSelector.gather(final, nuggets)
    assert torch.equal(gathered.encodings[0, 0], final[0, nuggets.index[0, 0]])
    with torch.no_grad():
        selector.type_embedding.fill_(1.0)
    _, marked = selector(hidden, padding)
    assert (marked - hidden).sum().item() == pytest.approx(6 * 6)  # 4 + 2 selected tokens marked


def test_methods_reject_non_vit_backbones():
    for cls in (ALIT, KARL, Nugget):
        with pytest.raises(ValueError, match="VisionTransformer"):
            cls(backbone="resnet_tiny_cifar")
