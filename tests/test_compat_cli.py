"""The compatible-representation workflow through the CLI on a temporary local hub: train and push an old model,
`reprzoo finetune OLD --compatible BCT` a successor, push it (config records compatible_with, the card its
cross-model retrieval), and `reprzoo compat OLD NEW` prints the compatibility matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reprzoo.cli.main import main

TINY = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false"]
OLD, NEW = "bct-tinyresnet-digits.old", "bct-tinyresnet-digits.new"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def task_data(tmp_path: Path, task: int) -> str:
    recipe = yaml.safe_load((Path(__file__).parents[1] / "reprzoo/zoo/recipes/digits/bct.yaml").read_text())
    data = recipe["data"]
    data["init_args"]["task"] = task
    path = tmp_path / f"data_task{task}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_old_model_successor_push_and_compat(tmp_path, home, capsys):
    runs = tmp_path / "runs"
    assert (
        main(["fit", "--config", "digits/bct", f"--trainer.logger.init_args.save_dir={runs}", "--trainer.max_epochs=1", *TINY])
        == 0
    )
    assert main(["push", str(runs / "bct" / "version_0"), "--name", OLD]) == 0
    capsys.readouterr()

    assert (
        main(
            [
                "finetune",
                OLD,
                "--compatible",
                "BCT",
                "--data",
                task_data(tmp_path, 1),
                "--epochs",
                "1",
                "--root-dir",
                str(runs),
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"compatible with {OLD}@" in out and "val/compat_top1" in out
    successor = runs / "bct" / "version_1"
    config = yaml.safe_load((successor / "config.yaml").read_text())
    assert config["model"]["init_args"]["old_model_name"].startswith(f"{OLD}@")
    metrics = json.loads((successor / "metrics.json").read_text())
    assert {"val/compat_top1", "val/compat_map", "val/old_top1", "val/ecc"} <= set(metrics)

    assert main(["push", str(successor), "--name", NEW]) == 0
    capsys.readouterr()
    assert main(["info", NEW, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["lineage"]["compatible_with"] == config["model"]["init_args"]["old_model_name"]
    assert info["config"]["method"]["init_args"]["old_model"] is None  # a path on this machine is not published
    assert f"Backward-compatible with `{OLD}@" in info["card"] and "cross-model retrieval top-1" in info["card"]

    assert main(["compat", OLD, NEW, "--data", "Digits", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["models"] == [OLD, NEW] and summary["matrix"][0][1] is None
    assert all(0.0 <= summary["matrix"][t][j] <= 1.0 for t, j in ((0, 0), (1, 0), (1, 1)))
    assert summary["pairs"][0]["ecc"] == (summary["matrix"][1][0] > summary["matrix"][0][0])
    assert summary["average_compatibility"] in (0.0, 1.0)
    assert main(["compat", OLD, NEW, "--data", "Digits", "--metric", "map"]) == 0
    out = capsys.readouterr().out
    assert "cross-model retrieval map" in out and "AC (average compatibility)" in out


def test_compatible_needs_a_compatible_method(home, tmp_path):
    assert main(["finetune", OLD, "--compatible", "SimSiam", "--data", "Digits"]) == 2
