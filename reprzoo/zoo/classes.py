"""The classes a zoo config may name: registered methods, the fine-tuning module, the shipped datamodules.

Configs fetched from a hub name classes by their registry name; nothing is imported from a dotted path, so an
unknown or foreign class is refused rather than built.
"""

from __future__ import annotations

import inspect
from typing import Any

from reprzoo.errors import ReprzooError, UnknownNameError

#: Substrings of backbone arguments that could make a constructor read files or the network (timm's
#: ``checkpoint_path``, ``pretrained_cfg_overlay=dict(file=...)``): refused in configs from a hub.
UNSAFE_KWARG_PARTS = ("pretrain", "checkpoint", "path", "file", "url", "cache", "hub")


def method_registry() -> dict[str, type]:
    """Classes a config may name: the registered methods and the fine-tuning module."""
    from reprzoo.lightning_modules import METHODS
    from reprzoo.lightning_modules.finetune import FineTune

    return {**{name: info.cls for name, info in METHODS.items()}, "FineTune": FineTune}


def method_class(class_path: str) -> type:
    """The registered class a LightningCLI ``class_path`` names; anything else is refused."""
    classes = method_registry()
    name = class_path.rsplit(".", 1)[-1]
    cls = classes.get(name)
    if cls is None:
        raise UnknownNameError("method class (refusing to build an unregistered class)", name, classes)
    allowed = {f"{cls.__module__}.{cls.__qualname__}", f"reprzoo.lightning_modules.{name}", name}
    if class_path not in allowed:
        raise ReprzooError(f"class path {class_path!r} is not the registered {name} ({cls.__module__}.{name})")
    return cls


def datamodule_names() -> dict[str, type]:
    """The concrete datamodules of ``reprzoo.datamodules`` by class name."""
    import reprzoo.datamodules as datamodules
    from reprzoo.datamodules import EmbeddingDataModule

    return {
        n: c
        for n, c in vars(datamodules).items()
        if inspect.isclass(c) and issubclass(c, EmbeddingDataModule) and not inspect.isabstract(c)
    }


def datamodule_class(class_path: str) -> type:
    """The datamodule a LightningCLI ``class_path`` names; only ``reprzoo.datamodules`` classes are accepted."""
    known = datamodule_names()
    name = class_path.rsplit(".", 1)[-1]
    if name not in known or class_path not in (name, f"reprzoo.datamodules.{name}", f"{known[name].__module__}.{name}"):
        raise UnknownNameError("datamodule", name, known)
    return known[name]


def check_backbone_kwargs(kwargs: dict) -> dict:
    """Backbone arguments from a config: plain values only, none that could load files or reach the network."""
    if not isinstance(kwargs, dict):
        raise ReprzooError(f"backbone_kwargs must be a mapping, got {type(kwargs).__name__}")
    for key, value in kwargs.items():
        if any(part in key.lower() for part in UNSAFE_KWARG_PARTS):
            raise ReprzooError(f"refusing backbone argument {key!r}: weights load only from the repository's safetensors")
        if not _plain(value):
            raise ReprzooError(f"refusing backbone argument {key}={value!r}: only numbers, strings and lists are allowed")
    return kwargs


def check_init_args(init_args: dict[str, Any]) -> dict[str, Any]:
    """Init args of a method from a config: plain values only (numbers, strings, lists, mappings of them)."""
    for key, value in init_args.items():
        if not _plain_tree(value):
            raise ReprzooError(f"refusing init argument {key}={value!r}: only numbers, strings, lists and mappings are allowed")
    for key in [k for k in init_args if k.endswith("backbone_kwargs")]:
        check_backbone_kwargs(init_args[key] or {})
    return init_args


def _plain_tree(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_tree(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain_tree(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _plain(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
