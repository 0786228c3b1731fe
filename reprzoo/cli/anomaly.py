"""``reprzoo anomaly``: a Gaussian of normal data in a zoo encoder's features (Rippel et al., ICPR 2020,
arXiv:2005.14140; :mod:`reprzoo.anomaly`).

- ``reprzoo anomaly fit NAME --data D --normal-class K --out DIR``: fit the detector on the training samples of
  class K (a datamodule declaring ``normal_class``, e.g. ``Textures``, needs no ``--normal-class``).
- ``reprzoo anomaly score DIR [--data D]``: AUROC on the test split, class K normal against every other class and
  against each one alone.
- ``reprzoo anomaly protocol NAME --data D [--baseline]``: the one-class protocol, each class normal in turn, with
  the same architecture at random initialisation beside it.

``register(subparsers)`` adds them to the ``reprzoo`` parser (``reprzoo.cli.main.EXTRA_COMMANDS``). Options
``--data.KEY=VALUE`` go to the datamodule (``--data.texture grass``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from reprzoo.cli.zoo_commands import _data_overrides as _parse_data_overrides
from reprzoo.cli.zoo_commands import _pass_unknown_options
from reprzoo.errors import ReprzooError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("anomaly", help="anomaly detection: a Gaussian of normal features of a zoo encoder")
    sub = parser.add_subparsers(dest="anomaly_command", required=True, metavar="{fit,score,protocol}")

    p = sub.add_parser("fit", help="fit the detector on one class of a datamodule's training split")
    p.add_argument("name", help="zoo name, hf://org/repo[@rev], local:PATH or a directory")
    _model_options(p)
    p.add_argument("--normal-class", type=int, default=None, help="the normal class (default: the datamodule's)")
    p.add_argument("--out", required=True, help="folder for detector.safetensors and detector.json")
    p.set_defaults(func=cmd_fit)
    _pass_unknown_options(p)

    p = sub.add_parser("score", help="AUROC of a fitted detector on a datamodule's test split")
    p.add_argument("folder", metavar="DIR", help="what `reprzoo anomaly fit` wrote")
    p.add_argument("--data", default=None, help="datamodule (default: the one the detector was fitted on)")
    p.add_argument("--scores", default=None, help="also write the scores and labels to this .npz file")
    _run_options(p)
    p.set_defaults(func=cmd_score)
    _pass_unknown_options(p)

    p = sub.add_parser("protocol", help="one class normal, the others anomalous, each class in turn: AUROC per class")
    p.add_argument("name", help="zoo name, hf://org/repo[@rev], local:PATH or a directory")
    _model_options(p)
    p.add_argument("--classes", type=int, nargs="+", default=None, help="normal classes (default: every class)")
    p.add_argument("--baseline", action="store_true", help="also the same architecture at random initialisation (seed 0)")
    p.set_defaults(func=cmd_protocol)
    _pass_unknown_options(p)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="datamodule name (Digits, Textures, CIFAR10, ...)")
    p.add_argument("--revision", default=None)
    p.add_argument("--layers", nargs="+", default=None, help="encoder module names (default: its stem and stages)")
    p.add_argument("--random-init", type=int, default=None, metavar="SEED", help="use the architecture at random init")
    _run_options(p)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")


def _data_overrides(extra: list[str]) -> dict[str, Any]:
    for arg in extra:
        if arg.startswith("-") and not arg.startswith("--data."):
            raise ReprzooError(f"unrecognized option {arg.split('=', 1)[0]!r} (only --data.KEY=VALUE goes to the datamodule)")
    return _parse_data_overrides(extra)


def _encoder(name: str, revision: str | None, random_seed: int | None, device: str):
    from reprzoo.anomaly import random_init
    from reprzoo.zoo.api import load

    encoder = load(name, revision=revision, device=device)
    return encoder if random_seed is None else random_init(encoder, random_seed)


def _class_names(data: str) -> tuple[str, ...] | None:
    from reprzoo.zoo.classes import datamodule_class

    return getattr(datamodule_class(data), "class_names", None)


def cmd_fit(args: argparse.Namespace) -> int:
    from reprzoo.anomaly import GaussianAnomalyDetector, data_splits, layer_features, select_class
    from reprzoo.zoo.classes import datamodule_class

    normal = args.normal_class if args.normal_class is not None else getattr(datamodule_class(args.data), "normal_class", None)
    if normal is None:
        raise ReprzooError(f"{args.data} has no normal class of its own: name one with --normal-class K")
    overrides = _data_overrides(args.extra)
    encoder = _encoder(args.name, args.revision, args.random_init, args.device)
    train, _ = data_splits(args.data, encoder.transform, overrides)
    features, labels = layer_features(encoder, train, args.layers, args.batch_size, args.device)
    normal_features = select_class(features, labels, normal)
    detector = GaussianAnomalyDetector(
        record={
            "model": {"name": args.name, "revision": encoder.revision, "random_init": args.random_init},
            "data": {"name": args.data, "overrides": overrides},
            "normal_class": int(normal),
            "train_samples": len(next(iter(normal_features.values()))),
        }
    ).fit(normal_features)
    detector.save(args.out)
    summary = {"out": str(args.out), **detector.record, "layers": {k: len(v["mean"]) for k, v in detector.layers.items()}}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    model = f"{args.name} @ {encoder.revision or '-'}" + (
        f" at random init (seed {args.random_init})" if args.random_init is not None else ""
    )
    print(f"fitted on {summary['train_samples']} samples of class {normal} of {args.data} with {model}")
    print(
        "layers (dim, Ledoit-Wolf shrinkage): "
        + ", ".join(f"{k} ({v}, {detector.shrinkage[k]:.3f})" for k, v in summary["layers"].items())
    )
    print(f"wrote {args.out}; score it: reprzoo anomaly score {args.out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from reprzoo.anomaly import GaussianAnomalyDetector, auroc_report, data_splits, layer_features

    detector = GaussianAnomalyDetector.load(args.folder)
    record = detector.record
    data = args.data or record["data"]["name"]
    overrides = _data_overrides(args.extra) if args.extra or data != record["data"]["name"] else record["data"]["overrides"]
    model = record["model"]
    encoder = _encoder(model["name"], model["revision"], model.get("random_init"), args.device)
    _, test = data_splits(data, encoder.transform, overrides)
    features, labels = layer_features(encoder, test, list(detector.layers), args.batch_size, args.device)
    scores = detector.score(features)
    try:
        report = auroc_report(scores, labels, record["normal_class"])
    except ValueError as err:
        raise ReprzooError(f"cannot measure AUROC on the test split of {data}: {err}") from None
    report = {"model": model, "data": data, **report}
    if args.scores:
        np.savez(args.scores, scores=scores.numpy(), labels=labels.numpy())
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    names = _class_names(data)
    _print_report(
        report, names, f"{model['name']} on {data}" + (" (random init)" if model.get("random_init") is not None else "")
    )
    if args.scores:
        print(f"wrote {args.scores}: scores and labels")
    return 0


def _label(c: int, names) -> str:
    return f"{c} ({names[c]})" if names and 0 <= c < len(names) else str(c)


def _print_report(report: dict[str, Any], names, title: str) -> None:
    normal = report["normal_class"]
    print(
        f"{title}: normal class {_label(normal, names)}, {report['normal']} normal and {report['anomalous']} anomalous test samples"
    )
    print(f"  AUROC, normal vs every other class: {report['auroc']:.4f}")
    for c, value in report["auroc_per_anomalous_class"].items():
        print(f"  AUROC, normal vs class {_label(int(c), names):<12}: {value:.4f}")


def cmd_protocol(args: argparse.Namespace) -> int:
    from reprzoo.anomaly import data_splits, layer_features, one_class_protocol, random_init

    overrides = _data_overrides(args.extra)
    encoder = _encoder(args.name, args.revision, args.random_init, args.device)
    encoders = {"model": encoder}
    if args.baseline:
        encoders["random_init"] = random_init(encoder, 0 if args.random_init is None else args.random_init + 1)
    train, test = data_splits(args.data, encoder.transform, overrides)
    results = {}
    for key, model in encoders.items():
        train_features = layer_features(model, train, args.layers, args.batch_size, args.device)
        test_features = layer_features(model, test, args.layers, args.batch_size, args.device)
        try:
            results[key] = one_class_protocol(train_features, test_features, args.classes)
        except ValueError as err:
            raise ReprzooError(f"cannot measure AUROC on the test split of {args.data}: {err}") from None
    summary = {
        "model": args.name,
        "revision": encoder.revision,
        "data": args.data,
        **{
            key: {"auroc": {c: r["auroc"] for c, r in res.items()}, "mean_auroc": _mean(res), "reports": res}
            for key, res in results.items()
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    names = _class_names(args.data)
    columns = list(results)
    print(f"one-class protocol on {args.data} with {args.name}: AUROC of each class as normal, the others anomalous")
    print(f"  {'normal class':<16}" + "".join(f"{c:>14}" for c in columns))
    for c in results["model"]:
        print(f"  {_label(c, names):<16}" + "".join(f"{results[k][c]['auroc']:>14.4f}" for k in columns))
    print(f"  {'mean':<16}" + "".join(f"{summary[k]['mean_auroc']:>14.4f}" for k in columns))
    if len(results["model"]) == 1:  # one normal class (Textures): the anomalous classes one by one
        (c,) = results["model"]
        for a in results["model"][c]["auroc_per_anomalous_class"]:
            values = "".join(f"{results[k][c]['auroc_per_anomalous_class'][a]:>14.4f}" for k in columns)
            print(f"  {'vs ' + _label(a, names):<16}" + values)
    return 0


def _mean(results: dict[int, dict[str, Any]]) -> float:
    return float(np.mean([r["auroc"] for r in results.values()]))
