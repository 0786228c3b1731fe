"""Multi-Layers Trainable Pooling: "Pooling And Attention: What Are Effective Designs For LLM-Based Embedding
Models?" (Tang & Yang, 2024, arXiv:2409.02727).

Every transformer layer's states are mean-pooled over the real tokens (one vector per layer), a learnable layer
embedding is added, and a set of learnable latent queries cross-attends over these layer vectors; a feed-forward
block follows and the latents' mean, L2-normalised, is the text's embedding. This follows the authors'
``pooling_layers/MultiLayersTrainablePooling.py`` (``PerceiverResampler``): pre-norm cross-attention with residual
(queries from the latents, keys and values from the layers), a GEGLU feed-forward (4x) with residual, mean over
latents, normalisation.

Ours: the attention's size defaults to 8 heads of 64 dimensions (the authors' Mistral-7B setting is 32 heads of
2048; their code's ``Attention`` defaults to 8 x 64) and the layer vectors are taken from a bidirectional encoder's
``hidden_states`` (the authors: a fine-tuned LLM with bidirectional attention).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.pooling import pool_tokens


class GEGLU(nn.Module):
    """``x * gelu(gate)`` over the two halves of the last axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate)


class MultiLayerAttentionPooling(nn.Module):
    """Learnable latent queries cross-attend over the per-layer mean-pooled states of all encoder layers -> one
    vector per text.

    Args:
        hidden: width of the encoder's states (and of the output).
        num_layers: transformer layers read (``len(hidden_states) - 1``: the embedding output is skipped, as the
            authors do).
        num_latents: learnable queries (the authors': 768).
        heads, head_dim: the cross-attention's heads and their width.
        ff_mult: width of the feed-forward block, as a multiple of ``hidden``.
        normalize: L2-normalise the output (the authors do).
    """

    def __init__(
        self,
        hidden: int,
        num_layers: int,
        num_latents: int = 768,
        heads: int = 8,
        head_dim: int = 64,
        ff_mult: int = 4,
        normalize: bool = True,
    ):
        super().__init__()
        if min(hidden, num_layers, num_latents, heads, head_dim, ff_mult) < 1:
            raise ValueError("hidden, num_layers, num_latents, heads, head_dim and ff_mult must all be >= 1")
        inner = heads * head_dim
        self.latents = nn.Parameter(torch.randn(num_latents, hidden))
        self.layer_embedding = nn.Embedding(num_layers, hidden)
        self.norm_layers, self.norm_latents = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.to_q = nn.Linear(hidden, inner, bias=False)
        self.to_kv = nn.Linear(hidden, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, hidden, bias=False)
        self.norm_ff = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, 2 * ff_mult * hidden), GEGLU(), nn.Linear(ff_mult * hidden, hidden))
        self.heads, self.num_layers, self.normalize = heads, num_layers, normalize
        self.num_features = hidden

    def layer_vectors(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``(batch, num_layers, hidden)``: each transformer layer's states averaged over the real tokens."""
        layers = hidden_states[1:]
        if len(layers) != self.num_layers:
            raise ValueError(f"expected {self.num_layers + 1} hidden states (embeddings + layers), got {len(hidden_states)}")
        return torch.stack([pool_tokens(h, mask, "mean") for h in layers], 1)

    def forward(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``hidden_states``: ``TransformerEncoder.hidden_states(batch)`` (embeddings first, then every layer, each
        ``(batch, length, hidden)``); ``mask``: ``(batch, length)``, 1 on real tokens. Returns ``(batch, hidden)``."""
        layers = self.layer_vectors(hidden_states, mask) + self.layer_embedding.weight
        batch, heads = layers.shape[0], self.heads
        latents = self.latents.unsqueeze(0).expand(batch, -1, -1)
        q = self.to_q(self.norm_latents(latents))
        k, v = self.to_kv(self.norm_layers(layers)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (batch, heads, n, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = self.to_out(attended) + latents
        x = self.ff(self.norm_ff(x)) + x
        x = x.mean(1)
        return F.normalize(x, dim=-1) if self.normalize else x


__all__ = ["GEGLU", "MultiLayerAttentionPooling"]
