"""Shared contrastive pieces against loop-by-loop computations of the papers' formulas."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reprzoo.components.memory import MemoryBank, MemoryQueue
from reprzoo.losses import info_nce, nt_xent, sinkhorn, supervised_contrastive


def test_nt_xent_matches_simclr_equation_1():
    z1, z2, t = torch.randn(5, 8), torch.randn(5, 8), 0.5
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # views 2k and 2k+1 of the paper are rows k and k+n here
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        j = (i + 5) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
    assert torch.allclose(nt_xent(z1, z2, t), torch.tensor(total / n2), atol=1e-5)


def test_info_nce_with_queue_and_in_batch():
    q, k, queue, t = torch.randn(4, 6), torch.randn(4, 6), torch.randn(7, 6), 0.2
    qn, kn, mn = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    expected = 0.0
    for i in range(4):
        pos = math.exp(float(qn[i] @ kn[i]) / t)
        neg = sum(math.exp(float(qn[i] @ mn[j]) / t) for j in range(7))
        expected += -math.log(pos / (pos + neg))
    assert torch.allclose(info_nce(q, k, queue, t), torch.tensor(expected / 4), atol=1e-5)
    in_batch = 0.0
    for i in range(4):
        in_batch += -math.log(math.exp(float(qn[i] @ kn[i]) / t) / sum(math.exp(float(qn[i] @ kn[j]) / t) for j in range(4)))
    assert torch.allclose(info_nce(q, k, None, t), torch.tensor(in_batch / 4), atol=1e-5)


def test_supervised_contrastive_matches_khosla_l_out():
    z, y, t = torch.randn(6, 5), torch.tensor([0, 1, 0, 2, 1, 0]), 0.1
    zn = F.normalize(z, dim=1)
    losses = []
    for i in range(6):
        pos = [p for p in range(6) if p != i and y[p] == y[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(zn[i] @ zn[a]) / t) for a in range(6) if a != i)
        losses.append(-sum(math.log(math.exp(float(zn[i] @ zn[p]) / t) / denom) for p in pos) / len(pos))
    assert torch.allclose(supervised_contrastive(z, y, t), torch.tensor(sum(losses) / len(losses)), atol=1e-4)


def test_sinkhorn_is_doubly_stochastic_and_sharpens():
    scores = torch.randn(2, 5, 5)
    p = sinkhorn(scores, epsilon=0.5, iterations=200)
    assert torch.allclose(p.sum(-1), torch.ones(2, 5), atol=1e-4) and torch.allclose(p.sum(-2), torch.ones(2, 5), atol=1e-4)
    perm = torch.eye(5)[torch.randperm(5)]
    hard = sinkhorn(perm * 10, epsilon=0.05, iterations=50)
    assert torch.allclose(hard, perm, atol=1e-3)
    rect = sinkhorn(torch.randn(6, 3), iterations=200)  # equipartition: each column gets n/m
    assert torch.allclose(rect.sum(0), torch.full((3,), 2.0), atol=1e-4)


def test_memory_queue_is_fifo_and_wraps():
    queue = MemoryQueue(size=5, dim=3)
    assert queue.valid().shape[0] == 0
    first = torch.eye(3)
    queue.enqueue(first, torch.tensor([0, 1, 2]))
    assert torch.allclose(queue.valid(), first) and queue.labels[:3].tolist() == [0, 1, 2]
    queue.enqueue(-torch.eye(3))  # wraps: rows 3, 4, then 0
    assert int(queue.filled) == 5 and int(queue.pointer) == 1
    assert torch.allclose(queue.embeddings[0], -first[2]) and torch.allclose(queue.embeddings[1], first[1])


def test_memory_bank_momentum_update():
    bank = MemoryBank(4, 2, momentum=0.5)
    bank.embeddings.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]]))
    bank.update(torch.tensor([0]), torch.tensor([[0.0, 3.0]]))
    assert torch.allclose(bank.embeddings[0], F.normalize(torch.tensor([0.5, 0.5]), dim=0))
