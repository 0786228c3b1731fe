"""One rank of the 2-process (gloo) checks of the contrastive losses and the MemoryQueue.

Run once per rank with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1`` and ``MASTER_PORT`` set; writes
``rank{RANK}.pt`` into the folder given as the only argument. Rank r holds rows [r*n, (r+1)*n) of a fixed global
batch; ``tests/test_distributed_contrastive.py`` compares each rank's loss and gradients with one process on the
whole batch.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from reprzoo.components.memory import MemoryQueue
from reprzoo.distributed import rank, world_size
from reprzoo.losses import guided_nt_xent, info_nce, nt_xent, supervised_contrastive

N_PER_RANK, DIM, WORLD = 4, 6, 2
QUEUE_SIZE, QUEUE_DIM, ENQUEUES = 10, 3, 3


def global_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    n = WORLD * N_PER_RANK

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return {
        "z1": randn(n, DIM),
        "z2": randn(n, DIM),
        "queue": randn(9, DIM),
        # every label occurs at least twice in the global batch, so every anchor has a positive on both ranks
        "labels": torch.tensor([0, 1, 2, 0, 1, 2, 3, 3]),
        "pseudo_labels": torch.tensor([0, 1, 0, -1, 2, 1, 2, 3]),
        "keys": [randn(WORLD * 2, QUEUE_DIM) for _ in range(ENQUEUES)],
        "key_labels": [torch.arange(WORLD * 2) + 10 * i for i in range(ENQUEUES)],
    }


# name -> (function of the (z1, z2) rows and the labels of one rank or of the whole batch)
LOSSES = {
    "nt_xent": lambda z1, z2, d: nt_xent(z1, z2, temperature=0.5),
    "info_nce_in_batch": lambda z1, z2, d: info_nce(z1, z2, None, temperature=0.2),
    "info_nce_queue": lambda z1, z2, d: info_nce(z1, z2, d["queue"], temperature=0.2),
    "supervised_contrastive": lambda z1, z2, d: supervised_contrastive(z1, d["labels"], temperature=0.1),
    "guided_nt_xent": lambda z1, z2, d: guided_nt_xent(z1, z2, d["pseudo_labels"], temperature=0.5),
}


def rows(data: dict, sl: slice) -> dict:
    return {**data, "labels": data["labels"][sl], "pseudo_labels": data["pseudo_labels"][sl]}


def grad(t: torch.Tensor) -> torch.Tensor:
    """The gradient of ``t`` (zeros where the loss does not use it: SupCon has one view)."""
    return t.grad.clone() if t.grad is not None else torch.zeros_like(t)


def main(out_dir: str) -> None:
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=120))
    r, w = rank(), world_size()
    assert w == WORLD, w
    data = global_inputs()
    sl = slice(r * N_PER_RANK, (r + 1) * N_PER_RANK)
    result: dict[str, object] = {"rank": r}
    for name, fn in LOSSES.items():
        z1 = data["z1"][sl].clone().requires_grad_(True)
        z2 = data["z2"][sl].clone().requires_grad_(True)
        loss = fn(z1, z2, rows(data, sl))
        loss.backward()
        result[name] = {"loss": loss.detach(), "grad_z1": grad(z1), "grad_z2": grad(z2)}
    queue = MemoryQueue(QUEUE_SIZE, QUEUE_DIM)
    half = slice(r * 2, (r + 1) * 2)
    for keys, labels in zip(data["keys"], data["key_labels"]):
        queue.enqueue(keys[half], labels[half])
    result["queue"] = {k: v.clone() for k, v in queue.state_dict().items()}
    torch.save(result, os.path.join(out_dir, f"rank{r}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
