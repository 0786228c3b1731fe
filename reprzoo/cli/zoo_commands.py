"""The hub commands of ``reprzoo``: ``list``, ``info``, ``push``, ``finetune``, ``embed`` and ``compat``.

``register(subparsers)`` adds them to the ``reprzoo`` parser (see ``reprzoo.cli.main.EXTRA_COMMANDS``). Options a
command does not define (``--trainer.max_epochs=3``, ``--data.init_args.root=data``) pass through to LightningCLI
(``finetune``) or to the datamodule (``embed``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reprzoo.errors import ReprzooError
from reprzoo.zoo.embedding import embed_split as _embed_split
from reprzoo.zoo.embedding import embedding_dataset as _embedding_dataset
from reprzoo.zoo.embedding import to_device as _to_device

SUMMARY_METRICS = ("val/knn_top1", "val/top1", "val/probe_top1")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="zoo models (local hub, shipped, pushed to the Hugging Face Hub)")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. '*simsiam*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser("info", help="a model's card, metrics, files and revisions")
    p.add_argument("name", help="zoo name, hf://org/repo[@rev], local:PATH or a directory")
    p.add_argument("--revision", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = subparsers.add_parser("push", help="publish a finished run as a new revision of a zoo model")
    p.add_argument("run", help="run directory (runs/<method>/version_N) or a checkpoint inside one")
    p.add_argument("--name", required=True, help="method-backbone-dataset[.tag], e.g. simsiam-tinyresnet-digits.mine")
    p.add_argument("--to", default=None, help="hf://org/repo for the Hugging Face Hub, local:DIR for another hub folder")
    p.add_argument("--private", action="store_true", help="create the Hugging Face repository as private")
    p.add_argument("--base-model", default=None, help="the model this one was fine-tuned from (if the run does not say)")
    p.add_argument("--license", default="apache-2.0")
    p.add_argument("--force", action="store_true", help="push even over the name of a model shipped with reprzoo")
    p.set_defaults(func=cmd_push)

    p = subparsers.add_parser("finetune", help="fine-tune a zoo model on labelled data (LightningCLI underneath)")
    p.add_argument("name", help="zoo name, hf://org/repo[@rev], local:PATH or a directory")
    p.add_argument("--data", required=True, help="datamodule name (Digits, CIFAR10, ...) or a LightningCLI data YAML")
    p.add_argument("--task", choices=("linear", "full", "knn"), default="linear")
    p.add_argument("--revision", default=None)
    p.add_argument("--epochs", type=int, default=10, help="max epochs (linear and full)")
    p.add_argument("--root-dir", default="runs", help="where the run is written")
    p.add_argument(
        "--compatible",
        default=None,
        metavar="METHOD",
        help="train a successor compatible with NAME using this compatible method (e.g. BCT) instead of fine-tuning",
    )
    p.set_defaults(func=cmd_finetune)
    _pass_unknown_options(p)

    p = subparsers.add_parser("compat", help="cross-model retrieval of zoo models: the compatibility matrix")
    p.add_argument("names", nargs="+", metavar="NAME", help="two or more models, oldest first (zoo names, hf://, local:)")
    p.add_argument(
        "--data", required=True, help="datamodule name (Digits, CIFAR10, ...): train split = gallery, test split = queries"
    )
    p.add_argument("--metric", choices=("top1", "map"), default="top1")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compat)
    _pass_unknown_options(p)

    p = subparsers.add_parser("embed", help="embed a dataset, a folder of images or strings with a zoo model")
    p.add_argument("name", help="zoo name, hf://org/repo[@rev], local:PATH or a directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="datamodule name (Digits, CIFAR10, ...) or a folder of images")
    source.add_argument("--text", action="append", help="a string to embed (a text model); repeat for several")
    source.add_argument("--file", help="a UTF-8 text file, one string to embed per line (a text model)")
    p.add_argument("--out", default=None, help="output .npy file, (N, dim) float32 (text: default prints the vectors)")
    p.add_argument("--split", choices=("train", "test"), default="test", help="datamodule split")
    p.add_argument("--labels", default=None, help="also write the labels to this .npy file")
    p.add_argument("--revision", default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_embed)
    _pass_unknown_options(p)

    p = subparsers.add_parser(
        "analyze", help="representation analysis of zoo models: analysis.json and a self-contained HTML report"
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="one or more zoo models (pairwise analyses need two)")
    p.add_argument(
        "--data",
        help="image models: a datamodule name (its held-out split) or an image folder; text models: newsgroups, "
        "debian_sections or a file of one text per line (each model uses its own preprocessing)",
    )
    p.add_argument("--out", default="analysis", help="output folder (default: ./analysis)")
    p.add_argument("--layers", nargs="+", default=None, help="encoder module names (default: its stages or blocks)")
    p.add_argument("--only", nargs="+", default=None, metavar="ANALYSIS", help="run only these analyses (see --list)")
    p.add_argument("--max-samples", type=int, default=1000, help="a seeded subset this large (default 1000)")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--list", action="store_true", help="list the analyses and what each needs, then exit")
    p.set_defaults(func=cmd_analyze)
    _pass_unknown_options(p)


def cmd_analyze(args: argparse.Namespace) -> int:
    """``reprzoo analyze NAME [NAME2 ...] --data D --out DIR``."""
    from reprzoo.analysis import SECTIONS, analyze
    from reprzoo.cli.training import smoke_run

    if args.list:
        for key, spec in SECTIONS.items():
            needs = f" [needs: {', '.join(spec.needs)}]" if spec.needs else ""
            print(f"{key:24s} {spec.title}{needs}")
        return 0
    if not args.names or not args.data:
        raise ReprzooError(
            "reprzoo analyze needs model names and --data (e.g. reprzoo analyze simsiam-tinyresnet-digits --data Digits)"
        )
    result = analyze(
        args.names,
        args.data,
        args.out,
        layers=args.layers,
        analyses=args.only,
        max_samples=args.max_samples,
        split=args.split,
        data_overrides=_data_overrides(args.extra),
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
        quick=smoke_run(),
    )
    ran = [k for k, v in result["sections"].items() if not v["skipped"]]
    skipped = [k for k, v in result["sections"].items() if v["skipped"]]
    print(f"{len(ran)} analyses on {result['samples']} samples; {len(skipped)} did not apply (the page says why)")
    print(f"open {Path(args.out) / 'report.html'}")
    return 0


def _pass_unknown_options(parser: argparse.ArgumentParser) -> None:
    """Collect options the subcommand does not define into ``args.extra`` instead of failing on them."""
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extra = parse_known(args, namespace)
        namespace.extra = list(extra)
        return namespace, []

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------------- list / info
def cmd_list(args: argparse.Namespace) -> int:
    from reprzoo.zoo.api import entries, list_models
    from reprzoo.zoo.repo import read_config

    rows = []
    known = entries()
    for name in list_models(args.pattern):
        entry = known[name]
        row: dict[str, Any] = {"name": name, "source": entry.source}
        if entry.hub is not None:
            try:
                folder = entry.hub.find_revision(name, verify=False)  # listing reads configs; load verifies
                config = read_config(folder)
                row.update(
                    revision=folder.name,
                    method=config["method"]["name"],
                    backbone=config["architecture"]["backbone"],
                    dim=config["architecture"]["embedding_dim"],
                    dataset=config["training"]["data"]["class_path"].rsplit(".", 1)[-1],
                    metrics={k: config["metrics"][k] for k in SUMMARY_METRICS if k in config.get("metrics", {})},
                    knn_k=int(  # kNN values differ with k: the k measured with (capped by class sizes), else the setting
                        (config.get("metrics") or {}).get("val/knn_k")
                        or (config["method"].get("init_args") or {}).get("knn_k", 200)
                    ),
                )
            except (ReprzooError, KeyError, TypeError, AttributeError) as err:  # one broken entry: list the others
                problem = str(err) if isinstance(err, ReprzooError) else f"config.json lacks or mistypes {err}"
                print(f"reprzoo: {name} is broken and left out of the table: {problem}", file=sys.stderr)
                row["error"] = problem
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no zoo models match {args.pattern!r}", file=sys.stderr)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"reprzoo models ({len(rows)})")
    table.add_column("name", no_wrap=True)
    for col in ("method", "dim", "dataset", "kNN top-1", "source"):
        table.add_column(col, no_wrap=col == "kNN top-1")  # the value names its k: values at different k differ
    for r in rows:
        if "error" in r:
            continue
        knn = r.get("metrics", {}).get("val/knn_top1")
        table.add_row(
            r["name"],
            r.get("method", "-"),
            str(r.get("dim", "-")),
            r.get("dataset", "-"),
            f"{knn:.3f} k={r.get('knn_k')}" if knn is not None else "-",
            r["source"],
        )
    Console().print(table)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from reprzoo.zoo.api import model_info

    info = model_info(args.name, args.revision)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.rule(f"[bold]{info['name']}")
    console.print(f"source   : {info['source']} ({info['hub']})")
    console.print(f"revision : {info['revision']}")
    files = Table(title="files")
    for col in ("file", "size", "sha256"):
        files.add_column(col)
    for f in info["files"]:
        files.add_row(f["file"], f"{f['size']:,}", f["sha256"])
    console.print(files)
    if info["revisions"]:
        revs = Table(title="revisions")
        for col in ("id", "created", "main", "message"):
            revs.add_column(col)
        for r in info["revisions"]:
            created = r.get("created")
            if isinstance(created, float):
                import time

                created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            revs.add_row(r["id"], str(created or "-"), "*" if r.get("main") else "", r.get("message", ""))
        console.print(revs)
    if info["metrics"]:
        metrics = Table(title="metrics (metrics.json of the run)")
        metrics.add_column("metric")
        metrics.add_column("value")
        for k, v in sorted(info["metrics"].items()):
            metrics.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        console.print(metrics)
    if info["card"]:
        console.rule("README.md (model card)")
        print(info["card"])
    return 0


# ---------------------------------------------------------------------------------------------------- push
def cmd_push(args: argparse.Namespace) -> int:
    from reprzoo.zoo.api import push

    result = push(
        args.run,
        args.name,
        to=args.to,
        private=args.private,
        base_model=args.base_model,
        license=args.license,
        force=args.force,
    )
    print(f"pushed {result.name} revision {result.revision} to {result.target}")
    print(f'load it with: reprzoo.load("{result.load_ref}")')
    return 0


# ---------------------------------------------------------------------------------------------------- finetune
def cmd_finetune(args: argparse.Namespace) -> int:
    from reprzoo.cli.training import cli_main
    from reprzoo.zoo.api import resolve
    from reprzoo.zoo.classes import check_backbone_kwargs
    from reprzoo.zoo.names import parse_source
    from reprzoo.zoo.repo import read_config, verify_weights

    _check_extra(args.extra, ("--trainer.", "--data.", "--model.", "--seed_everything", "--ckpt_path"))
    if args.compatible:
        return _train_compatible_successor(args)
    res = resolve(args.name, args.revision)
    config = read_config(res.folder)
    weights = verify_weights(res.folder, config)
    arch = config["architecture"]
    src = parse_source(args.name, args.revision)
    base_model = src.target if src.kind in ("name", "hf") else str(res.source)
    cli_args = [
        "--model=reprzoo.lightning_modules.FineTune",
        f"--model.init_args.task={args.task}",
        f"--model.init_args.backbone={arch['backbone']}",
        f"--model.init_args.backbone_kwargs={json.dumps(check_backbone_kwargs(arch.get('backbone_kwargs') or {}))}",
        f"--model.init_args.base_weights={weights}",
        f"--model.init_args.base_model={base_model}",
        f"--data={args.data}",
        f"--trainer.logger.init_args.save_dir={args.root_dir}",
        f"--trainer.max_epochs={args.epochs}",
    ]
    if res.revision:
        cli_args.append(f"--model.init_args.base_revision={res.revision}")
    base_args = config["method"].get("init_args") or {}
    for key in ("knn_k", "knn_temperature"):  # evaluate like the base model did (overridable)
        if base_args.get(key) is not None:
            cli_args.append(f"--model.init_args.{key}={base_args[key]}")
    cli = cli_main([*cli_args, *args.extra], run=False)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    print(f"fine-tuning {res.source} @ {res.revision or '-'} ({args.task}): {model.head_report}")
    if args.task == "knn":
        trainer.validate(model, datamodule=data)
        run_dir = Path(trainer.log_dir)
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # so that the run can be pushed like any other
    else:
        trainer.fit(model, datamodule=data)
        run_dir = Path(trainer.log_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    for key in ("val/top1", "val/knn_top1"):
        if key in metrics:
            print(f"{key:14s}: {metrics[key]:.4f}")
    parts = src.target.split(".")[0].split("-") if src.kind == "name" else []
    data_name = args.data.lower() if args.data.isidentifier() else None
    suggested = f"{parts[0]}-{parts[1]}-{data_name}.{args.task}" if parts and data_name else "NAME"
    print(f"run: {run_dir}")
    print(f"push it: reprzoo push {run_dir} --name {suggested}")
    return 0


def _train_compatible_successor(args: argparse.Namespace) -> int:
    """``finetune OLD --compatible METHOD``: fit METHOD with OLD (frozen) as its old model, same backbone unless
    ``--model.init_args.backbone`` says otherwise."""
    from reprzoo.cli.training import cli_main
    from reprzoo.lightning_modules import get_method
    from reprzoo.lightning_modules.compatible.base import CompatibleModule
    from reprzoo.zoo.api import resolve
    from reprzoo.zoo.classes import check_backbone_kwargs
    from reprzoo.zoo.repo import read_config

    cls = get_method(args.compatible)
    if not issubclass(cls, CompatibleModule):
        raise ReprzooError(f"{args.compatible} is not a compatible method (a CompatibleModule, e.g. BCT)")
    res = resolve(args.name, args.revision)
    arch = read_config(res.folder)["architecture"]
    old_ref = args.name if args.revision is None or "@" in args.name else f"{args.name}@{args.revision}"
    cli_args = [
        f"--model=reprzoo.lightning_modules.{cls.__name__}",
        f"--model.init_args.backbone={arch['backbone']}",
        f"--model.init_args.backbone_kwargs={json.dumps(check_backbone_kwargs(arch.get('backbone_kwargs') or {}))}",
        f"--model.init_args.old_model=zoo:{old_ref}",
        f"--data={args.data}",
        f"--trainer.logger.init_args.save_dir={args.root_dir}",
        f"--trainer.max_epochs={args.epochs}",
    ]
    cli = cli_main([*cli_args, *args.extra], run=False)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    print(f"training a {cls.__name__} successor compatible with {model.hparams.old_model_name}")
    trainer.fit(model, datamodule=data)
    run_dir = Path(trainer.log_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    for key in ("val/compat_top1", "val/old_top1", "val/ecc", "val/knn_top1"):
        if key in metrics:
            print(f"{key:16s}: {metrics[key]:.4f}")
    print(f"run: {run_dir}")
    print(f"push it: reprzoo push {run_dir} --name NAME (its config records compatible_with {model.hparams.old_model_name})")
    return 0


def _check_extra(extra: list[str], prefixes: tuple[str, ...]) -> None:
    for arg in extra:
        if arg.startswith("-") and not arg.startswith(prefixes):
            raise ReprzooError(
                f"unrecognized option {arg.split('=', 1)[0]!r} (LightningCLI options start with {', '.join(prefixes)})"
            )


# ---------------------------------------------------------------------------------------------------- compat
def cmd_compat(args: argparse.Namespace) -> int:
    """Embed the datamodule's train split (gallery) and test split (queries) with every model, each with its own
    preprocessing, and print ``matrix[query model, gallery model]`` with ECC per pair, AC and AM."""
    import torch

    from reprzoo.metrics.compatibility import (
        average_compatibility,
        average_multimodel_accuracy,
        compatibility_matrix,
        empirical_compatibility,
    )
    from reprzoo.zoo.api import load

    if len(args.names) < 2:
        raise ReprzooError("compat needs at least two models, oldest first: reprzoo compat OLD NEW --data D")
    overrides = _data_overrides(args.extra)
    gallery, queries, prefixes = [], [], []
    for name in args.names:
        encoder = load(name, device=args.device)
        prefixes.append(encoder.compatible_dim)
        features = {}
        for split in ("train", "test"):
            dataset, _ = _embedding_dataset(args.data, split, encoder.transform, overrides)
            features[split] = _embed_split(encoder, dataset, args.batch_size, args.device)
        gallery.append(features["train"])
        queries.append(features["test"])
    matrix = compatibility_matrix(
        [q for q, _ in queries], queries[0][1], [g for g, _ in gallery], gallery[0][1], args.metric, compatible_dims=prefixes
    )
    num = len(args.names)
    pairs = [
        {
            "new": args.names[t],
            "old": args.names[j],
            "cross": float(matrix[t, j]),
            "old_alone": float(matrix[j, j]),
            "ecc": empirical_compatibility(matrix, t, j) if not torch.isnan(matrix[t, j]) else None,
        }
        for t in range(1, num)
        for j in range(t)
    ]
    widths_agree = not torch.isnan(matrix.tril()).any()
    summary = {
        "metric": args.metric,
        "models": args.names,
        "matrix": [[None if v != v else round(float(v), 4) for v in row] for row in matrix.tolist()],
        "pairs": pairs,
        "average_compatibility": average_compatibility(matrix) if widths_agree else None,
        "average_multimodel_accuracy": average_multimodel_accuracy(matrix) if widths_agree else None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cross-model retrieval {args.metric} on {args.data} (rows: queries, columns: gallery)")
    table.add_column("query \\ gallery", no_wrap=True)
    for name in args.names:
        table.add_column(name)
    for t, name in enumerate(args.names):
        table.add_row(name, *("-" if v != v else f"{v:.4f}" for v in matrix[t].tolist()))
    console = Console()
    console.print(table)
    for pair in pairs:
        verdict = {True: "compatible (ECC holds)", False: "NOT compatible (ECC violated)", None: "embedding widths differ"}[
            pair["ecc"]
        ]
        console.print(
            f"{pair['new']} -> {pair['old']}: {pair['cross']:.4f} vs {pair['old_alone']:.4f} for the old model alone: {verdict}"
        )
    if summary["average_compatibility"] is not None:
        console.print(
            f"AC (average compatibility): {summary['average_compatibility']:.4f}   "
            f"AM (average multi-model {args.metric}): {summary['average_multimodel_accuracy']:.4f}"
        )
    return 0


# ---------------------------------------------------------------------------------------------------- embed
def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from rich.progress import track
    from torch.utils.data import DataLoader

    from reprzoo.zoo.api import load

    if args.text is not None or args.file is not None:
        return _embed_texts(args)
    if args.out is None:
        raise ReprzooError("reprzoo embed --data needs --out FILE.npy")
    overrides = _data_overrides(args.extra)
    encoder = load(args.name, revision=args.revision, device=args.device)
    dataset, files = _embedding_dataset(args.data, args.split, encoder.transform, overrides)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    chunks, labels = [], []
    with torch.inference_mode():
        for x, y in track(loader, description=f"embedding {len(dataset)} samples", console=_stderr_console()):
            chunks.append(encoder.embed(_to_device(x, args.device)).float().cpu().numpy())
            labels.append(torch.as_tensor(y).numpy())
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, embeddings.astype(np.float32))
    print(
        f"wrote {out}: {embeddings.shape[0]} x {embeddings.shape[1]} float32 embeddings from {encoder.source} @ {encoder.revision}"
    )
    if args.labels:
        np.save(args.labels, np.concatenate(labels) if labels else np.zeros((0,), dtype=np.int64))
        print(f"wrote {args.labels}: labels")
    if files is not None:
        listing = out.with_suffix(".files.txt")
        listing.write_text("".join(f"{f}\n" for f in files))
        print(f"wrote {listing}: the image of each row")
    return 0


def _embed_texts(args: argparse.Namespace) -> int:
    """``reprzoo embed NAME --text ... | --file lines.txt``: strings through the model's own tokenizer."""
    import numpy as np

    from reprzoo.zoo.api import load

    if args.extra:
        raise ReprzooError(f"reprzoo embed --text/--file takes no data options: {' '.join(args.extra)}")
    if args.file is not None:
        path = Path(args.file)
        try:
            texts = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ReprzooError(f"{path} does not exist") from None
        except UnicodeDecodeError as err:
            raise ReprzooError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); convert it with iconv") from None
        empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ReprzooError(f"{path}: line(s) {', '.join(map(str, empty[:5]))} are empty; one string per line")
    else:
        texts = list(args.text)
    encoder = load(args.name, revision=args.revision, device=args.device)
    embeddings = encoder.encode(texts, batch_size=args.batch_size).float().cpu().numpy()
    if args.out is None:
        np.set_printoptions(precision=4, suppress=True, linewidth=120, threshold=20)
        for text, row in zip(texts, embeddings):
            print(f"{text[:40]!r}: {row}")
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, embeddings)
    print(f"wrote {out}: {embeddings.shape[0]} x {embeddings.shape[1]} float32 embeddings of {len(texts)} texts")
    return 0


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _data_overrides(extra: list[str]) -> dict[str, Any]:
    """``--data.init_args.root=DIR`` / ``--data.root DIR`` options as datamodule keyword arguments."""
    import yaml

    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--data."):
            raise ReprzooError(f"unrecognized option {arg!r} (embed passes only --data.KEY=VALUE to the datamodule)")
        key, eq, value = arg[len("--data.") :].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise ReprzooError(f"{arg} needs a value")
            value, i = extra[i + 1], i + 1
        out[key.removeprefix("init_args.")] = yaml.safe_load(value)
        i += 1
    return out
