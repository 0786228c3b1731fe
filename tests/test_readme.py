"""The README's Python snippets run as written: every name they use is defined or imported in them, embeddings after
training are taken in evaluation mode without gradients, and the snippets that need no trained run do run."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).parents[1] / "README.md"


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def snippet(containing: str) -> str:
    (code,) = [code for code in python_snippets() if containing in code]
    return code


def undefined_names(code: str) -> set[str]:
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return used - defined


def embed_calls_outside_no_grad(code: str) -> list[int]:
    """Line numbers of ``.embed(...)`` calls not inside a ``with torch.no_grad():`` block."""
    tree = ast.parse(code)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any("no_grad" in ast.unparse(item.context_expr) for item in node.items):
            guarded |= {id(n) for body in node.body for n in ast.walk(body)}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "embed"
        if id(node) not in guarded
    ]


def test_readme_has_python_snippets():
    assert len(python_snippets()) >= 3


@pytest.mark.parametrize("index", range(len(python_snippets())))
def test_snippet_defines_every_name_it_uses(index):
    code = python_snippets()[index]
    assert not undefined_names(code), f"README snippet {index} uses undefined names:\n{code}"


@pytest.mark.parametrize("index", range(len(python_snippets())))
def test_snippet_embeds_without_gradients(index):
    code = python_snippets()[index]
    assert not embed_calls_outside_no_grad(code), f"README snippet {index}: embed outside torch.no_grad():\n{code}"
    if ".fit(" in code and ".embed(" in code.split(".fit(", 1)[1]:
        between = code.split(".fit(", 1)[1].split(".embed(", 1)[0]
        assert ".eval()" in between, "fit leaves the model in training mode: the snippet must call model.eval()"


def test_zoo_snippet_runs():
    namespace: dict = {}
    exec(compile(snippet('reprzoo.load("simsiam-tinyresnet-digits")'), "README.md", "exec"), namespace)
    assert namespace["z"].shape[0] == 1 and namespace["z"].ndim == 2
    assert type(namespace["method"]).__name__ == "SimSiam"


def test_python_api_snippet_runs(monkeypatch):
    """The training snippet, with a tiny trainer instead of 20 epochs."""
    import lightning

    real_trainer = lightning.Trainer

    def tiny_trainer(**kwargs):
        kwargs.update(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0)
        return real_trainer(**kwargs, logger=False, enable_checkpointing=False, enable_progress_bar=False)

    monkeypatch.setattr(lightning, "Trainer", tiny_trainer)
    namespace: dict = {}
    exec(compile(snippet("L.Trainer("), "README.md", "exec"), namespace)
    features, images, model = namespace["features"], namespace["images"], namespace["model"]
    assert features.shape[0] == images.shape[0] and features.ndim == 2
    assert not model.training and not features.requires_grad
    model.train()
    assert not torch.equal(model.embed(images), features), "in training mode BatchNorm uses batch statistics"
