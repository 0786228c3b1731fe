"""The registry of in-house backbones: a factory registers under a name with ``@register_backbone("name")`` and
``build_backbone("name", **kwargs)`` calls it. Image, sequence, text and graph encoders all register the same way."""

from __future__ import annotations

from typing import Callable, TypeVar

from torch import nn

F = TypeVar("F", bound=Callable[..., nn.Module])

#: name -> factory (a function or a class) returning a module with ``num_features`` set.
BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[F], F]:
    """Decorator registering a backbone factory under ``name``.

    The factory takes keyword arguments only (they come from a config's ``backbone_kwargs``: plain values) and
    returns a module whose ``forward`` maps a preprocessed batch to ``(batch, num_features)`` features (or to the
    representation its methods expect) and whose ``num_features`` attribute is set. A name is registered once;
    registering another factory under a taken name raises.
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a backbone name must be a non-empty string without surrounding spaces, got {name!r}")

    def decorate(factory: F) -> F:
        known = BACKBONES.get(name)
        if known is not None and known is not factory and _qualname(known) != _qualname(factory):
            raise ValueError(f"backbone {name!r} is registered twice ({_qualname(known)} and {_qualname(factory)})")
        BACKBONES[name] = factory
        return factory

    return decorate


def _qualname(factory: Callable) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


__all__ = ["BACKBONES", "register_backbone"]
