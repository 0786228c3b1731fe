"""What the word-based sentence methods share (Sent2Vec, CMOW, Binary Paragraph Vector): word-level
:class:`~reprzoo.datamodules.text.Sentences` batches (``{"input_ids", "attention_mask"}``, ``[CLS] words [SEP]``),
the training corpus' word counts (noise words for negative sampling, frequent-word subsampling), and word2vec-style
optimisation (plain SGD with sparse gradients, linear learning-rate decay) unless a method says otherwise.

The special tokens of the tokenizer (``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``) are not words: the
methods skip them (the authors' tools drop unknown words and have no sentence markers).
"""

from __future__ import annotations

from typing import Any

import torch

from reprzoo.datamodules.text.tokenizers import SPECIAL_TOKENS
from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.base import EmbeddingModule

#: ids below this are the tokenizer's special tokens, not words
FIRST_WORD_ID = len(SPECIAL_TOKENS)
MASK_ID = SPECIAL_TOKENS.index("[MASK]")


def word_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, L)`` True on the real words of a padded batch (not padding, not a special token)."""
    return batch["attention_mask"].bool() & batch["input_ids"].ge(FIRST_WORD_ID)


def compact_words(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: each text's words moved to the front (specials dropped), in order, right-padded with 0."""
    mask = word_mask(batch)
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # words first, order kept
    ids = torch.gather(batch["input_ids"], 1, order) * torch.gather(mask, 1, order)
    width = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
    return ids[:, :width], torch.gather(mask, 1, order)[:, :width]


def corpus_counts(datamodule: Any, vocab_size: int) -> torch.Tensor:
    """``(vocab_size,)`` occurrences of each word id in the datamodule's training texts (specials get 0)."""
    train = getattr(datamodule, "_train", None)
    ids = getattr(train, "ids", None)
    if ids is None:
        raise ReprzooError("this method trains on tokenised texts (reprzoo.datamodules.Sentences)")
    flat = torch.cat([torch.as_tensor(t).reshape(-1) for t in ids]) if len(ids) else torch.zeros(0, dtype=torch.long)
    if flat.numel() and int(flat.max()) >= vocab_size:
        raise ReprzooError(f"the data has token id {int(flat.max())} but the model was built for vocab_size={vocab_size}")
    counts = torch.bincount(flat, minlength=vocab_size).double()
    counts[:FIRST_WORD_ID] = 0
    return counts


class SentenceWordsModule(EmbeddingModule):
    """Base of word-based sentence methods trained on word-level :class:`~reprzoo.datamodules.text.Sentences`.

    Sets, when training starts, ``self.noise`` (the unigram distribution to ``noise_power``) and ``self.keep``
    (each word's probability to be kept by frequent-word subsampling with threshold ``sample``, fastText's rule
    ``sqrt(t / f) + t / f``; 1 everywhere when ``sample`` is 0).

    Args:
        vocab_size: token ids of the word-level tokenizer (the CLI takes it from the datamodule).
        rows, dim: the backbone's table (``embedding_table``): rows and width.
        negatives: noise words per prediction.
        noise_power: exponent of the unigram noise distribution.
        sample: subsampling threshold t (0: off).
        sparse: sparse gradients for the tables (plain SGD only).
        kwargs: :class:`EmbeddingModule` options (optimiser, schedule).
    """

    backbone_name = "embedding_table"

    def __init__(
        self,
        vocab_size: int | None = None,
        rows: int | None = None,
        dim: int = 100,
        negatives: int = 5,
        noise_power: float = 0.75,
        sample: float = 1e-4,
        sparse: bool = True,
        optimizer: str = "sgd",
        lr: float = 0.025,
        lr_reference_batch: int | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        scheduler: str = "linear",
        min_lr_ratio: float = 1e-4,
        warmup_epochs: float = 0.0,
        online_probe: bool = False,
        **kwargs: Any,
    ):
        backbone = kwargs.pop("backbone", self.backbone_name)
        kwargs.pop("backbone_kwargs", None)  # rebuilt from the method's sizes
        if backbone != self.backbone_name:
            raise ValueError(f"{type(self).__name__} looks words up in its own tables; backbone must be {self.backbone_name!r}")
        if vocab_size is None:
            raise ValueError(f"{type(self).__name__} needs vocab_size (the command line takes it from the datamodule)")
        if vocab_size <= FIRST_WORD_ID:
            raise ValueError(f"vocab_size must exceed the {FIRST_WORD_ID} special tokens, got {vocab_size}")
        if negatives < 0 or sample < 0:
            raise ValueError(f"negatives and sample must be >= 0, got {negatives} and {sample}")
        if sparse and (momentum or weight_decay or optimizer != "sgd"):
            raise ValueError("sparse gradients need plain SGD (momentum 0, weight decay 0); set sparse=False")
        super().__init__(
            backbone=self.backbone_name,
            backbone_kwargs={"num_embeddings": rows or vocab_size, "dim": dim, "sparse": sparse},
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            momentum=momentum,
            weight_decay=weight_decay,
            scheduler=scheduler,
            min_lr_ratio=min_lr_ratio,
            warmup_epochs=warmup_epochs,
            online_probe=online_probe,
            **kwargs,
        )
        self.register_buffer("noise", torch.full((vocab_size,), 1.0 / vocab_size), persistent=False)
        self.register_buffer("keep", torch.ones(vocab_size), persistent=False)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            self.corpus_ready(corpus_counts(self.trainer.datamodule, self.hparams.vocab_size))

    def corpus_ready(self, counts: torch.Tensor) -> None:
        """The training corpus' word counts are known (before the optimiser is built): noise and subsampling."""
        if counts.sum() <= 0:
            raise ReprzooError(f"{type(self).__name__}: the training texts have no words")
        noise = counts.pow(self.hparams.noise_power)
        self.noise = (noise / noise.sum()).float().to(self.noise.device)
        t = self.hparams.sample
        if t > 0:
            f = counts / counts.sum()
            keep = torch.where(f > 0, (t / f).sqrt() + t / f, torch.ones_like(f)).clamp(max=1.0)
            self.keep = keep.float().to(self.keep.device)

    def subsample(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` with frequent words dropped at random (probability ``1 - keep[id]``)."""
        return mask & (torch.rand(ids.shape, device=ids.device) < self.keep[ids])

    def sample_negatives(self, targets: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, keep)``: k noise words per target; ``keep`` is False where a noise word is the target."""
        k = self.hparams.negatives if k is None else k
        ids = torch.multinomial(self.noise, max(targets.numel() * k, 1), replacement=True)[: targets.numel() * k]
        ids = ids.view(*targets.shape, k)
        return ids, ids.ne(targets.unsqueeze(-1))


__all__ = ["FIRST_WORD_ID", "MASK_ID", "SentenceWordsModule", "compact_words", "corpus_counts", "word_mask"]
