"""The contrastive family: SimCLR, MoCo v2, MoCo v3, G-SimCLR and InterCLR (heads, losses against loop-by-loop
computations of the papers' formulas, argument checks, and method-specific behaviour)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from reprzoo.datamodules import SimCLRTransform, build_augmentation
from reprzoo.lightning_modules import SimCLR
from reprzoo.lightning_modules.vision_ssl.simclr import SimCLRProjectionHead
from reprzoo.losses import nt_xent

TINY = dict(backbone="resnet_tiny_cifar", num_classes=4, knn_k=5)


def _fit_steps(model, tiny_trainer_kwargs, batch_size=16, steps=2):
    from reprzoo.datamodules import SyntheticImages

    data = SyntheticImages(
        num_classes=4,
        train_size=64,
        test_size=32,
        image_size=16,
        batch_size=batch_size,
        augmentation="simclr",
        augmentation_kwargs={"blur_prob": 0.0},
    )
    trainer = L.Trainer(**{**tiny_trainer_kwargs, "limit_train_batches": steps})
    trainer.fit(model, datamodule=data)
    return trainer


# ----------------------------------------------------------------------------------------------- SimCLR
def test_simclr_transform_strength_and_registry():
    t = SimCLRTransform(size=16, jitter_strength=0.5, blur_prob=0.0)
    jitter = [op for op in t.transforms[0].transforms if type(op).__name__ == "RandomApply"][0].transforms[0]
    assert jitter.brightness == (0.6, 1.4) and jitter.hue == (-0.1, 0.1)  # (0.8 s, ..., 0.2 s) with s = 0.5
    views = build_augmentation("simclr", 16, (0.5,) * 3, (0.25,) * 3)(torch.randint(0, 255, (3, 20, 20), dtype=torch.uint8))
    assert len(views) == 2 and views[0].shape == (3, 16, 16)


def test_simclr_head_and_loss():
    head = SimCLRProjectionHead(8, 16, 4)
    assert isinstance(head.layers[-1], torch.nn.BatchNorm1d) and not head.layers[-1].affine
    assert SimCLRProjectionHead(8, 16, 4, output_bn=False).layers[-1].bias is not None
    model = SimCLR(**TINY, proj_hidden_dim=32, proj_output_dim=16, temperature=0.5)
    assert model.hparams.optimizer == "lars" and model.hparams.lr == 0.3 and model.hparams.weight_decay == 1e-6
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    out = model.training_loss(views)
    z1, z2 = model.projector(model.backbone(views[0])), model.projector(model.backbone(views[1]))
    assert torch.allclose(out.loss, nt_xent(z1, z2, 0.5), atol=1e-5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        SimCLR(**TINY, temperature=0.0)


# ----------------------------------------------------------------------------------------------- MoCo v2 / v3
def _info_nce_loop(q, k, negatives, t):
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    total = 0.0
    for i in range(len(q)):
        pos = math.exp(float(qn[i] @ kn[i]) / t)
        negs = [F.normalize(m, dim=0) for m in negatives] if negatives is not None else [kn[j] for j in range(len(k)) if j != i]
        total += -math.log(pos / (pos + sum(math.exp(float(qn[i] @ m) / t) for m in negs)))
    return total / len(q)


def test_mocov2_loss_queue_and_key_encoder():
    from reprzoo.lightning_modules import MoCoV2

    model = MoCoV2(**TINY, proj_hidden_dim=32, proj_output_dim=8, queue_size=12, temperature=0.2)
    assert (model.tau_base, model.tau_final) == (0.999, 0.999)  # constant m
    assert not any(p.requires_grad for p in model.key_backbone.parameters())
    names = [n for g in model.param_groups() for n, _ in g["params"]]
    assert names and not any(n.startswith("key_") for n in names)
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    queue_before = model.queue.embeddings.clone()
    with torch.no_grad():
        q = model.projector(model.backbone(views[0]))
        k = model.key_projector(model.key_backbone(views[1]))
        loss = model.training_loss(views).loss
    assert loss.item() == pytest.approx(_info_nce_loop(q, k, queue_before, 0.2), rel=1e-4)
    # the keys were enqueued, normalised, at the pointer
    assert torch.allclose(model.queue.embeddings[:6], F.normalize(k, dim=1), atol=1e-6)
    assert int(model.queue.pointer) == 6
    symmetric = MoCoV2(**TINY, proj_hidden_dim=32, proj_output_dim=8, queue_size=12, symmetric=True)
    symmetric.training_loss(views)
    assert int(symmetric.queue.pointer) == 0 and int(symmetric.queue.filled) == 12  # both views' keys
    with pytest.raises(ValueError, match="key_momentum"):
        MoCoV2(**TINY, key_momentum=1.5)


def test_mocov3_heads_and_symmetrised_scaled_loss():
    from reprzoo.lightning_modules import MoCoV3
    from reprzoo.lightning_modules.vision_ssl.moco import MoCoV3Head

    head = MoCoV3Head(8, 16, 4, num_layers=3)
    linears = [m for m in head.layers if isinstance(m, torch.nn.Linear)]
    norms = [m for m in head.layers if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(linears) == 3 and len(norms) == 3 and not norms[-1].affine and all(m.bias is None for m in linears)
    assert not isinstance(MoCoV3Head(8, 16, 4, 2, last_bn=False).layers[-1], torch.nn.BatchNorm1d)
    with pytest.raises(ValueError, match="at least 2 layers"):
        MoCoV3Head(8, 16, 4, num_layers=1)
    t = 0.5
    model = MoCoV3(**TINY, proj_hidden_dim=32, proj_output_dim=8, temperature=t)
    assert model.tau_base == 0.99 and model.tau_final == 1.0
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    with torch.no_grad():
        q1 = model.predictor(model.projector(model.backbone(views[0])))
        q2 = model.predictor(model.projector(model.backbone(views[1])))
        k1, k2 = model.keys(views[0]), model.keys(views[1])
        loss = model.training_loss(views).loss
    expected = 2 * t * (_info_nce_loop(q1, k2, None, t) + _info_nce_loop(q2, k1, None, t))
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_momentum_encoders_follow_the_ema_in_training(tiny_trainer_kwargs):
    from reprzoo.lightning_modules import MoCoV2

    model = MoCoV2(**TINY, proj_hidden_dim=32, proj_output_dim=8, queue_size=64, key_momentum=0.5, lr=0.5)
    before = [p.clone() for p in model.key_projector.parameters()]
    _fit_steps(model, tiny_trainer_kwargs)
    for b, k, o in zip(before, model.key_projector.parameters(), model.projector.parameters()):
        assert not torch.equal(b, k) and not torch.equal(k, o)  # moved, but not onto the query encoder
    assert int(model.queue.filled) == 32


# ----------------------------------------------------------------------------------------------- pseudo-labels
def test_kmeans_finds_separated_clusters_and_is_seeded():
    from reprzoo.losses import kmeans

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    truth = torch.arange(3).repeat_interleave(20)
    x = centres[truth] + 0.3 * torch.randn(60, 2, generator=g)
    centroids, labels = kmeans(x, 3, seed=1)
    for c in range(3):  # each true cluster is one k-means cluster, and the centroids are the cluster means
        assert labels[truth == c].unique().numel() == 1
        assert torch.allclose(centroids[labels[truth == c][0]], x[truth == c].mean(0), atol=1e-5)
    again = kmeans(x, 3, seed=1)
    assert torch.equal(again[1], labels)
    _, many = kmeans(x, 60)
    assert many.unique().numel() == 60  # no empty cluster even at k = n
    with pytest.raises(ValueError, match="k must be in"):
        kmeans(x, 61)


def test_cluster_means_keep_empty_clusters():
    from reprzoo.losses import cluster_means

    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    previous = torch.full((3, 2), 7.0)
    means = cluster_means(x, torch.tensor([0, 0, 2]), previous)
    assert means.tolist() == [[2.0, 0.0], [7.0, 7.0], [0.0, 2.0]]


def test_reassign_small_clusters_dissolves_and_refills():
    from reprzoo.losses import reassign_small_clusters

    # cluster 0: two groups of 5 near (1, +-0.5); cluster 1: 2 points near (-1, 0) (small); cluster 2: 6 at (-1, 0)
    x = torch.cat(
        [
            torch.tensor([[1.0, 0.5]]).repeat(5, 1),
            torch.tensor([[1.0, -0.5]]).repeat(5, 1),
            torch.tensor([[-1.0, 0.1]]).repeat(2, 1),
            torch.tensor([[-1.0, 0.0]]).repeat(6, 1),
        ]
    )
    labels = torch.tensor([0] * 10 + [1] * 2 + [2] * 6)
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    new_labels, new_centroids = reassign_small_clusters(x, labels, centroids, min_size=3)
    assert new_labels[10:].tolist() == [2] * 8  # the small cluster's points joined the most similar centroid
    # the emptied cluster 1 took one of the two groups of the largest cluster, split by 2-means
    assert torch.bincount(new_labels).tolist() == [5, 5, 8]
    assert new_labels[:5].unique().numel() == 1 and new_labels[5:10].unique().numel() == 1
    for c in (0, 1):  # the split clusters get their means; the others wait for the next centroid update
        assert torch.allclose(new_centroids[c], x[new_labels == c].mean(0))
    assert torch.equal(new_centroids[2], centroids[2])
    assert torch.equal(reassign_small_clusters(x, labels, centroids, min_size=2)[0], labels)  # nothing small
    assert torch.equal(labels, torch.tensor([0] * 10 + [1] * 2 + [2] * 6))  # inputs untouched


def test_guided_nt_xent_drops_same_pseudo_class_negatives():
    from reprzoo.losses import guided_nt_xent

    n, t = 5, 0.5
    z1, z2 = torch.randn(n, 6), torch.randn(n, 6)
    groups = torch.tensor([0, 1, 0, 2, -1])
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    g = torch.cat([groups, groups])
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        kept = [k for k in range(2 * n) if k != i and (k == j or g[i] < 0 or g[k] != g[i])]
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in kept)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
    assert guided_nt_xent(z1, z2, groups, t).item() == pytest.approx(total / (2 * n), rel=1e-5)
    distinct = torch.arange(n)
    assert torch.allclose(guided_nt_xent(z1, z2, distinct, t), nt_xent(z1, z2, t), atol=1e-6)
    assert torch.allclose(guided_nt_xent(z1, z2, torch.full((n,), -1), t), nt_xent(z1, z2, t), atol=1e-6)
    with pytest.raises(ValueError, match="pseudo_labels"):
        guided_nt_xent(z1, z2, groups[:3], t)
    with pytest.raises(ValueError, match="temperature"):
        guided_nt_xent(z1, z2, groups, 0.0)


# ----------------------------------------------------------------------------------------------- G-SimCLR
def test_gsimclr_pseudo_labels_from_the_autoencoder(tiny_trainer_kwargs):
    from reprzoo.lightning_modules import GSimCLR
    from reprzoo.losses import guided_nt_xent

    model = GSimCLR(
        **TINY,
        proj_hidden_dim=32,
        proj_output_dim=16,
        temperature=0.5,
        num_clusters=6,
        dae_epochs=1,
        dae_channels=(4, 8, 8),
        optimizer="sgd",
        lr=0.05,
        warmup_epochs=0,
    )
    assert model.pseudo_labels.numel() == 0 and "pseudo_labels" not in model.state_dict()
    _fit_steps(model, tiny_trainer_kwargs)
    labels = model.pseudo_labels
    assert labels.shape == (64,) and labels.min() >= 0 and labels.max() < 6 and labels.unique().numel() == 6
    assert not any("dae" in k or "pseudo" in k for k in model.state_dict())  # the autoencoder is not kept
    z1, z2, idx = torch.randn(8, 16), torch.randn(8, 16), torch.arange(8) * 7
    assert torch.allclose(model.contrastive_loss(z1, z2, None, idx), guided_nt_xent(z1, z2, labels[idx], 0.5))
    with pytest.raises(ValueError, match="indices"):
        model.contrastive_loss(z1, z2, None, None)
    with pytest.raises(ValueError, match="num_clusters"):
        GSimCLR(**TINY, num_clusters=1)


def test_denoising_autoencoder_shapes():
    from reprzoo.lightning_modules.vision_ssl.gsimclr import DenoisingAutoencoder

    dae = DenoisingAutoencoder(channels=(4, 8, 16))
    x = torch.randn(2, 3, 16, 16)
    assert dae(x).shape == x.shape and dae.latent(x).shape == (2, 16)
    dae.eval()
    assert torch.equal(dae(x), dae(x))  # no noise at evaluation


# ----------------------------------------------------------------------------------------------- InterCLR losses
def test_inter_image_info_nce_matches_the_margin_formula():
    from reprzoo.losses import inter_image_info_nce

    n, k, d, t, m = 4, 3, 5, 0.2, -0.5
    q, p, negs = torch.randn(n, d), torch.randn(n, d), torch.randn(n, k, d)
    valid = torch.ones(n, k, dtype=torch.bool)
    valid[1, 2] = False
    qn, pn, nn_ = F.normalize(q, dim=1), F.normalize(p, dim=1), F.normalize(negs, dim=2)
    total = 0.0
    for i in range(n):
        pos = math.exp((float(qn[i] @ pn[i]) - m) / t)
        neg = sum(math.exp(float(qn[i] @ nn_[i, j]) / t) for j in range(k) if valid[i, j])
        total += -math.log(pos / (pos + neg))
    assert inter_image_info_nce(q, p, negs, valid, t, m).item() == pytest.approx(total / n, rel=1e-5)
    relaxed, strict = inter_image_info_nce(q, p, negs, None, t, -0.5), inter_image_info_nce(q, p, negs, None, t, 0.0)
    assert relaxed < strict  # a negative margin lowers the loss of the same pairs
    with pytest.raises(ValueError, match=r"negatives \(n, K, d\)"):
        inter_image_info_nce(q, p, negs[:, 0])


@pytest.mark.parametrize("strategy", ["semihard", "hard", "random"])
def test_inter_image_sampling_respects_pseudo_labels(strategy):
    from reprzoo.losses import sample_inter_image_pairs

    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(60, 8, generator=g), dim=1)
    bank_labels = torch.arange(60) % 6
    query = torch.randn(7, 8, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0])
    pos, negs, valid = sample_inter_image_pairs(query, bank, bank_labels, labels, 8, strategy, pool_size=30, generator=g)
    assert pos.shape == (7,) and negs.shape == valid.shape == (7, 8)
    assert torch.equal(bank_labels[pos], labels) and valid.all()
    assert (bank_labels[negs] != labels[:, None]).all()
    assert all(len(set(row.tolist())) == 8 for row in negs)  # no repeated negative
    sim = F.normalize(query, dim=1) @ bank.T
    if strategy == "semihard":  # drawn from the 30 most similar entries
        pool = sim.topk(30, dim=1).indices
        assert all(set(negs[i].tolist()) <= set(pool[i].tolist()) for i in range(7))
    if strategy == "hard":  # the 8 most similar entries of another pseudo-label
        masked = sim.masked_fill(bank_labels[None] == labels[:, None], -2)
        assert torch.equal(negs.sort(1).values, masked.topk(8, dim=1).indices.sort(1).values)
    with pytest.raises(ValueError, match="num_negatives"):
        sample_inter_image_pairs(query, bank, bank_labels, labels, 31 if strategy == "semihard" else 61, strategy, 30)


def test_inter_image_sampling_flags_missing_negatives():
    from reprzoo.losses import sample_inter_image_pairs

    bank = F.normalize(torch.randn(10, 4), dim=1)
    bank_labels = torch.tensor([0] * 8 + [1] * 2)
    _, negs, valid = sample_inter_image_pairs(torch.randn(2, 4), bank, bank_labels, torch.tensor([0, 1]), 4, "semihard", 10)
    assert valid[0].sum() == 2 and valid[1].all()  # only 2 entries are not of pseudo-class 0
    assert (bank_labels[negs[0][valid[0]]] == 1).all()
    with pytest.raises(ValueError, match="strategy"):
        sample_inter_image_pairs(torch.randn(2, 4), bank, bank_labels, torch.tensor([0, 1]), 4, "easy")


# ----------------------------------------------------------------------------------------------- InterCLR
INTERCLR = dict(
    **TINY,
    proj_hidden_dim=32,
    proj_output_dim=8,
    queue_size=64,
    num_clusters=4,
    min_cluster_size=4,
    inter_negatives=8,
    semihard_pool=16,
)


def test_interclr_builds_its_memory_at_fit_start(tiny_trainer_kwargs):
    from reprzoo.lightning_modules import InterCLR

    model = InterCLR(**INTERCLR)
    assert model.hparams.intra_weight == 0.75 and model.hparams.inter_weight == 0.25 and model.hparams.inter_margin == -0.5
    with pytest.raises(RuntimeError, match="memory bank"):
        model.training_loss([torch.randn(4, 3, 16, 16)] * 2, indices=torch.arange(4))
    trainer = _fit_steps(model, tiny_trainer_kwargs)
    bank = model.memory.embeddings
    assert bank.shape == (64, 8) and torch.allclose(bank.norm(dim=1), torch.ones(64), atol=1e-5)
    counts = torch.bincount(model.cluster_labels, minlength=4)
    assert counts.sum() == 64 and (counts >= 4).all()
    assert {"train/intra_loss", "train/inter_loss"} <= trainer.callback_metrics.keys()
    assert not any(k.startswith(("memory.", "cluster_labels", "centroids")) for k in model.state_dict())
    with pytest.raises(ValueError, match="indices"):
        model.training_loss([torch.randn(4, 3, 16, 16)] * 2)


def test_interclr_memory_update_relabels_by_nearest_centroid():
    from reprzoo.components.memory import MemoryBank
    from reprzoo.lightning_modules import InterCLR

    model = InterCLR(**{**INTERCLR, "min_cluster_size": 1})
    model.memory = MemoryBank(6, 2, momentum=0.0)
    model.memory.embeddings.copy_(torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3))
    model.cluster_labels = torch.tensor([0, 0, 0, 1, 1, 1])
    model.centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    model.update_memory(torch.tensor([0, 4]), torch.tensor([[0.0, 3.0], [2.0, 0.1]]))
    assert torch.allclose(model.memory.embeddings[0], torch.tensor([0.0, 1.0]))  # replaced by the new key
    assert model.cluster_labels.tolist() == [1, 0, 0, 1, 0, 1]


def test_interclr_checks_its_sizes(tiny_trainer_kwargs):
    from reprzoo.lightning_modules import InterCLR

    with pytest.raises(ValueError, match="negative_sampling"):
        InterCLR(**{**INTERCLR, "negative_sampling": "easy"})
    with pytest.raises(ValueError, match="too few"):
        _fit_steps(InterCLR(**{**INTERCLR, "num_clusters": 40}), tiny_trainer_kwargs)


def test_interclr_warmup_trains_the_intra_loss_alone(tiny_trainer_kwargs):
    from reprzoo.lightning_modules import InterCLR

    model = InterCLR(**INTERCLR, inter_warmup_epochs=1)
    bank_before = None

    class Snapshot(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            nonlocal bank_before
            if bank_before is None:  # after the module's on_train_start built the memory
                bank_before = pl_module.memory.embeddings.clone()

    from reprzoo.datamodules import SyntheticImages

    data = SyntheticImages(
        num_classes=4, train_size=64, test_size=32, image_size=16, batch_size=16, augmentation_kwargs={"blur_prob": 0.0}
    )
    trainer = L.Trainer(**tiny_trainer_kwargs, callbacks=[Snapshot()])
    trainer.fit(model, datamodule=data)
    assert "train/inter_loss" not in trainer.callback_metrics  # epoch 0 is warmup
    assert not torch.equal(model.memory.embeddings, bank_before)  # the memory still followed the keys
