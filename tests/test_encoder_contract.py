"""The encoder contract across machines and models: a pushed model embeds as it was measured, wherever it is loaded.

- ``reprzoo compat`` on a pushed CoReS pair reproduces the cross-model retrieval its successor logged in training;
- a MobileVOS model distilled from a local teacher file pushes without that path and loads from a moved hub on a
  machine without the file;
- every method class of the package is registered, reachable as ``reprzoo.lightning_modules.<Name>``, and ships a
  digits recipe and a paper-scale recipe.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import shutil

import lightning as L
import pytest
import torch

from tests.test_methods import absolute_paths, build_from_recipe, digits_recipe, write_run  # noqa: E402


def _trainer(tiny_trainer_kwargs: dict, **overrides) -> L.Trainer:
    """conftest's few-step CPU trainer, validating on the whole evaluation split unless told otherwise."""
    return L.Trainer(**{**tiny_trainer_kwargs, "limit_train_batches": 3, "limit_val_batches": 1.0, **overrides})


def test_compat_of_a_pushed_pair_reproduces_the_retrieval_logged_in_training(tmp_path, monkeypatch, capsys, tiny_trainer_kwargs):
    """``reprzoo compat OLD NEW --data <the successor's datamodule>`` gives the numbers the successor's validation
    logged: the same gallery (the bank: the training split, no augmentation), queries and representations."""
    from reprzoo.cli.main import main
    from reprzoo.datamodules import ClassIncremental
    from reprzoo.lightning_modules import CoReS
    from reprzoo.zoo.api import push

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    recipe = digits_recipe("CoReS")
    data_args = recipe["data"]["init_args"]
    models, names = [], []
    for task in (0, 1):
        recipe_t = {**recipe, "data": {**recipe["data"], "init_args": {**data_args, "task": task}}}
        data = ClassIncremental(**recipe_t["data"]["init_args"])
        model = CoReS(num_classes=data.num_classes, **recipe["model"]["init_args"])
        if models:
            model.set_old_model(models[0])
        trainer = _trainer(tiny_trainer_kwargs, default_root_dir=str(tmp_path / f"t{task}"))
        trainer.fit(model, datamodule=data)
        models.append(model)
        names.append(f"cores-tinyresnet-digits.{'new' if task else 'old'}")
        push(write_run(tmp_path / f"run{task}", trainer, model, recipe_t), names[-1])
    logged = trainer.validate(models[1], datamodule=data, verbose=False)[0]

    args = ["compat", *names, "--data", "ClassIncremental", "--json", "--data.task=1"]
    args += [f"--data.{k}={json.dumps(v)}" for k, v in data_args.items() if k != "task"]
    capsys.readouterr()
    assert main(args) == 0
    matrix = json.loads(capsys.readouterr().out)["matrix"]
    assert matrix[1][0] == pytest.approx(logged["val/compat_top1"], abs=1e-4)
    assert matrix[0][0] == pytest.approx(logged["val/old_top1"], abs=1e-4)
    assert matrix[1][1] == pytest.approx(logged["val/self_top1"], abs=1e-4)


def test_mobilevos_pushed_on_one_machine_loads_from_a_moved_hub_without_its_teacher_file(
    tmp_path, monkeypatch, tiny_trainer_kwargs
):
    import reprzoo
    from reprzoo.zoo import teacher_weights
    from reprzoo.zoo.api import push

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    teacher_file = teacher_weights("simsiam-tinyresnet-digits")  # a file of this machine
    model, data, recipe = build_from_recipe("MobileVOS", teacher_weights=str(teacher_file))
    trainer = _trainer(tiny_trainer_kwargs, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, datamodule=data)
    run = write_run(tmp_path / "run", trainer, model, recipe)
    assert model.hparams.teacher_weights == str(teacher_file)
    push(run, "mobilevos-tinyresnet-digits.moved", to=f"local:{tmp_path / 'hub_a'}")
    config_text = next((tmp_path / "hub_a").rglob("config.json")).read_text()
    assert str(tmp_path) not in config_text and not absolute_paths(json.loads(config_text))

    shutil.move(str(tmp_path / "hub_a"), str(tmp_path / "elsewhere"))  # another machine: another folder, no teacher file
    shutil.rmtree(tmp_path / "home")
    x = next(iter(data.val_dataloader()[1]))[0][:4]
    encoder = reprzoo.load(f"local:{tmp_path / 'elsewhere' / 'mobilevos-tinyresnet-digits.moved'}")
    with torch.no_grad():
        torch.testing.assert_close(encoder.embed(x), model.eval().embed(x))
    method = reprzoo.load_method(f"local:{tmp_path / 'elsewhere' / 'mobilevos-tinyresnet-digits.moved'}")
    torch.testing.assert_close(method.teacher.state_dict(), model.teacher.state_dict())  # the teacher came in the weights


def _method_classes_in_package() -> dict[str, type]:
    """Every concrete LightningModule of a method defined under reprzoo.lightning_modules (helper bases excluded)."""
    import reprzoo.lightning_modules as package
    from reprzoo.lightning_modules.base import EmbeddingModule
    from reprzoo.lightning_modules.finetune import FineTune

    found = {}
    for info in pkgutil.walk_packages(package.__path__, prefix="reprzoo.lightning_modules."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, EmbeddingModule)
                and obj.__module__ == module.__name__
                and not inspect.isabstract(obj)
                and obj is not FineTune
                and not name.startswith("_")
                and not vars(obj).get("abstract_base", False)
            ):
                found[name] = obj
    return found


def test_every_method_class_is_registered_importable_and_has_both_recipes():
    import reprzoo.lightning_modules as lm
    from reprzoo.zoo.recipes import list_recipes

    recipes = list_recipes()
    registered = {info.name: info.cls for info in lm.list_methods()}
    for name, cls in _method_classes_in_package().items():
        assert registered.get(name) is cls, f"{cls.__module__}.{name} is a method class but not registered"
    for name, cls in registered.items():
        assert getattr(lm, name) is cls, f"reprzoo.lightning_modules.{name} is not importable"
        if lm.METHODS[name].modality == "text":  # one recipe on all of its real text; the tests take a share of it
            from test_methods import TEXT_RECIPE_FOLDERS as folders

            assert any(f"{d}/{name.lower()}" in recipes for d in folders), f"{name} has no recipe in {folders}"
            continue
        if lm.METHODS[name].modality == "image-text":  # its one offline data set with captions: emoji
            assert f"emoji/{name.lower()}" in recipes, f"{name} has no emoji recipe"
            continue
        assert f"digits/{name.lower()}" in recipes, f"{name} has no digits-scale recipe"
        paper = [r for r in recipes if r.split("/", 1)[1] == name.lower() and not r.startswith("digits/")]
        assert paper, f"{name} has no paper-scale recipe (cifar10/, cifar100/, stl10/ or sequences/)"


def test_preprocessing_files_travel_with_the_model_checked(tmp_path, monkeypatch, tiny_trainer_kwargs):
    """A datamodule's preprocessing files (a tokenizer.json, a vocabulary) are pushed next to the weights, hashed in
    the config, returned checked by ``load(name).preprocessing_file``; tampered files and path-like names are
    refused."""
    import reprzoo
    from reprzoo.datamodules import Digits
    from reprzoo.errors import ReprzooError
    from reprzoo.zoo.api import push, resolve

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    vocabulary = json.dumps({"[PAD]": 0, "seven": 1}).encode()
    monkeypatch.setattr(Digits, "preprocessing_files", lambda self: {"vocab.json": vocabulary}, raising=False)
    model, data, recipe = build_from_recipe("SimSiam")
    trainer = _trainer(tiny_trainer_kwargs, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, datamodule=data)
    config = push(write_run(tmp_path / "run", trainer, model, recipe), "simsiam-tinyresnet-digits.vocab").config
    assert set(config["preprocessing"]["files"]) == {"vocab.json"}
    encoder = reprzoo.load("simsiam-tinyresnet-digits.vocab")
    assert encoder.preprocessing_file("vocab.json").read_bytes() == vocabulary
    with pytest.raises(ReprzooError, match="records no preprocessing file 'merges.txt'"):
        encoder.preprocessing_file("merges.txt")

    folder = resolve("simsiam-tinyresnet-digits.vocab").folder
    (folder / "vocab.json").chmod(0o644)
    (folder / "vocab.json").write_bytes(vocabulary.replace(b"seven", b"eight"))
    with pytest.raises(ReprzooError, match="modified or corrupted"):
        reprzoo.load("simsiam-tinyresnet-digits.vocab").preprocessing_file("vocab.json")
    (folder / "config.json").chmod(0o644)
    hostile = {**config, "preprocessing": {**config["preprocessing"], "files": {"../../evil.json": {"sha256": "0" * 64}}}}
    (folder / "config.json").write_text(json.dumps(hostile))
    with pytest.raises(ReprzooError, match="refusing preprocessing file name"):
        reprzoo.load("simsiam-tinyresnet-digits.vocab")
