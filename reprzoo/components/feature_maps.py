"""Spatial feature maps of a backbone's last stages, for methods that work on local features (OBoW's visual words,
MobileVOS's pixel-wise distillation). Backbones stay untouched: TinyResNet's stages are walked here, timm models
answer ``forward_intermediates``."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.backbones.cifar_resnet import TinyResNet


def stage_channels(backbone: nn.Module, num_levels: int) -> list[int]:
    """Channels of the last ``num_levels`` stage outputs of a TinyResNet or a timm model with ``feature_info``."""
    if isinstance(backbone, TinyResNet):
        channels = [stage.conv2.out_channels for stage in backbone.stages]
    elif hasattr(backbone, "feature_info") and hasattr(backbone, "forward_intermediates"):
        channels = [info["num_chs"] for info in backbone.feature_info]
    else:
        name = type(backbone).__name__
        raise ValueError(f"feature maps need a TinyResNet or a timm model with forward_intermediates, got {name}")
    if not 1 <= num_levels <= len(channels):
        name = type(backbone).__name__
        raise ValueError(f"{name} has {len(channels)} feature levels, asked for the last {num_levels}")
    return channels[-num_levels:]


def stage_maps(backbone: nn.Module, x: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """The ``(n, c, h, w)`` outputs of the backbone's last ``num_levels`` stages (ResNet's conv4 and conv5 for 2)."""
    if isinstance(backbone, TinyResNet):
        maps, h = [], backbone.stem(x)
        for stage in backbone.stages:
            h = stage(h)
            maps.append(h)
        return maps[-num_levels:]
    return list(backbone.forward_intermediates(x, indices=num_levels, intermediates_only=True))
