"""Smoke tests of the benchmark scripts (benchmarks/*.py): they run and report numbers.

No timing is asserted; the real measurements are documented in BENCHMARKS.md. lightly (the ``bench`` extra) is
needed by the comparisons with lightly, not by the kNN benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

requires_lightly = pytest.mark.skipif(importlib.util.find_spec("lightly") is None, reason="needs lightly (bench extra)")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_simsiam.py"


def _load_script(name: str = "bench_simsiam"):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@requires_lightly
def test_bench_simsiam_quick(tmp_path):
    bench = _load_script()
    out = tmp_path / "bench.json"
    argv = ["--quick", "--steps", "2", "--warmup", "1", "--batch-size", "4", "--image-size", "16", "--workers", "0"]
    results = bench.main([*argv, "--out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert {"config", "environment", "parameters", "pipelines", "ratios", "medians", "rounds"} <= set(results)
    assert results["config"]["batch_size"] == 4 and results["config"]["image_size"] == 16
    assert results["parameters"]["lightly_total"] == results["parameters"]["reprzoo_total"]

    expected = {
        "lightly",
        "reprzoo",
        "reprzoo_fit",
        "lightly_model_only",
        "lightly_model_only_channels_last",
        "reprzoo_model_only",
        "lightly_pipeline_only",
        "reprzoo_pipeline_only",
    }
    assert set(results["medians"]) == expected
    assert all(len(values) == 1 for values in results["rounds"].values())
    for value in results["medians"].values():
        assert math.isfinite(value) and value > 0

    assert set(results["pipelines"]) == {"lightly", "reprzoo", "reprzoo_fit"}
    for row in results["pipelines"].values():
        for key in ("end_to_end", "model_only", "e2e_over_ceiling", "pipeline_only"):
            assert math.isfinite(row[key]) and row[key] > 0
    for value in results["ratios"].values():
        assert value is not None and math.isfinite(value) and value > 0
    assert (
        set(results["paired_ratios"]) <= set(results["ratios"])
        and "reprzoo_fit_over_lightly_end_to_end" in results["paired_ratios"]
    )

    table = bench.markdown_table(results)
    assert table.count("\n") == 5 and "lightly" in table and "`reprzoo fit`" in table

    # the fit candidate is the command's config: the example's model and data, the timer added as a user callback
    config = bench.reprzoo_fit_config(bench.parse_args(argv), tmp_path / "runs")
    assert config["model"]["class_path"] == "reprzoo.lightning_modules.SimSiam"
    assert config["trainer"]["max_steps"] == 3 and config["trainer"]["callbacks"][0]["class_path"].endswith(".StepTimes")


def test_bench_simsiam_rejects_bad_settings():
    bench = _load_script()
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "0"])


@requires_lightly
def test_bench_methods_quick(tmp_path):
    """benchmarks/bench_methods.py builds both sides of every method and reports speed and kNN (2 of them run)."""
    bench = _load_script("bench_methods")
    for name, (lightly_cls, _, _) in bench.METHODS.items():  # every pair builds, with the same backbone
        lightly_side, reprzoo_side = lightly_cls(), bench.reprzoo_model(name)
        assert type(lightly_side.backbone) is type(reprzoo_side.backbone)
    results = bench.main(["--quick", "--methods", "SimCLR", "MoCoV2", "--out", str(tmp_path / "m.json")])
    for row in results["methods"].values():
        assert row["speed_ratio"] > 0 and 0 <= row["reprzoo"]["knn_top1"] <= 1 and 0 <= row["lightly"]["knn_top1"] <= 1


@requires_lightly
def test_bench_fastpath_models_match():
    """Every method at every setting: lightly's and reprzoo's models have the same backbone parameter count."""
    bench = _load_script("bench_fastpath")
    for name, setting in bench.SETTINGS.items():
        for method in bench.METHODS:
            counts = bench.parameter_counts(
                bench.LightlyModel(method, setting.arch, setting.heads[method]), bench.reprzoo_model(method, setting)
            )
            hidden, out, _ = setting.heads[method]
            # SimSiam's heads are identical; BYOL's differ by reprzoo's biases before BN (projector, predictor,
            # target projector), SimCLR's by the affine parameters of lightly's output BN
            extra = {"simsiam": 0, "byol": 3 * hidden, "simclr": -2 * out}[method]
            assert counts["lightly_backbone"] == counts["reprzoo_backbone"], (name, method)
            assert counts["reprzoo_total"] - counts["lightly_total"] == extra, (name, method, counts)


@requires_lightly
def test_bench_fastpath_quick(tmp_path):
    bench = _load_script("bench_fastpath")
    out = tmp_path / "fastpath.json"
    results = bench.main(["--quick", "--settings", "resnet18@32", "--out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(results, default=str))
    assert results["environment"]["device_name"] and results["config"]["quick"]
    assert [(g["method"], g["image_size"], g["batch_size"]) for g in results["results"]] == [
        ("simsiam", 16, 4),
        ("byol", 16, 4),
        ("simclr", 16, 4),
    ]
    candidates = {"lightly", "lightly_model_only", "reprzoo_cpu", "reprzoo_device", "reprzoo_model_only"}
    for group in results["results"]:
        assert set(group["rounds"]) == candidates and all(len(v) == 1 for v in group["rounds"].values())
        assert set(group["pipelines"]) == {"lightly", "reprzoo_cpu", "reprzoo_device"}
        for row in group["pipelines"].values():
            assert all(math.isfinite(value) and value > 0 for value in row.values())
        assert group["pipelines"]["lightly"]["e2e_vs_lightly"] == 1.0

    table = bench.markdown_table(results)
    assert table.count("| reprzoo, augment_on=device |") == 3 and results["environment"]["device_name"] in table


def test_bench_fastpath_rejects_bad_settings():
    bench = _load_script("bench_fastpath")
    for argv in (["--steps", "0"], ["--batch-size", "1"], ["--settings", "vit@224"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)


def test_bench_knn_quick_agrees_with_sklearn(tmp_path):
    """reprzoo's batched kNN and sklearn's KNeighborsClassifier with the same rule predict the same classes."""
    bench = _load_script("bench_knn")
    out = tmp_path / "knn.json"
    results = bench.main(["--quick", "--out", str(out)])

    assert json.loads(out.read_text()) == results
    assert [row["k"] for row in results["results"]] == [200, 20]
    for row in results["results"]:
        assert row["agreement"] >= 0.99, row
        assert abs(row["reprzoo_top1"] - row["sklearn_top1"]) <= 0.01
        assert 0.5 < row["reprzoo_top1"] < 1.0  # the clusters overlap: neither chance (0.1) nor trivial
        assert row["reprzoo_s"] > 0 and row["sklearn_s"] > 0
    assert bench.markdown_table(results).count("\n") == 5


def test_bench_knn_rejects_k_above_bank():
    bench = _load_script("bench_knn")
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--bank", "100", "--k", "200"])


def test_bench_word2vec_quick(tmp_path):
    """The gensim comparison runs and reports both libraries on the same corpus and vocabulary (no timing asserted)."""
    pytest.importorskip("gensim")
    bench = _load_script("bench_word2vec")
    out = tmp_path / "bench.json"
    results = bench.main(["--quick", "--models", "sgns", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    rows = {r["library"]: r for r in results["rows"]}
    assert set(rows) == {"gensim", "reprzoo"} and rows["gensim"]["vocab"] == rows["reprzoo"]["vocab"]
    for row in rows.values():
        assert row["words_per_s"] > 0 and math.isfinite(row["wordsim353_spearman"])


def test_bench_mnrl_quick(tmp_path):
    """The sentence-transformers comparison runs both libraries from the same weights (no timing asserted)."""
    pytest.importorskip("sentence_transformers")
    bench = _load_script("bench_mnrl")
    results = bench.main(["--quick", "--pairs", "300", "--out", str(tmp_path / "bench.json")])
    rows = {r["library"]: r for r in results["rows"]}
    assert set(rows) == {"reprzoo", "sentence-transformers"}
    assert all(row["pairs_per_s"] > 0 for row in rows.values())
    # the same weights, batches, loss and seeded dropout: the two train to the same retrieval numbers
    assert abs(rows["reprzoo"]["mrr@10"] - rows["sentence-transformers"]["mrr@10"]) < 0.02


def test_bench_index_quick(tmp_path):
    """The index benchmark runs every kind next to faiss and bm25s used directly (no timing asserted): the exact
    kinds agree with faiss's flat index."""
    pytest.importorskip("faiss")
    pytest.importorskip("bm25s")
    bench = _load_script("bench_index")
    results = bench.main(["--quick", "--out", str(tmp_path / "bench.json")])
    rows = results["rows"]
    assert len(rows) == 7 and all(row["queries_per_s"] > 0 for row in rows)
    flat = next(row for row in rows if row["kind"] == "IndexFlatIP")
    assert flat["recall@10"] == 1.0  # faiss's exact top 10 are ours
