"""Representation analysis of zoo models: ``analyze(["model-a", "model-b"], data="Digits", out="report/")`` loads the
models by name, embeds the evaluation split once per model (intermediate layers through forward hooks), runs every
analysis that applies (the catalogue's METRIC rows, functions in :mod:`reprzoo.metrics.analysis`) on those features,
and writes ``analysis.json`` and a self-contained ``report.html``. ``reprzoo analyze`` is its command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from reprzoo.analysis.features import ModelFeatures, collect_features, default_layers
from reprzoo.analysis.report import Section, to_json, write_html
from reprzoo.analysis.sections import SECTIONS, AnalysisContext
from reprzoo.errors import ReprzooError


def analyze(
    names: list[str],
    data: str,
    out: str | Path,
    *,
    layers: list[str] | None = None,
    analyses: list[str] | None = None,
    max_samples: int = 1000,
    split: str = "test",
    data_overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    quick: bool = False,
) -> dict[str, Any]:
    """Analyse zoo models on a dataset; returns what ``analysis.json`` holds.

    Args:
        names: one or more zoo names (pairwise analyses need two or more).
        data: image models: a datamodule name (its evaluation split, with each model's own preprocessing) or a folder
            of images; text models: a labelled text evaluation (``newsgroups``, ``debian_sections``) or a file of
            one text per line (:func:`text_dataset`), through each model's own tokenizer.
        out: folder for ``analysis.json`` and ``report.html`` (created; existing files there are replaced).
        layers: module names inside each model's encoder (default: its stages or blocks).
        analyses: section keys to run (default: all that apply; ``reprzoo analyze --list`` names them).
        max_samples: a seeded subset of the split this large (every metric is computed on it; quadratic ones
            cost O(max_samples^2)); the report states it.
        split: ``test`` (the held-out split) or ``train``.
        data_overrides: datamodule options (``{"root": ...}``).
        device: where the models run.
        batch_size: embedding batch size.
        seed: the subset's and the sampled metrics' seed.
        progress: show progress on stderr.
        quick: a smoke run that checks that everything runs, not what it finds: at most 60 samples and a few
            inversion steps (``REPRZOO_SMOKE=1`` sets it for the command line).
    """
    from reprzoo.atomic import atomic_write_text
    from reprzoo.zoo.api import load
    from reprzoo.zoo.embedding import embedding_dataset

    if not names:
        raise ReprzooError("analyze needs at least one model name")
    if max_samples < 10:
        raise ReprzooError(f"--max-samples {max_samples} is too few for any analysis; use at least 10 (default 1000)")
    unknown = sorted(set(analyses or []) - set(SECTIONS))
    if unknown:
        from reprzoo.errors import UnknownNameError

        raise UnknownNameError("analysis", unknown[0], sorted(SECTIONS))
    keys = [k for k in SECTIONS if analyses is None or k in analyses]
    if quick:
        max_samples = min(max_samples, QUICK_SAMPLES)
    say = _progress(progress)
    models: list[ModelFeatures] = []
    labels = subset = None
    modalities: set[str] = set()
    for name in names:
        encoder = load(name, device=device)
        modality = (encoder.config.get("preprocessing") or {}).get("modality", "image")
        if modalities and modality not in modalities:
            raise ReprzooError(f"{name} is a {modality} model and {names[0]} is not: analyse models of one modality together")
        modalities.add(modality)
        if modality == "text":
            dataset, collate = text_dataset(data, split), _TextCollate(encoder.tokenizer)
        else:
            dataset, collate = embedding_dataset(data, split, encoder.transform, dict(data_overrides or {}))[0], None
        if subset is None:
            generator = torch.Generator().manual_seed(seed)
            subset = torch.randperm(len(dataset), generator=generator)[: min(max_samples, len(dataset))].sort().values
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, subset.tolist()), batch_size=batch_size, collate_fn=collate
        )
        say(f"embedding {len(subset)} samples of {data} with {name} ({len(layers or default_layers(encoder.encoder))} layers)")
        features, model_labels = collect_features(encoder, loader, layers, device, keep_tokens=True)
        if modality == "image":
            first = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, subset[:4].tolist()), batch_size=4)
            features.inputs = next(iter(first))[0]
        if labels is not None and not torch.equal(labels, model_labels):
            raise ReprzooError("the models saw different labels for the same samples; analyse them on the same data")
        labels = model_labels
        models.append(features)
    context = AnalysisContext(models=models, labels=labels, max_samples=max_samples, seed=seed, data=data, quick=quick)
    sections: list[Section] = []
    for key in keys:
        spec = SECTIONS[key]
        started = time.perf_counter()
        reason = spec.applies(context)
        if reason:
            section = spec.section(skipped=reason)
        else:
            say(f"{spec.title}")
            with threadpool_limits(1):  # many small BLAS problems (probes, fits): threads only contend
                section = spec.run(context)
        section.seconds = time.perf_counter() - started
        sections.append(section)
    header = {
        "models": {m.name: m.revision for m in models},
        "data": data,
        "split": split,
        "samples": int(len(labels)),
        "max_samples": max_samples,
        "seed": seed,
        "layers": {m.name: list(m.layers) for m in models},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = "Representation analysis: " + ", ".join(names)
    atomic_write_text(out / "analysis.json", to_json(header, sections))
    atomic_write_text(out / "report.html", write_html(title, {**header, "models": ", ".join(names)}, sections))
    say(f"wrote {out / 'report.html'} and {out / 'analysis.json'}")
    return {**header, "sections": {s.key: {"values": s.values, "skipped": s.skipped} for s in sections}}


QUICK_SAMPLES = 60


def text_dataset(data: str, split: str = "test") -> list[tuple[str, int]]:
    """``(text, label)`` pairs to analyse a text model on: a labelled evaluation (``newsgroups``,
    ``debian_sections``: its held-out 30% for ``split="test"``, its kNN bank otherwise) or a UTF-8 file of one text per
    line (label -1)."""
    from reprzoo.datamodules.text.sentences import LABELLED_EVALUATIONS, labelled_split, labelled_texts

    path = Path(data).expanduser()
    if path.is_file():
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as err:
            raise ReprzooError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
        texts = [line for line in lines if line]
        if not texts:
            raise ReprzooError(f"{path} holds no text (one text per line)")
        return [(text, -1) for text in texts]
    if data not in LABELLED_EVALUATIONS:
        from reprzoo.errors import UnknownNameError

        raise UnknownNameError("text data for analysis (or a file)", data, list(LABELLED_EVALUATIONS))
    texts, labels, _ = labelled_texts(data)
    bank, queries = labelled_split(data)
    return [(texts[i], labels[i]) for i in (queries if split == "test" else bank)]


class _TextCollate:
    """A batch of ``(text, label)`` through a model's own tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, batch):
        return self.tokenizer([text for text, _ in batch]), torch.tensor([label for _, label in batch])


def _progress(enabled: bool):
    if not enabled:
        return lambda message: None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda message: console.log(message)


__all__ = ["SECTIONS", "analyze", "text_dataset"]
