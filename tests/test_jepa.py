"""The JEPA family: losses against loop-by-loop formulas, multi-block masks, the ViT token path, the action-sequence
augmentation, and method-specific behaviour of IJEPA, SparseJEPA and SeqJEPA."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from reprzoo.backbones.vit_tokens import sincos_pos_embed, vit_patch_embeddings, vit_patch_positions, vit_patch_tokens
from reprzoo.datamodules import Digits, eval_transform
from reprzoo.datamodules.action_sequence import ACTION_PARAMS, ActionSequenceTransform
from reprzoo.lightning_modules import IJEPA, SeqJEPA, SparseJEPA
from reprzoo.lightning_modules.vision_ssl.jepa import JEPAPredictor, MultiBlockMasks
from reprzoo.losses import gaussian_kl, group_lasso, jepa_loss, oi_vae_loss

VIT = dict(img_size=32, patch_size=4, depth=2, embed_dim=32, num_heads=2)
SMALL = dict(backbone_kwargs=VIT, pred_dim=16, pred_depth=1, pred_num_heads=2, min_keep=4, num_classes=10)


# ------------------------------------------------------------------------------------------------ losses
def test_jepa_loss_matches_loop():
    pred, target = torch.randn(4, 3, 5, 8), torch.randn(4, 3, 5, 8) * 3 + 1
    total, count = 0.0, 0
    for idx in torch.cartesian_prod(*(torch.arange(n) for n in pred.shape[:-1])):
        t = target[tuple(idx)]
        mean = sum(t) / len(t)
        var = sum((v - mean) ** 2 for v in t) / len(t)
        normed = [(v - mean) / math.sqrt(var + 1e-5) for v in t]
        for p, n in zip(pred[tuple(idx)], normed):
            total += float(p - n) ** 2
            count += 1
    assert jepa_loss(pred, target).item() == pytest.approx(total / count, rel=1e-5)
    assert jepa_loss(pred, target, normalize_targets=False).item() == pytest.approx(((pred - target) ** 2).mean().item())


def test_jepa_loss_stops_target_gradient_and_checks_shapes():
    pred, target = torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)
    jepa_loss(pred, target).backward()
    assert pred.grad is not None and target.grad is None
    with pytest.raises(ValueError, match="same shape"):
        jepa_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="same shape"):
        jepa_loss(torch.randn(4), torch.randn(4))


def test_gaussian_kl_matches_loop():
    mu, logvar = torch.randn(6, 5), torch.randn(6, 5)
    expected = 0.0
    for i in range(6):
        for k in range(5):
            var = math.exp(logvar[i, k])
            expected += 0.5 * (mu[i, k].item() ** 2 + var - 1 - logvar[i, k].item())
    assert gaussian_kl(mu, logvar).item() == pytest.approx(expected / 6, rel=1e-5)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 5))


def test_group_lasso_matches_loop():
    w = torch.randn(3, 4, 5)
    expected = sum(math.sqrt(sum(w[g, d, j].item() ** 2 for d in range(4))) for g in range(3) for j in range(5))
    assert group_lasso(w).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="groups, group_dim, latent"):
        group_lasso(torch.randn(4, 5))


def test_oi_vae_loss_matches_loop():
    x, x_hat, mu, logvar = torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    rec = kl = 0.0
    for i in range(2):
        for n in range(3):
            rec += sum((x[i, n, d] - x_hat[i, n, d]).item() ** 2 for d in range(8))
            kl += sum(0.5 * (mu[i, n, k] ** 2 + logvar[i, n, k].exp() - 1 - logvar[i, n, k]).item() for k in range(4))
    expected = (rec / 6 + 0.3 * kl / 6) / 8
    assert oi_vae_loss(x, x_hat, mu, logvar, kl_weight=0.3).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="kl_weight"):
        oi_vae_loss(x, x_hat, mu, logvar, kl_weight=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        oi_vae_loss(x, x_hat[..., :4], mu, logvar)


# ------------------------------------------------------------------------------------------------ masks and ViT path
def test_multi_block_masks():
    masks = MultiBlockMasks((8, 8), num_targets=4, min_keep=4)
    for _ in range(5):
        context, targets = masks(16)
        assert context.shape[0] == 16 and context.shape[1] >= 4
        assert targets.shape[:2] == (4, 16)
        assert 0 <= int(context.min()) and int(context.max()) < 64 and int(targets.max()) < 64
        for b in range(16):
            ctx = set(context[b].tolist())
            assert len(ctx) == context.shape[1]  # no repeated patch
            for t in range(4):
                block = targets[t, b]
                assert not ctx & set(block.tolist()), "context overlaps a target block"
                rows, cols = block // 8, block % 8
                h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
                assert h * w == len(block) == len(set(block.tolist()))  # a full rectangle
                assert 0.15 * 64 * 0.5 <= h * w <= 0.2 * 64 * 1.5


def test_multi_block_masks_arguments():
    with pytest.raises(ValueError, match="target_scale"):
        MultiBlockMasks((8, 8), target_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="num_targets"):
        MultiBlockMasks((8, 8), num_targets=0)
    with pytest.raises(RuntimeError, match="min_keep"):
        MultiBlockMasks((8, 8), min_keep=60, max_tries=3)(4)


def test_vit_patch_tokens_follow_timm_and_any_subset():
    model = IJEPA(**SMALL)
    x = torch.randn(2, 3, 32, 32)
    full = vit_patch_tokens(model.backbone, x)
    assert torch.allclose(full, model.backbone.forward_features(x), atol=1e-5)
    perm = torch.stack([torch.randperm(64), torch.randperm(64)])  # attention is permutation-equivariant
    assert torch.allclose(
        vit_patch_tokens(model.backbone, x, perm), torch.gather(full, 1, perm[..., None].expand(-1, -1, 32)), atol=1e-5
    )
    part = vit_patch_tokens(model.backbone, x, perm[:, :10])
    assert part.shape == (2, 10, 32)


def test_vit_patch_embeddings_and_positions_with_prefix_tokens():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=0, reg_tokens=2)
    vit.patch_drop = torch.nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    assert vit_patch_positions(vit).shape == (1, 16, 192)  # the 4 x 4 patches' positions, not the prefix tokens'
    embedded = vit_patch_embeddings(vit, x)
    assert embedded.shape == (2, vit.num_prefix_tokens + 16, 192)
    assert torch.equal(vit_patch_embeddings(vit, x, patch_drop=True), embedded)  # identity patch_drop: the same
    assert torch.allclose(vit_patch_tokens(vit, x), vit.forward_features(x)[:, vit.num_prefix_tokens :], atol=1e-5)


def test_predictor_uses_target_positions():
    predictor = JEPAPredictor((8, 8), embed_dim=32, pred_dim=16, depth=1, num_heads=2)
    context, context_idx = torch.randn(3, 5, 32), torch.randint(0, 64, (3, 5))
    out = predictor(context, context_idx, torch.arange(12).view(2, 1, 6).expand(2, 3, 6))
    assert out.shape == (2, 3, 6, 32)
    assert not torch.allclose(out[0], out[1]), "different target blocks must get different predictions"
    with pytest.raises(ValueError, match="divisible"):
        JEPAPredictor((8, 8), embed_dim=32, pred_dim=18, num_heads=4)


# ------------------------------------------------------------------------------------------------ I-JEPA / SparseJEPA
def test_ijepa_target_is_the_backbone_with_fixed_sincos_positions():
    model = IJEPA(**SMALL)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    trainable = {n for n, p in model.context_encoder.named_parameters() if p.requires_grad}
    assert "pos_embed" not in trainable and "blocks.0.attn.qkv.weight" in trainable
    assert torch.allclose(model.backbone.pos_embed[0], sincos_pos_embed((8, 8), 32))
    assert model.momentum_pairs == [(model.context_encoder, model.backbone)]
    x = torch.randn(4, 3, 32, 32)
    out = model.training_loss([x])
    assert torch.allclose(out.features, model.embed(x), atol=1e-5)  # the probe reads what kNN reads
    out.loss.backward()
    assert model.context_encoder.blocks[0].attn.qkv.weight.grad is not None
    with pytest.raises(ValueError, match="VisionTransformer"):
        IJEPA(backbone="resnet_tiny_cifar")


def test_ijepa_weight_decay_schedule(tiny_trainer_kwargs):
    model = IJEPA(**SMALL, weight_decay=0.04, final_weight_decay=0.4)
    data = Digits(batch_size=16, augmentation="simsiam", augmentation_kwargs={"num_views": 1})
    L.Trainer(**{**tiny_trainer_kwargs, "limit_train_batches": 3}).fit(model, datamodule=data)
    decays = {g["name"]: g["weight_decay"] for g in model.trainer.optimizers[0].param_groups}
    assert 0.04 < decays["online"] < 0.4  # step 2 of 3 on the cosine from 0.04 to 0.4
    assert decays["online/no_decay"] == 0.0 and decays["probe"] == 0.0


def test_sparse_jepa_penalty():
    model = SparseJEPA(**SMALL, num_groups=4, latent_dim=6, sparse_weight=0.3, kl_weight=0.5, group_lasso_weight=0.1)
    assert model.group_weights.shape == (4, 8, 6)
    model.eval()  # z = mu
    tokens = torch.randn(2, 5, 32)
    recon, mu, logvar = model.sparse_code(tokens)
    z = mu
    for g in range(4):  # group g of the features is generated by W^(g) z only
        expected = z @ model.group_weights[g].T + model.group_bias[g * 8 : (g + 1) * 8]
        assert torch.allclose(recon[..., g * 8 : (g + 1) * 8], expected, atol=1e-5)
    normed = torch.nn.functional.layer_norm(tokens, (32,))
    r, m, lv = model.sparse_code(normed)
    expected = 0.3 * oi_vae_loss(normed, r, m, lv, 0.5) + 0.1 * group_lasso(model.group_weights)
    assert torch.allclose(model.context_penalty(tokens), expected)
    with pytest.raises(ValueError, match="num_groups"):
        SparseJEPA(**SMALL, num_groups=5)


# ------------------------------------------------------------------------------------------------ action sequences / seq-JEPA
def test_action_sequence_parameters_describe_the_views():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    mean, std = (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)
    identity = ActionSequenceTransform(
        32, num_views=3, crop_scale=(1, 1), crop_ratio=(1, 1), hflip_prob=0.0, jitter_prob=0.0, mean=mean, std=std
    )
    out = identity(image)
    assert len(out["views"]) == 3 and out["params"].shape == (3, len(ACTION_PARAMS))
    assert torch.allclose(out["params"][0], torch.tensor([0.5, 0.5, 1, 1, 0, 0, 1, 1, 1, 0.0]))
    assert torch.allclose(out["views"][0], eval_transform(32, mean, std)(image), atol=1e-5)
    flipped = ActionSequenceTransform(
        32, num_views=2, crop_scale=(1, 1), crop_ratio=(1, 1), hflip_prob=1.0, jitter_prob=0.0, mean=mean, std=std
    )(image)
    assert torch.all(flipped["params"][:, ACTION_PARAMS.index("flip")] == 1)
    assert torch.allclose(flipped["views"][0], out["views"][0].flip(-1), atol=1e-5)
    rotated = ActionSequenceTransform(32, num_views=2, degrees=30, jitter_prob=1.0)(image)["params"]
    assert rotated[:, ACTION_PARAMS.index("rotation")].abs().max() <= 30 / 180
    with pytest.raises(ValueError, match="at least 2 views"):
        ActionSequenceTransform(32, num_views=1)


def test_digits_batches_carry_views_and_parameters():
    data = Digits(batch_size=8, augmentation="action_sequence", augmentation_kwargs={"num_views": 3, "degrees": 20})
    views, labels, _ = next(iter(data.train_dataloader()))
    assert isinstance(views, dict) and len(views["views"]) == 3
    assert views["views"][0].shape == (8, 3, 32, 32) and views["params"].shape == (8, 3, len(ACTION_PARAMS))


def test_seq_jepa_training_loss_and_representations():
    model = SeqJEPA(backbone="resnet_tiny_cifar", action_embed_dim=32, agg_layers=1, pred_hidden_dim=64, num_classes=10)
    batch = {"views": [torch.randn(4, 3, 32, 32) for _ in range(4)], "params": torch.randn(4, 4, 10)}
    out = model.training_loss(batch)
    assert 0.0 <= out.loss.item() <= 4.0 and out.features.shape == (4, 128 + 32)
    out.loss.backward()
    assert model.action_embed[0].weight.grad.abs().sum() > 0 and model.agg_token.grad is not None
    assert all(p.grad is None for p in model.target_backbone.parameters())
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    assert model.embed(x).shape == (3, 160)
    encoder = SeqJEPA(backbone="resnet_tiny_cifar", action_embed_dim=32, agg_layers=1, representation="encoder", num_classes=10)
    assert encoder.eval().embed(x).shape == (3, 128) and encoder.probe.classifier.in_features == 128


def test_seq_jepa_prediction_depends_on_the_next_action():
    torch.manual_seed(0)
    model = SeqJEPA(backbone="resnet_tiny_cifar", action_embed_dim=32, agg_layers=1, pred_hidden_dim=64).eval()
    views = [torch.randn(2, 3, 32, 32) for _ in range(3)]
    params = torch.zeros(2, 3, 10)
    moved = params.clone()
    moved[:, 2, 0] = 0.3  # only the last (target) view moves
    a = model.training_loss({"views": views, "params": params}).loss
    b = model.training_loss({"views": views, "params": moved}).loss
    assert not torch.isclose(a, b)


def test_seq_jepa_arguments():
    model = SeqJEPA(backbone="resnet_tiny_cifar", action_embed_dim=32, agg_layers=1)
    with pytest.raises(ValueError, match="action_sequence"):
        model.training_loss([torch.randn(2, 3, 32, 32)] * 2)
    with pytest.raises(ValueError, match="action_dim"):
        model.training_loss({"views": [torch.randn(2, 3, 32, 32)] * 3, "params": torch.zeros(2, 3, 7)})
    with pytest.raises(ValueError, match="agg_heads"):
        SeqJEPA(backbone="resnet_tiny_cifar", action_embed_dim=30, agg_heads=4)
    with pytest.raises(ValueError, match="representation"):
        SeqJEPA(backbone="resnet_tiny_cifar", representation="both")
