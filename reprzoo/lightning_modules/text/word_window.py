"""What word-window methods share (word2vec's CBOW and skip-gram, SGNS, fastText, CMOW): an input table whose
rows are the exported word vectors, an output table, noise words drawn from the unigram^0.75 distribution of the
training vocabulary, and word2vec's optimisation (plain SGD, summed per-example losses, linear LR decay).

The representation (``encoder()``) is the input table: ``embed(word ids)`` returns the word vectors, and a pushed
model stores the vocabulary (``vocab.json``) so that ``reprzoo.load(name).encode(["king"])`` looks words up.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.base import EmbeddingModule


class WordWindowModule(EmbeddingModule):
    """Base of methods trained on :class:`~reprzoo.datamodules.text.WordWindows` batches.

    Args:
        vocab_size: words of the vocabulary (the CLI takes it from the datamodule).
        dim: width of the word vectors.
        negatives: noise words per positive (negative sampling).
        noise_power: exponent of the unigram noise distribution.
        sparse: sparse gradients for the tables (only the batch's rows are updated, as word2vec's SGD does).
        kwargs: shared options of :class:`EmbeddingModule` (optimiser, schedule).
    """

    backbone_name = "embedding_table"

    def __init__(
        self,
        vocab_size: int | None = None,
        dim: int = 100,
        negatives: int = 5,
        noise_power: float = 0.75,
        sparse: bool = True,
        optimizer: str = "sgd",
        lr: float = 0.025,
        lr_reference_batch: int | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        scheduler: str = "linear",
        min_lr_ratio: float = 1e-4,
        online_probe: bool = False,
        **kwargs: Any,
    ):
        backbone = kwargs.pop("backbone", self.backbone_name)
        kwargs.pop("backbone_kwargs", None)  # rebuilt from vocab_size and dim (a pushed config records both)
        if backbone != self.backbone_name:
            raise ValueError(f"{type(self).__name__} looks words up in its own table; backbone must be {self.backbone_name!r}")
        if vocab_size is None:
            raise ValueError(f"{type(self).__name__} needs vocab_size (the command line takes it from the datamodule)")
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if sparse and (momentum or weight_decay or optimizer != "sgd"):
            raise ValueError("sparse gradients need plain SGD (momentum 0, weight decay 0); set sparse=False")
        super().__init__(
            backbone=self.backbone_name,
            backbone_kwargs={"num_embeddings": vocab_size, "dim": dim, "sparse": sparse},
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            momentum=momentum,
            weight_decay=weight_decay,
            scheduler=scheduler,
            min_lr_ratio=min_lr_ratio,
            online_probe=online_probe,
            **kwargs,
        )
        nn.init.uniform_(self.backbone.embedding.weight, -0.5 / dim, 0.5 / dim)  # word2vec.c's syn0
        self.register_buffer("noise", torch.full((vocab_size,), 1.0 / vocab_size), persistent=False)

    # ------------------------------------------------------------------ what the data provides
    def on_fit_start(self) -> None:
        super().on_fit_start()
        vocabulary = getattr(getattr(self.trainer, "datamodule", None), "vocabulary", None)
        if vocabulary is None:
            raise ReprzooError(f"{type(self).__name__} trains on a datamodule with a vocabulary (WordWindows)")
        if len(vocabulary) != self.hparams.vocab_size:
            raise ReprzooError(
                f"the datamodule's vocabulary has {len(vocabulary)} words but the model was built for "
                f"{self.hparams.vocab_size}: build it with vocab_size={len(vocabulary)}"
            )
        self.noise = vocabulary.noise_distribution(self.hparams.noise_power).to(self.device)
        self.vocabulary_ready(vocabulary)

    def vocabulary_ready(self, vocabulary) -> None:
        """Hook: build what depends on word counts (a Huffman tree)."""

    def sample_negatives(self, targets: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, keep)``: k noise words per target from the noise distribution; ``keep`` is False where a noise
        word is the target itself (word2vec.c skips those)."""
        k = self.hparams.negatives if k is None else k
        ids = torch.multinomial(self.noise, targets.numel() * k, replacement=True).view(*targets.shape, k)
        return ids, ids.ne(targets.unsqueeze(-1))

    @staticmethod
    def context_pairs(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(centre ids, context ids)`` of every real (centre, context word) pair of a window batch."""
        mask = batch["context_mask"]
        centres = batch["center"].unsqueeze(1).expand_as(mask)
        return centres[mask], batch["context"][mask]

    @property
    def word_vectors(self) -> torch.Tensor:
        """The ``(vocab_size, dim)`` input vectors: what is exported."""
        return self.backbone.embedding.weight


__all__ = ["WordWindowModule"]
