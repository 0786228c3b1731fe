"""Turn a finished local run into a repository folder: ``model.safetensors``, ``config.json`` and ``README.md``.

The run's Lightning checkpoint is read with ``weights_only=True`` and its content digest checked (local runs only;
nothing is ever unpickled: a checkpoint holding pickled objects is refused). The method must be a registered class; the datamodule one of ``reprzoo.datamodules``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.registry import LOCAL_ONLY_ARGS, without_local_args
from reprzoo.training.checkpointing import find_run_checkpoint, load_checkpoint
from reprzoo.zoo.classes import check_backbone_kwargs, check_init_args, datamodule_class, method_class
from reprzoo.zoo.names import check_name
from reprzoo.zoo.recipes import list_recipes
from reprzoo.zoo.repo import (
    CARD_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    check_interop_name,
    check_preprocessing_name,
    load_state_checked,
    sha256_file,
    split_module_state,
)

#: Trainer settings a card records, with Lightning's defaults (a setting equal to its default is left out).
TRAINER_DEFAULTS = {
    "max_epochs": object(),  # always recorded
    "max_steps": -1,
    "limit_train_batches": None,
    "limit_val_batches": None,
    "accumulate_grad_batches": 1,
    "precision": None,
    "devices": "auto",
    "num_nodes": 1,
    "strategy": "auto",
    "gradient_clip_val": None,
    "check_val_every_n_epoch": 1,
}
MAX_RECIPE_OVERRIDES = 3


def export_run(
    source: str | Path,
    name: str,
    out_dir: Path,
    *,
    base_model: str | None = None,
    license: str = "apache-2.0",
    load_ref: str | None = None,
) -> dict[str, Any]:
    """Write the repository files of a run into ``out_dir``; returns its config.

    Args:
        source: a run directory or a checkpoint inside one.
        name: the zoo name recorded in the config and card.
        out_dir: an empty folder to write to.
        base_model: overrides the lineage recorded by a fine-tuning run.
        license: the card's license.
        load_ref: how the card's snippet loads the model (default: ``name``).
    """
    from reprzoo import __version__
    from reprzoo.zoo.card import render_card

    check_name(name)
    run_dir, ckpt_path, config_path = find_run_checkpoint(source)
    if config_path is None:
        raise ReprzooError(f"{run_dir} has no config.yaml: push needs the run's LightningCLI config next to the checkpoint")
    run_config = yaml.safe_load(config_path.read_text())
    model_cfg, data_cfg = run_config.get("model") or {}, run_config.get("data") or {}
    cls = method_class(model_cfg.get("class_path", ""))

    ckpt = load_checkpoint(ckpt_path, what="the run's checkpoint")  # weights-only, digest checked; one-line errors
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ReprzooError(f"{ckpt_path} holds no state_dict: not a Lightning checkpoint of a run")
    hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    init_args = {**(model_cfg.get("init_args") or {}), **hparams}
    lineage = {k: init_args.get(k) for k in ("base_model", "base_revision", "task") if init_args.get(k) is not None}
    if base_model:
        lineage["base_model"] = base_model
    if init_args.get("old_model_name"):  # a compatible successor: queries can search this model's gallery
        lineage["compatible_with"] = init_args["old_model_name"]
    init_args = without_local_args(init_args)
    if model_cfg.get("init_args"):
        model_cfg = {**model_cfg, "init_args": without_local_args(model_cfg["init_args"])}

    check_init_args(init_args)
    module = cls(**init_args)
    # the backbone the method built (a text method adds its vocabulary's size to the kwargs it was given)
    spec_name, spec_kwargs = getattr(module, "backbone_spec", (None, None))
    backbone_name = spec_name or init_args.get("backbone")
    backbone_kwargs = spec_kwargs if spec_name else (init_args.get("backbone_kwargs") or {})
    backbone_kwargs = check_backbone_kwargs(backbone_kwargs)  # what a loader will accept
    if not backbone_name:
        raise ReprzooError(f"{run_dir}/config.yaml names no backbone for {cls.__name__}")
    state = _without_metric_states(module, ckpt["state_dict"], ckpt_path)
    tensors = split_module_state(state)
    module.eval()
    encoder = module.encoder()  # the representation the method was measured on: what load(name).embed computes

    recipe, overrides = _matching_recipe(run_config)
    data_cls = datamodule_class(data_cfg.get("class_path", ""))
    datamodule = data_cls(**(data_cfg.get("init_args") or {}))
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt", "reprzoo_format": FORMAT_VERSION})
    preprocessing = dict(datamodule.preprocessing())
    extra = datamodule.preprocessing_files() if hasattr(datamodule, "preprocessing_files") else {}
    if extra:  # what the input pipeline needs besides the config: a tokenizer.json, a vocabulary, a node index
        for filename, content in extra.items():
            (out_dir / check_preprocessing_name(filename)).write_bytes(content)
        preprocessing["files"] = {
            f: {"sha256": sha256_file(out_dir / f), "size": (out_dir / f).stat().st_size} for f in sorted(extra)
        }
    interop = _sentence_transformers_files(encoder, extra, preprocessing, out_dir)
    info = _method_info(cls)
    config = {
        "format_version": FORMAT_VERSION,
        "reprzoo_version": __version__,
        "name": name,
        "architecture": {
            "backbone": backbone_name,
            "backbone_kwargs": backbone_kwargs,
            "embedding_dim": int(module.embedding_dim),
            "num_params": sum(p.numel() for p in encoder.parameters()),
            "nested_dims": _nested_dims(module),  # trained prefix sizes of nested (Matryoshka) embeddings
            # the encoder contract: load() rebuilds the registered method and embeds with its encoder()
            "representation": {
                "kind": module.representation_kind,
                "encoder": type(encoder).__name__,
                "built_from": "method",
                "compatible_dim": _compatible_dim(module),
                # a retriever's relevance and whether its queries have their own tower (DualEncoder)
                "similarity": getattr(module, "retrieval_similarity", None),
                "query_tower": callable(getattr(encoder, "encode_query", None)),
            },
        },
        "method": {
            "name": cls.__name__,
            "class_path": f"reprzoo.lightning_modules.{cls.__name__}",
            **info,
            "heads": sorted({k.split(".")[1] for k in tensors if k.startswith("method.")}),
            "init_args": init_args,
        },
        "preprocessing": preprocessing,
        **({"interop": interop} if interop else {}),
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(out_dir / WEIGHTS_FILE),
            "size": (out_dir / WEIGHTS_FILE).stat().st_size,
        },
        "training": {
            "recipe": recipe,
            # recipes change between releases: the hash names the version this run compared itself with
            "recipe_sha256": _recipe_sha256(recipe),
            "recipe_overrides": overrides,
            "seed_everything": run_config.get("seed_everything"),
            "trainer": {
                k: v for k, v in (run_config.get("trainer") or {}).items() if k in TRAINER_DEFAULTS and v != TRAINER_DEFAULTS[k]
            },
            "model": model_cfg,
            "data": data_cfg,
            "epochs": metrics.get("epoch", ckpt.get("epoch")),
            "global_step": metrics.get("global_step", ckpt.get("global_step")),
        },
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "license": license,
        "lineage": lineage,
        "provenance": {
            **_git_commit(),
            "data_fingerprint": _fingerprint(datamodule),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "versions": _versions(ckpt),
    }
    config = scrub_local_paths(config)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    render_card(config, load_ref=load_ref).save(out_dir / CARD_FILE)
    return config


def _sentence_transformers_files(encoder, extra: dict, preprocessing: dict, out_dir: Path) -> dict[str, Any] | None:
    """A dense text model whose representation is a pooled BERT (with its tokenizer.json) is also a
    sentence-transformers folder: ``SentenceTransformer(path)`` on the pushed repository embeds as ``load(name)``
    does. Writes those files (``modules.json``, ``0_Transformer/``, ``1_Pooling/``) and returns their record."""
    from reprzoo.zoo.interop import sentence_transformers_ready, write_sentence_transformers

    if not sentence_transformers_ready(encoder) or "tokenizer.json" not in extra:
        return None
    max_length = min(int(preprocessing.get("max_length", encoder.max_length)), encoder.max_length)
    before = {p for p in out_dir.rglob("*") if p.is_file()}
    write_sentence_transformers(encoder, extra["tokenizer.json"], max_length, out_dir, "", readme=False)
    written = sorted(p for p in out_dir.rglob("*") if p.is_file() and p not in before)
    files = {}
    for path in written:
        name = check_interop_name(path.relative_to(out_dir).as_posix())
        files[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return {"sentence_transformers": True, "files": files}


def scrub_local_paths(value: Any) -> Any:
    """``value`` with every string that is an absolute or home-relative path replaced by ``<local>/NAME``: a pushed
    config names no folder of the machine that pushed it (a dataset root, a teacher's file)."""
    if isinstance(value, dict):
        return {k: scrub_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_local_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")):
        return f"<local>/{Path(value).name}"
    return value


def _compatible_dim(module) -> int | None:
    """The prefix of the representation compared with an old model's gallery (BT^2, OCA), when shorter."""
    dim = getattr(module, "compatible_dim", None)
    return int(dim) if dim is not None and int(dim) < int(module.embedding_dim) else None


def _nested_dims(module) -> list[int] | None:
    """The prefix sizes a nested (Matryoshka) method trained its backbone features at; None: full size only."""
    dims = getattr(module, "nested_dims", None)
    return [int(m) for m in dims] if dims else None


def _without_metric_states(module, state_dict: dict, ckpt_path: Path) -> dict:
    """The checkpoint's state without torchmetrics states, checked to load strictly into a fresh ``module`` (so
    that ``load_method`` will rebuild it)."""
    from torchmetrics import Metric

    metrics = tuple(f"{n}." for n, m in module.named_modules() if n and isinstance(m, Metric))
    state = {k: v for k, v in state_dict.items() if not k.startswith(metrics)} if metrics else dict(state_dict)
    load_state_checked(module, state, strict=True, what=f"{ckpt_path} ({type(module).__name__})")
    return state


def _method_info(cls: type) -> dict[str, Any]:
    from reprzoo.lightning_modules import METHODS

    info = METHODS.get(cls.__name__)
    if info is None or info.cls is not cls:
        return {}
    return {"title": info.title, "arxiv": info.arxiv, **({"note": info.note} if info.note else {})}


def _recipe_sha256(recipe: str | None) -> str | None:
    """The SHA-256 of a shipped recipe's YAML as installed now (None without a recipe)."""
    if not recipe:
        return None
    from reprzoo.zoo.recipes import resolve_recipe

    return sha256_file(resolve_recipe(recipe))


def _matching_recipe(run_config: dict) -> tuple[str | None, dict[str, list]]:
    """The shipped recipe the run follows, and the settings it overrode (``{key: [recipe value, run value]}``).

    A recipe matches when it trains the same method on the same datamodule and the run changes at most
    ``MAX_RECIPE_OVERRIDES`` of its model and data settings; trainer overrides (epochs, batch limits) are listed too.
    """
    best: tuple[int, str, dict[str, list]] | None = None
    for recipe_name, path in list_recipes().items():
        recipe = yaml.safe_load(path.read_text())
        same = all(
            (recipe.get(part) or {}).get("class_path") == (run_config.get(part) or {}).get("class_path")
            for part in ("model", "data")
        )
        if not same:
            continue
        diffs = {
            k: v
            for part in ("model", "data", "trainer")
            for k, v in _diff(recipe.get(part) or {}, run_config.get(part) or {}, part).items()
        }
        diffs.update(_unset_in_recipe(recipe, run_config))
        n = sum(1 for k in diffs if not k.startswith("trainer."))
        if n <= MAX_RECIPE_OVERRIDES and (best is None or n < best[0]):
            best = (n, recipe_name, diffs)
    return (best[1], best[2]) if best else (None, {})


def _unset_in_recipe(recipe: dict, run_config: dict) -> dict[str, list]:
    """Init args the recipe leaves at the class default but the run changed: ``{key: ["default X", run value]}``."""
    out: dict[str, list] = {}
    for part, lookup in (("model", method_class), ("data", datamodule_class)):
        run = run_config.get(part) or {}
        defaults = _signature_defaults(lookup(run.get("class_path", "")))
        set_by_recipe = (recipe.get(part) or {}).get("init_args") or {}
        for key, value in (run.get("init_args") or {}).items():
            if key in set_by_recipe or key not in defaults or key in LOCAL_ONLY_ARGS:
                continue
            default = defaults[key]
            if not (value == default or (isinstance(value, list) and isinstance(default, tuple) and tuple(value) == default)):
                out[f"{part}.init_args.{key}"] = [f"default {default!r}", value]
    return out


def _signature_defaults(cls: type) -> dict[str, Any]:
    """Default of every keyword argument of ``cls``, following ``**kwargs`` up its bases (subclass defaults win)."""
    import inspect

    defaults: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.default is not p.empty:
                defaults.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return defaults


def _diff(recipe: Any, run: Any, prefix: str) -> dict[str, list]:
    """Leaves the recipe sets whose value the run changed."""
    if isinstance(recipe, dict):
        run = run if isinstance(run, dict) else {}
        out: dict[str, list] = {}
        for k, v in recipe.items():
            out.update(_diff(v, run.get(k), f"{prefix}.{k}"))
        return out
    if isinstance(recipe, (list, tuple)) and isinstance(run, (list, tuple)) and list(recipe) == list(run):
        return {}
    return {} if recipe == run else {prefix: [recipe, run]}


def _fingerprint(datamodule) -> str | None:
    """The training split's fingerprint, or None when the data is not on this machine (then the card omits it)."""
    try:
        return datamodule.fingerprint()
    except ReprzooError as err:
        print(f"reprzoo: note: no data fingerprint recorded ({err})", file=sys.stderr)
        return None


def _git_commit() -> dict[str, Any]:
    """The commit of the reprzoo source tree this runs from, if it is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():  # an installed package, not the source tree
        return {}
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "reprzoo"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # not a git checkout (installed wheel) or no git: nothing recorded
        return {}
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def _versions(ckpt: dict) -> dict[str, str]:
    import huggingface_hub
    import lightning
    import safetensors
    import timm
    import torchvision

    from reprzoo import __version__

    return {
        "reprzoo": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning (training)": str(ckpt.get("pytorch-lightning_version", lightning.__version__)),
        "timm": timm.__version__,
        "safetensors": safetensors.__version__,
        "huggingface_hub": huggingface_hub.__version__,
    }
