"""What ``reprzoo.load`` returns: the module that computes a method's representation, with its preprocessing and
its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


class Encoder(nn.Module):
    """A pretrained encoder: ``embed(x)`` gives the representation the method was trained and measured with, in the
    form ``config["architecture"]["representation"]["kind"]`` names (``dense``: ``(batch, dim)``).

    Attributes:
        encoder: the network: the method's ``encoder()`` rebuilt from registered classes (format 2), or the bare
            backbone of a format-1 model. ``backbone`` is an alias.
        config: the repository's ``config.json`` as a dict.
        name: the zoo name; ``source`` where it was loaded from; ``revision`` the revision loaded.
        dim: size of the returned embeddings (the full size unless truncated to a trained prefix).
    """

    def __init__(self, encoder: nn.Module, config: dict[str, Any], folder: Path, source: str, revision: str | None, dim: int):
        super().__init__()
        self.encoder = encoder
        self.config = config
        self.name: str = config.get("name", "")
        self.source = source
        self.revision = revision
        self.dim = dim
        self._folder = Path(folder)
        self._transform: Callable | None = None
        self._tokenizer: Callable | None = None
        self._card = None

    @property
    def transform(self) -> Callable:
        """Inference preprocessing from the stored config: PIL image or uint8 tensor -> normalised float tensor."""
        if self._transform is None:
            from reprzoo.datamodules.transforms import eval_transform

            pre = self.config.get("preprocessing") or {}
            if pre.get("modality", "image") != "image" or "image_size" not in pre:
                from reprzoo.errors import ReprzooError

                raise ReprzooError(f"{self.name} records no image preprocessing (config.json's preprocessing: {pre or 'none'})")
            self._transform = eval_transform(pre["image_size"], pre["mean"], pre["std"])
        return self._transform

    @property
    def tokenizer(self) -> Callable:
        """Inference preprocessing of a text model: ``texts -> model input``, rebuilt from the repository's checked
        ``vocab.json`` or ``tokenizer.json`` (``reprzoo.datamodules.text.preprocess``)."""
        if self._tokenizer is None:
            from reprzoo.datamodules.text.preprocess import build_text_preprocessor

            pre = self.config.get("preprocessing") or {}
            if pre.get("modality") != "text":
                from reprzoo.errors import ReprzooError

                raise ReprzooError(f"{self.name} records no text preprocessing (config.json's preprocessing: {pre or 'none'})")
            self._tokenizer = build_text_preprocessor(pre, lambda name: self.preprocessing_file(name).read_bytes())
        return self._tokenizer

    def encode(self, texts: str | list[str], batch_size: int = 256, query: bool = False) -> torch.Tensor:
        """Embeddings of strings (a text model): tokenised with :attr:`tokenizer`, embedded in evaluation mode
        without gradients, ``(len(texts), dim)``. A word-vector model gives a word's vector (a text of several
        words: the mean of its known words' vectors). ``query=True`` embeds them as a retriever's queries
        (:meth:`embed_query`); the default embeds them as documents."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        embed = self.embed_query if query else self.embed
        tokenizer = self.tokenizer
        device = next(self.encoder.parameters()).device
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                chunks = []
                for start in range(0, max(len(texts), 1), batch_size):
                    batch = tokenizer(texts[start : start + batch_size])
                    chunks.append(embed({k: v.to(device) for k, v in batch.items()}))
            return torch.cat(chunks)
        finally:
            self.train(was_training)

    def save_word2vec_format(self, path: str | Path) -> Path:
        """Write a word-vector model in the word2vec text format (``gensim.models.KeyedVectors.
        load_word2vec_format(path)`` reads it): a ``count dim`` header, then a word and its vector per line."""
        from reprzoo.zoo.interop import save_word2vec_format

        return save_word2vec_format(self, path)

    def save_sentence_transformers(self, path: str | Path) -> Path:
        """Write a BERT text model as a sentence-transformers folder: ``SentenceTransformer(path).encode(texts)``
        gives ``self.encode(texts)``."""
        from reprzoo.zoo.interop import save_sentence_transformers

        return save_sentence_transformers(self, path)

    @property
    def card(self):
        """The model card (``huggingface_hub.ModelCard``), parsed from the repository's README.md on first use."""
        if self._card is None:
            from huggingface_hub import ModelCard

            self._card = ModelCard.load(self._folder / "README.md")
        return self._card

    @property
    def folder(self) -> Path:
        """The loaded revision's repository files (read-only; a pooled-BERT text model's folder is also a
        sentence-transformers folder: ``SentenceTransformer(str(encoder.folder))``)."""
        return self._folder

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.config.get("metrics") or {})

    def preprocessing_file(self, name: str) -> Path:
        """A preprocessing file of the repository (``tokenizer.json``, a vocabulary, ...), its SHA-256 checked
        against the config; the input pipeline of a text or graph model is rebuilt from it."""
        from reprzoo.zoo.repo import verify_preprocessing_file

        return verify_preprocessing_file(self._folder, self.config, name)

    @property
    def backbone(self) -> nn.Module:
        """Alias of ``encoder`` (the name of format-1 models)."""
        return self.encoder

    @property
    def kind(self) -> str:
        """``dense``, ``multi_vector``, ``sparse`` or ``slots``: the form of what ``embed`` returns."""
        return ((self.config.get("architecture") or {}).get("representation") or {}).get("kind", "dense")

    @property
    def compatible_dim(self) -> int | None:
        """The prefix compared with an old model's gallery (BT^2, OCA successors); None: all of it."""
        return ((self.config.get("architecture") or {}).get("representation") or {}).get("compatible_dim")

    @property
    def similarity(self) -> str:
        """How this model's representations are compared: ``cosine`` (the default), ``dot`` or ``maxsim`` (a
        retriever's relevance, recorded when it was pushed)."""
        return ((self.config.get("architecture") or {}).get("representation") or {}).get("similarity") or "cosine"

    def _prefix(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind != "dense":
            return features
        return features[..., : self.dim] if self.dim < features.shape[-1] else features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation of a preprocessed batch (a retriever's documents)."""
        return self._prefix(self.encoder(x))

    def embed_query(self, x) -> torch.Tensor:
        """A retriever's query representation (its query tower; the same as :meth:`embed` for one-tower models)."""
        from reprzoo.components.retrieval import encode_query

        return self._prefix(encode_query(self.encoder, x))

    def score(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        """``(n_queries, n_documents)`` relevance of query and document representations, by :attr:`similarity`."""
        from reprzoo.metrics.retrieval import SIMILARITIES

        return SIMILARITIES[self.similarity](queries, documents)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, revision={self.revision!r}, dim={self.dim}"
