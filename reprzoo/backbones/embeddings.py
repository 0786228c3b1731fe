"""Encoders of discrete inputs: token ids (text) and node or item ids (graphs, catalogues), each a learned
embedding table."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from reprzoo.backbones.registry import register_backbone


class MeanPooledEmbeddings(nn.Module):
    """Token ids -> ``nn.Embedding`` -> mean over the real (unmasked) tokens: a bag-of-tokens text encoder.

    ``forward`` takes ``{"input_ids": (batch, length), "attention_mask": (batch, length)}`` (what a padding
    collate gives; the mask is 1 on tokens, 0 on padding) or a bare ``(batch, length)`` id tensor, whose padding
    is read as ``padding_idx``. A sequence with no token gives the zero vector.

    Args:
        vocab_size: number of token ids, padding included.
        dim: width of the embeddings and of the output (``num_features``).
        padding_idx: the id of padding (its embedding stays zero).
    """

    def __init__(self, vocab_size: int, dim: int = 64, padding_idx: int = 0):
        super().__init__()
        if vocab_size < 2 or dim < 1:
            raise ValueError(f"need vocab_size >= 2 and dim >= 1, got vocab_size={vocab_size}, dim={dim}")
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        self.padding_idx = padding_idx
        self.num_features = dim

    def forward(self, x: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(x, Mapping):
            ids = x["input_ids"]
            mask = x.get("attention_mask")
            mask = ids.ne(self.padding_idx) if mask is None else mask.bool()
        else:
            ids, mask = x, x.ne(self.padding_idx)
        weights = mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        summed = (self.embedding(ids) * weights).sum(dim=-2)
        return summed / weights.sum(dim=-2).clamp(min=1.0)


class EmbeddingTable(nn.Module):
    """Ids -> their learned vectors: the encoder of the nodes of one graph (or the items of a catalogue), where each
    sample is an id and the representation is a row of the table.

    Args:
        num_embeddings: number of ids (nodes).
        dim: width of the vectors (``num_features``).
        sparse: sparse gradients (only the rows of a batch's ids): fast SGD on large tables (word vectors).
    """

    def __init__(self, num_embeddings: int, dim: int = 64, sparse: bool = False):
        super().__init__()
        if num_embeddings < 1 or dim < 1:
            raise ValueError(f"need num_embeddings >= 1 and dim >= 1, got {num_embeddings}, {dim}")
        self.embedding = nn.Embedding(num_embeddings, dim, sparse=sparse)
        self.num_features = dim

    def forward(self, ids: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(batch,)`` ids -> ``(batch, dim)`` rows; ``{"input_ids", "attention_mask"}`` of ``(batch, length)`` (a
        text of several words) -> the mean of its real rows."""
        if isinstance(ids, Mapping):
            weights = ids["attention_mask"].unsqueeze(-1).to(self.embedding.weight.dtype)
            summed = (self.embedding(ids["input_ids"].long()) * weights).sum(dim=-2)
            return summed / weights.sum(dim=-2).clamp(min=1.0)
        return self.embedding(ids.long())


@register_backbone("mean_pooled_embeddings")
def mean_pooled_embeddings(**kwargs) -> MeanPooledEmbeddings:
    return MeanPooledEmbeddings(**kwargs)


@register_backbone("embedding_table")
def embedding_table(**kwargs) -> EmbeddingTable:
    return EmbeddingTable(**kwargs)


__all__ = ["EmbeddingTable", "MeanPooledEmbeddings", "embedding_table", "mean_pooled_embeddings"]
