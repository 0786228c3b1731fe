"""Adversarial inputs to checkpoints, names and files (issue 14): each must give one clear line (a ReprzooError,
exit status 2 from the command line) or a refusal, never a traceback, a silent success or an unpickled object.

Sections: names, files, checkpoints, pushes, resume (and preemption). Most tests build their models from a copy of
a shipped revision (no training); the few that need a run share the session's tiny run (tests/test_zoo.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from reprzoo.errors import ReprzooError
from test_zoo import shared_tiny_run

SCRIPTS = Path(__file__).parent / "ddp_scripts"
BUILTIN = "simsiam-tinyresnet-digits"
NAME = "simsiam-tinyresnet-digits.adversarial"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return shared_tiny_run(tmp_path_factory)


def shipped_folder() -> Path:
    from reprzoo.zoo.api import builtin_hub

    return builtin_hub().find_revision(BUILTIN)


def model_folder(tmp_path: Path, edit=None, name: str = "model") -> Path:
    """A plain model folder: a copy of a shipped revision's files, ``edit(config)`` applied to its config.json."""
    folder = tmp_path / name
    folder.mkdir()
    for path in shipped_folder().iterdir():
        if path.name != "commit.json":
            shutil.copyfile(path, folder / path.name)
    if edit is not None:
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def hub_with_model(tmp_path: Path):
    """A local hub under ``tmp_path`` holding one revision of :data:`NAME`; returns (hub, revision folder)."""
    from reprzoo.zoo.local_hub import LocalHub

    hub = LocalHub(tmp_path / "hub")
    hub.push(NAME, model_folder(tmp_path, name="source"))
    return hub, hub.find_revision(NAME)


def cli(*argv: str) -> int:
    from reprzoo.cli.main import main

    return main(list(argv))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("reprzoo: error: "), err[-5:]
    text = "\n".join(err)  # a logging handler left on an earlier test's closed stream prints its own tracebacks
    assert text.count("Traceback") == text.count("--- Logging error ---"), text[-3000:]
    return err[-1]


# ================================================================================================== names
@pytest.mark.parametrize(
    "spec",
    ["a" * 300, f"{BUILTIN}.{'a' * 300}", f"{BUILTIN}@{'a' * 300}", "local:" + "a" * 300, "local:" + "/".join(["a" * 300] * 2)],
)
def test_names_of_300_characters_are_one_line_errors(spec, capsys):
    """Not ``OSError: File name too long``: the name check (or the path check) says what is wrong."""
    import reprzoo

    with pytest.raises(ReprzooError):
        reprzoo.load(spec)
    assert cli("info", spec) == 2
    assert len(one_line_error(capsys)) < 400


def test_name_with_a_trailing_newline_is_refused():
    from reprzoo.zoo.names import InvalidNameError, check_name

    with pytest.raises(InvalidNameError):
        check_name(BUILTIN + "\n")  # `$` alone would accept it: fullmatch does not


def test_a_long_run_path_given_to_push_is_one_line(capsys):
    assert cli("push", "r" * 300, "--name", NAME) == 2
    one_line_error(capsys)


def test_registry_holding_a_list_is_one_line(capsys):
    from reprzoo.zoo.local_hub import default_home

    default_home().mkdir(parents=True, exist_ok=True)
    (default_home() / "registry.json").write_text(json.dumps(["hf://org/repo"]))
    assert cli("list") == 2
    assert "registry.json holds a list" in one_line_error(capsys)
    (default_home() / "registry.json").write_bytes(b"\xff\xfe{")
    assert cli("list") == 2
    one_line_error(capsys)


def test_a_broken_entry_in_list_leaves_the_others(tmp_path, capsys):
    from reprzoo.zoo.api import home_hub

    home_hub().push(NAME, model_folder(tmp_path, lambda c: c.pop("training")))
    assert cli("list") == 0
    captured = capsys.readouterr()
    assert BUILTIN in captured.out and f"{NAME} is broken" in captured.err


def test_teacher_cache_file_is_named_by_the_weights_hash(tmp_path):
    """A hub's config.json (its name) never steers where the teacher's cached file goes."""
    from reprzoo.zoo.local_hub import default_home
    from reprzoo.zoo.teachers import teacher_weights

    folder = model_folder(tmp_path, lambda c: c.update(name="../../../escaped"))
    path = teacher_weights(f"local:{folder}")
    assert path.parent == default_home() / "teachers" and path.name.startswith("teacher-")
    assert not list(tmp_path.rglob("escaped*"))


# ================================================================================================== files
def test_edited_config_in_a_hub_is_refused(tmp_path):
    from reprzoo.zoo.repo import IntegrityError

    hub, revision = hub_with_model(tmp_path)
    config = revision / "config.json"
    config.chmod(0o644)
    edited = json.loads(config.read_text())
    edited["metrics"]["knn_acc"] = 0.999  # a schema-valid, plausible lie
    config.write_text(json.dumps(edited))
    with pytest.raises(IntegrityError, match="config.json .*commit.json records .*modified"):
        hub.find_revision(NAME)


def test_edited_card_in_a_hub_is_refused(tmp_path):
    from reprzoo.zoo.repo import IntegrityError

    hub, revision = hub_with_model(tmp_path)
    card = revision / "README.md"
    card.chmod(0o644)
    card.write_text(card.read_text() + "\nA better model than it is.\n")
    with pytest.raises(IntegrityError, match="README.md is .* bytes but commit.json records"):
        hub.find_revision(NAME)


def test_symlinked_revision_folder_is_refused(tmp_path):
    from reprzoo.zoo.repo import IntegrityError

    hub, revision = hub_with_model(tmp_path)
    outside = tmp_path / "outside"
    shutil.copytree(revision, outside)
    linked = revision.parent / "0123456789ab"
    linked.symlink_to(outside, target_is_directory=True)
    ref = revision.parent.parent / "refs" / "main"
    ref.write_text("0123456789ab\n")
    with pytest.raises(IntegrityError, match="symbolic link"):
        hub.find_revision(NAME)


def test_symlinked_file_in_a_revision_is_refused(tmp_path):
    from reprzoo.zoo.repo import IntegrityError

    hub, revision = hub_with_model(tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(revision / "model.safetensors", outside)
    os.chmod(revision, 0o755)
    (revision / "model.safetensors").unlink()
    (revision / "model.safetensors").symlink_to(outside)
    with pytest.raises(IntegrityError, match="symbolic link"):
        hub.find_revision(NAME)


def _drop(*path: str):
    def edit(config):
        for key in path[:-1]:
            config = config[key]
        del config[path[-1]]

    return edit


def _set(value, *path: str):
    def edit(config):
        for key in path[:-1]:
            config = config[key]
        config[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_drop("architecture"), "'architecture' is missing"),
        (_drop("architecture", "embedding_dim"), "embedding_dim must be a positive integer"),
        (_set("128", "architecture", "embedding_dim"), "embedding_dim must be a positive integer"),
        (_set(["a"], "architecture", "backbone_kwargs"), "backbone_kwargs must be an object"),
        (_set("64", "architecture", "nested_dims"), "nested_dims must be a list"),
        (_drop("weights"), "'weights' must be an object"),
        (_set("x", "method"), "method must be an object"),
        (_set([1], "preprocessing"), "preprocessing must be an object"),
        (_set(None, "architecture", "backbone"), "backbone must be a backbone name"),
    ],
)
def test_config_with_missing_keys_or_wrong_types_is_one_line(tmp_path, edit, match, capsys):
    import reprzoo

    folder = model_folder(tmp_path, edit)
    with pytest.raises(ReprzooError, match=match):
        reprzoo.load(f"local:{folder}")
    assert cli("info", f"local:{folder}") == 2
    assert "malformed" in one_line_error(capsys)


def test_unknown_backbone_kwargs_are_one_line(tmp_path, capsys):
    import reprzoo

    folder = model_folder(tmp_path, _set({"no_such_argument": 3}, "architecture", "backbone_kwargs"))
    with pytest.raises(ReprzooError, match="cannot build backbone .*no_such_argument"):
        reprzoo.load(f"local:{folder}")


def test_unknown_backbone_kwargs_of_a_method_are_one_line(tiny_run, tmp_path):
    import reprzoo
    from reprzoo.zoo.export import export_run

    folder = tmp_path / "exported"
    config = export_run(tiny_run, NAME, folder)
    config["architecture"]["backbone_kwargs"] = config["method"]["init_args"]["backbone_kwargs"] = {"no_such_argument": 3}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ReprzooError, match="cannot build SimSiam .*no_such_argument"):
        reprzoo.load(f"local:{folder}")


def test_non_utf8_model_card_is_one_line(tmp_path, capsys):
    from reprzoo.zoo.api import model_info

    folder = model_folder(tmp_path)
    (folder / "README.md").write_bytes(b"---\nlicense: mit\n---\n\xff\xfe broken \xc3\x28\n")
    with pytest.raises(ReprzooError, match="README.md is not UTF-8"):
        model_info(f"local:{folder}")
    assert cli("info", f"local:{folder}") == 2
    one_line_error(capsys)


def test_hf_refs_main_pointing_outside_the_cache_is_one_line(tmp_path, monkeypatch):
    import reprzoo

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # refuses connections, were any made
    outside = model_folder(tmp_path, name="outside")
    repo = tmp_path / "hf-cache" / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "snapshots").mkdir()
    for target in ("../../../outside", str(outside)):
        (repo / "refs" / "main").write_text(target)
        with pytest.raises(ReprzooError, match="hf://org/model"):
            reprzoo.load("hf://org/model")


def test_hf_snapshot_linking_outside_the_cache_is_refused(tmp_path, monkeypatch):
    import reprzoo

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "b" * 40
    repo = tmp_path / "hf-cache" / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / commit).symlink_to(model_folder(tmp_path, name="outside"), target_is_directory=True)
    with pytest.raises(ReprzooError, match="outside its Hugging Face cache"):
        reprzoo.load("hf://org/model")


def test_config_without_preprocessing_says_so(tmp_path):
    """An AttributeError inside a property makes nn.Module report "no attribute 'transform'" and hides the reason."""
    import reprzoo

    encoder = reprzoo.load(f"local:{model_folder(tmp_path, _drop('preprocessing'))}")
    with pytest.raises(ReprzooError, match="records no image preprocessing"):
        _ = encoder.transform


# ================================================================================================== checkpoints
class Pickled:
    def __reduce__(self):
        return (print, ("unpickled!",))


def lightning_checkpoint(path: Path, step: int = 3) -> Path:
    """A small resumable checkpoint written the way runs write theirs (atomic, with its content digest)."""
    from reprzoo.training.checkpointing import AtomicCheckpointIO

    state = {"state_dict": {"w": torch.arange(256, dtype=torch.float32)}, "loops": {}, "global_step": step}
    AtomicCheckpointIO().save_checkpoint(state, path)
    return path


def test_pickled_or_remote_checkpoints_are_refused_in_one_line(tmp_path):
    from reprzoo.training.checkpointing import AtomicCheckpointIO, CorruptCheckpointError, load_checkpoint

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "loops": {}, "payload": Pickled()}, evil)
    for source in (evil, "https://example.invalid/model.ckpt", "s3://bucket/model.ckpt"):
        with pytest.raises(CorruptCheckpointError) as err:
            load_checkpoint(source)
        assert "\n" not in str(err.value) and "refusing" in str(err.value)
        with pytest.raises(CorruptCheckpointError):
            AtomicCheckpointIO().load_checkpoint(source, weights_only=False)  # what Lightning's resume calls


FIT = [
    "fit",
    "--config=digits/simsiam",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0",
    "--data.batch_size=16",
    "--model.init_args.proj_hidden_dim=32",
    "--model.init_args.proj_output_dim=32",
    "--model.init_args.pred_hidden_dim=8",
]


def test_ckpt_path_never_unpickles(tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Pickled()}, evil)
    root = f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"
    for source in (str(evil), "http://127.0.0.1:9/model.ckpt"):
        assert cli(*FIT, root, f"--ckpt_path={source}") == 2
        line = one_line_error(capsys)
        assert "refusing --ckpt_path" in line and "unpickled!" not in line
    assert not (tmp_path / "runs").exists(), "refused before any run started"


def test_random_state_survives_weights_only_loading(tmp_path):
    """The RandomStateCheckpoint's states (numpy's as a tensor, Python's as tuples) load with weights_only=True."""
    import random

    import numpy as np

    from reprzoo.training.checkpointing import RandomStateCheckpoint, atomic_torch_save

    callback = RandomStateCheckpoint()
    atomic_torch_save({"callbacks": {"rng": callback.state_dict()}}, tmp_path / "rng.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    callback.load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["callbacks"]["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_flipped_tensor_byte_is_not_a_valid_checkpoint(tmp_path):
    from reprzoo.training.checkpointing import CorruptCheckpointError, checkpoint_step, load_checkpoint

    path = lightning_checkpoint(tmp_path / "last.ckpt")
    assert checkpoint_step(path) == 3
    data = bytearray(path.read_bytes())
    offset = data.find(torch.arange(256, dtype=torch.float32).numpy().tobytes()[400:432])
    assert offset > 0
    data[offset + 5] ^= 0x01  # one bit of one weight: the zip container does not notice
    path.write_bytes(bytes(data))
    assert checkpoint_step(path) is None
    with pytest.raises(CorruptCheckpointError, match="does not match the digest"):
        load_checkpoint(path)


def test_corrupt_checkpoints_are_skipped_with_a_warning_naming_them(tmp_path):
    from reprzoo.training.checkpointing import CorruptCheckpointWarning, find_resume_checkpoint, newest_checkpoint

    good = lightning_checkpoint(tmp_path / "version_0" / "checkpoints" / "epoch=0-step=3.ckpt", step=3)
    bad = lightning_checkpoint(tmp_path / "version_0" / "checkpoints" / "last.ckpt", step=9)
    bad.write_bytes(bad.read_bytes()[:-300])
    with pytest.warns(CorruptCheckpointWarning, match=f"skipping checkpoint {bad}"):
        assert find_resume_checkpoint(tmp_path) == good
    with pytest.warns(CorruptCheckpointWarning, match="last.ckpt"):
        assert newest_checkpoint([good, bad]) == good


# ================================================================================================== pushes
def _stage_folder(tmp_path: Path, tag: str) -> Path:
    """A distinct model folder (its card differs), so that two pushes make two revisions."""
    folder = model_folder(tmp_path, name=f"push-{tag}")
    (folder / "README.md").write_text((folder / "README.md").read_text() + f"\n<!-- {tag} -->\n")
    return folder


def test_concurrent_pushes_to_one_name_both_land_in_order(tmp_path, monkeypatch):
    """Two pushes that both read the parent before either moves the ref orphaned one revision. With the lock, the
    second waits: its parent is the first's revision, and both are reachable from refs/main."""
    from reprzoo.zoo import local_hub
    from reprzoo.zoo.local_hub import LocalHub

    hub = LocalHub(tmp_path / "hub")
    hub.push(NAME, _stage_folder(tmp_path, "base"))
    both_staged = threading.Barrier(2)
    both_at_rename = threading.Barrier(2, timeout=2)

    def pause(stage: str) -> None:
        if stage == "weights":
            both_staged.wait(timeout=60)  # outside the lock: both pushes have copied their files
        elif stage == "rename":
            try:  # unlocked code: both get here with the same parent; locked: the first waits alone, then goes on
                both_at_rename.wait()
            except threading.BrokenBarrierError:
                pass

    monkeypatch.setattr(local_hub, "_pause", pause)
    results, errors = [], []

    def push(tag):
        try:
            results.append(hub.push(NAME, _stage_folder(tmp_path, tag)))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=push, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 2
    chain, rev = [], hub.head(NAME)
    while rev:
        chain.append(rev)
        rev = json.loads((hub.root / NAME / "revisions" / rev / "commit.json").read_text())["parent"]
    assert set(results) <= set(chain) and len(chain) == 3, f"a revision was orphaned: chain {chain}, pushed {results}"


def test_push_to_local_without_a_path_is_refused(tiny_run, tmp_path, monkeypatch):
    import reprzoo

    monkeypatch.chdir(tmp_path)
    for target in ("local:", "local:  "):
        with pytest.raises(ReprzooError, match="local: needs a hub folder"):
            reprzoo.zoo.push(tiny_run, NAME, to=target)
    assert not list(tmp_path.iterdir()), "nothing may be written into the current directory"


def test_pushing_over_a_shipped_name_needs_force(tiny_run):
    import reprzoo
    from reprzoo.zoo.api import resolve

    shipped = resolve(BUILTIN).folder
    with pytest.raises(ReprzooError, match="shipped with reprzoo.*--force"):
        reprzoo.zoo.push(tiny_run, BUILTIN)
    assert resolve(BUILTIN).folder == shipped
    reprzoo.zoo.push(tiny_run, BUILTIN, force=True)
    assert resolve(BUILTIN).folder != shipped


def test_pushing_a_pickled_checkpoint_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  class_path: reprzoo.lightning_modules.SimSiam\n")
    torch.save({"state_dict": {}, "loops": {}, "payload": Pickled()}, run / "checkpoints" / "last.ckpt")
    assert cli("push", str(run), "--name", NAME) == 2
    line = one_line_error(capsys)
    assert "pickled" in line and "unpickled!" not in capsys.readouterr().out


# ================================================================================================== resume
def test_resume_auto_fails_when_every_checkpoint_is_corrupt(tmp_path, capsys):
    command = [*FIT, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert cli(*command) == 0
    checkpoints = list((tmp_path / "simsiam" / "version_0" / "checkpoints").glob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        assert cli(*command, "--resume=auto") == 2
    line = one_line_error(capsys)
    assert "hold no valid checkpoint" in line and "last.ckpt" in line
    assert [p.name for p in (tmp_path / "simsiam").iterdir()] == ["version_0"], "no new run was started"


def test_sigterm_exits_non_zero_after_writing_a_checkpoint(tmp_path):
    """A preempted run is not a finished one: exit 143 (128 + SIGTERM), with last.ckpt written for --resume."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    killer = {"class_path": "kill_at_step.KillAtStep", "init_args": {"step": 1, "signal_name": "SIGTERM"}}
    cmd = [
        sys.executable,
        "-m",
        "reprzoo",
        *FIT,
        "--trainer.max_epochs=50",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.callbacks+=" + json.dumps(killer),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
    assert (tmp_path / "simsiam" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_batch_size_above_the_dataset_fails_early(tmp_path, capsys):
    assert cli(*FIT, f"--trainer.logger.init_args.save_dir={tmp_path}", "--data.batch_size=100000") == 2
    line = one_line_error(capsys)
    assert "batch size is 100000" in line and "samples" in line


def test_default_root_dir_is_where_runs_go(tmp_path, monkeypatch):
    from reprzoo.cli.training import ReprzooCLI, cli_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ReprzooCLI, "_run_subcommand", lambda self, subcommand: None)  # build, do not train
    built = cli_main([*FIT, f"--trainer.default_root_dir={tmp_path / 'elsewhere'}"])
    assert Path(built.trainer.logger.save_dir) == tmp_path / "elsewhere"
    explicit = cli_main([*FIT, "--trainer.default_root_dir=x", f"--trainer.logger.init_args.save_dir={tmp_path / 'mine'}"])
    assert Path(explicit.trainer.logger.save_dir) == tmp_path / "mine"  # an explicit save_dir still wins


# ================================================================================================== defaults that fit the data
def _png_folder(root: Path, side: int = 32, per_class: int = 4) -> Path:
    """``root/{train,val}/{a,b}/*.png``: a few ``side`` x ``side`` images."""
    from PIL import Image

    for split in ("train", "val"):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (side, side), color=(60 * i, 200 * c, 50)).save(root / split / cls / f"{i}.png")
    return root


def test_image_folder_infers_its_image_size_from_the_images(tmp_path, capsys):
    """A folder of 32-px images trains at 32 px, not ImageFolder's old fixed default of 224 (a 49-fold memory blow-up
    with a CIFAR-stem backbone), and says so; a given size that upscales them more than 2x is warned about."""
    from reprzoo.datamodules import ImageFolder

    root = _png_folder(tmp_path / "images")
    dm = ImageFolder(root=str(root), batch_size=2, num_workers=0)
    assert dm.image_size == 32 and dm.preprocessing()["image_size"] == 32
    err = capsys.readouterr().err
    assert "image_size 32 px, inferred from 8 training images" in err and "--data.image_size" in err
    views, _, _ = next(iter(dm.train_dataloader()))
    assert views[0].shape == (2, 3, 32, 32)

    assert ImageFolder(root=str(root), image_size=224).image_size == 224  # a given size is kept
    err = capsys.readouterr().err
    assert "warning" in err and "upscales the training images 7.0x" in err and "--data.image_size 32" in err
    ImageFolder(root=str(root), image_size=48)  # 1.5x: no warning
    assert "upscales" not in capsys.readouterr().err


def test_memory_estimate_scales_with_pixels_and_leaves_the_model_as_it_was():
    from reprzoo.datamodules import SyntheticImages
    from reprzoo.lightning_modules import SimSiam
    from reprzoo.training.memory import estimate_training_memory

    model = SimSiam(backbone="resnet_tiny_cifar", num_classes=4, proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    small = estimate_training_memory(model, SyntheticImages(image_size=32, batch_size=64))
    assert torch.equal(torch.get_rng_state(), rng)  # the run's random stream is untouched
    large = estimate_training_memory(model, SyntheticImages(image_size=224, batch_size=64))
    assert small.views == [(3, 32, 32)] * 2 and large.views == [(3, 224, 224)] * 2
    assert 40 < large.per_sample / small.per_sample < 60  # activations grow with the pixels: 49x
    assert small.per_sample > 0 and large.total > 40 * small.total / 2
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # batch-norm statistics restored
    assert model.training


def test_a_run_that_cannot_fit_in_memory_fails_early_with_an_estimate(tmp_path, capsys, monkeypatch):
    """cifar10/simsiam on an ImageFolder at 224 px was killed by the kernel with no message: a training step that
    cannot fit in the available memory now fails before training, in one line naming the estimate, the memory
    available and what to change; no run folder is left behind."""
    import reprzoo.training.memory as memory

    root = _png_folder(tmp_path / "images")
    monkeypatch.setattr(memory, "available_memory", lambda: 64 * 2**20)  # a machine with 64 MB free
    argv = [
        "fit",
        "--config=cifar10/simsiam",
        "--data=ImageFolder",
        f"--data.root={root}",
        "--data.image_size=224",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--model.backbone=resnet_tiny_cifar",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
    ]
    assert cli(*argv) == 2
    line = one_line_error(capsys)
    assert "needs at least" in line and "GB of memory" in line and "0.1 GB is available" in line, line
    assert "--data.image_size (now 224)" in line and "--data.batch_size" in line
    assert not (tmp_path / "runs" / "simsiam").exists() or not list((tmp_path / "runs" / "simsiam").iterdir())
    monkeypatch.setenv(memory.SKIP_ENV, "1")  # the way out for a machine with swap: the check is skipped
    from reprzoo.cli.training import ReprzooCLI

    calls = []
    monkeypatch.setattr(ReprzooCLI, "fit", lambda self, *a, **k: calls.append(1), raising=False)
    assert cli(*argv) == 0 and calls == [1]


def test_the_knn_monitor_caps_k_by_the_class_sizes():
    """k=200 on a bank of 15 samples per class votes with mostly other classes' samples: k is capped by the
    (median) class size of the bank, the accuracy is the one computed with that k, and the k used is logged."""
    from reprzoo.metrics.evaluators import KNNEvaluator
    from reprzoo.metrics.knn import KNNAccuracy, weighted_knn_predict

    g = torch.Generator().manual_seed(0)
    classes, per_class, dim = 4, 15, 8
    centres = torch.randn(classes, dim, generator=g)
    bank_labels = torch.arange(classes).repeat_interleave(per_class)
    bank = centres[bank_labels] + 1.5 * torch.randn(len(bank_labels), dim, generator=g)
    query_labels = torch.arange(classes).repeat(25)
    query = centres[query_labels] + 1.5 * torch.randn(len(query_labels), dim, generator=g)

    metric = KNNAccuracy(classes, k=200)
    metric.update(bank, bank_labels, bank=True)
    metric.update(query, query_labels)
    accuracy = metric.compute()
    assert metric.k_used == per_class
    capped = (weighted_knn_predict(query, bank, bank_labels, classes, k=per_class) == query_labels).float().mean()
    assert torch.equal(accuracy, capped)

    logged = {}
    evaluator = KNNEvaluator(metric)
    evaluator.compute_and_log(lambda key, value: logged.__setitem__(key, value), "val", None)
    assert logged["val/knn_k"] == per_class and torch.equal(logged["val/knn_top1"], capped)
    small = KNNAccuracy(classes, k=5)  # a k below the class sizes is kept
    small.update(bank, bank_labels, bank=True)
    small.update(query, query_labels)
    small.compute()
    assert small.k_used == 5


# ================================================================================================== start-up noise
STARTUP_NOISE = (
    "LightningCLI's args parameter",  # LightningCLI warns when given args while sys.argv has some
    "litlogger",  # Lightning's "💡 Tip: For seamless cloud logging ..."
    "LeafSpec",  # torch's pytree deprecation, hit by Lightning's helpers
    "Embedding dir exists",  # tensorboard's add_embedding at a step it wrote already
)


def test_a_fit_prints_no_library_noise(tmp_path, capsys, monkeypatch):
    """Every command printed warnings and tips the user can do nothing about; they are dropped while the command
    runs (and only then: library users keep their warnings and Lightning's logging)."""
    import logging
    import warnings

    from reprzoo.cli.training import cli_main

    monkeypatch.setenv("REPRZOO_SMOKE", "1")
    argv = ["fit", "--config", "digits/simsiam", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", ["reprzoo", *argv])  # as from the command line
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    lightning_logger = logging.getLogger("lightning.pytorch")
    lightning_logger.addHandler(handler)
    filters_before = list(warnings.filters)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli_main(argv)
            filters_inside = list(warnings.filters)
    finally:
        lightning_logger.removeHandler(handler)
    out = capsys.readouterr()
    text = "\n".join([out.out, out.err, *(r.getMessage() for r in records), *(str(w.message) for w in caught)])
    assert "Trainer.fit` stopped" in text or (tmp_path / "simsiam" / "version_0" / "metrics.json").is_file()
    for noise in STARTUP_NOISE:
        assert noise not in text, noise
    assert list(warnings.filters) == filters_before and filters_inside[0] == ("always", None, Warning, None, 0)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert not rank_zero.filters  # the tip's filter is gone with the command
