"""One rank of the 2-process (gloo) checks of ``reprzoo.distributed`` and the synced metrics.

Run once per rank with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1`` and ``MASTER_PORT`` set; writes
``rank{RANK}.pt`` into the folder given as the only argument. ``tests/test_distributed.py`` launches it and
compares what each rank computed with the single-process values on the full batch.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from reprzoo.distributed import all_reduce_mean, gather, rank, world_size
from reprzoo.metrics import EffectiveRank, EmbeddingStd, KNNAccuracy

# The data every rank can regenerate: a "global batch" of N rows, of which rank r holds rows [r*n, (r+1)*n).
N_PER_RANK, DIM, TEMPERATURE = 6, 5, 0.2


def global_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    w = 2
    return {
        "a": torch.randn(w * N_PER_RANK, DIM, generator=g, dtype=torch.float64),
        "b": torch.randn(w * N_PER_RANK, DIM, generator=g, dtype=torch.float64),
        "x": torch.randn(w * N_PER_RANK, 7, generator=g, dtype=torch.float64),
        "reduce": torch.randn(3, 4, generator=g, dtype=torch.float64),
        # kNN: a bank and queries of 3 noisy clusters, some labels -1 (ignored)
        "knn_bank": torch.randn(101, 8, generator=g),
        "knn_query": torch.randn(37, 8, generator=g),
        "knn_bank_labels": torch.randint(0, 3, (101,), generator=g),
        "knn_query_labels": torch.randint(0, 3, (37,), generator=g),
    }


def knn_inputs(data: dict[str, torch.Tensor]):
    centres = torch.tensor([[3.0] + [0.0] * 7, [0.0, 3.0] + [0.0] * 6, [0.0, 0.0, 3.0] + [0.0] * 5])
    bank = data["knn_bank"] * 1.5 + centres[data["knn_bank_labels"]]
    query = data["knn_query"] * 1.5 + centres[data["knn_query_labels"]]
    bank_labels, query_labels = data["knn_bank_labels"].clone(), data["knn_query_labels"].clone()
    bank_labels[::17] = -1
    query_labels[::11] = -1
    return bank, bank_labels, query, query_labels


def info_nce_rows(a_rows: torch.Tensor, b_all: torch.Tensor, row_offset: int) -> torch.Tensor:
    """Mean InfoNCE of the query rows ``a_rows`` against every key in ``b_all``; row i's positive is key
    ``row_offset + i``."""
    logits = F.normalize(a_rows, dim=1) @ F.normalize(b_all, dim=1).T / TEMPERATURE
    targets = torch.arange(row_offset, row_offset + len(a_rows))
    return F.cross_entropy(logits, targets)


def shard(t: torch.Tensor, r: int, w: int) -> torch.Tensor:
    """Rank r's contiguous shard (uneven when len(t) is not a multiple of w)."""
    bounds = [len(t) * i // w for i in range(w + 1)]
    return t[bounds[r] : bounds[r + 1]]


class _GatherWithoutSum(torch.autograd.Function):
    """The lightly#1528 bug, for a negative control: backward returns this rank's slice of the local gradient only."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        return grads[dist.get_rank()]


def main(out_dir: str) -> None:
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=120))
    r, w = rank(), world_size()
    assert w == 2, w
    data = global_inputs()
    n = N_PER_RANK
    sl = slice(r * n, (r + 1) * n)
    result: dict[str, object] = {"rank": r, "world_size": w}

    # 1. forward of gather is the concatenation of every rank's rows
    a = data["a"][sl].clone().requires_grad_(True)
    b = data["b"][sl].clone().requires_grad_(True)
    a_all, b_all = gather(a), gather(b)
    result["gathered_a"] = a_all.detach().clone()

    # 2a. local-rows loss against gathered keys (what a contrastive method computes on each rank):
    #     d(sum over ranks of L_r)/d(local inputs)
    loss_r = info_nce_rows(a_all[r * n : (r + 1) * n], b_all, r * n)
    loss_r.backward()
    result["local_rows_loss"] = loss_r.detach()
    result["local_rows_grad_a"], result["local_rows_grad_b"] = a.grad.clone(), b.grad.clone()

    # 2b. the same global loss computed identically on every rank
    a2 = data["a"][sl].clone().requires_grad_(True)
    b2 = data["b"][sl].clone().requires_grad_(True)
    full = info_nce_rows(gather(a2), gather(b2), 0)
    full.backward()
    result["full_loss"] = full.detach()
    result["full_grad_a"], result["full_grad_b"] = a2.grad.clone(), b2.grad.clone()

    # 2c. end to end under DDP: a linear encoder, embeddings gathered, local-rows loss; DDP averages the
    #     parameter gradients, which must equal the single-process gradient of the full-batch loss
    torch.manual_seed(0)
    encoder = nn.Linear(7, DIM).double()
    ddp = nn.parallel.DistributedDataParallel(encoder)
    z = ddp(data["x"][sl])
    z_all = gather(z)
    loss_ddp = info_nce_rows(z_all[r * n : (r + 1) * n], z_all.flip(0), r * n)
    loss_ddp.backward()
    result["ddp_weight_grad"] = encoder.weight.grad.clone()
    result["ddp_bias_grad"] = encoder.bias.grad.clone()

    # 2d. negative control: a gather whose backward does not sum over ranks gives another gradient
    #     (on the keys b: every rank's loss depends on them, while a rank's queries a enter only its own loss)
    b3 = data["b"][sl].clone().requires_grad_(True)
    b3_all = torch.cat(_GatherWithoutSum.apply(b3))
    info_nce_rows(data["a"][sl], b3_all, r * n).backward()
    result["nosum_grad_b"] = b3.grad.clone()

    # 3. all_reduce_mean: the mean over ranks, detached, input untouched
    x = (data["reduce"] * (r + 1)).requires_grad_(True)
    before = x.detach().clone()
    mean = all_reduce_mean(x)
    result["reduce_mean"] = mean.clone()
    result["reduce_requires_grad"] = mean.requires_grad
    result["reduce_input_unchanged"] = bool(torch.equal(x.detach(), before))

    # 4. kNN and collapse metrics on uneven shards, updated in two chunks: compute() syncs over ranks
    bank, bank_labels, query, query_labels = knn_inputs(data)
    knn, knn_local = KNNAccuracy(3, k=7, temperature=0.1), KNNAccuracy(3, k=7, temperature=0.1, sync_on_compute=False)
    std, erank = EmbeddingStd(), EffectiveRank()
    for metric in (knn, knn_local):
        bank_r, bank_labels_r = shard(bank, r, w), shard(bank_labels, r, w)
        query_r, query_labels_r = shard(query, r, w), shard(query_labels, r, w)
        half_b, half_q = len(bank_r) // 2, len(query_r) // 2
        metric.update(bank_r[:half_b], bank_labels_r[:half_b], bank=True)
        metric.update(query_r[:half_q], query_labels_r[:half_q])
        metric.update(bank_r[half_b:], bank_labels_r[half_b:], bank=True)
        metric.update(query_r[half_q:], query_labels_r[half_q:])
    for metric in (std, erank):
        metric.update(shard(query, r, w))
    try:  # a failure here is reported in the record, so that the gather checks still get their results
        result["knn_synced"] = knn.compute()
    except Exception as err:  # noqa: BLE001 (every rank raises the same way: no collective is left pending)
        result["knn_error"] = f"{type(err).__name__}: {err}"
    result["knn_local"] = knn_local.compute()
    result["embedding_std"] = std.compute()
    result["effective_rank"] = erank.compute()

    torch.save(result, os.path.join(out_dir, f"rank{r}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
