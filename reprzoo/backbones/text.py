"""Text encoders over token ids, registered by name: small ``transformers`` BERT configurations trained from
scratch, a convolutional and a recurrent encoder. Each takes ``{"input_ids", "attention_mask"}`` (what
:class:`~reprzoo.datamodules.text.TextDataModule` batches and ``reprzoo.load(name).tokenizer`` gives), returns a
pooled ``(batch, num_features)`` vector and exposes ``token_states`` (``(batch, length, width)``) for token-level
heads (masked-LM, replaced-token detection, multi-vector retrieval).

Pooling (``cls``, ``mean``, ``max``) is :func:`reprzoo.components.pooling.pool_tokens`; the multi-layer attentive
pooling of "Pooling And Attention" reads ``hidden_states`` (every layer's states).
"""

from __future__ import annotations

from typing import Literal, Mapping

import torch
from torch import nn

from reprzoo.backbones.registry import register_backbone
from reprzoo.components.pooling import Pooling, pool_tokens

#: the BERT sizes registered by name: (layers, hidden, heads, intermediate); "mini" and "small" follow Turc et al.
#: (2019, arXiv:1908.08962), "tiny" is reprzoo's CPU size.
BERT_SIZES = {"bert_tiny": (2, 64, 2, 256), "bert_mini": (4, 256, 4, 1024), "bert_small": (4, 512, 8, 2048)}


class TransformerEncoder(nn.Module):
    """A BERT encoder (``transformers.BertModel`` built from a ``BertConfig``, random init) with pooling.

    Args:
        vocab_size: token ids of the tokenizer (the datamodule's; the CLI fills it).
        layers, hidden, heads, intermediate: the transformer's sizes.
        max_length: longest input (position embeddings).
        pooling: ``cls`` (the first token's state), ``mean`` or ``max`` over real tokens, or
            ``multilayer_attention`` (trainable latents attending over every layer's mean state:
            :class:`~reprzoo.components.attentive_pooling.MultiLayerAttentionPooling`).
        pooling_kwargs: options of the ``multilayer_attention`` pooling (``num_latents``, ``heads``, ...).
        dropout: hidden and attention dropout.
    """

    def __init__(
        self,
        vocab_size: int,
        layers: int = 2,
        hidden: int = 64,
        heads: int = 2,
        intermediate: int = 256,
        max_length: int = 128,
        pooling: Pooling | Literal["multilayer_attention"] = "mean",
        dropout: float = 0.1,
        pooling_kwargs: dict | None = None,
    ):
        super().__init__()
        from transformers import BertConfig, BertModel

        self.config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            max_position_embeddings=max_length,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            pad_token_id=0,
        )
        self.model = BertModel(self.config, add_pooling_layer=False)
        self.pooling, self.max_length = pooling, max_length
        self.num_features = hidden
        self.attention_pooling = None
        if pooling == "multilayer_attention":  # "Pooling And Attention" (Tang & Yang, 2024, arXiv:2409.02727)
            from reprzoo.components.attentive_pooling import MultiLayerAttentionPooling

            self.attention_pooling = MultiLayerAttentionPooling(hidden, layers, **(pooling_kwargs or {}))

    def _inputs(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch["input_ids"][:, : self.max_length]
        mask = batch.get("attention_mask")
        mask = ids.ne(0).long() if mask is None else mask[:, : self.max_length]
        return ids, mask

    def token_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = self._inputs(batch)
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    def hidden_states(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Every layer's states, embeddings first: ``layers + 1`` tensors of ``(batch, length, hidden)``."""
        ids, mask = self._inputs(batch)
        return self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _, mask = self._inputs(batch)
        if self.attention_pooling is not None:
            return self.attention_pooling(self.hidden_states(batch), mask)
        return pool_tokens(self.token_states(batch), mask, self.pooling)


class ConvTextEncoder(nn.Module):
    """Token embeddings, one 1-d convolution per kernel width (ReLU), max over time, concatenated (Kim, 2014,
    arXiv:1408.5882): ``num_features = channels x len(widths)``."""

    def __init__(self, vocab_size: int, dim: int = 64, channels: int = 64, widths: tuple[int, ...] = (3, 4, 5)):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(dim, channels, w, padding=w // 2) for w in widths)
        self.num_features = channels * len(widths)

    def token_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = self.embedding(batch["input_ids"]).transpose(1, 2)
        length = x.shape[-1]
        return torch.cat([torch.relu(conv(x))[..., :length] for conv in self.convs], 1).transpose(1, 2)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = batch.get("attention_mask", batch["input_ids"].ne(0))
        return pool_tokens(self.token_states(batch), mask, "max")


class RecurrentTextEncoder(nn.Module):
    """Token embeddings through a bidirectional GRU or LSTM, pooled over real tokens: ``num_features = 2 x
    hidden``."""

    def __init__(
        self, vocab_size: int, dim: int = 64, hidden: int = 64, layers: int = 1, cell: str = "gru", pooling: Pooling = "max"
    ):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.pooling = pooling
        self.num_features = 2 * hidden

    def token_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.rnn(self.embedding(batch["input_ids"]))[0]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = batch.get("attention_mask", batch["input_ids"].ne(0))
        return pool_tokens(self.token_states(batch), mask, self.pooling)


def _bert(size: str):
    layers, hidden, heads, intermediate = BERT_SIZES[size]

    def factory(**kwargs) -> TransformerEncoder:
        return TransformerEncoder(**{"layers": layers, "hidden": hidden, "heads": heads, "intermediate": intermediate, **kwargs})

    factory.__qualname__ = factory.__name__ = size
    return factory


for _size in BERT_SIZES:
    register_backbone(_size)(_bert(_size))


@register_backbone("text_cnn")
def text_cnn(**kwargs) -> ConvTextEncoder:
    return ConvTextEncoder(**kwargs)


@register_backbone("text_rnn")
def text_rnn(**kwargs) -> RecurrentTextEncoder:
    return RecurrentTextEncoder(**kwargs)


__all__ = ["BERT_SIZES", "ConvTextEncoder", "RecurrentTextEncoder", "TransformerEncoder", "text_cnn", "text_rnn"]
