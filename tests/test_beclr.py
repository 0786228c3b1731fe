"""BECLR: the objective against loop-by-loop formulas, DyCE's clustered memory, OpTA against a hand-written
Sinkhorn, and the few-shot validation metrics."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from reprzoo.datamodules import Digits
from reprzoo.lightning_modules import BECLR
from reprzoo.lightning_modules.vision_ssl.beclr import DynamicClusteredMemory, mask_patches
from reprzoo.losses import alignment_loss, balanced_assignments, beclr_loss, opta, uniformity_loss
from reprzoo.losses.beclr import enhance_batch


def cos(a, b):
    return float(F.cosine_similarity(a, b, dim=0).detach())


def test_alignment_and_uniformity_match_loops():
    p, t = torch.randn(4, 6), torch.randn(4, 6)
    expected = -sum(cos(p[i], t[i]) for i in range(4)) / 4
    assert alignment_loss(p, t).item() == pytest.approx(expected, rel=1e-5)
    z1, z2, tau = torch.randn(5, 6), torch.randn(5, 6), 2.0
    z = torch.cat([z1, z2])
    terms = [math.exp(cos(z[i], z[j]) / tau) for i in range(10) for j in range(10) if j not in (i, (i + 5) % 10)]
    assert uniformity_loss(z1, z2, tau).item() == pytest.approx(math.log(sum(terms) / len(terms)), rel=1e-5)


def test_beclr_loss_on_enhanced_batches_follows_the_authors_rows():
    """The authors' enhancement (DyCE.get_top_kNN + BECLRLoss): each tensor gets its own memory's neighbours
    appended as detached rows, rows pair by index, so neighbour rows carry no gradient and a true pair keeps
    1 / (n (1 + k)) of the alignment."""
    n, k, d = 4, 2, 6
    p1, p2, z1, z2 = (torch.randn(n, d, requires_grad=True) for _ in range(4))
    t1, t2 = torch.randn(n, d), torch.randn(n, d)
    nb = {name: torch.randn(n, k, d, requires_grad=True) for name in ("p1", "p2", "t1", "t2", "z1", "z2")}
    enhanced = {name: enhance_batch(x, nb[name]) for name, x in zip(nb, (p1, p2, t1, t2, z1, z2))}
    assert enhanced["p1"].shape == (n * (1 + k), d)
    assert torch.equal(enhanced["p1"][n + 1], nb["p1"][0, 1].detach())  # sample-major: sample 0's k rows first
    loss = beclr_loss(*enhanced.values())

    def rows(x, name):  # the authors' order: the batch, then for each sample its k neighbours
        return [x[i] for i in range(n)] + [nb[name][i, j] for i in range(n) for j in range(k)]

    m = n * (1 + k)
    pos1 = -sum(cos(a, b) for a, b in zip(rows(p1, "p1"), rows(t2, "t2"))) / m
    pos2 = -sum(cos(a, b) for a, b in zip(rows(p2, "p2"), rows(t1, "t1"))) / m
    z = torch.stack(rows(z1, "z1") + rows(z2, "z2")).detach()
    terms = [math.exp(cos(z[i], z[j]) / 2.0) for i in range(2 * m) for j in range(2 * m) if j not in (i, (i + m) % (2 * m))]
    expected = (pos1 + pos2) / 2 + 0.1 * math.log(sum(terms) / len(terms))
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    loss.backward()
    assert all(x.grad is None for x in nb.values())  # no gradient flows into the neighbour rows
    # the predictions' gradient is the true pair's alignment alone, weighted 1 / (2 n (1 + k))
    p1_ref = p1.detach().clone().requires_grad_(True)
    (-F.cosine_similarity(p1_ref, t2, dim=1).sum() / (2 * m)).backward()
    assert torch.allclose(p1.grad, p1_ref.grad, atol=1e-6)
    assert z1.grad is not None and z1.grad.abs().sum() > 0  # the neighbour rows act as negatives of the batch rows

    plain = (alignment_loss(p1, t2) + alignment_loss(p2, t1)) / 2 + 0.1 * uniformity_loss(z1, z2)
    assert beclr_loss(p1, p2, t1, t2, z1, z2).item() == pytest.approx(plain.item(), rel=1e-6)
    assert enhance_batch(p1, None) is p1
    with pytest.raises(ValueError, match="targets must be"):
        alignment_loss(p1, t1[:, None])
    with pytest.raises(ValueError, match="neighbours must be"):
        enhance_batch(p1, nb["p1"][:2])
    with pytest.raises(ValueError, match="temperature"):
        uniformity_loss(z1, z2, 0.0)


def test_balanced_assignment_spreads_a_lopsided_batch():
    prototypes = torch.eye(4)
    embeddings = F.normalize(torch.tensor([1.0, 0.3, 0.2, 0.1]) + 0.05 * torch.randn(40, 4), dim=1)
    assert (embeddings @ prototypes.T).argmax(1).eq(0).all()  # nearest prototype: all in cluster 0
    counts = torch.bincount(balanced_assignments(embeddings, prototypes, epsilon=0.05, iterations=50), minlength=4)
    assert counts.min() >= 5, counts  # the equipartition spreads them


def hand_opta(protos, queries, eps, iters):
    cost = [[float(((p - q) ** 2).sum()) for q in queries] for p in protos]
    top = max(max(r) for r in cost)
    k = [[math.exp(-c / top / eps) for c in r] for r in cost]
    n, m = len(protos), len(queries)
    u, v = [1.0] * n, [1.0] * m
    for _ in range(iters):
        u = [1.0 / sum(k[i][j] * v[j] for j in range(m)) for i in range(n)]
        v = [(n / m) / sum(k[i][j] * u[i] for i in range(n)) for j in range(m)]
    plan = [[u[i] * k[i][j] * v[j] for j in range(m)] for i in range(n)]
    return torch.stack([sum(plan[i][j] * queries[j] for j in range(m)) / sum(plan[i]) for i in range(n)])


def test_opta_matches_a_hand_sinkhorn_and_moves_prototypes_to_the_queries():
    protos, queries = torch.randn(3, 4), torch.randn(9, 4)
    assert torch.allclose(opta(protos, queries, 0.1, 50), hand_opta(protos, queries, 0.1, 50), atol=1e-4)
    # a shifted query distribution: aligned prototypes land on the query clusters
    centres = 5 * torch.eye(3, 4)
    queries = (centres + 2.0).repeat_interleave(5, 0) + 0.1 * torch.randn(15, 4)
    aligned = opta(centres[None], queries[None], 0.05, 200)[0]
    assert torch.allclose(aligned, centres + 2.0, atol=0.2)
    with pytest.raises(ValueError, match="prototypes and queries"):
        opta(torch.randn(3, 4), torch.randn(5, 3))


def test_dyce_fills_clusters_and_returns_neighbours_from_the_nearest_cluster():
    memory = DynamicClusteredMemory(size=60, dim=3, num_clusters=3, topk=2)
    centres = torch.eye(3)
    for _ in range(3):
        memory.update(centres.repeat(10, 1) + 0.05 * torch.randn(30, 3))
        memory.update(centres.repeat(10, 1) + 0.05 * torch.randn(30, 3))
    assert memory.ready
    emb, labels = memory.queue.embeddings, memory.queue.labels
    for c in range(3):  # prototypes are their members' means
        assert torch.allclose(memory.prototypes[c], emb[labels == c].mean(0), atol=1e-5)
    assert len(set(labels[emb.argmax(1) == 0].tolist())) == 1  # one cluster per centre
    query = torch.tensor([[1.0, 0.02, 0.0]])
    nn = memory.neighbours(query)
    assert nn.shape == (1, 2, 3) and (nn[0].argmax(1) == 0).all()
    with pytest.raises(ValueError, match="num_clusters"):
        DynamicClusteredMemory(size=2, dim=3, num_clusters=3)


def test_mask_patches_zeroes_the_ratio_of_squares():
    x = torch.ones(2, 3, 16, 16)
    masked = mask_patches(x, 0.25, 4)
    zero_squares = (masked[:, 0].view(2, 4, 4, 4, 4).sum((2, 4)) == 0).sum((1, 2))
    assert zero_squares.tolist() == [4, 4] and torch.equal(mask_patches(x, 0.0, 4), x)


def test_beclr_enhances_after_memory_start_and_logs_fewshot_with_opta(tiny_trainer_kwargs):
    model = BECLR(
        backbone="resnet_tiny_cifar",
        num_classes=10,
        proj_output_dim=32,
        memory_size=64,
        num_clusters=4,
        topk=2,
        memory_start_epoch=1,
        mask_patch_size=4,
        fewshot_queries=2,
        fewshot_shots=[1],
        fewshot_episodes=20,
    )
    data = Digits(image_size=16, batch_size=16, augmentation_kwargs={"blur_prob": 0.0})
    calls = {}
    for name in ("memory", "prediction_memory", "projection_memory"):
        memory = getattr(model, name)
        memory.neighbours = lambda q, memory=memory, name=name: (
            calls.setdefault(name, []).append((model.current_epoch, q.requires_grad)) or type(memory).neighbours(memory, q)
        )
    trainer = L.Trainer(**{**tiny_trainer_kwargs, "max_epochs": 2, "limit_train_batches": 3, "limit_val_batches": 4})
    trainer.fit(model, datamodule=data)
    # the batch enhancement runs from memory_start_epoch, once the memories are full, on all three tensors, and
    # queries each memory without gradient
    assert set(calls) == {"memory", "prediction_memory", "projection_memory"}
    assert all(set(c) == {(1, False)} for c in calls.values()), calls
    assert all(m.ready for m in (model.memory, model.prediction_memory, model.projection_memory))  # 2 x 3 x 32 >= 64
    metrics = trainer.callback_metrics
    for key in ("val/fewshot_5way_1shot", "val/fewshot_5way_1shot_opta", "val/fewshot_5way_1shot_ci95"):
        assert 0.0 <= metrics[key] <= 1.0
    assert all(t is not s for t, s in zip(model.teacher_backbone.parameters(), model.backbone.parameters()))
    assert not any(p.requires_grad for p in model.teacher_projector.parameters())
