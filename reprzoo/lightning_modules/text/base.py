"""What text-encoder methods share: a registered text backbone (``bert_tiny``, ``text_cnn``, ...) sized by the
datamodule's tokenizer (``vocab_size``, filled by the command line), AdamW with warmup, and the tokenised batches
``{"input_ids", "attention_mask"}`` of :class:`~reprzoo.datamodules.text.TextDataModule`.

The representation (``encoder()``) is the backbone's pooled vector; a pushed model stores the tokenizer
(``tokenizer.json``), so ``reprzoo.load(name).encode(["a sentence"])`` embeds strings.
"""

from __future__ import annotations

from typing import Any

from reprzoo.lightning_modules.base import EmbeddingModule


class TextEncoderModule(EmbeddingModule):
    """Base of methods that train a text encoder on tokenised batches.

    Args:
        vocab_size: token ids of the datamodule's tokenizer (the CLI takes it from the datamodule).
        backbone: a registered text backbone: ``bert_tiny`` / ``bert_mini`` / ``bert_small``, ``text_cnn``,
            ``text_rnn``.
        backbone_kwargs: its options (``pooling``, ``max_length``, sizes); ``vocab_size`` is added.
        kwargs: shared options of :class:`EmbeddingModule` (optimiser, schedule, evaluation).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        backbone: str = "bert_tiny",
        backbone_kwargs: dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float = 5e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.01,
        warmup_epochs: float = 0.1,
        **kwargs: Any,
    ):
        if vocab_size is None:
            raise ValueError(f"{type(self).__name__} needs vocab_size (the command line takes it from the datamodule)")
        super().__init__(
            backbone=backbone,
            backbone_kwargs={**(backbone_kwargs or {}), "vocab_size": vocab_size},
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            **kwargs,
        )


__all__ = ["TextEncoderModule"]
