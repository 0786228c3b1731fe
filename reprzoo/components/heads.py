"""Projection and prediction heads: one generic MLP head, and the papers' heads as named subclasses."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# One layer of a head: (in_dim, out_dim, batch norm or None, activation or None, bias).
Layer = tuple[int, int, "nn.Module | None", "nn.Module | None", bool]


class ProjectionHead(nn.Module):
    """An MLP built from ``(in, out, norm, activation, bias)`` layer specs."""

    def __init__(self, layers: Sequence[Layer]):
        super().__init__()
        modules: list[nn.Module] = []
        for in_dim, out_dim, norm, act, bias in layers:
            modules.append(nn.Linear(in_dim, out_dim, bias=bias))
            if norm is not None:
                modules.append(norm)
            if act is not None:
                modules.append(act)
        self.layers = nn.Sequential(*modules)
        self.out_dim = layers[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam's projector: "The projection MLP (in f) has BN applied to each fully-connected (fc) layer,
    including its output fc. Its output fc has no ReLU. The hidden fc is 2048-d. This MLP has 3 layers."
    (arXiv:2011.10566, Sec. 4). The CIFAR variant uses 2 layers (Appendix D)."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 2048, num_layers: int = 3):
        if num_layers < 2:
            raise ValueError(f"SimSiam's projector has at least 2 layers, got num_layers={num_layers}")
        layers: list[Layer] = [(in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), False)]
        for _ in range(num_layers - 2):
            layers.append((hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), False))
        layers.append((hidden_dim, out_dim, nn.BatchNorm1d(out_dim, affine=False), None, False))
        super().__init__(layers)


class SimSiamPredictionHead(ProjectionHead):
    """SimSiam's predictor: "The prediction MLP (h) has BN applied to its hidden fc layers. Its output fc does
    not have BN or ReLU. This MLP has 2 layers." Bottleneck hidden size 512 (arXiv:2011.10566, Sec. 4)."""

    def __init__(self, in_dim: int = 2048, hidden_dim: int = 512, out_dim: int = 2048):
        super().__init__(
            [
                (in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), False),
                (hidden_dim, out_dim, None, None, True),
            ]
        )


class BYOLProjectionHead(ProjectionHead):
    """BYOL's projector: "a linear layer with output size 4096 followed by batch normalization, rectified linear
    units (ReLU), and a final linear layer with output dimension 256" (arXiv:2006.07733, Sec. 3.3)."""

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 256):
        super().__init__(
            [
                (in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), True),
                (hidden_dim, out_dim, None, None, True),
            ]
        )


class BYOLPredictionHead(BYOLProjectionHead):
    """BYOL's predictor: "uses the same architecture as the projector" (arXiv:2006.07733, Sec. 3.3)."""

    def __init__(self, in_dim: int = 256, hidden_dim: int = 4096, out_dim: int = 256):
        super().__init__(in_dim, hidden_dim, out_dim)
