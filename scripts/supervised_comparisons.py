"""The comparisons that define the metric-and-supervised wing's papers, side by side in one run.

Each comparison trains its methods' digits recipes (``reprzoo/zoo/recipes/digits/``) under one data protocol (the
comparison's options override each recipe's, so every method sees the same labels), for the same epochs and
seed, and reports each method's metric at random init and after training:

- ``metric-learning``: zero-shot split (train on the first half of the classes), MAP@R / R-precision / P@1
  among the unseen classes ("A Metric Learning Reality Check"): Multi-Similarity against the contrastive and
  triplet losses, SupCon, cross-entropy, GPM, the hyperspherical classifier, ArcFace and CosFace.
- ``label-noise``: 40% symmetric noise on the training labels, classifier accuracy on the clean test labels: ELR
  against cross-entropy.
- ``semi-supervised``: 10 labels per class, 7x unlabelled per batch: ShrinkMatch against FixMatch, FixMatch with
  distribution alignment (ShrinkMatch's base) and the labelled samples alone (lambda_u = 0).
- ``mixup``: AdaMixUp against MixUp and cross-entropy.
- ``batchformer``: BatchFormer against cross-entropy.

``--data emoji`` runs the same recipes on the Emoji set (57 Unicode subgroups) instead of digits.

Usage (from the repository root; minutes of CPU per run and comparison)::

    python scripts/supervised_comparisons.py metric-learning --epochs 30 --seeds 0 --out docs/comparisons
    python scripts/supervised_comparisons.py metric-learning --data emoji --epochs 30
    python scripts/supervised_comparisons.py label-noise --epochs 40 --seeds 0 1 --label-noise asymmetric:0.2
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import lightning as L
import yaml

from reprzoo.lightning_modules import get_method
from reprzoo.zoo.recipes import resolve_recipe

ZERO_SHOT = {"class_split": "zero_shot"}
RETRIEVAL = ("val/map_at_r", "val/r_precision", "val/precision_at_1")
CLASSIFIER = ("val/classifier_top1", "val/knn_top1")
#: comparison -> (data options shared by every run, metrics, runs: (label, method, model overrides, data overrides))
COMPARISONS: dict[str, tuple[dict, tuple[str, ...], list[tuple[str, str, dict, dict]]]] = {
    "metric-learning": (
        ZERO_SHOT,
        RETRIEVAL,
        [
            ("Multi-Similarity", "MultiSimilarity", {}, {}),
            ("contrastive", "PairContrastive", {}, {}),
            ("triplet", "Triplet", {}, {}),
            ("SupCon", "SupCon", {}, {}),
            ("cross-entropy", "SupervisedCE", {}, {}),
            ("GPM", "GlobalProxyMining", {}, {}),
            ("hyperspherical", "HypersphericalEmbedding", {}, {}),
            ("ArcFace", "ArcFace", {}, {}),
            ("CosFace", "CosFace", {}, {}),
        ],
    ),
    "label-noise": (
        {"label_noise": {"kind": "symmetric", "rate": 0.4}},
        CLASSIFIER,
        [("ELR", "ELR", {}, {}), ("cross-entropy", "SupervisedCE", {}, {})],
    ),
    "semi-supervised": (
        {},
        CLASSIFIER[:1],
        [
            ("ShrinkMatch", "ShrinkMatch", {}, {}),
            ("FixMatch", "FixMatch", {}, {}),
            ("FixMatch + DA", "FixMatch", {"distribution_alignment": True}, {}),
            ("labelled only", "FixMatch", {"lambda_u": 0.0}, {}),
        ],
    ),
    "mixup": ({}, CLASSIFIER, [("AdaMixUp", "AdaMixUp", {}, {}), ("MixUp", "MixUp", {}, {}), ("none", "SupervisedCE", {}, {})]),
    "batchformer": ({}, CLASSIFIER, [("BatchFormer", "BatchFormer", {}, {}), ("without", "SupervisedCE", {}, {})]),
}
EMOJI = {"class_path": "reprzoo.datamodules.Emoji", "drop": ("hflip_prob",)}


def build(method: str, data: str, model_overrides: dict, data_overrides: dict):
    recipe = yaml.safe_load(resolve_recipe(f"digits/{method.lower()}").read_text())
    data_args = {k: v for k, v in recipe["data"]["init_args"].items() if k not in ("class_split", "label_noise")}
    data_args.update(data_overrides)
    class_path = recipe["data"]["class_path"] if data == "digits" else EMOJI["class_path"]
    module, _, name = class_path.rpartition(".")
    datamodule = getattr(importlib.import_module(module), name)(**data_args)
    model_args = {**recipe["model"]["init_args"], **model_overrides}
    model = get_method(method)(num_classes=datamodule.num_classes, **model_args)
    return model, datamodule


def run(comparison: str, data: str, epochs: int, seed: int, label_noise: dict | None = None) -> list[dict]:
    shared, metrics, runs = COMPARISONS[comparison]
    if label_noise and "label_noise" in shared:
        shared = {**shared, "label_noise": label_noise}
    rows = []
    for label, method, model_overrides, data_overrides in runs:
        L.seed_everything(seed)
        model, datamodule = build(method, data, model_overrides, {**shared, **data_overrides})
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=epochs,
            check_val_every_n_epoch=epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        before = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
        started = time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
        after = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {"comparison": comparison, "data": data, "run": label, "method": method, "seed": seed, "epochs": epochs}
        if "label_noise" in shared:
            row["label_noise"] = shared["label_noise"]
        for metric in metrics:
            if metric in after:
                row[metric] = {
                    "random_init": round(float(before.get(metric, float("nan"))), 4),
                    "trained": round(after[metric], 4),
                }
        row["train_seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    metrics = [m for m in (*RETRIEVAL, *CLASSIFIER) if any(m in r for r in rows)]
    head = "| comparison | data | run | seed | epochs | " + " | ".join(f"{m} init -> trained" for m in metrics) + " | s |"
    lines = [head, "|" + "---|" * (6 + len(metrics))]
    for r in rows:
        cells = [f"{r[m]['random_init']:.3f} -> {r[m]['trained']:.3f}" if m in r else "" for m in metrics]
        lines.append(
            f"| {r['comparison']} | {r['data']} | {r['run']} | {r['seed']} | {r['epochs']} | "
            + " | ".join(cells)
            + f" | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("comparison", choices=sorted(COMPARISONS))
    parser.add_argument("--data", choices=("digits", "emoji"), default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--label-noise", default="symmetric:0.4", help="KIND:RATE of the label-noise comparison")
    parser.add_argument("--out", help="a folder: writes <comparison>-<data>.json and .md there")
    args = parser.parse_args(argv)
    kind, _, rate = args.label_noise.partition(":")
    noise = {"kind": kind, "rate": float(rate)}
    rows = [row for seed in args.seeds for row in run(args.comparison, args.data, args.epochs, seed, noise)]
    table = markdown(rows)
    print(table)
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{args.comparison}-{args.data}"
        if args.comparison == "label-noise":
            stem += f"-{kind}{round(100 * noise['rate'])}"
        (folder / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
        (folder / f"{stem}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
