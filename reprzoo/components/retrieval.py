"""Two-sided encoders of retrievers: a document tower and a query tower, which may share weights or differ.

A retrieval method whose queries are not embedded like its documents (SPLADE v2's document-only expansion, ME-BERT's
one query vector against m document vectors, a Gaussian query against Gaussian documents) returns a
:class:`DualEncoder` from ``encoder()``: ``forward`` embeds documents (the method's ``embed``, what an index stores)
and ``encode_query`` embeds queries (``embed_query``). Evaluation embeds the query loader with ``embed_query``, and
``reprzoo.load(name)`` exports both towers, so a loaded retriever ranks exactly as it was measured.
"""

from __future__ import annotations

import torch
from torch import nn


class DualEncoder(nn.Module):
    """Document tower and query tower of a retriever; ``query=None`` shares the document tower.

    Args:
        document: maps a preprocessed document batch to its representation.
        query: maps a preprocessed query batch to its representation (``None``: ``document``).
    """

    def __init__(self, document: nn.Module, query: nn.Module | None = None):
        super().__init__()
        self.document = document
        self.query = query

    @property
    def num_features(self) -> int | None:
        return getattr(self.document, "num_features", None)

    def forward(self, x):
        return self.document(x)

    def encode_query(self, x):
        return (self.query if self.query is not None else self.document)(x)


def encode_query(encoder: nn.Module, x) -> torch.Tensor:
    """``encoder``'s query representation of ``x``: its query tower when it has one, else the encoder itself."""
    query = getattr(encoder, "encode_query", None)
    return query(x) if callable(query) else encoder(x)


__all__ = ["DualEncoder", "encode_query"]
