"""Scale: DDP on CPU with gloo, checked against one process.

* ``reprzoo.distributed``: ``gather`` (forward, and a backward that sums gradients over ranks) and
  ``all_reduce_mean`` with 2 processes; ``KNNAccuracy`` and the collapse metrics synced over uneven shards.
* ``Trainer(strategy="ddp", devices=2)`` gives the loss trajectory, weights and validation metrics of one process
  with the doubled batch (SimSiam, DirectPred; batch norm synced), and differs without synced batch norm.
* ``torchrun --nnodes 2`` on loopback runs ``reprzoo fit`` to the end; only rank zero writes the run folder.
* ``precision="bf16-mixed"`` and ``channels_last=True`` train SimSiam, BYOL and DirectPred on CPU.

Every process binds and connects to 127.0.0.1 only, on ports picked free per test (safe under pytest-xdist), and
is killed with its process group when it runs past ``TIMEOUT`` so that a hang fails instead of blocking.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "ddp_scripts"
TIMEOUT = 240  # seconds for any multi-process launch
GLOO_STARTUP_ABORT = "terminate called without an active exception"
GRACE = 20  # seconds the other processes get once one has failed


# ----------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dist_env(port: int, **extra: str) -> dict[str, str]:
    """This environment without any launcher or cluster variables, plus loopback rendezvous settings."""
    drop = (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "NODE_RANK",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "PL_GLOBAL_SEED",
        "PL_TRAINER_",
        "TORCHELASTIC_",
        "SLURM_",
        "OMPI_",
        "PMI_",
        "LSB_",
    )
    env = {k: v for k, v in os.environ.items() if not (k in drop or k.startswith(drop))}
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",  # gloo's own connections on the loopback interface too
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        REPRZOO_DEBUG="1",
        **extra,
    )
    return env


def run_processes(commands: list[dict], log_dir: Path, timeout: float = TIMEOUT) -> tuple[list[int | None], str]:
    """Start every ``dict(args=..., env=..., cwd=...)`` at once, each in its own process group; wait for all of
    them. A group still running after ``timeout`` (or ``GRACE`` seconds after another process failed) is killed.
    Returns the exit codes (``None`` for a killed process) and the combined output.

    One launch at a time across the pytest-xdist workers of a run (a file lock): two 2-process jobs on the 2-core
    machine oversubscribe it, and a port picked by ``free_port`` before another job's launch could be taken by it
    (a gloo rank that reaches the wrong peer aborts). Under the lock the rendezvous port is picked afresh."""
    from filelock import FileLock

    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    with FileLock(str(Path(tempfile.gettempdir()) / f"reprzoo-tests-launch-{run_id}.lock")):
        return _run_processes(_with_fresh_port(commands), log_dir, timeout)


def _with_fresh_port(commands: list[dict]) -> list[dict]:
    old = next((c["env"]["MASTER_PORT"] for c in commands if "MASTER_PORT" in (c.get("env") or {})), None)
    if old is None:
        return commands
    new = str(free_port())
    return [
        {
            **c,
            "args": [new if a == old else a for a in c["args"]],
            "env": {k: (new if k == "MASTER_PORT" else v) for k, v in (c.get("env") or {}).items()},
        }
        for c in commands
    ]


def _run_processes(commands: list[dict], log_dir: Path, timeout: float) -> tuple[list[int | None], str]:
    log_dir.mkdir(parents=True, exist_ok=True)
    procs, logs = [], []
    for i, cmd in enumerate(commands):
        log = log_dir / f"proc{i}.log"
        with open(log, "wb") as out:
            procs.append(
                subprocess.Popen(
                    cmd["args"],
                    env=cmd["env"],
                    cwd=cmd.get("cwd", ROOT),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        logs.append(log)
    deadline = time.monotonic() + timeout
    killed: set[int] = set()
    while any(p.poll() is None for p in procs):
        failed = any(p.returncode not in (None, 0) for p in procs)
        if time.monotonic() > deadline:
            break
        if failed:
            deadline = min(deadline, time.monotonic() + GRACE)
        time.sleep(0.2)
    for i, p in enumerate(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)  # the process group this function created: the launcher and its workers
            p.wait()
            killed.add(i)
    output = "\n".join(
        f"===== process {i}: {' '.join(map(str, commands[i]['args']))}\n{log.read_text(errors='replace')}"
        for i, log in enumerate(logs)
    )
    return [None if i in killed else p.returncode for i, p in enumerate(procs)], output


def run_once(name: str, tmp_path_factory, produce) -> Path:
    """``produce(folder)`` once per test session, also across pytest-xdist workers (which would otherwise each run
    a module-scoped fixture): the first worker produces under a lock, the others wait and read its folder."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if uid is None:
        out = tmp_path_factory.mktemp(name)
        produce(out)
        return out
    root = tmp_path_factory.getbasetemp().parent / f"shared-{uid}"  # the workers' common parent folder
    root.mkdir(exist_ok=True)
    out = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (out / "DONE").exists():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                produce(out)
                (out / "DONE").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


def save_status(out: Path, codes: list[int | None], output: str) -> None:
    (out / "status.json").write_text(json.dumps({"codes": codes, "output": output}))


def load_status(out: Path) -> tuple[list[int | None], str]:
    status = json.loads((out / "status.json").read_text())
    return status["codes"], status["output"]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"ddp_scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------- 1. primitives
def test_gather_and_all_reduce_mean_are_identities_outside_distributed():
    from reprzoo.distributed import all_reduce_mean, gather, rank, world_size

    x = torch.randn(3, 2, requires_grad=True)
    assert gather(x) is x
    assert all_reduce_mean(x) is x
    assert (rank(), world_size()) == (0, 1)


@pytest.fixture(scope="module")
def primitives(tmp_path_factory):
    """``ddp_scripts/primitives.py`` on 2 gloo ranks; returns the records of rank 0 and 1 and the script module."""

    def produce(out: Path) -> None:
        port = free_port()
        commands = [
            dict(
                args=[sys.executable, str(SCRIPTS / "primitives.py"), str(out)],
                env=dist_env(port, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)),
            )
            for r in range(2)
        ]
        save_status(out, *run_processes(commands, out / "logs"))

    out = run_once("primitives", tmp_path_factory, produce)
    codes, output = load_status(out)
    assert codes == [0, 0], output[-6000:]
    records = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return records, load_script("primitives")


@pytest.mark.ddp
def test_gather_forward_concatenates_ranks_in_order(primitives):
    records, script = primitives
    data = script.global_inputs()
    for rec in records:
        torch.testing.assert_close(rec["gathered_a"], data["a"], rtol=0, atol=0)


def _single_process_contrastive_grads(script):
    """Gradients of the full-batch InfoNCE (mean over all rows) on one process."""
    data = script.global_inputs()
    a = data["a"].clone().requires_grad_(True)
    b = data["b"].clone().requires_grad_(True)
    loss = script.info_nce_rows(a, b, 0)
    loss.backward()
    return loss.detach(), a.grad, b.grad


@pytest.mark.ddp
def test_gather_backward_sums_gradients_over_ranks(primitives):
    """The gradient of the global loss w.r.t. local inputs is the single-process gradient on the full batch.

    With gather's backward summing over ranks, each rank holds d(sum_r L_r)/d(x_local), i.e. world_size x the
    gradient of the mean loss; DDP divides by world_size when it averages parameter gradients.
    """
    records, script = primitives
    n, w = script.N_PER_RANK, 2
    loss, grad_a, grad_b = _single_process_contrastive_grads(script)
    assert grad_b.abs().min() > 0  # every key gets gradient from every rank's queries
    for r, rec in enumerate(records):
        rows = slice(r * n, (r + 1) * n)
        # each rank's loss over its own query rows against all keys; the mean over ranks is the full loss
        torch.testing.assert_close(rec["local_rows_grad_a"], w * grad_a[rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rec["local_rows_grad_b"], w * grad_b[rows], rtol=1e-10, atol=1e-12)
        # the same full-batch loss computed on every rank
        torch.testing.assert_close(rec["full_loss"], loss, rtol=1e-12, atol=0)
        torch.testing.assert_close(rec["full_grad_a"], w * grad_a[rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rec["full_grad_b"], w * grad_b[rows], rtol=1e-10, atol=1e-12)
    mean_local = sum(float(rec["local_rows_loss"]) for rec in records) / w
    assert mean_local == pytest.approx(float(loss), rel=1e-12)


@pytest.mark.ddp
def test_gather_without_the_sum_would_be_caught(primitives):
    """Negative control (lightly#1528): a backward returning only this rank's slice of the local gradient differs."""
    records, script = primitives
    n = script.N_PER_RANK
    _, _, grad_b = _single_process_contrastive_grads(script)
    for r, rec in enumerate(records):
        assert not torch.allclose(rec["nosum_grad_b"], 2 * grad_b[r * n : (r + 1) * n], rtol=1e-3, atol=1e-6)


@pytest.mark.ddp
def test_gather_under_ddp_gives_the_single_process_parameter_gradient(primitives):
    """Linear encoder in DistributedDataParallel, embeddings gathered, each rank's loss on its rows: the averaged
    parameter gradient equals the gradient of the full-batch loss in one process."""
    records, script = primitives
    data = script.global_inputs()
    torch.manual_seed(0)
    encoder = torch.nn.Linear(7, script.DIM).double()
    z = encoder(data["x"])
    script.info_nce_rows(z, z.flip(0), 0).backward()
    for rec in records:
        torch.testing.assert_close(rec["ddp_weight_grad"], encoder.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rec["ddp_bias_grad"], encoder.bias.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.ddp
def test_all_reduce_mean_averages_over_ranks_without_gradient(primitives):
    records, script = primitives
    expected = script.global_inputs()["reduce"] * 1.5  # mean of x * 1 and x * 2
    for rec in records:
        torch.testing.assert_close(rec["reduce_mean"], expected, rtol=1e-12, atol=0)
        assert rec["reduce_requires_grad"] is False
        assert rec["reduce_input_unchanged"] is True


# ----------------------------------------------------------------------------------------------- 3. synced metrics
@pytest.mark.ddp
def test_knn_accuracy_is_computed_over_all_ranks(primitives):
    """Bank and queries sharded unevenly over 2 ranks (and updated in chunks): compute() equals one process on the
    union; the unsynced local value is different, so the sync matters."""
    from reprzoo.metrics import KNNAccuracy

    records, script = primitives
    bank, bank_labels, query, query_labels = script.knn_inputs(script.global_inputs())
    single = KNNAccuracy(3, k=7, temperature=0.1)
    single.update(bank, bank_labels, bank=True)
    single.update(query, query_labels)
    expected = float(single.compute())
    for rec in records:
        if "knn_error" in rec:
            pytest.fail(rec["knn_error"])
        assert float(rec["knn_synced"]) == pytest.approx(expected, abs=1e-7)
    assert any(float(rec["knn_local"]) != pytest.approx(expected, abs=1e-7) for rec in records)


@pytest.mark.ddp
def test_collapse_metrics_are_computed_over_all_ranks(primitives):
    from reprzoo.metrics import effective_rank, normalized_std

    records, script = primitives
    _, _, query, _ = script.knn_inputs(script.global_inputs())
    for rec in records:
        assert float(rec["embedding_std"]) == pytest.approx(float(normalized_std(query)), rel=1e-5)
        assert float(rec["effective_rank"]) == pytest.approx(float(effective_rank(query)), rel=1e-5)


# ----------------------------------------------------------------------------------------------- 2. DDP == 1 process
RUNS = ("simsiam", "directpred")


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    """The 2-process DDP runs (Lightning's own launcher) and the 1-process references with the doubled batch."""
    script = load_script("fit_equivalence")

    def produce(out: Path) -> None:
        port = free_port()
        runs = ",".join([*RUNS, "simsiam_nosync"])
        command = dict(
            args=[
                sys.executable,
                str(SCRIPTS / "fit_equivalence.py"),
                str(out / "ddp"),
                "--devices",
                "2",
                "--batch-size",
                str(script.GLOBAL_BATCH // 2),
                "--runs",
                runs,
            ],
            env=dist_env(port),
        )
        save_status(out, *run_processes([command], out / "logs"))
        for run in RUNS:
            trainer, model, data = script.fit(run, 1, script.GLOBAL_BATCH, str(out / "single"))
            script.validate(run, trainer, model, data, str(out / "single"))

    out = run_once("equivalence", tmp_path_factory, produce)
    codes, output = load_status(out)
    reference = {
        run: {
            "train": torch.load(out / "single" / f"{run}_rank0.pt", weights_only=False),
            "val": torch.load(out / "single" / f"{run}_val_rank0.pt", weights_only=False),
        }
        for run in RUNS
    }
    return {"dir": out / "ddp", "codes": codes, "output": output, "reference": reference}


def _ddp_records(equivalence, name: str) -> list[dict]:
    paths = [equivalence["dir"] / f"{name}_rank{r}.pt" for r in range(2)]
    if not all(p.exists() for p in paths):
        pytest.fail(f"exit codes {equivalence['codes']}, no {paths}:\n{equivalence['output'][-6000:]}")
    return [torch.load(p, weights_only=False) for p in paths]


@pytest.mark.ddp
@pytest.mark.parametrize("run", RUNS)
def test_ddp_loss_trajectory_matches_one_process(equivalence, run):
    """2 ranks x batch 16 (batch norm synced) == 1 process x batch 32: same global batch each step, same
    scaled LR, same synced ``train/loss`` per step, same final weights and buffers on both replicas (float64)."""
    ref = equivalence["reference"][run]["train"]
    records = _ddp_records(equivalence, run)
    assert ref["world_size"] == 1 and ref["global_batch"] == 32
    for rec in records:
        assert rec["world_size"] == 2 and rec["global_batch"] == 32
        assert rec["sync_bn_layers"] > 0
        assert rec["effective_lr"] == pytest.approx(ref["effective_lr"])
        assert len(rec["lrs"]) == len(ref["lrs"])
        for step_lrs, ref_lrs in zip(rec["lrs"], ref["lrs"]):  # every param group, every step
            assert step_lrs == pytest.approx(ref_lrs)
        assert len(rec["losses"]) == len(ref["losses"]) == 4
        assert rec["losses"] == pytest.approx(ref["losses"], rel=1e-6, abs=1e-7)
        assert rec["state_dict"].keys() == ref["state_dict"].keys()
        for key, value in ref["state_dict"].items():
            torch.testing.assert_close(rec["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    for key, value in records[0]["state_dict"].items():  # the replicas agree exactly
        assert torch.equal(value, records[1]["state_dict"][key]), key
    assert ref["losses"][-1] != pytest.approx(ref["losses"][0], abs=1e-3)  # it trained


@pytest.mark.ddp
def test_ddp_without_synced_batch_norm_differs(equivalence):
    """Negative control: per-rank batch statistics (plain BatchNorm under DDP) change SimSiam's trajectory, so the
    equivalence above depends on synced batch norm and the test can tell."""
    ref = equivalence["reference"]["simsiam"]["train"]
    rec = _ddp_records(equivalence, "simsiam_nosync")[0]
    assert rec["sync_bn_layers"] == 0
    assert max(abs(a - b) for a, b in zip(rec["losses"], ref["losses"])) > 1e-3


@pytest.mark.ddp
@pytest.mark.parametrize("run", RUNS)
def test_ddp_validation_metrics_match_one_process(equivalence, run):
    """kNN (bank and queries sharded over ranks), probe, feature std and effective rank: synced values equal the
    single-process values on the whole bank and query set."""
    ref = equivalence["reference"][run]["val"]["val"]
    records = _ddp_records(equivalence, f"{run}_val")
    assert {"val/knn_top1", "val/probe_top1", "val/feature_std", "val/effective_rank"} <= ref.keys()
    for rec in records:
        assert rec["val"].keys() == ref.keys()
        for key, value in ref.items():
            assert rec["val"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


# ----------------------------------------------------------------------------------------------- 4. two nodes
def torchrun_fit_commands(
    tmp_path: Path, shared: Path, extra: list[str], node_extra: dict[int, list[str]] | None = None, workdir: str = "node"
) -> list[dict]:
    """Two torchrun agents on loopback (one CPU process each) running ``reprzoo fit`` on the digits recipe."""
    port = free_port()
    torchrun = Path(sys.executable).with_name("torchrun")
    commands = []
    for node in range(2):
        cwd = tmp_path / f"{workdir}{node}"
        cwd.mkdir(exist_ok=True)
        commands.append(
            dict(
                args=[
                    str(torchrun),
                    "--nnodes",
                    "2",
                    "--nproc-per-node",
                    "1",
                    "--node-rank",
                    str(node),
                    "--master-addr",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                    "-m",
                    "reprzoo.cli",
                    "fit",
                    "--config",
                    "digits/simsiam",
                    "--trainer.strategy",
                    "ddp",
                    "--trainer.num_nodes",
                    "2",
                    "--trainer.devices",
                    "1",
                    "--trainer.accelerator",
                    "cpu",
                    "--trainer.limit_val_batches",
                    "2",
                    "--trainer.check_val_every_n_epoch",
                    "1",
                    "--trainer.num_sanity_val_steps",
                    "0",
                    "--trainer.logger.init_args.save_dir",
                    str(shared),
                    *extra,
                    *(node_extra or {}).get(node, []),
                ],
                env=dist_env(
                    port,
                    PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "ddp_scripts"), os.environ.get("PYTHONPATH", "")]),
                ),
                cwd=cwd,
            )
        )
    return commands


@pytest.mark.ddp
def test_two_node_torchrun_on_loopback(tmp_path):
    """Two torchrun agents (``--nnodes 2 --node-rank 0/1``) on 127.0.0.1, one CPU process each, run ``reprzoo fit``
    on the digits recipe with validation; the shared save_dir holds one run written by rank zero, and neither
    node's working directory gets anything."""
    shared = tmp_path / "shared"
    commands = torchrun_fit_commands(tmp_path, shared, ["--trainer.limit_train_batches", "2", "--trainer.max_epochs", "1"])
    codes, output = run_processes(commands, tmp_path / "logs")
    if codes != [0, 0] and GLOO_STARTUP_ABORT in output:
        # gloo's C++ side occasionally aborts a rank while the process group starts on a loaded 2-core machine
        # (std::terminate; seen in about 1 of 4 loaded full-suite runs here): one fresh launch, which
        # must then pass every check below
        shutil.rmtree(shared, ignore_errors=True)
        for node in range(2):
            shutil.rmtree(tmp_path / f"node{node}", ignore_errors=True)
        commands = torchrun_fit_commands(tmp_path, shared, ["--trainer.limit_train_batches", "2", "--trainer.max_epochs", "1"])
        codes, output = run_processes(commands, tmp_path / "logs_retry")
    assert codes == [0, 0], output[-8000:]

    runs = sorted(p.relative_to(shared) for p in shared.glob("*/*") if p.is_dir())
    assert [str(p) for p in runs] == ["simsiam/version_0"], runs  # one run folder: no rank made its own version
    run_dir = shared / "simsiam" / "version_0"
    assert (run_dir / "config.yaml").is_file()
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # only rank zero's TensorBoard writer
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and math.isfinite(metrics["train/loss"])
    assert 0.0 <= metrics["val/knn_top1"] <= 1.0
    # the recipe's lr 0.1 for a 256 batch, with 128 per device x 1 device x 2 nodes: the LR stays 0.1 (0.05 on 1 node)
    assert metrics["lr-SGD/encoder"] == pytest.approx(0.1)
    for node in range(2):
        assert not any((tmp_path / f"node{node}").iterdir()), f"node {node} wrote into its working directory"
    strays = [p for p in shared.rglob("*") if p.is_file() and p.name.startswith(".") and p.suffix == ".tmp"]
    assert not strays


@pytest.mark.ddp
@pytest.mark.slow
def test_two_nodes_one_killed_then_both_resume(tmp_path):
    """Node 1 is SIGKILLed after step 3 (checkpoints every 2 steps); node 0 fails on the lost peer. Both agents
    restarted with ``--resume auto`` continue the same run folder from step 2 and finish all 6 steps."""
    shared = tmp_path / "shared"
    common = [
        "--trainer.limit_train_batches",
        "6",
        "--trainer.max_epochs",
        "1",
        "--checkpoint_every_n_steps",
        "2",
        "--data.batch_size",
        "32",
    ]
    kill = {"class_path": "kill_at_step.KillAtStep", "init_args": {"step": 3, "signal_name": "SIGKILL"}}
    commands = torchrun_fit_commands(tmp_path, shared, common, {1: ["--trainer.callbacks+=" + json.dumps(kill)]})
    codes, output = run_processes(commands, tmp_path / "logs_killed")
    assert codes[1] not in (0, None) and codes[0] != 0, output[-6000:]
    ckpt = shared / "simsiam" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2

    commands = torchrun_fit_commands(tmp_path, shared, [*common, "--resume", "auto"], workdir="restart")
    codes, output = run_processes(commands, tmp_path / "logs_resumed")
    assert codes == [0, 0], output[-8000:]
    assert "resuming from" in output
    assert [p.name for p in (shared / "simsiam").iterdir()] == ["version_0"]
    assert torch.load(ckpt, weights_only=True)["global_step"] == 6
    assert json.loads((shared / "simsiam" / "version_0" / "metrics.json").read_text())["global_step"] == 6


# ----------------------------------------------------------------------------------------------- 5. bf16 + channels_last
@pytest.mark.parametrize("method", ["SimSiam", "BYOL", "DirectPred"])
def test_bf16_mixed_and_channels_last_train_on_cpu(method, tiny_trainer_kwargs):
    import lightning as L

    from reprzoo.datamodules import SyntheticImages
    from reprzoo.lightning_modules import get_method

    L.seed_everything(0)
    heads = dict(proj_hidden_dim=64, proj_output_dim=32)
    if method == "SimSiam":
        heads.update(proj_layers=2, pred_hidden_dim=16)
    model = get_method(method)(backbone="resnet_tiny_cifar", num_classes=4, knn_k=5, channels_last=True, **heads)
    data = SyntheticImages(
        num_classes=4, train_size=64, test_size=32, image_size=16, batch_size=16, augmentation_kwargs={"blur_prob": 0.0}
    )
    output_dtypes: list[torch.dtype] = []
    model.backbone.register_forward_hook(lambda module, args, out: output_dtypes.append(out.dtype))

    class Losses(L.Callback):
        def __init__(self):
            self.values: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.values.append(float(trainer.callback_metrics["train/loss"]))

    losses = Losses()
    trainer = L.Trainer(precision="bf16-mixed", callbacks=[losses], **tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)

    assert len(losses.values) == 2 and all(math.isfinite(v) for v in losses.values), losses.values
    assert torch.bfloat16 in output_dtypes  # autocast was on
    for name in ("val/knn_top1", "val/probe_top1", "val/feature_std"):
        assert math.isfinite(float(trainer.callback_metrics[name])), name
    backbones = [model.backbone] + ([model.target_backbone] if hasattr(model, "target_backbone") else [])
    for backbone in backbones:
        convs = [p for p in backbone.parameters() if p.ndim == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        assert all(torch.isfinite(p).all() for p in backbone.parameters())
    with torch.no_grad():
        model.eval()
        features = model(torch.randn(3, 3, 16, 16))
    assert features.shape == (3, model.feature_dim) and torch.isfinite(features).all()
