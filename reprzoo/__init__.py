"""reprzoo: a model zoo for representation learning on PyTorch Lightning.

``reprzoo.load(name)`` returns a ready encoder from the hub; ``reprzoo.load_method(name)`` the full
LightningModule. Both are imported lazily so that ``import reprzoo`` stays cheap and the library's layers
(methods, datamodules, metrics) import without the zoo.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {"load": "reprzoo.zoo", "load_method": "reprzoo.zoo", "list_models": "reprzoo.zoo"}
_SUBPACKAGES = ("zoo", "lightning_modules", "datamodules", "metrics", "losses", "backbones", "components", "training", "cli")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:  # ``reprzoo.zoo.push`` works whatever was imported before
        return importlib.import_module(f"reprzoo.{name}")
    raise AttributeError(f"module 'reprzoo' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
