"""Modules that compose a method's representation from its submodules (the encoder contract of
``EmbeddingModule.encoder``): what a method returns there is what validation measures and a pushed model exports."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Chain(nn.Sequential):
    """``nn.Sequential`` that records the width of its output as ``num_features`` (backbone -> embedding layer)."""

    def __init__(self, *modules: nn.Module, num_features: int):
        super().__init__(*modules)
        self.num_features = int(num_features)


class L2Normalize(nn.Module):
    """Unit-length rows along the last axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class Concatenation(nn.Module):
    """``[f_1(x); ...; f_n(x)]``: the members' features side by side; ``num_features`` is their sum."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.num_features = sum(int(m.num_features) for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.members], dim=1)


class Represent(nn.Module):
    """A representation computed by one of a method's own functions, ``fn(method, x)``: for methods whose
    representation reads most of the method (the adaptive tokenizers' rollouts, an aggregator over several heads).
    The module holds the method, so moving or exporting it moves and exports all of it."""

    def __init__(self, method: nn.Module, fn: Callable[[nn.Module, torch.Tensor], torch.Tensor], num_features: int):
        super().__init__()
        self.method = method
        self.fn = fn
        self.num_features = int(num_features)

    def forward(self, x):
        return self.fn(self.method, x)
