"""reprzoo: a model zoo for representation learning on PyTorch Lightning.

``reprzoo.load(name)`` returns a ready encoder from the hub; ``reprzoo.load_method(name)`` the full
LightningModule. Both are imported lazily so that ``import reprzoo`` stays cheap and the library's layers
(methods, datamodules, metrics) import without the zoo.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {"load": "reprzoo.zoo", "load_method": "reprzoo.zoo", "list_models": "reprzoo.zoo"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reprzoo' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
