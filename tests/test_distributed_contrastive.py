"""The contrastive losses and the MoCo queue under 2 gloo CPU processes, against one process on the whole batch.

Each rank holds half of a fixed global batch (``ddp_scripts/contrastive_losses.py``, one launch for every check)
and computes the loss of its own anchors against keys gathered from both ranks. With equally many anchors per
rank, the mean of the two ranks' losses is the single-process loss of the whole batch. The gradient that reaches a
rank's embeddings is that of the *sum* of the ranks' losses (``gather``'s backward sums over ranks), i.e.
d(L_0 + L_1)/dz = world_size x dL/dz: each rank holds 2x the matching slice of the single-process gradient, and
DDP's averaging of parameter gradients over ranks divides the factor out again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from test_distributed import SCRIPTS, dist_env, free_port, load_script, run_processes


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("contrastive_losses")
    port = free_port()
    commands = [
        dict(
            args=[sys.executable, str(SCRIPTS / "contrastive_losses.py"), str(out)],
            env=dist_env(port, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)),
        )
        for r in range(2)
    ]
    codes, output = run_processes(commands, Path(out) / "logs")
    assert codes == [0, 0], output[-6000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)], load_script("contrastive_losses")


@pytest.mark.ddp
@pytest.mark.parametrize(
    "loss_name", ["nt_xent", "info_nce_in_batch", "info_nce_queue", "supervised_contrastive", "guided_nt_xent"]
)
def test_two_ranks_give_the_single_process_loss_and_gradient(records, loss_name):
    recs, script = records
    data = script.global_inputs()
    z1 = data["z1"].clone().requires_grad_(True)
    z2 = data["z2"].clone().requires_grad_(True)
    loss = script.LOSSES[loss_name](z1, z2, data)
    loss.backward()
    g1, g2 = script.grad(z1), script.grad(z2)
    n, w = script.N_PER_RANK, script.WORLD
    mean_over_ranks = sum(rec[loss_name]["loss"] for rec in recs) / w
    torch.testing.assert_close(mean_over_ranks, loss.detach(), rtol=1e-12, atol=1e-12)
    for r, rec in enumerate(recs):
        rows = slice(r * n, (r + 1) * n)
        torch.testing.assert_close(rec[loss_name]["grad_z1"], w * g1[rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rec[loss_name]["grad_z2"], w * g2[rows], rtol=1e-10, atol=1e-12)
    assert g1.abs().min() > 0  # every anchor's embedding gets gradient (a vacuous comparison of zeros is ruled out)


@pytest.mark.ddp
def test_two_ranks_enqueue_the_single_process_queue(records):
    from reprzoo.components.memory import MemoryQueue

    recs, script = records
    data = script.global_inputs()
    queue = MemoryQueue(script.QUEUE_SIZE, script.QUEUE_DIM)
    for keys, labels in zip(data["keys"], data["key_labels"]):
        queue.enqueue(keys, labels)
    assert int(queue.filled) == script.QUEUE_SIZE  # wrapped: every row was written by the enqueues
    for rec in recs:
        assert rec["queue"].keys() == queue.state_dict().keys()
        for key, value in queue.state_dict().items():
            torch.testing.assert_close(rec["queue"][key], value.to(rec["queue"][key].dtype), rtol=1e-6, atol=1e-7, msg=key)
    for key in recs[0]["queue"]:
        assert torch.equal(recs[0]["queue"][key], recs[1]["queue"][key]), key
