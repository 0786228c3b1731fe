"""Backbones: in-house encoders registered by name, any timm model by name, or a module built by the caller.

``build_backbone(name)`` returns a feature extractor (no classifier) with ``num_features`` set, so methods
never depend on which library built it. In-house encoders (the CIFAR ResNets, the 1-D and Atari CNNs, the DDPM
U-Net, the text and graph embedding encoders, or a project's own) register with ``@register_backbone("name")``.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

# importing the modules registers their backbones
from reprzoo.backbones.cifar_resnet import resnet18_cifar, resnet50_cifar, resnet_tiny_cifar  # noqa: F401
from reprzoo.backbones.embeddings import embedding_table, mean_pooled_embeddings  # noqa: F401
from reprzoo.backbones.registry import BACKBONES, register_backbone
from reprzoo.backbones.small_convnets import atari_cnn, conv1d_tiny, conv1d_tstcc  # noqa: F401
from reprzoo.backbones.text import text_cnn, text_rnn  # noqa: F401  (and bert_tiny, bert_mini, bert_small)
from reprzoo.backbones.unet import unet_tiny  # noqa: F401
from reprzoo.errors import ReprzooError, UnknownNameError

#: The registered in-house backbones (the registry itself: backbones registered later appear here too).
IN_HOUSE: dict[str, Callable[..., nn.Module]] = BACKBONES


def list_backbones(pattern: str = "") -> list[str]:
    """Registered in-house names, then timm's, matching a shell-style ``pattern`` (all when empty)."""
    import timm

    return sorted(n for n in BACKBONES if fnmatch.fnmatch(n, pattern or "*")) + timm.list_models(pattern or "*")


def build_backbone(name: str | nn.Module, **kwargs) -> nn.Module:
    """A headless backbone: ``model(x)`` returns pooled features of size ``model.num_features``.

    Args:
        name: a registered in-house name (``resnet18_cifar``, ``resnet_tiny_cifar``, ``mean_pooled_embeddings``,
            ...), any ``timm`` model name, or an already-built ``nn.Module`` exposing ``num_features`` (returned as
            it is; a model built this way cannot be pushed to the zoo, which rebuilds backbones by name).
        kwargs: passed to the constructor (e.g. ``img_size`` for ViTs, ``in_chans``).
    """
    if isinstance(name, nn.Module):
        if kwargs:
            raise ReprzooError(f"backbone arguments {sorted(kwargs)} apply to a backbone built by name, not to a module")
        features = getattr(name, "num_features", None)
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ReprzooError(
                f"a backbone module must expose num_features (the width of its output), {type(name).__name__} has {features!r}"
            )
        return name
    if not isinstance(name, str):
        raise ReprzooError(f"a backbone is a registered name, a timm model name or an nn.Module, not {type(name).__name__}")
    if name in BACKBONES:
        return BACKBONES[name](**kwargs)
    import timm

    if not timm.is_model(name):
        raise UnknownNameError("backbone", name, list(BACKBONES) + timm.list_models())
    # Weights never come from the network at build time: pretrained encoders load through reprzoo.load.
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


__all__ = ["BACKBONES", "IN_HOUSE", "build_backbone", "list_backbones", "register_backbone"]
