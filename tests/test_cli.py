"""The command line: catalogue, recipes, training runs and clear errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprzoo.cli.main import main
from reprzoo.cli.training import cli_main
from reprzoo.zoo.recipes import list_recipes

TINY = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.num_sanity_val_steps=0",
]


def test_methods_json_lists_titles(capsys):
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["SimSiam"]["title"] == "Exploring Simple Siamese Representation Learning"
    assert rows["DirectPred"]["title"] == "Understanding self-supervised Learning Dynamics without Contrastive Pairs"
    assert all(
        r["has_recipe"] and r["modality"] in ("image", "sequence", "text", "image-text") and r["wing"] for r in rows.values()
    )


@pytest.mark.parametrize("recipe", sorted(list_recipes()))
def test_every_shipped_recipe_parses(recipe, capsys):
    """--print_config validates every key of the recipe against the classes' signatures."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", recipe, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("reprzoo.lightning_modules")


def test_fit_writes_run_directory(tmp_path):
    main(
        [
            "fit",
            "--config",
            "digits/simsiam",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            *TINY,
            "--trainer.check_val_every_n_epoch=1",
        ]
    )
    run = tmp_path / "simsiam" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"train/loss", "val/knn_top1", "val/probe_top1", "epoch"} <= set(metrics)
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "last.ckpt").exists()
    assert list(run.glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    assert "embeddings/tsne" in events.Tags()["images"]  # EmbeddingPlot's t-SNE of the validation queries
    assert (run / "projector_config.pbtxt").exists()  # and the vectors for the projector tab


def test_model_and_data_by_short_name(tmp_path):
    main(
        [
            "fit",
            "--model",
            "SimSiam",
            "--data",
            "Digits",
            "--model.backbone=resnet_tiny_cifar",
            "--model.proj_hidden_dim=32",
            "--model.proj_output_dim=32",
            "--model.pred_hidden_dim=8",
            "--data.batch_size=16",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            *TINY,
        ]
    )
    assert (tmp_path / "simsiam" / "version_0" / "metrics.json").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reprzoo.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args,message",
    [
        (["fit", "--model", "SimSam", "--data", "Digits"], "unknown method 'SimSam'. Did you mean: SimSiam"),
        (["fit", "--model", "SimSiam", "--data", "Digit"], "unknown datamodule 'Digit'. Did you mean: Digits"),
        (["fit", "--config", "digits/simsam"], "Did you mean: digits/simsiam"),
        (["fit", "--model", "SimSiam", "--data", "ImageFolder", "--data.root", "/no/such/dir"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, capsys):
    assert main(args) == 2  # in this process: a fresh interpreter spends ~10 s importing Lightning per case
    stderr = capsys.readouterr().err
    assert message in stderr and "Traceback" not in stderr


def test_the_command_exits_2_with_one_line_on_bad_input():
    result = run_cli("fit", "--model", "SimSam", "--data", "Digits")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Did you mean: SimSiam" in result.stderr


def test_recipe_with_wrong_key_is_refused(tmp_path):
    recipe = yaml.safe_load((Path(list_recipes()["digits/simsiam"])).read_text())
    recipe["model"]["init_args"]["projection_dim"] = 64  # not an argument of SimSiam
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_cli("fit", "--config", str(path))
    assert result.returncode != 0
    assert "projection_dim" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_end_to_end_one_epoch(tmp_path, monkeypatch, capsys):
    """`make demo` in one epoch: baseline and trained kNN, run files, push to the local hub and load back."""
    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    assert main(["demo", "--epochs", "1", "--root-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "random init" in out and "trained" in out and "identical" in out and "DIFFERENT" not in out
    metrics = json.loads(next((tmp_path / "runs").glob("simsiam/version_*/metrics.json")).read_text())
    assert "baseline/random_init_knn_top1" in metrics and "val/knn_top1" in metrics


def test_version(capsys):
    from reprzoo import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"reprzoo {__version__}"


def test_fit_without_recipe_trains_100_epochs_and_says_so(tmp_path, capsys):
    """Lightning's default (1000 epochs, silently) is not what `--model SimSiam --data Digits` should train."""
    logs = f"--trainer.logger.init_args.save_dir={tmp_path}"
    cli = cli_main(["--model", "SimSiam", "--data", "Digits", "--model.backbone", "resnet_tiny_cifar", logs], run=False)
    assert cli.trainer.max_epochs == 100
    assert "training for 100 epochs" in capsys.readouterr().err
    cli = cli_main(["--model", "SimSiam", "--data", "Digits", "--trainer.max_steps=7", logs], run=False)
    assert cli.trainer.max_epochs in (None, -1) and cli.trainer.max_steps == 7  # a step budget is not capped
    cli = cli_main(["--config", "digits/simsiam", logs], run=False)
    assert cli.trainer.max_epochs == 20  # the recipe's
    assert "epochs" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--help"])
    assert exit_info.value.code in (0, None)
    assert "reprzoo: 100 when" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("limits", [["--trainer.max_epochs=1"], ["--trainer.max_epochs=-1", "--trainer.max_steps=3"]])
def test_every_fit_ends_with_validation_metrics(tmp_path, limits):
    """digits/simsiam validates every 5 epochs: a 1-epoch run, or one stopped by max_steps mid-epoch, must still
    write val/* to metrics.json (and validate before its last checkpoint)."""
    main(
        [
            "fit",
            "--config",
            "digits/simsiam",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.limit_train_batches=5",
            "--trainer.limit_val_batches=2",
            "--trainer.enable_progress_bar=false",
            "--trainer.num_sanity_val_steps=0",
            "--data.batch_size=16",
            *limits,
        ]
    )
    metrics = json.loads((tmp_path / "simsiam" / "version_0" / "metrics.json").read_text())
    assert "val/knn_top1" in metrics and metrics["global_step"] == (5 if len(limits) == 1 else 3)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--trainer.max_epoch", "3"], "Did you mean: max_epochs"),
        (["--model.init_args.lrr", "0.1"], "Did you mean: lr"),
        (["--model.lrr=0.1"], "Did you mean: lr"),
        (["--data.init_args.batchsize", "8"], "Did you mean: batch_size"),
        (["--checkpoint_every_n_step", "3"], "Did you mean: --checkpoint_every_n_steps"),
    ],
)
def test_mistyped_option_is_one_line_with_the_near_match(extra, message, capsys, tmp_path):
    assert main(["fit", "--config", "digits/simsiam", *extra, f"--trainer.logger.init_args.save_dir={tmp_path}"]) == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("reprzoo: error: ") and message in stderr and "usage" not in stderr


@pytest.mark.parametrize(
    "section,key,typo,message",
    [
        ("model", "lr", "lrr", "unknown SimSiam argument 'lrr'. Did you mean: lr"),
        ("trainer", "max_epochs", "max_epoch", "unknown trainer argument 'max_epoch'. Did you mean: max_epochs"),
        (None, "seed_everything", "seed_everythin", "unknown key 'seed_everythin'. Did you mean: seed_everything"),
    ],
)
def test_mistyped_recipe_key_is_one_line_with_the_near_match(tmp_path, capsys, section, key, typo, message):
    recipe = yaml.safe_load((Path(list_recipes()["digits/simsiam"])).read_text())
    keys = recipe if section is None else recipe[section].get("init_args", recipe[section])
    keys[typo] = keys.pop(key)
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["fit", "--config", str(path)]) == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1, stderr
    assert message in stderr


def test_run_failing_before_training_leaves_no_version_folder(tmp_path, monkeypatch):
    """A run that fails before its first step (here: the datamodule's setup) must not leave a `version_N` holding
    only an empty event file (it would look like a run and shift the next run's number)."""
    from reprzoo.datamodules import Digits

    def no_data(self, stage=None):
        raise RuntimeError("no data")

    monkeypatch.setattr(Digits, "setup", no_data)
    with pytest.raises(RuntimeError, match="no data"):
        main(["fit", "--config", "digits/simsiam", f"--trainer.logger.init_args.save_dir={tmp_path}", *TINY])
    assert not list((tmp_path / "simsiam").glob("version_*"))


def test_invalid_value_is_one_line(capsys):
    assert main(["fit", "--config", "digits/simsiam", "--data.batch_size=0"]) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr == "reprzoo: error: batch_size must be positive, got 0", stderr
    assert main(["fit", "--config", "digits/simsiam", "--trainer.max_epochs=abc"]) == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "trainer.max_epochs" in stderr and "'abc' given" in stderr, stderr


@pytest.mark.parametrize("command", ["finetune", "push", "compat", "list", "methods", "anomaly"])
def test_subcommand_help_has_one_usage_line(command, capsys):
    """`reprzoo finetune --help` starts with its own usage, once, not the whole command list after `usage: usage:`."""
    from reprzoo.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: reprzoo {command}") and "usage: usage" not in out and out.count("usage:") == 1
