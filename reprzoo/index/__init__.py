"""Persistent indexes over a zoo model's representations, and the BM25 baseline.

``build_index(encoder, documents, ids, out_dir)`` embeds documents chunk by chunk (resumable) into a folder;
``Index.load(folder).search(queries, k)`` returns ranked document ids and scores. Kinds: ``dense`` (exact, batched
matrix products), ``ivfpq`` / ``ivfflat`` (faiss), ``sparse`` (an inverted index over vocabulary weights) and
``maxsim`` (exact late interaction). ``reprzoo.index.bm25``: BM25 (bm25s) on the same data.

Layering: this package imports ``reprzoo.metrics`` and ``reprzoo.components`` only (never the zoo, the CLI or the
methods): a model is passed in, duck-typed.
"""

from reprzoo.index.build import build_index
from reprzoo.index.core import KINDS, IncompatibleQueryError, Index, IndexIntegrityError

__all__ = ["KINDS", "IncompatibleQueryError", "Index", "IndexIntegrityError", "build_index"]
