"""A cross-encoder: one transformer reads a sentence pair ``[CLS] a [SEP] b [SEP]`` (segment ids 0 then 1, BERT's
sentence-pair input) and a linear head turns the ``[CLS]`` state into one score, as BERT's sequence-pair classifier
and sentence-transformers' ``CrossEncoder`` (``num_labels=1``) do.

The pair is built from two batches of :class:`~reprzoo.datamodules.text.TextDataModule` (each text already
``[CLS] ... [SEP]`` and right-padded), so any method holding ``(query, document)`` batches can score them jointly:
a teacher for distillation (DSE, Trans-Encoder), a re-ranker for the retrieval wing.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from reprzoo.datamodules.text.tokenizers import PAD_ID


def pair_inputs(
    first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor], max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Join two tokenised batches row by row into cross-encoder inputs.

    Row i becomes ``first[i]`` (its ``[CLS] ... [SEP]``) followed by ``second[i]`` without its leading ``[CLS]``,
    with ``token_type_ids`` 0 on the first part and 1 on the second. A pair longer than ``max_length`` loses tokens
    from the end of its longer text first, always keeping both ``[SEP]`` (Hugging Face's ``longest_first``: the
    shorter text keeps up to half the room, the longer the rest).

    Args:
        first, second: ``{"input_ids": (n, L1), "attention_mask": (n, L1)}`` and the same with ``(n, L2)``; ids are
            ``[CLS] text [SEP]`` then padding.
        max_length: longest joined pair (a transformer's position embeddings); ``None``: no limit.

    Returns:
        ``{"input_ids", "attention_mask", "token_type_ids"}``, each ``(n, L)``, right-padded with ``[PAD]``.
    """
    ids_a, ids_b = first["input_ids"], second["input_ids"]
    if ids_a.shape[0] != ids_b.shape[0]:
        raise ValueError(f"pair batches differ in size: {ids_a.shape[0]} and {ids_b.shape[0]}")
    if max_length is not None and max_length < 5:
        raise ValueError(f"max_length must be >= 5 ([CLS] a [SEP] b [SEP]), got {max_length}")
    lengths_a = _lengths(first)
    lengths_b = _lengths(second)
    rows: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(ids_a.shape[0]):
        a = ids_a[i, 1 : lengths_a[i] - 1]  # content of a, between [CLS] and [SEP]
        b = ids_b[i, 1 : lengths_b[i] - 1]
        keep_a, keep_b = len(a), len(b)
        budget = None if max_length is None else max_length - 3
        if budget is not None and keep_a + keep_b > budget:  # longest first: the shorter keeps up to half
            if keep_a <= keep_b:
                keep_a = min(keep_a, budget // 2)
                keep_b = budget - keep_a
            else:
                keep_b = min(keep_b, budget // 2)
                keep_a = budget - keep_b
        cls, sep = ids_a[i, :1], ids_a[i, lengths_a[i] - 1 : lengths_a[i]]
        row = torch.cat([cls, a[:keep_a], sep, b[:keep_b], ids_b[i, lengths_b[i] - 1 : lengths_b[i]]])
        rows.append((row, torch.tensor([0] * (keep_a + 2) + [1] * (keep_b + 1), device=row.device)))
    width = max(len(r) for r, _ in rows)
    ids = ids_a.new_full((len(rows), width), PAD_ID)
    mask, types = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (row, segment) in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)], types[i, : len(row)] = row, 1, segment
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _lengths(batch: Mapping[str, torch.Tensor]) -> list[int]:
    mask = batch.get("attention_mask")
    mask = batch["input_ids"].ne(PAD_ID) if mask is None else mask
    lengths = mask.sum(1).tolist()
    if min(lengths) < 2:
        raise ValueError("every text needs its [CLS] and [SEP] tokens")
    return [int(n) for n in lengths]


class CrossEncoder(nn.Module):
    """A transformer over ``[CLS] a [SEP] b [SEP]`` with a scalar head on the ``[CLS]`` state (one logit a pair).

    Args:
        encoder: a :class:`~reprzoo.backbones.text.TransformerEncoder` (``bert_tiny`` ...): its ``BertModel`` reads
            the pairs. Pass a method's own backbone to use one network in both forms (Trans-Encoder's
            self-distillation); its parameters are then shared, not copied.
        dropout: dropout on the ``[CLS]`` state before the head (BERT's classifier dropout).
    """

    def __init__(self, encoder: nn.Module, dropout: float = 0.1):
        super().__init__()
        if not hasattr(encoder, "model") or not hasattr(encoder, "max_length"):
            raise ValueError(f"a cross-encoder needs a TransformerEncoder (bert_*), got {type(encoder).__name__}")
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.num_features, 1)

    def forward(self, first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``(n,)`` of the pairs ``(first[i], second[i])``."""
        inputs = pair_inputs(first, second, self.encoder.max_length)
        states = self.encoder.model(**inputs).last_hidden_state
        return self.head(self.dropout(states[:, 0])).squeeze(-1)


class SiamesePairHead(nn.Module):
    """A pair score from two sentence embeddings, as DSE's Siamese head: ``concat`` feeds
    ``[u, v, u * v, |u - v|]`` to a ReLU MLP ending in one logit (the authors' ``fc_dims = [512, 1]``); ``dot`` is
    ``u . v`` with no parameters.

    Args:
        dim: size of each sentence embedding.
        hidden: widths of the MLP's hidden layers (``concat``).
        kind: ``concat`` or ``dot``.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (512,), kind: str = "concat"):
        super().__init__()
        if kind not in ("concat", "dot"):
            raise ValueError(f"kind must be 'concat' or 'dot', got {kind!r}")
        self.kind = kind
        layers: list[nn.Module] = []
        width = 4 * dim
        for h in hidden if kind == "concat" else ():
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1)) if kind == "concat" else nn.Identity()

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Logits ``(n,)`` of the pairs ``(u[i], v[i])``."""
        if self.kind == "dot":
            return (u * v).sum(-1)
        return self.mlp(torch.cat([u, v, u * v, (u - v).abs()], dim=-1)).squeeze(-1)


__all__ = ["CrossEncoder", "SiamesePairHead", "pair_inputs"]
