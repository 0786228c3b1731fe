"""``reprzoo analyze`` on the two shipped models: analysis.json holds every section (run, or skipped with a reason),
and the page renders in a real headless browser (Debian's chromium, offline) with every figure decoded and nothing
on the console."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from reprzoo.errors import ReprzooError
from test_text_interop import sentence_model  # noqa: F401  (a pushed MNRL encoder, a fixture)

MODELS = ["simsiam-tinyresnet-digits", "byol-tinyresnet-digits"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from reprzoo.analysis import analyze

    out = tmp_path_factory.mktemp("analysis")
    result = analyze(MODELS, "Digits", out, progress=False, quick=True)  # 60 samples, 5 inversion steps
    return out, result


def test_every_analysis_is_run_or_says_why_not(report):
    from reprzoo.analysis import SECTIONS

    out, result = report
    doc = json.loads((out / "analysis.json").read_text())
    assert set(doc["sections"]) == set(SECTIONS) == set(result["sections"])
    assert doc["samples"] == 60 and doc["max_samples"] == 60 and list(doc["models"]) == MODELS
    for key, section in doc["sections"].items():
        assert section["values"] or section["skipped"] or key == "embedding_map", key
        if section["skipped"]:
            assert len(section["skipped"]) > 10  # a reason, not a flag
    assert not doc["sections"]["embedding_map"]["skipped"]
    for model in MODELS:
        assert doc["layers"][model]  # intermediate layers were hooked


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(browser() is None, reason="chromium is not installed (make test installs it where it can: apt)")
def test_the_page_renders_in_a_headless_browser(report):
    from reprzoo.analysis import SECTIONS

    out, _ = report
    page = out / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched
    run = subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            f"--user-data-dir={out / 'chromium-profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # no script error, no failed resource
    expected = int(re.search(r'data-figures-expected="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-figures-loaded="(\d+)"', dom).group(1))
    assert expected >= 1 and loaded == expected
    for key in SECTIONS:
        assert f'id="{key}"' in dom


def test_bad_requests_are_one_line(tmp_path):
    from reprzoo.analysis import analyze

    with pytest.raises(ReprzooError, match="Did you mean: embedding_map"):
        analyze(MODELS[:1], "Digits", tmp_path, analyses=["embeding_map"], progress=False)
    with pytest.raises(ReprzooError, match="at least 10"):
        analyze(MODELS[:1], "Digits", tmp_path, max_samples=3, progress=False)
    with pytest.raises(ReprzooError, match="layer of"):
        analyze(MODELS[:1], "Digits", tmp_path, layers=["stages.9"], progress=False)


def test_an_analysis_metric_is_logged_during_validation():
    """AnalysisEvaluator gathers the queries' features (not the bank's) and logs the scalars of its function on them,
    capped at max_samples."""
    import torch

    from reprzoo.metrics.analysis import AnalysisEvaluator, isoscore, neural_collapse

    seen = {}
    evaluator = AnalysisEvaluator(lambda f, y: {**isoscore(f), "nc1": neural_collapse(f, y)["nc1"], "n": len(f)}, max_samples=50)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 8, generator=g), torch.arange(80) % 4
    evaluator.update(torch.zeros(10, 8), torch.zeros(10, dtype=torch.long), bank=True, module=None, batch=None)
    for part in (slice(0, 40), slice(40, 80)):
        evaluator.update(x[part], y[part], bank=False, module=None, batch=None)
    evaluator.compute_and_log(lambda name, value: seen.__setitem__(name, value), "val", None)
    assert seen["val/n"] == 50 and set(seen) == {"val/isoscore", "val/isotropy_defect", "val/dims_used", "val/nc1", "val/n"}
    keep = torch.randperm(80, generator=torch.Generator().manual_seed(0))[:50]
    assert seen["val/isoscore"] == isoscore(x[keep])["isoscore"]
    evaluator.reset()
    seen.clear()
    evaluator.compute_and_log(lambda name, value: seen.__setitem__(name, value), "val", None)
    assert not seen  # nothing seen, nothing logged


def test_a_text_model_is_analysed_on_its_token_states(sentence_model, tmp_path):  # noqa: F811 (imported fixture)
    """A pushed transformer text encoder: its BERT layers are hooked, the token-state analyses (position/context,
    prompt entropy and curvature) run on real text, image-only ones say why not."""
    from reprzoo.analysis import analyze

    result = analyze([sentence_model], "newsgroups", tmp_path / "out", progress=False, quick=True)
    sections = result["sections"]
    assert result["samples"] == 60 and result["layers"][sentence_model][-1] == "model.encoder.layer.1"
    for key in ("position_context", "layer_quality", "isotropy", "neural_collapse"):
        assert not sections[key]["skipped"] and sections[key]["values"], key
    shares = next(iter(sections["position_context"]["values"].values()))
    assert abs(shares["pos_share"] + shares["ctx_share"] + shares["resid_share"] - 1) < 1e-6
    assert "image" in sections["inversion"]["skipped"]
    with pytest.raises(ReprzooError, match="Did you mean: newsgroups"):
        analyze([sentence_model], "newsgroup", tmp_path / "out", progress=False)
