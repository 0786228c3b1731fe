"""A byte-level convolutional text auto-encoder: "Efficient Purely Convolutional Text Encoding" (Malik, Lancucki &
Chorowski, 2018, arXiv:1808.01160), built on "Byte-Level Recursive Convolutional Auto-Encoder for Text" (Zhang &
LeCun, 2018, arXiv:1802.01817)."""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.text_misc import byte_reconstruction_loss


class _ConvGroup(nn.Module):
    """``layers`` residual blocks ``x + relu(conv_k(x))`` (length kept)."""

    def __init__(self, channels: int, layers: int, kernel: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=kernel // 2) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + torch.relu(conv(x))
        return x


def fixed_length(ids: torch.Tensor, length: int) -> torch.Tensor:
    """``(batch, L)`` ids right-padded with 0 or truncated to ``(batch, length)``."""
    return F.pad(ids, (0, length - ids.shape[1])) if ids.shape[1] < length else ids[:, :length]


class ByteConvEncoder(nn.Module):
    """Byte embeddings (``length`` positions) -> a prefix group of convolutions -> one shared group of convolutions
    and max-pooling by 2, applied until ``code_length`` positions remain -> a linear map to the ``dim`` code."""

    def __init__(self, vocab_size: int, length: int, channels: int, layers: int, kernel: int, code_length: int, dim: int):
        super().__init__()
        self.length, self.steps = length, int(math.log2(length // code_length))
        self.embedding = nn.Embedding(vocab_size, channels)
        self.prefix = _ConvGroup(channels, layers, kernel)
        self.recursive = _ConvGroup(channels, layers, kernel)  # shared by every level
        self.code = nn.Linear(channels * code_length, dim)
        self.num_features = dim

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = self.prefix(self.embedding(fixed_length(batch["input_ids"], self.length)).transpose(1, 2))
        for _ in range(self.steps):
            x = F.max_pool1d(self.recursive(x), 2)
        return self.code(x.flatten(1))


class ByteConvDecoder(nn.Module):
    """The mirror: the code -> ``code_length`` positions -> one shared group of convolutions and upsampling by 2
    (a convolution to twice the channels, reshaped to twice the length) -> a postfix group -> symbol scores."""

    def __init__(self, vocab_size: int, length: int, channels: int, layers: int, kernel: int, code_length: int, dim: int):
        super().__init__()
        self.channels, self.code_length, self.steps = channels, code_length, int(math.log2(length // code_length))
        self.expand = nn.Linear(dim, channels * code_length)
        self.upsample = nn.Conv1d(channels, 2 * channels, 1)
        self.recursive = _ConvGroup(channels, layers, kernel)
        self.postfix = _ConvGroup(channels, layers, kernel)
        self.output = nn.Conv1d(channels, vocab_size, 1)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = self.expand(code).view(-1, self.channels, self.code_length)
        for _ in range(self.steps):  # (B, 2C, L) -> (B, C, 2L): each position's two halves become two positions
            up = self.upsample(x)
            x = self.recursive(up.view(up.shape[0], 2, self.channels, -1).permute(0, 2, 3, 1).flatten(2))
        return self.output(self.postfix(x)).transpose(1, 2)  # (B, length, vocab)


@register_method(
    title="Efficient Purely Convolutional Text Encoding",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1808.01160",
)
class ByteConvAutoEncoder(EmbeddingModule):
    """A purely convolutional auto-encoder of byte sequences: text, as UTF-8 bytes padded to a fixed power-of-two
    length, is convolved and max-pooled by a recursive (weight-shared) group of layers down to a few positions and
    mapped to a fixed-size vector; a mirrored decoder upsamples it back and predicts every byte (padding included),
    trained with the bytes' cross-entropy. The code vector is the sentence representation (the paper evaluates it on
    SentEval; here on the Lee documents' similarity).

    Ours:
        - CPU sizes: 128-byte inputs (the papers use up to 1024), 128 channels, 2 layers per group and a 256-d code
          from 4 positions. Their exact layer counts and the paper's specific alterations of Zhang & LeCun's network
          (what trims its parameters and training time) could not be read offline; this keeps the shared
          recursive group, residual convolutions, max-pool down / reshape up, and the fixed-size linear code.
        - Bytes come from the datamodule's ``bytelevel`` tokenizer with ``vocab_size`` 261 (256 bytes + reprzoo's
          5 special tokens; ``[CLS]``/``[SEP]`` frame each text); with a larger ``vocab_size`` the same network
          auto-encodes byte-level BPE symbols (the CPU tests' shared overrides do so).
        - AdamW with warmup and cosine decay (the papers use SGD with momentum / Adam).

    Args:
        vocab_size: symbols of the datamodule's tokenizer (the command line fills it).
        length: the fixed input length (a power of two times ``code_length``).
        channels: convolution channels (and byte embedding width).
        layers: convolutions per group (prefix, recursive, postfix).
        kernel: convolution width.
        code_length: positions left when the recursion stops.
        dim: the code (representation) size.
        kwargs: :class:`EmbeddingModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        length: int = 128,
        channels: int = 128,
        layers: int = 2,
        kernel: int = 3,
        code_length: int = 4,
        dim: int = 256,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.0,
        warmup_epochs: float = 0.1,
        **kwargs,
    ):
        if vocab_size is None:
            raise ValueError("ByteConvAutoEncoder needs vocab_size (the command line takes it from the datamodule)")
        if length % code_length or (length // code_length) & (length // code_length - 1):
            raise ValueError(f"length / code_length must be a power of two, got {length} / {code_length}")
        kwargs.pop("backbone", None), kwargs.pop("backbone_kwargs", None)  # built from the arguments above
        sizes = dict(
            vocab_size=vocab_size,
            length=length,
            channels=channels,
            layers=layers,
            kernel=kernel,
            code_length=code_length,
            dim=dim,
        )
        super().__init__(
            backbone=ByteConvEncoder(**sizes),
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            **kwargs,
        )
        self.backbone_spec = ("byte_conv_encoder", sizes)  # what a pushed config records (rebuilt from init args)
        self.decoder = ByteConvDecoder(**sizes)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        code = self.backbone(views[0])
        targets = fixed_length(views[0]["input_ids"], self.hparams.length)
        loss = byte_reconstruction_loss(self.decoder(code), targets)
        return TrainingOutput(loss, features=code.detach(), embeddings=code.detach())


__all__ = ["ByteConvAutoEncoder", "ByteConvDecoder", "ByteConvEncoder"]
