"""Shipped training recipes (LightningCLI YAML): ``<dataset>/<method>.yaml``, e.g. ``digits/simsiam``."""

from __future__ import annotations

from pathlib import Path

import yaml

from reprzoo.errors import UnknownNameError

RECIPE_DIR = Path(__file__).parent


def list_recipes() -> dict[str, Path]:
    """Recipe name (``cifar10/simsiam``) -> YAML path."""
    return {str(p.relative_to(RECIPE_DIR).with_suffix("")): p for p in sorted(RECIPE_DIR.glob("*/*.yaml"))}


def resolve_recipe(name: str) -> Path:
    """The YAML file of a shipped recipe; unknown names raise with near matches."""
    recipes = list_recipes()
    key = name.removesuffix(".yaml").removesuffix(".yml")
    if key not in recipes:
        raise UnknownNameError("recipe (or config file)", name, recipes)
    return recipes[key]


def recipe_methods() -> dict[str, list[str]]:
    """Method class name -> names of the recipes that train it."""
    out: dict[str, list[str]] = {}
    for name, path in list_recipes().items():
        class_path = (yaml.safe_load(path.read_text()).get("model") or {}).get("class_path", "")
        out.setdefault(class_path.rsplit(".", 1)[-1], []).append(name)
    return out
