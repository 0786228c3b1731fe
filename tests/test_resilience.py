"""Preemption and resume: atomic checkpoint writes, mid-epoch resumable loaders, a checkpoint on SIGTERM/SIGUSR1,
and ``reprzoo fit --resume auto`` reaching the same weights as an uninterrupted run after a SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from reprzoo.datamodules.base import TransformedDataset
from reprzoo.datamodules.resumable import ResumableDataLoader, ResumableSampler, sample_seed
from reprzoo.errors import ReprzooError
from reprzoo.training.checkpointing import (
    atomic_torch_save,
    checkpoint_step,
    find_resume_checkpoint,
    find_run_checkpoint,
)

SCRIPTS = Path(__file__).parent / "ddp_scripts"


class Numbers(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        return torch.tensor(float(i)), i


# ------------------------------------------------------------------------------------------------ atomic writes
def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # a kill between the first byte and the rename

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "a temporary file was left behind"


def test_resume_checkpoint_is_the_newest_valid_one(tmp_path):
    def ckpt(version: str, name: str, step: int) -> Path:
        path = tmp_path / version / "checkpoints" / name
        atomic_torch_save({"state_dict": {}, "loops": {}, "global_step": step}, path)
        return path

    assert find_resume_checkpoint(tmp_path) is None
    ckpt("version_0", "last.ckpt", 10)
    best = ckpt("version_1", "last.ckpt", 30)
    ckpt("version_1", "epoch=0-step=20.ckpt", 20)
    corrupt = tmp_path / "version_2" / "checkpoints" / "last.ckpt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(best.read_bytes()[:100])  # truncated: a copy that was cut short
    (tmp_path / "version_2" / "checkpoints" / ".last.ckpt.x.tmp").write_bytes(best.read_bytes())
    assert checkpoint_step(corrupt) is None and checkpoint_step(best) == 30
    assert find_resume_checkpoint(tmp_path) == best


def test_run_checkpoint_of_a_folder_or_a_file(tmp_path):
    """One finder for push/export and old models: (run_dir, checkpoint, config.yaml or None)."""
    run = tmp_path / "version_0"
    ckpts = run / "checkpoints"
    for name, step in (("epoch=9-step=90.ckpt", 90), ("epoch=10-step=100.ckpt", 100)):  # 10 sorts before 9
        atomic_torch_save({"state_dict": {}, "global_step": step}, ckpts / name)  # weights-only: no loops
    (ckpts / "epoch=11-step=110.ckpt").write_bytes(b"cut short")
    (ckpts / ".last.ckpt.abc.tmp").write_bytes(b"")
    assert find_run_checkpoint(run) == (run, ckpts / "epoch=10-step=100.ckpt", None)
    (run / "config.yaml").write_text("model: {}\n")
    atomic_torch_save({"state_dict": {}, "loops": {}, "global_step": 5}, ckpts / "last.ckpt")
    assert find_run_checkpoint(run) == (run, ckpts / "last.ckpt", run / "config.yaml")
    assert find_run_checkpoint(ckpts / "epoch=9-step=90.ckpt") == (run, ckpts / "epoch=9-step=90.ckpt", run / "config.yaml")
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(b"")
    assert find_run_checkpoint(loose) == (tmp_path, loose, None)

    for path, message in (
        (tmp_path / "missing", "old_model .*missing does not exist: give a run directory"),
        (tmp_path / "empty", "old_model .*empty has no checkpoints/\\*.ckpt"),
    ):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(ReprzooError, match=message) as err:
            find_run_checkpoint(path, "old_model")
        assert isinstance(err.value, FileNotFoundError)
    broken = tmp_path / "broken" / "checkpoints"
    broken.mkdir(parents=True)
    (broken / "a.ckpt").write_bytes(b"junk")
    with pytest.raises(ReprzooError, match="none of its checkpoints \\(a.ckpt\\) loads"):
        find_run_checkpoint(broken.parent)


# ------------------------------------------------------------------------------------------------ loaders
def test_sampler_order_is_fixed_by_seed_and_epoch_and_resumes_at_a_batch():
    sampler = ResumableSampler(Numbers(), seed=3)
    first = [i for i, _ in sampler]
    assert sorted(first) == list(range(20)) and first == [i for i, _ in ResumableSampler(Numbers(), seed=3)]
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in second] != first and all(epoch == 1 for _, epoch in second)
    sampler.start_at(2, batch_size=4)
    assert list(sampler) == second[8:]  # skips two batches of four
    sampler.set_epoch(1)
    assert list(sampler) == second[8:]  # for every iterator of that epoch
    sampler.set_epoch(2)
    assert len(list(sampler)) == 20  # and no longer once the epoch changes


def test_augmentation_depends_only_on_seed_epoch_and_index():
    data = TransformedDataset(Numbers(), lambda x: x + torch.rand(()), seed=7)
    a = data[(5, 2)][0]
    torch.rand(100)  # whatever else the process draws in between
    assert torch.equal(data[(5, 2)][0], a)
    assert not torch.equal(data[(5, 3)][0], a) and not torch.equal(data[(6, 2)][0], a)
    assert sample_seed(7, 2, 5) != sample_seed(7, 5, 2)


def test_loader_state_resumes_mid_epoch_and_after_an_epoch_end():
    loader = ResumableDataLoader(TransformedDataset(Numbers(), None, with_index=True), batch_size=4, seed=0, drop_last=True)
    loader.resumable_sampler.set_epoch(1)
    full = [batch[2].tolist() for batch in loader]
    loader.processed_batches = lambda: 2
    state = loader.state_dict()
    assert state == {"epoch": 1, "processed_batches": 2}
    fresh = ResumableDataLoader(TransformedDataset(Numbers(), None, with_index=True), batch_size=4, seed=0, drop_last=True)
    fresh.load_state_dict(state)
    assert [batch[2].tolist() for batch in fresh] == full[2:]
    fresh.load_state_dict({"epoch": 1, "processed_batches": len(fresh)})  # saved at the epoch's end
    assert fresh.resumable_sampler.epoch == 2 and len([b for b in fresh]) == len(fresh)


# ------------------------------------------------------------------------------------------------ end to end
def _fit(root: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "reprzoo",
        "fit",
        "--config",
        "digits/simsiam",
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=5",
        "--trainer.limit_val_batches=1",
        "--trainer.check_val_every_n_epoch=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0",
        f"--trainer.logger.init_args.save_dir={root}",
        "--data.batch_size=16",
        "--model.init_args.proj_hidden_dim=64",
        "--model.init_args.proj_output_dim=64",
        "--model.init_args.pred_hidden_dim=16",
        "--checkpoint_every_n_steps=2",
        *extra,
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _final_weights(root: Path) -> dict[str, torch.Tensor]:
    (ckpt,) = root.glob("simsiam/version_*/checkpoints/last.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 10
    return {k: v for k, v in state["state_dict"].items() if v.is_floating_point()}


def _killer(step: int, signal_name: str) -> str:
    return "--trainer.callbacks+=" + json.dumps(
        {"class_path": "kill_at_step.KillAtStep", "init_args": {"step": step, "signal_name": signal_name}}
    )


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, signal_name):
    """Killed at step 7 (mid-epoch 2; the last periodic checkpoint is step 6, or on SIGTERM a checkpoint at the
    kill), restarted with --resume auto: same run folder, same final weights as a run never interrupted."""
    _fit(tmp_path / "straight")
    expected = _final_weights(tmp_path / "straight")

    root = tmp_path / "killed"
    killed = _fit(root, _killer(7, signal_name), check=False)
    assert killed.returncode != 0, killed.stderr[-2000:]
    saved = torch.load(root / "simsiam" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == (6 if signal_name == "SIGKILL" else 7)
    assert not list(root.rglob(".*.tmp")), "a half-written checkpoint was left behind"

    resumed = _fit(root, "--resume=auto")
    assert "resuming from" in resumed.stderr
    assert [p.name for p in (root / "simsiam").iterdir()] == ["version_0"], "resume must continue the same run folder"
    weights = _final_weights(root)
    assert weights.keys() == expected.keys()
    for k in expected:
        assert torch.equal(weights[k], expected[k]), f"{k} differs from the uninterrupted run"


# ------------------------------------------------------------------------------------------------ which run to resume
TINY_FIT = [
    "fit",
    "--config",
    "digits/simsiam",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.num_sanity_val_steps=0",
    "--data.batch_size=16",
    "--model.init_args.proj_hidden_dim=32",
    "--model.init_args.proj_output_dim=32",
    "--model.init_args.pred_hidden_dim=8",
]


def _fake_run(run: Path, config: str, step: int, age_s: float) -> Path:
    """A run folder with ``config`` as its config.yaml and a valid last.ckpt of ``step``, ``age_s`` seconds old."""
    ckpt = run / "checkpoints" / "last.ckpt"
    atomic_torch_save({"state_dict": {}, "loops": {}, "global_step": step}, ckpt)
    (run / "config.yaml").write_text(config)
    stamp = ckpt.stat().st_mtime - age_s
    os.utime(ckpt, (stamp, stamp))
    return ckpt


def test_resume_auto_continues_this_commands_run_and_leaves_others_alone(tmp_path, monkeypatch, capsys):
    """The issue: after `make demo` (a long run of another config), `--resume auto` resumed the demo's run (most
    steps), failed on its epochs and rewrote its config.yaml. It must pick the newest run of the same config."""
    from reprzoo.cli.main import main
    from reprzoo.cli.training import ReprzooCLI, cli_main

    command = [*TINY_FIT, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert main(command) == 0  # this command's run: version_0, 2 steps
    root = tmp_path / "simsiam"
    ours = (root / "version_0" / "config.yaml").read_text()
    assert "max_epochs: 1" in ours
    demo = _fake_run(root / "version_1", ours.replace("max_epochs: 1", "max_epochs: 20"), 500, age_s=-100)  # newer
    _fake_run(root / "version_2", ours, 400, age_s=1000)  # the same config, more steps, but older
    demo_config = (root / "version_1" / "config.yaml").read_bytes()
    capsys.readouterr()

    monkeypatch.setattr(ReprzooCLI, "_run_subcommand", lambda self, subcommand: None)  # build, do not train
    cli = cli_main([*command, "--resume=auto"])
    assert Path(cli.config.fit.ckpt_path).parent.parent == root / "version_0"
    assert cli.config.fit.trainer.logger.init_args.version == "version_0"
    err = capsys.readouterr().err
    assert "resuming from" in err and "version_0" in err and "newest of 2" in err and "1 other run(s) differ" in err
    assert (root / "version_1" / "config.yaml").read_bytes() == demo_config and demo.exists()

    cli = cli_main([*command, "--trainer.max_epochs=6", "--resume=auto"])  # nobody ran this config: a new run
    assert cli.config.fit.ckpt_path is None and cli.config.fit.trainer.logger.init_args.version is None
    err = capsys.readouterr().err
    assert "starting a new run" in err and "trainer.max_epochs" in err


def test_resume_checkpoint_prefers_the_newest_run_over_the_longest(tmp_path):
    old_long = _fake_run(tmp_path / "version_0", "", 900, age_s=100)
    new_short = _fake_run(tmp_path / "version_1", "", 20, age_s=0)
    assert find_resume_checkpoint(tmp_path) == new_short
    assert find_resume_checkpoint(tmp_path, accept=lambda run: run.name == "version_0") == old_long
    assert find_resume_checkpoint(tmp_path, accept=lambda run: False) is None
