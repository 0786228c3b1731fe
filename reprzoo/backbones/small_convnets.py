"""Small encoders for non-image-classification inputs: a 1-D CNN for time series and the ST-DIM Atari encoder.

``conv1d_tiny`` / ``conv1d_tstcc`` follow the three-block encoder of "Time-Series Representation Learning via
Temporal and Contextual Contrasting" (TS-TCC, Eldele et al., 2021, arXiv:2106.14112) that the time-series contrastive
papers share, with global average pooling so that any series length works. ``atari_cnn`` is the encoder of
"Unsupervised State Representation Learning in Atari" (Anand et al., 2019, arXiv:1906.08226): the Nature-DQN
convolutions whose third-layer feature map is the "local" representation and whose linear head is the "global" one.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from reprzoo.backbones.registry import register_backbone


class Conv1dEncoder(nn.Module):
    """Blocks of Conv1d (``kernel_size``, same padding) - BatchNorm - ReLU - MaxPool(2), then global average pooling
    and, when ``num_features`` is given, a linear layer to that width.

    Args:
        in_chans: channels of the series.
        widths: output channels of the blocks.
        kernel_size: temporal kernel of every block (8 in TS-TCC).
        num_features: width of the output; ``None`` keeps the last block's width.
        dropout: dropout after the first block (0.35 in TS-TCC).
    """

    def __init__(
        self,
        in_chans: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        kernel_size: int = 8,
        num_features: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not widths:
            raise ValueError("Conv1dEncoder needs at least one block width")
        blocks: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip([in_chans, *widths[:-1]], widths)):
            blocks += [
                nn.Conv1d(w_in, w_out, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm1d(w_out),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2, stride=2, padding=1),
            ]
            if i == 0 and dropout > 0:
                blocks.append(nn.Dropout(dropout))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], num_features) if num_features else nn.Identity()
        self.num_features = num_features or widths[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's feature sequence, ``(batch, channels, time)``."""
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=-1))


@register_backbone("conv1d_tiny")
def conv1d_tiny(**kwargs) -> Conv1dEncoder:
    """16-32-64 channels: the CPU-test size of the TS-TCC encoder."""
    return Conv1dEncoder(**{"widths": (16, 32, 64), **kwargs})


@register_backbone("conv1d_tstcc")
def conv1d_tstcc(**kwargs) -> Conv1dEncoder:
    """TS-TCC's encoder widths (32-64-128, kernel 8, dropout 0.35 after the first block)."""
    return Conv1dEncoder(**{"widths": (32, 64, 128), "kernel_size": 8, "dropout": 0.35, **kwargs})


class AtariCNN(nn.Module):
    """ST-DIM's encoder: convolutions with ReLU, the feature map after ``local_layer`` convolutions as local
    features, the remaining convolutions, flatten, and a linear layer to ``num_features`` (the global feature).

    Paper defaults (arXiv:1906.08226, Appendix; the NatureCNN of its code): 210x160 frames, 32-64-128-64 channels,
    kernels 8-4-4-3, strides 4-2-2-1, local features from the third layer (128 channels), 256-d global feature.

    Args:
        in_chans: channels of a frame.
        img_size: ``(height, width)`` (or one side) of the frames; fixes the width of the flattened map.
        channels: output channels of the convolutions.
        kernels: their kernel sizes.
        strides: their strides.
        local_layer: how many convolutions produce the local feature map.
        num_features: width of the global feature.
    """

    def __init__(
        self,
        in_chans: int = 3,
        img_size: int | Sequence[int] = (210, 160),
        channels: Sequence[int] = (32, 64, 128, 64),
        kernels: Sequence[int] = (8, 4, 4, 3),
        strides: Sequence[int] = (4, 2, 2, 1),
        local_layer: int = 3,
        num_features: int = 256,
    ):
        super().__init__()
        if not len(channels) == len(kernels) == len(strides):
            raise ValueError(f"channels, kernels and strides differ in length: {channels}, {kernels}, {strides}")
        if not 1 <= local_layer <= len(channels):
            raise ValueError(f"local_layer must be in [1, {len(channels)}], got {local_layer}")
        convs: list[nn.Module] = []
        for w_in, w_out, k, s in zip([in_chans, *channels[:-1]], channels, kernels, strides):
            convs.append(nn.Sequential(nn.Conv2d(w_in, w_out, k, stride=s), nn.ReLU(inplace=True)))
        self.local = nn.Sequential(*convs[:local_layer])
        self.rest = nn.Sequential(*convs[local_layer:], nn.Flatten())
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        try:
            with torch.no_grad():
                local = self.local(torch.zeros(1, in_chans, *size))
                flat = self.rest(local).shape[1]
        except RuntimeError:  # a kernel larger than its input
            raise ValueError(f"frames of size {size} are too small for kernels {kernels} and strides {strides}") from None
        self.fc = nn.Linear(flat, num_features)
        self.local_channels, self.local_size = local.shape[1], tuple(local.shape[2:])
        self.num_features = num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The local feature map, ``(batch, local_channels, h, w)``."""
        return self.local(x)

    def forward_head(self, local: torch.Tensor) -> torch.Tensor:
        """The global feature from the local feature map, ``(batch, num_features)``."""
        return self.fc(self.rest(local))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone("atari_cnn")
def atari_cnn(**kwargs) -> AtariCNN:
    return AtariCNN(**kwargs)


__all__ = ["AtariCNN", "Conv1dEncoder", "atari_cnn", "conv1d_tiny", "conv1d_tstcc"]
