"""Model cards: rendered from a model's ``config.json`` through ``templates/model_card.md`` with
``huggingface_hub.ModelCard``.

Everything in the card comes from the config, which comes from the run (its config.yaml, checkpoint, metrics.json
and datamodule). A metric that was not measured has no row and no ``model-index`` entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
#: Hugging Face dataset ids of the datamodules that have one; other datasets are named only in the card's text.
HF_DATASETS = {"CIFAR10": "cifar10", "CIFAR100": "cifar100"}
#: Hugging Face task of an encoder and of a classification metric, by the modality its preprocessing records.
_TASKS = {"image": ("image-feature-extraction", "image-classification"), "text": ("feature-extraction", "text-classification")}


def _tasks(config: dict[str, Any]) -> tuple[str, str]:
    modality = (config.get("preprocessing") or {}).get("modality", "image")
    return _TASKS.get(modality, ("feature-extraction", "feature-extraction"))


def _representation_text(arch: dict) -> str:
    """What ``embed`` returns, as the config records it (format 2: the method's ``encoder()``)."""
    rep = arch.get("representation")
    if not rep:
        return f"{arch['embedding_dim']}-d backbone features"
    kind = {"dense": "vector", "multi_vector": "set of vectors", "sparse": "sparse vocabulary vector", "slots": "set of slots"}
    text = (
        f"{arch['embedding_dim']}-d {kind.get(rep.get('kind'), rep.get('kind'))} computed by the method's encoder "
        f"(`{rep.get('encoder')}`): the representation its metrics were measured on"
    )
    if rep.get("compatible_dim"):
        text += f"; its first {rep['compatible_dim']} dimensions are compatible with the old model's gallery"
    return text


_METRIC_NOTES = {
    "knn_top1": "`knn_top1`: weighted kNN top-1 accuracy on {features} (train split as the labelled "
    "bank, k={knn_k}, temperature {knn_temperature})",
    "probe_top1": "`probe_top1`: top-1 accuracy of the online linear probe, trained on detached features during training",
    "top1": "`top1`: top-1 accuracy of the classification head",
    "feature_std": "`feature_std`: standard deviation of L2-normalised features (collapse monitor; 1/sqrt(d) is "
    "healthy, 0 is collapse)",
    "effective_rank": "`effective_rank`: effective rank of the feature covariance (collapse monitor)",
    "compat_top1": "`compat_top1` / `compat_map`: cross-model retrieval, this model's test queries searched in the "
    "old model's gallery (its train-split features), top-1 and mAP",
    "old_top1": "`old_top1` / `old_map`: the old model's queries in its own gallery",
    "ecc": "`ecc`: 1 when the empirical compatibility criterion compat_top1 > old_top1 holds",
}


def card_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The measured metrics a card shows: everything in metrics.json except learning rates and counters."""
    return {
        k: v
        for k, v in sorted(metrics.items())
        if not k.startswith("lr-")
        and k not in ("epoch", "global_step")
        and not k.endswith("/knn_k")  # a setting (the k the kNN used), stated in the notes, not a measurement
        and isinstance(v, (int, float))
    }


def eval_results(config: dict[str, Any]) -> list:
    """``model-index`` entries for the held-out (``val/``, ``test/``) metrics of the run."""
    from huggingface_hub import EvalResult

    data_name = config["training"]["data"]["class_path"].rsplit(".", 1)[-1]
    dataset_type = HF_DATASETS.get(data_name, data_name.lower())
    out = []
    feature_task, classification_task = _tasks(config)
    for key, value in card_metrics(config.get("metrics", {})).items():
        stage, _, metric = key.partition("/")
        if stage not in ("val", "test") or not metric:
            continue
        accuracy = metric.endswith("top1")
        out.append(
            EvalResult(
                task_type=classification_task if accuracy else feature_task,
                task_name={"knn_top1": "kNN classification", "probe_top1": "linear probe", "top1": "classification"}.get(
                    metric, "representation quality"
                ),
                dataset_type=dataset_type,
                dataset_name=data_name,
                dataset_split="test",
                metric_type="accuracy" if accuracy else metric,
                metric_name=key,
                metric_value=float(value),
            )
        )
    return out


def render_card(config: dict[str, Any], load_ref: str | None = None):
    """The ``huggingface_hub.ModelCard`` of a model config."""
    from huggingface_hub import ModelCard, ModelCardData

    arch, method, training = config["architecture"], config["method"], config["training"]
    data_name = training["data"]["class_path"].rsplit(".", 1)[-1]
    lineage = config.get("lineage") or {}
    feature_task = _tasks(config)[0]
    tags = ["reprzoo", "representation-learning", feature_task, method["name"].lower(), arch["backbone"]]
    if method["name"] != "FineTune":
        tags.append("self-supervised")
    card_data = ModelCardData(
        library_name="reprzoo",
        license=config.get("license"),
        tags=tags,
        datasets=[HF_DATASETS[data_name]] if data_name in HF_DATASETS else None,
        base_model=lineage.get("base_model"),
        pipeline_tag=feature_task,
        model_name=config["name"],
        eval_results=eval_results(config) or None,
    )
    metrics = card_metrics(config.get("metrics", {}))
    init_args = method.get("init_args", {})
    pre = config.get("preprocessing") or {}
    word_vectors = pre.get("tokenizer") in ("words", "subwords")  # a word-vector model (WordWindows)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        name=config["name"],
        load_ref=load_ref or config["name"],
        summary=_summary(config, data_name),
        method=method["name"],
        method_title=method.get("title"),
        arxiv=method.get("arxiv"),
        method_note=method.get("note"),
        heads=", ".join(method.get("heads", [])),
        backbone=arch["backbone"],
        backbone_kwargs=json.dumps(arch["backbone_kwargs"]) if arch.get("backbone_kwargs") else "",
        num_params=f"{arch['num_params']:,}",
        embedding_dim=arch["embedding_dim"],
        representation_text=_representation_text(arch),
        preprocessing_text=_preprocessing_text(config.get("preprocessing", {})),
        base_model=lineage.get("base_model"),
        base_revision=lineage.get("base_revision"),
        task=lineage.get("task"),
        training_text=_training_text(training, data_name),
        recipe_yaml=yaml.safe_dump(
            {k: training[k] for k in ("seed_everything", "trainer", "model", "data") if training.get(k) is not None},
            sort_keys=False,
        ).strip(),
        hyperparameters=[(k, json.dumps(v)) for k, v in init_args.items()],
        metrics=[(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()],
        metrics_text=_metrics_text(metrics, init_args, data_name, "representation" in arch, config.get("metrics", {})),
        nested_dims=", ".join(str(m) for m in arch.get("nested_dims") or []),
        **_nested_table(arch.get("nested_dims"), metrics),
        versions=sorted(config.get("versions", {}).items()),
        provenance=_provenance(config),
        citation=f'{method["name"]}: "{method["title"]}", arXiv:{method["arxiv"]}.' if method.get("arxiv") else "",
        modality=pre.get("modality", "image"),
        text_input="vocabulary" if word_vectors else "tokenizer",
        text_example='["king", "queen"]' if word_vectors else '["a first sentence", "a second one"]',
        text_count=2,
        word_vectors=word_vectors,
        sentence_transformers=bool((config.get("interop") or {}).get("sentence_transformers")),
    )


def _nested_table(nested_dims: list[int] | None, metrics: dict) -> dict[str, list]:
    """Per-prefix metrics (``val/knn_top1@16``) of a nested model as rows ``(dim, [value per metric])``."""
    dims = nested_dims or []
    per_prefix = {k.rpartition("@")[0] for k in metrics if k.rpartition("@")[2] in {str(m) for m in dims}}
    columns = sorted(per_prefix)
    rows = [(m, [_format(metrics.get(f"{c}@{m}")) for c in columns]) for m in dims]
    return {"nested_columns": columns, "nested_rows": rows if columns else []}


def _format(value) -> str:
    return "not measured" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _summary(config: dict, data_name: str) -> str:
    method, arch = config["method"]["name"], config["architecture"]
    lineage = config.get("lineage") or {}
    compatible = _compatibility_text(config)
    if compatible:
        return (
            f"A `{arch['backbone']}` encoder trained with {method} on {data_name} with reprzoo; "
            f"{arch['embedding_dim']}-d embeddings. {compatible}"
        )
    if lineage.get("base_model"):
        return (
            f"A `{arch['backbone']}` encoder fine-tuned ({lineage.get('task', 'fine-tuning')}) on {data_name} from "
            f"`{lineage['base_model']}` with reprzoo; {arch['embedding_dim']}-d embeddings."
        )
    return (
        f"A `{arch['backbone']}` encoder trained with {method} on {data_name} with reprzoo; {arch['embedding_dim']}-d embeddings."
    )


def _compatibility_text(config: dict) -> str:
    """A sentence on the model this one is compatible with and the measured cross-model retrieval."""
    old = (config.get("lineage") or {}).get("compatible_with")
    if not old:
        return ""
    metrics = config.get("metrics") or {}
    text = f"Backward-compatible with `{old}`: its embeddings can be searched against a gallery embedded by `{old}`"
    compat, own = metrics.get("val/compat_top1"), metrics.get("val/old_top1")
    if compat is None:
        return text + " (cross-model retrieval was not measured)."
    text += f"; cross-model retrieval top-1 {compat:.4f}"
    if metrics.get("val/compat_map") is not None:
        text += f" (mAP {metrics['val/compat_map']:.4f})"
    if own is not None:
        verdict = "meets" if compat > own else "does not meet"
        text += f", against {own:.4f} for `{old}` alone: it {verdict} the empirical compatibility criterion"
    return text + "."


def _preprocessing_text(pre: dict) -> str:
    if not pre:
        return "none recorded (the model takes tensors as they are)"
    modality = pre.get("modality", "image")
    if modality != "image" or "image_size" not in pre:  # text, graphs, ...: what the datamodule recorded
        details = ", ".join(f"{k} {json.dumps(v)}" for k, v in pre.items() if k != "modality")
        return f"{modality} input" + (f": {details}" if details else "") + " (as the training datamodule prepared it)"
    size = pre.get("image_size")
    return (
        f"resize the short side to {size} ({pre.get('resize', 'bilinear')}), {pre.get('crop', 'center')} crop "
        f"{size}x{size}, scale to [0, 1], normalise with mean {pre.get('mean')} and std {pre.get('std')} "
        "(`encoder.transform` does this)"
    )


def _training_text(training: dict, data_name: str) -> str:
    task = ((training.get("model") or {}).get("init_args") or {}).get("task")
    if training["model"].get("class_path", "").endswith("FineTune"):
        parts = [f"Fine-tuned with `reprzoo finetune --task {task}` (LightningCLI) on {data_name}"]
    else:
        parts = [f"Trained with `reprzoo fit` (LightningCLI) on {data_name}"]
    if training.get("recipe"):
        parts.append(f" from the shipped recipe `{training['recipe']}`")
        if training.get("recipe_sha256"):  # which version of it: recipes change between releases
            parts.append(f" (its YAML's SHA-256 at push time: `{training['recipe_sha256'][:16]}`)")
        overrides = training.get("recipe_overrides") or {}
        if overrides:
            changes = ", ".join(
                f"`{k}` {json.dumps(new)} (recipe: {old if str(old).startswith('default ') else json.dumps(old)})"
                for k, (old, new) in overrides.items()
            )
            parts.append(f" with {changes}")
    if training.get("epochs") is not None:
        epochs = training["epochs"]
        parts.append(f", {epochs} epoch{'s' if epochs != 1 else ''} ({training.get('global_step')} optimiser steps)")
    if training.get("seed_everything") is not None:
        parts.append(f", seed {training['seed_everything']}")
    parts.append(". The model, data and trainer settings of the run (from its `config.yaml`):")
    return "".join(parts)


def _metrics_text(metrics: dict, init_args: dict, data_name: str, represented: bool = True, logged: dict | None = None) -> str:
    """``represented``: the config records the method's representation (format 2); format-1 models embedded with
    their backbone, and their cards keep saying so. ``logged``: every logged value (the k the kNN used)."""
    logged = logged or {}
    lines = []
    stages = {k.split("/", 1)[0] for k in metrics}
    if stages & {"val", "test"}:
        lines.append(
            f"`val/` and `test/` metrics are measured on the held-out test split of {data_name} at the end of the run "
            "(reprzoo datamodules validate on their test split)."
        )
    if "train" in stages:
        lines.append("`train/` values are the last logged training values.")
    if "baseline" in stages:
        lines.append("`baseline/` values were measured on the same architecture at random initialisation.")
    present = {k.rsplit("/", 1)[-1].replace("random_init_", "") for k in metrics}
    notes = [
        "- "
        + note.format(
            knn_k=int(logged.get("val/knn_k", logged.get("test/knn_k", init_args.get("knn_k") or 200))),
            knn_temperature=init_args.get("knn_temperature"),
            features="the frozen representation" if represented else "frozen backbone features",
        )
        for key, note in _METRIC_NOTES.items()
        if key in present
    ]
    return " ".join(lines) + ("\n\n" + "\n".join(notes) if notes else "")


def _provenance(config: dict) -> list[tuple[str, str]]:
    prov, weights = config.get("provenance", {}), config.get("weights", {})
    out = []
    if prov.get("git_commit"):
        dirty = " (with uncommitted changes in the working tree)" if prov.get("git_dirty") else ""
        out.append(("code", f"reprzoo git commit `{prov['git_commit']}` at export{dirty}"))
    if prov.get("data_fingerprint"):
        out.append(("data fingerprint", f"`{prov['data_fingerprint']}` (`fingerprint()` of the training split)"))
    out.append(("weights", f"`model.safetensors`, SHA-256 `{weights.get('sha256')}`, {weights.get('size')} bytes"))
    if prov.get("exported_at"):
        out.append(("exported", prov["exported_at"]))
    return out
