"""LightningModules: the methods, grouped by wing (``vision_ssl``, ``compatible``, ``nested``, and the wings to come:
``text``, ``retrieval``, ``cross_modal``, ``graph_recsys``, ``discrete_object``, ``metric_supervised``), on one
small shared base.

Importing this package discovers every module of its wing packages, which registers each method
(``@register_method``), and makes every registered class importable as ``reprzoo.lightning_modules.<Name>``: the name
recipes and pushed ``config.json`` files use. A new method is a file in its wing's folder; nothing else to edit.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.finetune import FineTune
from reprzoo.lightning_modules.registry import METHODS, MethodInfo, get_method, list_methods, register_method

WINGS = (
    "vision_ssl",
    "compatible",
    "nested",
    "text",
    "retrieval",
    "cross_modal",
    "graph_recsys",
    "discrete_object",
    "metric_supervised",
)


def _discover() -> None:
    for wing in WINGS:
        package = _importlib.import_module(f"{__name__}.{wing}")
        for info in _pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            _importlib.import_module(info.name)


_discover()
globals().update({name: info.cls for name, info in METHODS.items()})

__all__ = [
    *sorted(METHODS),
    "EmbeddingModule",
    "FineTune",
    "METHODS",
    "MethodInfo",
    "TrainingOutput",
    "WINGS",
    "get_method",
    "list_methods",
    "register_method",
]
