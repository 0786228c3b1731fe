"""The zoo on the local hub: push -> load round trip, revisions, atomic pushes, every refusal, cards, CLI commands.

One tiny training run (2 steps of the digits/simsiam recipe) is shared by every test, and by the xdist workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reprzoo.errors import ReprzooError, UnknownNameError

NAME = "simsiam-tinyresnet-digits.test"
TINY_FIT = [
    "fit",
    "--config=digits/simsiam",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=2",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.batch_size=32",
]


def shared_tiny_run(tmp_path_factory) -> Path:
    """Train the tiny run once per test session (all xdist workers share it, under a file lock)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    run_dir = root / "reprzoo-tiny-run" / "simsiam" / "version_0"
    with FileLock(str(root / "reprzoo-tiny-run.lock")):
        if not (run_dir / "metrics.json").is_file():
            from reprzoo.cli.training import cli_main

            cli_main([*TINY_FIT, f"--trainer.logger.init_args.save_dir={root / 'reprzoo-tiny-run'}"])
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("REPRZOO_HOME", str(path))
    return path


def reference_module(run_dir: Path):
    """The trained SimSiam rebuilt from its checkpoint (weights_only) without the zoo."""
    from reprzoo.lightning_modules import SimSiam

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    module = SimSiam(**hparams)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval(), ckpt


def weights_of(home: Path, name: str = NAME) -> Path:
    from reprzoo.zoo.api import home_hub

    return home_hub().find_revision(name, verify=False) / "model.safetensors"


def _reseal(revision: Path) -> None:
    """Re-record the hashes of ``commit.json`` after a test edited a revision on purpose (the hub verifies them)."""
    from reprzoo.zoo.repo import sha256_file

    commit = revision / "commit.json"
    commit.chmod(0o644)
    manifest = json.loads(commit.read_text())
    manifest["files"] = {
        f: {"sha256": sha256_file(revision / f), "size": (revision / f).stat().st_size} for f in manifest["files"]
    }
    commit.write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------------------------ round trip
def test_round_trip_identical_embeddings(tiny_run, home):
    import reprzoo

    result = reprzoo.zoo.push(tiny_run, NAME)
    assert NAME in reprzoo.list_models("*simsiam*")
    enc = reprzoo.load(NAME)
    reference, _ = reference_module(tiny_run)
    x = torch.randn(5, 3, 32, 32)
    assert not enc.training
    assert torch.equal(enc.embed(x), reference.embed(x))
    assert enc.revision == result.revision and enc.dim == 128
    assert enc.config["method"]["name"] == "SimSiam" and enc.config["training"]["recipe"] == "digits/simsiam"
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert enc.transform(image).shape == (3, 32, 32)
    assert enc.card.data.library_name == "reprzoo"


def test_load_method_restores_every_tensor(tiny_run, home):
    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)
    module = reprzoo.load_method(NAME)
    _, ckpt = reference_module(tiny_run)
    state = module.state_dict()
    assert set(state) == set(ckpt["state_dict"])
    assert all(torch.equal(state[k], v) for k, v in ckpt["state_dict"].items())
    assert module.training and type(module).__name__ == "SimSiam"


def test_local_folder_and_plain_directory_sources(tiny_run, home):
    import reprzoo
    from reprzoo.zoo.api import resolve

    reprzoo.zoo.push(tiny_run, NAME)
    folder = resolve(NAME).folder
    x = torch.randn(2, 3, 32, 32)
    expected = reprzoo.load(NAME).embed(x)
    assert torch.equal(reprzoo.load(str(folder)).embed(x), expected)
    assert torch.equal(reprzoo.load(f"local:{folder}").embed(x), expected)
    assert torch.equal(reprzoo.load(f"local:{home / 'hub' / NAME}").embed(x), expected)


# ------------------------------------------------------------------------------------------------ revisions
def test_revisions_are_pinned_and_immutable(tiny_run, home):
    import reprzoo
    from reprzoo.zoo.api import home_hub

    first = reprzoo.zoo.push(tiny_run, NAME).revision
    first_files = {p.name: p.read_bytes() for p in (home / "hub" / NAME / "revisions" / first).iterdir()}
    with torch.no_grad():  # a different model under the same name
        module = reprzoo.load_method(NAME)
        module.backbone.stem[0].weight.add_(1.0)
    run2 = _run_with_state(tiny_run, home.parent / "run2", module.state_dict())
    second = reprzoo.zoo.push(run2, NAME).revision
    assert second != first
    assert [r.id for r in home_hub().revisions(NAME)] == [first, second]
    x = torch.randn(2, 3, 32, 32)
    latest, pinned = reprzoo.load(NAME), reprzoo.load(NAME, revision=first)
    assert latest.revision == second and pinned.revision == first
    assert not torch.equal(latest.embed(x), pinned.embed(x))
    assert torch.equal(reprzoo.load(f"{NAME}@{first[:8]}").embed(x), pinned.embed(x))  # unique prefix
    assert {p.name: p.read_bytes() for p in (home / "hub" / NAME / "revisions" / first).iterdir()} == first_files


def _run_with_state(run_dir: Path, dest: Path, state_dict) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("*.ckpt", "events.*"))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["state_dict"] = state_dict
    ckpt.pop("reprzoo_sha256", None)  # an edited checkpoint: its recorded digest no longer holds
    torch.save(ckpt, dest / "checkpoints" / "last.ckpt")
    return dest


def test_missing_revision(tiny_run, home):
    import reprzoo

    rev = reprzoo.zoo.push(tiny_run, NAME).revision
    with pytest.raises(ReprzooError, match=rf"revision 'deadbeef0000' of '{NAME}' not found.*available: {rev}"):
        reprzoo.load(NAME, revision="deadbeef0000")


# ------------------------------------------------------------------------------------------------ atomicity
def test_push_killed_mid_write_leaves_previous_revision(tiny_run, home):
    import reprzoo
    from reprzoo.zoo.local_hub import PAUSE_ENV

    first = reprzoo.zoo.push(tiny_run, NAME).revision
    env = {**os.environ, "REPRZOO_HOME": str(home), PAUSE_ENV: "weights"}
    code = "import sys; from reprzoo.zoo.api import push; push(sys.argv[1], sys.argv[2])"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tiny_run), NAME], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        for line in proc.stderr:  # the push announces the pause once the weights are half-way in the staging area
            if "reprzoo-push-paused:weights" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "the push exited before reaching the pause"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    hub = home / "hub" / NAME
    assert (hub / "refs" / "main").read_text().strip() == first
    assert [p.name for p in (hub / "revisions").iterdir()] == [first]
    assert reprzoo.load(NAME).revision == first
    assert [p.name for p in (home / "hub").iterdir() if not p.name.startswith(".")] == [NAME]
    second = reprzoo.zoo.push(tiny_run, NAME).revision  # the hub still takes pushes
    assert reprzoo.load(NAME).revision == second


def test_push_interrupted_before_ref_update_keeps_main(tiny_run, home, monkeypatch):
    import reprzoo
    from reprzoo.zoo import local_hub

    first = reprzoo.zoo.push(tiny_run, NAME).revision

    def interrupt(stage):
        if stage == "ref":
            raise KeyboardInterrupt

    monkeypatch.setattr(local_hub, "_pause", interrupt)
    with pytest.raises(KeyboardInterrupt):
        reprzoo.zoo.push(tiny_run, NAME)
    assert reprzoo.load(NAME).revision == first
    assert not any((home / "hub" / ".staging").iterdir())


def test_first_push_interrupted_leaves_no_entry(tiny_run, home, monkeypatch):
    import reprzoo
    from reprzoo.zoo import local_hub

    monkeypatch.setattr(
        local_hub, "_pause", lambda stage: (_ for _ in ()).throw(KeyboardInterrupt) if stage == "weights" else None
    )
    with pytest.raises(KeyboardInterrupt):
        reprzoo.zoo.push(tiny_run, NAME)
    assert NAME not in reprzoo.list_models()
    with pytest.raises(UnknownNameError):
        reprzoo.load(NAME)


# ------------------------------------------------------------------------------------------------ refusals
def test_unknown_name_suggests_near_matches(tiny_run, home):
    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)
    with pytest.raises(UnknownNameError, match=rf"Did you mean: {NAME}"):
        reprzoo.load("simsiam-tinyresnet-digits.tst")


@pytest.mark.parametrize(
    "bad",
    [
        "../simsiam-tinyresnet-digits",
        "/etc/passwd",
        "a/b-c-d",
        "simsiam-tinyresnet-digits/..",
        "..",
        "UPPER-case-name",
        "simsiam-tinyresnet-digits.test\n",  # a trailing newline
        "simsiam-tinyresnet-" + "d" * 300,  # longer than a file name may be
    ],
)
def test_path_tricks_in_names_are_refused(tiny_run, home, bad):
    import reprzoo
    from reprzoo.zoo.names import InvalidNameError

    with pytest.raises(InvalidNameError, match="invalid model name"):
        reprzoo.load(bad)
    with pytest.raises(InvalidNameError, match="invalid model name"):
        reprzoo.zoo.push(tiny_run, bad)
    assert not (home / "hub").exists() or not any(p for p in (home / "hub").iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("bad", ["../../etc", "main/../x", "/abs", "main\n"])
def test_path_tricks_in_revisions_are_refused(tiny_run, home, bad):
    import reprzoo
    from reprzoo.zoo.names import InvalidNameError

    reprzoo.zoo.push(tiny_run, NAME)
    with pytest.raises(InvalidNameError, match="invalid revision"):
        reprzoo.load(NAME, revision=bad)


def _corrupt(home: Path, mutate) -> None:
    path = weights_of(home)
    data = bytearray(path.read_bytes())
    path.chmod(0o644)
    path.write_bytes(bytes(mutate(data)))


def test_tampered_weights_are_refused(tiny_run, home):
    import reprzoo
    from reprzoo.zoo.repo import IntegrityError

    reprzoo.zoo.push(tiny_run, NAME)

    def flip(data):
        data[-10] ^= 0xFF
        return data

    _corrupt(home, flip)
    with pytest.raises(IntegrityError, match="SHA-256.*refusing to load"):
        reprzoo.load(NAME)
    with pytest.raises(IntegrityError):
        reprzoo.load_method(NAME)


def test_truncated_weights_are_refused(tiny_run, home):
    import reprzoo
    from reprzoo.zoo.repo import IntegrityError

    reprzoo.zoo.push(tiny_run, NAME)
    _corrupt(home, lambda data: data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="truncated"):
        reprzoo.load(NAME)


def _edit_config(home: Path, edit) -> None:
    path = weights_of(home).parent / "config.json"
    path.chmod(0o644)  # revisions are pushed read-only
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    _reseal(path.parent)


def test_incompatible_major_version_is_refused(tiny_run, home):
    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)
    _edit_config(home, lambda c: c.update(format_version="3.0"))
    with pytest.raises(ReprzooError, match="config format 3.0, incompatible.*upgrade reprzoo"):
        reprzoo.load(NAME)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["method"].update(name="Evil", class_path="os.system"), "refusing to build an unregistered class"),
        (lambda c: c["method"].update(class_path="evil.module.SimSiam"), "is not the registered SimSiam"),
    ],
)
def test_unknown_method_class_is_refused(tiny_run, home, edit, match):
    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)
    _edit_config(home, edit)
    with pytest.raises(ReprzooError, match=match):
        reprzoo.load_method(NAME)


def _both(**changes):
    """An edit of the architecture and of the method's init args alike (a consistent, hostile config)."""
    return lambda c: (c["architecture"].update(changes), c["method"]["init_args"].update(changes))


@pytest.mark.parametrize(
    "edit, match",
    [
        (_both(backbone="no_such_net"), "unknown backbone 'no_such_net'"),
        (_both(backbone_kwargs={"checkpoint_path": "/tmp/x.pth"}), "refusing backbone argument"),
        (_both(backbone_kwargs={"widths": {"class_path": "os.system"}}), "refusing backbone argument"),
        (
            lambda c: c["method"]["init_args"].update(teacher_backbone_kwargs={"pretrained_cfg_overlay": {"file": "/x"}}),
            "refusing backbone argument",
        ),
        (
            lambda c: c["architecture"].update(backbone="resnet18_cifar"),
            "architecture names backbone 'resnet18_cifar' but its method",
        ),
        (
            lambda c: c["method"]["init_args"].update(backbone_kwargs={"widths": [16, 32, 64, 128, 256]}),
            "architecture names backbone",
        ),
    ],
)
def test_unknown_architecture_is_refused(tiny_run, home, edit, match):
    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)
    _edit_config(home, edit)
    with pytest.raises(ReprzooError, match=match):
        reprzoo.load(NAME)


def test_strict_loading_reports_keys(tiny_run, home):
    from safetensors.torch import load_file, save_file

    import reprzoo
    from reprzoo.zoo.repo import sha256_file

    reprzoo.zoo.push(tiny_run, NAME)
    path = weights_of(home)
    assert path.stat().st_mode & 0o777 == 0o444
    tensors = load_file(str(path))
    tensors["extra.weight"] = torch.zeros(3)
    del tensors["stem.0.weight"]
    path.chmod(0o644)
    save_file(tensors, str(path))
    _edit_config(home, lambda c: c["weights"].update(sha256=sha256_file(path), size=path.stat().st_size))
    with pytest.raises(
        ReprzooError, match=r"missing keys backbone\.stem\.0\.weight; unexpected keys backbone\.extra\.weight \(strict=True\)"
    ):
        reprzoo.load(NAME)
    with pytest.warns(UserWarning, match="missing keys backbone.stem.0.weight"):
        enc = reprzoo.load(NAME, strict=False)
    assert enc.dim == 128
    _edit_config(home, lambda c: c["architecture"].update(embedding_dim=64))
    with pytest.raises(ReprzooError, match="records embedding_dim 64 but its method embeds in 128"):
        reprzoo.load(NAME, strict=False)


def test_dim_only_for_trained_prefixes(tiny_run, home):
    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)
    assert reprzoo.load(NAME, dim=128).dim == 128
    with pytest.raises(ReprzooError, match="not trained with nested"):
        reprzoo.load(NAME, dim=64)
    _edit_config(home, lambda c: c["architecture"].update(nested_dims=[32, 64, 128]))
    assert reprzoo.load(NAME, dim=64).embed(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_pickles_are_never_read_from_a_hub(tiny_run, home, monkeypatch):
    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load called while loading from a hub")

    monkeypatch.setattr(torch, "load", no_unpickling)
    reprzoo.load(NAME)
    reprzoo.load_method(NAME)


# ------------------------------------------------------------------------------------------------ cards
def test_card_parses_back_with_measured_metrics_only(tiny_run, home):
    from huggingface_hub import ModelCard

    import reprzoo

    reprzoo.zoo.push(tiny_run, NAME)
    card = ModelCard.load(weights_of(home).parent / "README.md")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    data = card.data
    assert data.library_name == "reprzoo" and data.license == "apache-2.0" and data.base_model is None
    assert "simsiam" in data.tags and data.pipeline_tag == "image-feature-extraction"
    results = {r.metric_name: r.metric_value for r in data.eval_results}
    measured = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/")) and not k.endswith("/knn_k")}
    assert results == {k: pytest.approx(v) for k, v in measured.items()}  # the k used is a setting, in the notes
    assert "val/knn_top1" in results and f"k={int(metrics['val/knn_k'])}," in card.text
    for key in ("test/knn_top1", "baseline/random_init_knn_top1"):  # not measured in this run: absent
        assert key not in card.text
    assert f'reprzoo.load("{NAME}")' in card.text and "digits/simsiam" in card.text
    from reprzoo.zoo.recipes import resolve_recipe
    from reprzoo.zoo.repo import sha256_file

    recipe_hash = sha256_file(resolve_recipe("digits/simsiam"))  # the recipe's version is recorded and named
    config = json.loads((weights_of(home).parent / "config.json").read_text())
    assert config["training"]["recipe_sha256"] == recipe_hash and recipe_hash[:16] in card.text
    assert enc_sha(home) in card.text


def enc_sha(home: Path) -> str:
    from reprzoo.zoo.repo import sha256_file

    return sha256_file(weights_of(home))


def test_card_renders_from_config_alone(tiny_run, home):
    import reprzoo
    from reprzoo.zoo.card import render_card

    reprzoo.zoo.push(tiny_run, NAME)
    config = json.loads((weights_of(home).parent / "config.json").read_text())
    config["metrics"] = {}
    config["provenance"] = {}
    card = render_card(config)
    assert card.data.eval_results is None and "No evaluation metric was recorded" in card.text
    assert "git commit" not in card.text and "data fingerprint" not in card.text


# ------------------------------------------------------------------------------------------------ fine-tuning
def test_finetune_head_report_names_replaced_head(tiny_run, home, tmp_path):
    from safetensors.torch import save_file

    import reprzoo
    from reprzoo.lightning_modules import FineTune

    reprzoo.zoo.push(tiny_run, NAME)
    base = weights_of(home)
    linear = FineTune(backbone="resnet_tiny_cifar", num_classes=10, base_weights=str(base))
    assert linear.head_report.startswith("added head 'head' Linear(128, 10)")
    assert "not loaded from the base model: predictor, probe, projector" in linear.head_report
    assert not any(p.requires_grad for p in linear.backbone.parameters())
    linear.train()
    assert not linear.backbone.training  # frozen batch-norm statistics
    from reprzoo.zoo.repo import split_module_state

    save_file(split_module_state(linear.state_dict()), str(tmp_path / "ft.safetensors"))
    again = FineTune(backbone="resnet_tiny_cifar", num_classes=5, task="full", base_weights=str(tmp_path / "ft.safetensors"))
    assert again.head_report == "replaced head 'head' Linear(128, 10) with Linear(128, 5)"
    assert torch.equal(again.backbone.stem[0].weight, reprzoo.load(NAME).backbone.stem[0].weight)
    with pytest.raises(ValueError, match="do not match backbone"):
        FineTune(backbone="resnet_tiny_cifar", backbone_kwargs={"widths": (8, 16, 32, 64)}, num_classes=3, base_weights=str(base))


def test_finetune_cli_writes_a_pushable_run_with_lineage(tiny_run, home, tmp_path, capsys):
    import reprzoo
    from reprzoo.cli.main import main

    base_rev = reprzoo.zoo.push(tiny_run, NAME).revision
    code = main(
        [
            "finetune",
            NAME,
            "--data",
            "Digits",
            "--task",
            "linear",
            "--epochs",
            "1",
            f"--root-dir={tmp_path / 'runs'}",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--data.init_args.batch_size=32",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "added head 'head' Linear(128, 10)" in out
    run_dir = tmp_path / "runs" / "finetune" / "version_0"
    assert "val/top1" in json.loads((run_dir / "metrics.json").read_text())
    assert main(["push", str(run_dir), "--name", "simsiam-tinyresnet-digits.linear"]) == 0
    enc = reprzoo.load("simsiam-tinyresnet-digits.linear")
    lineage = enc.config["lineage"]
    assert lineage == {"base_model": NAME, "base_revision": base_rev, "task": "linear"}
    assert enc.card.data.base_model == NAME
    assert enc.config["method"]["init_args"]["base_weights"] is None  # no path of the pushing machine
    assert "base_weights: null" in enc.card.text
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(enc.embed(x), reprzoo.load(NAME).embed(x))  # linear: the encoder is unchanged
    module = reprzoo.load_method("simsiam-tinyresnet-digits.linear")
    assert type(module).__name__ == "FineTune" and module.head.out_features == 10


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_list_info_push(tiny_run, home, capsys):
    from reprzoo.cli.main import main

    assert main(["push", str(tiny_run / "checkpoints" / "last.ckpt"), "--name", NAME]) == 0
    assert f'reprzoo.load("{NAME}")' in capsys.readouterr().out
    assert main(["list", "*tinyresnet*", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[NAME]["source"] == "local" and rows[NAME]["dim"] == 128 and "val/knn_top1" in rows[NAME]["metrics"]
    assert main(["info", NAME, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # kNN values name the k they were measured with (capped by the bank's class sizes), the shipped model its own
    assert rows[NAME]["knn_k"] == int(info["metrics"]["val/knn_k"]) <= 200 and rows["simsiam-tinyresnet-digits"]["knn_k"] == 20
    assert [f["file"] for f in info["files"]] == ["config.json", "model.safetensors", "README.md"]
    assert info["revisions"][0]["main"] and info["metrics"]["val/knn_top1"] >= 0
    assert main(["info", NAME]) == 0
    assert "model-index" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "simsiam-tinyresnet-digits.tset"], "Did you mean: simsiam-tinyresnet-digits.test"),
        (["info", "../../etc"], "invalid model name"),
        (["info", NAME, "--revision", "0000000000ff"], "revision '0000000000ff'"),
        (["push", "/nonexistent/run", "--name", "simsiam-tinyresnet-digits.x"], "does not exist"),
        (["push", "{run}", "--name", "../evil"], "invalid model name"),
        (["push", "{run}", "--name", NAME, "--private"], "--private applies only to hf://"),
        (["push", "{run}", "--name", NAME, "--to", "s3://bucket"], "unknown push target"),
        (["embed", NAME, "--data", "Digitz", "--out", "x.npy"], "Did you mean: Digits"),
        (["finetune", NAME, "--data", "Digits", "--bogus"], "unrecognized option '--bogus'"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tiny_run, home, capsys, argv, message):
    import reprzoo
    from reprzoo.cli.main import main

    reprzoo.zoo.push(tiny_run, NAME)
    capsys.readouterr()
    assert main([a.replace("{run}", str(tiny_run)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reprzoo: error:") and err.count("\n") == 1 and message in err


def test_cli_embed_dataset_and_folder(tiny_run, home, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    import reprzoo
    from reprzoo.cli.main import main

    reprzoo.zoo.push(tiny_run, NAME)
    out = tmp_path / "emb.npy"
    assert (
        main(["embed", NAME, "--data", "Digits", "--out", str(out), "--labels", str(tmp_path / "y.npy"), "--batch-size", "128"])
        == 0
    )
    emb, labels = np.load(out), np.load(tmp_path / "y.npy")
    assert emb.shape == (360, 128) and emb.dtype == np.float32 and labels.shape == (360,)
    from reprzoo.datamodules import Digits

    data = Digits()
    data.setup()
    enc = reprzoo.load(NAME)
    first = torch.stack([enc.transform(data._test[i][0]) for i in range(3)])
    np.testing.assert_allclose(emb[:3], enc.embed(first).detach().numpy(), rtol=1e-5, atol=1e-5)

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["embed", NAME, "--data", str(folder), "--out", str(tmp_path / "f.npy")]) == 0
    assert np.load(tmp_path / "f.npy").shape == (3, 128)
    assert (tmp_path / "f.files.txt").read_text().splitlines() == [str(folder / f"{i}.png") for i in range(3)]


def test_cli_embed_rejects_unknown_datamodule_options(tiny_run, home, capsys):
    import reprzoo
    from reprzoo.cli.main import main

    reprzoo.zoo.push(tiny_run, NAME)
    capsys.readouterr()
    assert main(["embed", NAME, "--data", "Digits", "--out", "x.npy", "--data.batch_sise=8"]) == 2
    assert "Did you mean: batch_size" in capsys.readouterr().err


def test_cli_list_names_a_broken_entry_and_lists_the_others(tiny_run, home, capsys):
    """One model with a broken config.json does not take `reprzoo list` down: the others are listed, it is named."""
    import reprzoo
    from reprzoo.cli.main import main

    reprzoo.zoo.push(tiny_run, NAME)
    _edit_config(home, lambda c: c.pop("method"))
    capsys.readouterr()
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert "simsiam-tinyresnet-digits " in captured.out and NAME not in captured.out
    assert f"{NAME} is broken" in captured.err and "method" in captured.err
