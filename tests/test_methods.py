"""Every registered method, driven by the registry and its shipped digits recipe: builds, trains a few CPU steps,
and (slow) learns: kNN top-1 on digits clearly above the same encoder at random init."""

from __future__ import annotations

import copy
import importlib
import json
import os
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from reprzoo.lightning_modules import METHODS, DirectPred, get_method, list_methods
from reprzoo.losses import directpred_weight
from reprzoo.training.runs import save_run
from reprzoo.zoo.recipes import list_recipes, resolve_recipe

METHOD_NAMES = sorted(m.name for m in list_methods())


def get_method_info(method: str):
    return next(info for info in list_methods() if info.name == method)


#: modality -> the recipe folder of its CPU tests (default: digits) and the data options that keep them small
SMOKE_DATASETS = {"text": "wordnet", "image-text": "emoji"}  # modality -> its small real data (digits otherwise)
SMOKE_DATA_OVERRIDES = {  # datamodule class -> options of a CPU-sized run
    "WordWindows": {"max_sentences": 3000},
    "Sentences": {"max_texts": 2000},
    "TextPairs": {"max_pairs": 3000},
    "GraphNeighbours": {"max_pairs": 3000},
    "TaggedPairs": {"max_pairs": 3000},
}
LEARNING_DATA_OVERRIDES = {  # the learning tests' share of the real text (the recipes train on all of it)
    "WordWindows": {},  # all of the WordNet fixture (1.3M tokens): word vectors need the whole corpus
    "Sentences": {"max_texts": 20000},
    "TextPairs": {"max_pairs": 20000},
    "GraphNeighbours": {"max_pairs": 20000},
    "TaggedPairs": {"max_pairs": 20000},
}


#: recipe folders of text methods besides wordnet/ (a method's data decides: sentiment-labelled sentences)
TEXT_RECIPE_FOLDERS = ("wordnet", "debian", "polarity", "code")


def recipe_dataset(method: str) -> str:
    if get_method_info(method).modality == "text":
        recipes = list_recipes()
        return next((d for d in TEXT_RECIPE_FOLDERS if f"{d}/{method.lower()}" in recipes), "wordnet")
    return SMOKE_DATASETS.get(get_method_info(method).modality, "digits")


def digits_recipe(method: str, learning: bool = False) -> dict:
    """The method's recipe on the small real data of its modality (digits; WordNet definitions for text), with the
    data options of a smoke run or (``learning``) of a learning test."""
    recipe = yaml.safe_load(resolve_recipe(f"{recipe_dataset(method)}/{method.lower()}").read_text())
    table = LEARNING_DATA_OVERRIDES if learning else SMOKE_DATA_OVERRIDES
    overrides = table.get(recipe["data"]["class_path"].rsplit(".", 1)[-1])
    if overrides:
        recipe["data"]["init_args"] = {**recipe["data"].get("init_args", {}), **overrides}
    return recipe


def datamodule_from_recipe(recipe: dict, **overrides):
    """The recipe's datamodule (Digits, or a method's own small dataset), built from its class_path."""
    module_name, _, class_name = recipe["data"]["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**{**recipe["data"].get("init_args", {}), **overrides})


def build_from_recipe(method: str, batch_size: int | None = 32, learning: bool = False, **overrides):
    recipe = digits_recipe(method, learning=learning)
    model_args = {**recipe["model"]["init_args"], **overrides}
    data = datamodule_from_recipe(recipe, **({"batch_size": batch_size} if batch_size else {}))
    if hasattr(data, "model_args"):  # what the CLI fills from the data (a text vocabulary's size)
        model_args = {**data.model_args(), **model_args}
    model = get_method(method)(num_classes=data.num_classes, **model_args)
    return model, data, recipe


def test_every_method_has_a_title_and_a_digits_recipe():
    assert {"SimSiam", "BYOL", "DirectPred"} <= set(METHODS)
    for info in list_methods():
        assert info.title and info.wing and info.modality
        dataset = recipe_dataset(info.name)
        assert f"{dataset}/{info.name.lower()}" in list_recipes(), f"{info.name} lacks a {dataset} recipe"


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_trains_a_few_steps_and_round_trips_through_the_hub(method, tiny_trainer_kwargs, tmp_path, monkeypatch):
    """Every registered method: a few CPU steps, then push to a temporary local hub; ``load(name).embed`` equals
    the trained method's ``embed`` on the same batch (the representation it was measured on, in the form and
    size its config records) and ``load_method(name)`` restores every tensor."""
    from reprzoo.zoo.api import load, load_method, push

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    model, data, recipe = build_from_recipe(method)
    before = copy.deepcopy(model.backbone.state_dict())
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    if getattr(data, "class_split", None) == "zero_shot":  # retrieval among classes never trained on
        assert "val/map_at_r" in metrics and "val/knn_top1" not in metrics
    elif data.num_classes:  # labelled data: the kNN monitor and the probe ran
        assert "val/knn_top1" in metrics and "val/probe_top1" in metrics
    else:  # the modality's own evaluation ran (word similarity over a vocabulary)
        assert any(key.startswith("val/") for key in metrics), sorted(metrics)
    changed = [k for k, v in model.backbone.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed, "no backbone weight changed"

    run_dir = write_run(tmp_path / "run", trainer, model, recipe)
    name = f"{method.lower()}-tiny-digits.roundtrip"
    config = push(run_dir, name).config
    assert config["architecture"]["representation"]["kind"] == model.representation_kind
    assert not absolute_paths(config), f"a pushed config names local paths: {absolute_paths(config)}"
    x = first_rows(next(iter(data.val_dataloader()[-1]))[0], 8)  # queries (word ids, a dict of token ids)
    model.eval()
    with torch.no_grad():
        expected = model.embed(x)
        loaded = load(name)
        got = loaded.embed(x)
        assert got.shape == expected.shape and expected.shape[-1] == config["architecture"]["embedding_dim"]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # a retriever's queries: the query tower it was measured with (the same as embed for one-tower methods)
        torch.testing.assert_close(loaded.embed_query(x), model.embed_query(x), rtol=1e-5, atol=1e-5)
        assert loaded.similarity == (model.retrieval_similarity or "cosine")
        restored = load_method(name).eval()
        torch.testing.assert_close(restored.embed(x), expected, rtol=1e-5, atol=1e-5)
    own = {k: v for k, v in model.state_dict().items() if k in restored.state_dict()}
    for key, value in restored.state_dict().items():
        if key in own and value.dtype.is_floating_point:
            torch.testing.assert_close(value, own[key], msg=f"{method}: {key} differs after load_method")


SUCCESSOR_METHODS = sorted(
    m.name
    for m in list_methods()
    if issubclass(m.cls, importlib.import_module("reprzoo.lightning_modules.compatible.base").CompatibleModule)
)


@pytest.mark.parametrize("method", SUCCESSOR_METHODS)
def test_a_compatible_successor_round_trips_through_the_hub(method, tiny_trainer_kwargs, tmp_path, monkeypatch):
    """A successor (second task, frozen old model) of every compatible method pushes without its old model and
    loads back embedding exactly as it did when its compatibility was measured."""
    from reprzoo.zoo.api import load, load_method, push

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    recipe = digits_recipe(method)
    if not recipe["data"]["class_path"].endswith("ClassIncremental"):  # a single-problem recipe: two tasks of it
        recipe["data"] = {
            "class_path": "reprzoo.datamodules.ClassIncremental",
            "init_args": {"base": recipe["data"], "num_tasks": 2},
        }
    recipe["data"]["init_args"]["base"]["init_args"]["batch_size"] = 32
    tasks = [
        datamodule_from_recipe({"data": {**recipe["data"], "init_args": {**recipe["data"]["init_args"], "task": t}}})
        for t in (0, 1)
    ]
    old = get_method(method)(num_classes=tasks[0].num_classes, **recipe["model"]["init_args"])
    L.Trainer(**tiny_trainer_kwargs).fit(old, datamodule=tasks[0])
    recipe["data"]["init_args"]["task"] = 1
    data = tasks[1]
    model = get_method(method)(num_classes=data.num_classes, **recipe["model"]["init_args"])
    model.set_old_model(old)
    if hasattr(model, "set_independent_model"):
        model.set_independent_model(old)
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    assert "val/compat_top1" in trainer.callback_metrics

    name = f"{method.lower()}-tiny-digits.successor"
    config = push(write_run(tmp_path / "run", trainer, model, recipe), name).config
    assert not absolute_paths(config)
    x = next(iter(data.val_dataloader()[1]))[0][:8]
    model.eval()
    with torch.no_grad():
        expected = model.embed(x)
        loaded = load(name)
        torch.testing.assert_close(loaded.embed(x), expected, rtol=1e-5, atol=1e-5)
        compatible = model.compatible_embed(x)
        prefix = loaded.compatible_dim or expected.shape[-1]
        torch.testing.assert_close(loaded.embed(x)[:, :prefix], compatible, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(load_method(name).eval().embed(x), expected, rtol=1e-5, atol=1e-5)


def first_rows(inputs, n: int):
    """The first ``n`` samples of a batch: a tensor, or a dict of tensors (tokenised text)."""
    return {k: v[:n] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[:n]


def write_run(run_dir: Path, trainer: L.Trainer, model, recipe: dict) -> Path:
    """A run folder as ``reprzoo fit`` writes it (``reprzoo.training.runs.save_run``), with the recipe's data."""
    return save_run(run_dir, trainer, model, recipe["data"])


def absolute_paths(value, where: str = "") -> list[str]:
    """Places in a config holding an absolute or home-relative path."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in absolute_paths(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in absolute_paths(v, f"{where}[{i}]")]
    return [f"{where}={value}"] if isinstance(value, str) and value.startswith(("/", "~")) else []


def test_single_validation_loader_is_queries(tiny_trainer_kwargs):
    model, data, _ = build_from_recipe("SimSiam")
    data.setup()
    loader = data.val_dataloader()[1]
    result = L.Trainer(**tiny_trainer_kwargs).validate(model, dataloaders=loader, verbose=False)[0]
    assert "val/probe_top1" in result and "val/effective_rank" in result


def test_directpred_sets_predictor_from_correlation(tiny_trainer_kwargs):
    model, data, _ = build_from_recipe("DirectPred")
    assert not model.predictor.weight.requires_grad
    initial = model.predictor.weight.detach().clone()
    L.Trainer(**tiny_trainer_kwargs).fit(model, datamodule=data)
    assert model.correlation.abs().sum() > 0
    # update_every = 1: the last step updated the correlation's EMA, then set W_p from it
    model.eval()
    expected = directpred_weight(model.correlation, model.hparams.dp_eps)
    assert model.predictor.weight.shape == expected.shape
    assert torch.allclose(model.predictor.weight, expected, atol=1e-5), (model.predictor.weight - expected).abs().max()
    assert not torch.allclose(model.predictor.weight, initial, atol=1e-3)  # training replaced the initial weight
    assert torch.allclose(model.predictor.weight, model.predictor.weight.T, atol=1e-5)  # W_p is symmetric


@pytest.mark.parametrize("mode,trainable", [("linear", True), ("mlp", True), ("direct", False)])
def test_directpred_predictor_modes(mode, trainable):
    model = DirectPred(backbone="resnet_tiny_cifar", predictor=mode, proj_hidden_dim=32, proj_output_dim=16)
    params = list(model.predictor.parameters())
    assert all(p.requires_grad == trainable for p in params)
    with pytest.raises(ValueError, match="predictor must be"):
        DirectPred(backbone="resnet_tiny_cifar", predictor="quadratic")


def test_directpred_stopgrad_variant_has_no_target():
    model = DirectPred(backbone="resnet_tiny_cifar", ema_target=False, proj_hidden_dim=32, proj_output_dim=16)
    assert model.momentum_pairs == [] and not hasattr(model, "target_backbone")


# known gaps, each with its reason; a method listed here still runs and is reported, but does not fail the suite
# method -> reason, for a recipe known to miss the bar (a non-strict xfail). Empty: every recipe clears it at the
# test's seed 0. KARL's is seed-dependent (kNN +0.084, +0.044 and -0.047 after 8 epochs for seeds 0, 1 and 2, lr
# 3e-4): the test checks seed 0, and the README says so.
# Text methods (measured on the 2-core CPU with other jobs running; the numbers are the datamodule's metric at
# random init -> trained, README's text table has the full-tier measurements):
LEARNING_KNOWN_FAILURES: dict[str, str] = {
    "ELECTRA": "val/lee_pearson 0.138 -> 0.120 in 2 epochs: the generator reaches unigram level (MLM loss 6.6) in about "
    "100 steps, after which replaced-token detection needs context that a from-scratch bert_tiny does not learn in a "
    "CPU budget (the discriminator's loss stays at its prior; with uniform replacements it learns, tested); on TextPairs "
    "retrieval val/mrr@10 0.029 -> 0.004 (2 epochs); generator at 1/2 width, lr 2e-3: Lee 0.155 -> 0.149 (3 epochs); "
    "frozen features on the Debian sections fall too (kNN 0.408 -> 0.368 after 300 steps on WordNet, 0.383 -> 0.341 "
    "after 2,000 steps on the Debian descriptions themselves; logistic probe 0.502 -> 0.475): the discriminator's "
    "replaced-token AUC reaches only about 0.6 on the generator's samples (0.78 on uniform ones) with bert_tiny",
}
#: text methods whose learning test runs in the quick tier (``make test``): measured to clear their bar there in
#: about a minute or two. The other text methods' learning tests run in the full tier (``make learning-table``,
#: ``REPRZOO_LEARNING_TIER=full``): each takes 5-10 minutes of the 2-core CPU (transformer encoders, full-softmax
#: document vectors) or misses its bar (above).
QUICK_TEXT_LEARNING = {"SkipGramNegativeSampling", "ContrastiveWordModel", "RCNN"}
#: other methods whose learning test runs in the full tier only (minutes of CPU each)
#: (the quick tier keeps ``make test`` under 25 minutes as the zoo grows: the image methods whose quick budget took
#: over a minute of CPU in the clean-clone CI run are measured by ``make learning-table`` only)
FULL_TIER_LEARNING = {
    "LabelGuidedSupCon": "emoji kNN top-1 0.387 -> 0.477 after 20 epochs (15 minutes of a shared CPU)",
    "ALIT": "8 epochs, 97 s in the quick tier",
    "IJEPA": "6 epochs, 91 s in the quick tier",
    "MoCoV3": "6 epochs, 87 s in the quick tier",
    "BYOL": "6 epochs, 84 s in the quick tier",
    "SIE": "6 epochs, 70 s in the quick tier",
}


def _learning_param(m: str):
    marks = []
    if m in LEARNING_KNOWN_FAILURES:
        marks.append(pytest.mark.xfail(reason=LEARNING_KNOWN_FAILURES[m], strict=False))
    if (get_method_info(m).modality == "text" and m not in QUICK_TEXT_LEARNING) or m in FULL_TIER_LEARNING:
        marks.append(pytest.mark.timeout(1800))  # 5-10 minutes of a quiet 2-core CPU each; more when it is shared
        marks.append(
            pytest.mark.skipif(
                os.environ.get("REPRZOO_LEARNING_TIER", "quick") != "full" and not os.environ.get("REPRZOO_LEARNING_EPOCHS"),
                reason=f"a learning test of the full tier (make learning-table): minutes of CPU ({FULL_TIER_LEARNING.get(m, 'text')})",
            )
        )
    return pytest.param(m, marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("method", [_learning_param(m) for m in METHOD_NAMES])
def test_learns_on_digits(method, tmp_path):
    """The method's small-data recipe (digits; WordNet for text; at most LEARNING_EPOCHS epochs) lifts its wing's
    metric (kNN top-1; word similarity, document similarity or retrieval for text) clearly above the same encoder
    at random init."""
    L.seed_everything(0)
    model, data, recipe = build_from_recipe(method, batch_size=None, learning=True)
    metric, bar = LEARNING_METRIC_BY_METHOD.get(method) or learning_metric(data)
    epochs = learning_epochs(method, recipe)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=epochs,
        default_root_dir=str(tmp_path),
    )
    baseline = trainer.validate(model, datamodule=data, verbose=False)[0][metric]
    started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    trained = trainer.callback_metrics[metric].item()
    record_learning(method, recipe, epochs, baseline, trained, time.perf_counter() - started, metric, bar)
    learned = trained < baseline + bar if bar < 0 else trained > baseline + bar
    assert learned, f"{method}: {metric} {baseline:.3f} at init, {trained:.3f} after training (margin {bar:+.2f})"


#: datamodule class -> (the metric a learning test compares with random init, the margin it must clear)
LEARNING_METRICS = {
    "WordWindows": ("val/wordsim353_spearman", 0.10),
    "TextPairs": ("val/mrr@10", 0.05),
    "GraphNeighbours": ("val/mrr@10", 0.05),
    "TaggedPairs": ("val/mrr@10", 0.05),
}


#: methods whose learning shows in their own held-out objective, not in their datamodule's similarity metric:
#: method -> (metric, margin); a negative margin means lower is better (the trained value must fall below the
#: value at init by at least its size). AriEL's space codes a sentence's tokens by its language model's
#: probabilities (a volume per sentence), not its meaning: its held-out next-token loss is what it learns.
LEARNING_METRIC_BY_METHOD = {
    "AriEL": ("val/lm_nll", -0.5),
    "CodeSage": ("val/mrr@10", 0.05),  # CodePairs: held-out docstring -> code retrieval
    "SciNCL": ("val/ndcg@10", 0.05),  # GraphNeighbours: the Debian retrieval split, judged like the other retrievers
    # semi-supervised: their classifier on the clean test split (10 labels per class; 0.10 at random init)
    "FixMatch": ("val/classifier_top1", 0.3),
    "ShrinkMatch": ("val/classifier_top1", 0.3),
}


def learning_metric(data) -> tuple[str, float]:
    if getattr(data, "class_split", None) == "zero_shot":  # metric learning: retrieval among unseen classes
        return ("val/map_at_r", 0.05)
    if type(data).__name__ == "TextPairs" and data.source == "debian_descriptions":  # the retrievers' split
        return ("val/ndcg@10", 0.05)
    if type(data).__name__ == "Sentences":
        return ("val/lee_pearson", 0.05) if data.evaluation == "lee" else ("val/knn_top1", 0.03)
    return LEARNING_METRICS.get(type(data).__name__, ("val/knn_top1", 0.03))


LEARNING_EPOCHS = 10  # at most; a digits recipe with fewer epochs is trained for its own number
# other budgets (kNN at init -> after these epochs, measured on this 2-core CPU): shorter for methods that clear the
# bar with a wide margin well before 10 epochs, to keep the suite's time down; longer where 10 leave a thin margin
LEARNING_EPOCHS_BY_METHOD = {
    # the sparse retrievers, nDCG@10 on the Debian split (254 held-out queries and documents)
    "SPLADE": 2,  # 0.087 -> 0.810
    "SPLADEv2": 2,  # 0.159 -> 0.669
    "SPLADEPlusPlus": 2,  # 0.175 -> 0.707 (its recipe trains 5)
    "UniCOIL": 1,  # 0.238 -> 0.891
    "UHD": 1,  # 0.238 -> 0.841 (about 600 s an epoch)
    "LabelGuidedSupCon": 20,  # kNN top-1 on emoji 0.387 -> 0.477 at 20 epochs; 0.427 at 10 (a thin +0.040)
    "DefSentPlus": 2,  # MRR@10 0.029 -> 0.228 (its recipe trains 5)
    "AMCL": 5,  # 0.653 -> 0.839
    "BarlowTwins": 5,  # 0.653 -> 0.806
    "VICReg": 5,  # 0.653 -> 0.803
    "DDPMFeatures": 5,  # 0.814 -> 0.930
    "CMIM": 5,  # 0.622 -> 0.878
    "CMIMFramework": 5,  # 0.622 -> 0.878
    "SIE": 6,  # 0.653 -> 0.769
    "STProtoPNet": 4,  # 0.653 -> 0.953
    "SimSiam": 6,  # 0.653 -> 0.789
    "BYOL": 6,  # 0.653 -> 0.733
    "DirectPred": 6,  # 0.653 -> 0.789
    "DeepPermNet": 6,  # 0.653 -> 0.747
    "STDIM": 4,  # 0.187 -> 0.683 (10 epochs: 0.808)
    "DBPM": 4,  # 0.338 -> 0.595 (10 epochs: 0.745)
    "GSimCLR": 3,  # 0.653 -> 0.886
    "SimCLR": 3,  # 0.653 -> 0.900
    "MatryoshkaSimCLR": 3,  # 0.653 -> 0.886
    "Hydra": 3,  # 0.653 -> 0.936
}
#: ``quick`` (default, ``make test``): the QUICK budget below; ``full`` (``make learning-table``): the budgets above.
TIER_ENV = "REPRZOO_LEARNING_TIER"
EPOCHS_ENV = "REPRZOO_LEARNING_EPOCHS"  # an explicit cap, for measuring a budget
QUICK_EPOCHS = 2
# Methods whose quick budget is longer than QUICK_EPOCHS. A method runs QUICK_EPOCHS in the quick tier when its
# measured gain at that budget is at least +0.07 (twice the bar: a margin, not a coin); else the shortest measured
# budget that gains +0.07; else its full budget. Gains measured at seed 0, two pytest workers on the 2-core CPU
# (REPRZOO_LEARNING_EPOCHS=2 and =4): kNN top-1 after minus at init.
QUICK_EPOCHS_BY_METHOD: dict[str, int] = {
    "CMIM": 4,  # 2 epochs: +0.000, 4: +0.225
    "CMIMFramework": 4,  # 2: +0.000, 4: +0.225
    "DDPMFeatures": 4,  # 2: +0.056, 4: +0.080
    "DER": 4,  # 2: +0.061, 4: +0.083
    "Nugget": 4,  # 2: +0.042, 4: +0.117
    "SparseJEPA": 4,  # 2: +0.020, 4: +0.078
    "TwoDMatryoshka": 4,  # 2: +0.044, 4: +0.072
    "ELR": 4,  # under 40% label noise, 2: +0.044, 4: +0.191
    "AdaMixUp": 4,  # 2: +0.042, 4: +0.231
    # the full budget: no shorter measured budget gains +0.07
    "ALIT": 8,  # 2: -0.047, 4: -0.108, 8: +0.048
    "BYOL": 6,  # 2: +0.061, 4: +0.053, 6: +0.080
    "IJEPA": 6,  # 2: +0.022, 4: +0.067, 6: +0.136
    "KARL": 8,  # 2: +0.028, 4: +0.056, 8: +0.072
    "MoCoV3": 6,  # 2: +0.022, 4: +0.028, 6: +0.111
    "PICLE": 5,  # 2: +0.044, 4: +0.056, 5: +0.067
    "PODNet": 5,  # 2: +0.033, 4: +0.067, 5: +0.050
    "SIE": 6,  # 2: -0.117, 4: +0.064, 6: +0.116
    "HypersphericalEmbedding": 10,  # MAP@R 2: -0.033, 10: +0.164
    "DuIN": 10,  # its recipe: 2 VQ-VAE epochs, then 8 MAE epochs (after the 2 tokenizer epochs alone: +0.15)
}


def learning_epochs(method: str, recipe: dict) -> int:
    """Epochs of a method's learning test: the recipe's, capped by the tier's budget."""
    full = min(recipe["trainer"]["max_epochs"], LEARNING_EPOCHS_BY_METHOD.get(method, LEARNING_EPOCHS))
    if os.environ.get(EPOCHS_ENV):
        return min(full, int(os.environ[EPOCHS_ENV]))
    if os.environ.get(TIER_ENV, "quick") == "full":
        return full
    return min(full, QUICK_EPOCHS_BY_METHOD.get(method, QUICK_EPOCHS))


REPORT_ENV = "REPRZOO_LEARNING_REPORT"  # a folder: each learning test writes <method>.json there (README's table)


def record_learning(
    method: str,
    recipe: dict,
    epochs: int,
    baseline: float,
    trained: float,
    seconds: float,
    metric: str = "val/knn_top1",
    bar: float = 0.03,
) -> None:
    folder = os.environ.get(REPORT_ENV)
    if not folder:
        return
    data = recipe["data"]
    row = {
        "method": method,
        "title": get_method_info(method).title,
        "recipe": f"{recipe_dataset(method)}/{method.lower()}",
        "dataset": data["class_path"].rsplit(".", 1)[-1],
        "epochs": epochs,
        "metric": metric,
        "bar": bar,
        "random_init": round(float(baseline), 4),
        "trained": round(float(trained), 4),
        "train_seconds": round(seconds, 1),
    }
    if metric == "val/knn_top1":
        row.update(knn_k=recipe["model"]["init_args"].get("knn_k", 200), knn_top1_random_init=row["random_init"])
        row["knn_top1_trained"] = row["trained"]
    else:
        row["data_options"] = LEARNING_DATA_OVERRIDES.get(row["dataset"], {})
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{method}.json").write_text(json.dumps(row, indent=2) + "\n")
