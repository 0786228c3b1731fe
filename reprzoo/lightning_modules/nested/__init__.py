"""Nested (Matryoshka) embeddings and adaptive-length token representations (the nested-embeddings wing)."""
