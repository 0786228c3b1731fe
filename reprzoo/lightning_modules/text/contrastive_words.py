"""The Contrastive Word Model: "Contrastive Loss is All You Need to Recover Analogies as Parallel Lines" (Ri, Lee &
Verma, RepL4NLP at ACL 2023, arXiv:2306.08221)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.word_window import WordWindowModule
from reprzoo.losses.contrastive_words import contrastive_word_loss


@register_method(
    title="Contrastive Loss is All You Need to Recover Analogies as Parallel Lines",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2306.08221",
)
class ContrastiveWordModel(WordWindowModule):
    """The Contrastive Word Model (CWM): one vector per word, trained so that a word is closer in cosine to the
    words of its context windows than to noise words, by a margin:
    ``sum_k [m - l1 cos(u, v) + l2 cos(u, v'_k)]_+`` for each co-occurring pair (u, v) and k noise words v' from
    the unigram^0.75 distribution (a noise word equal to v is skipped). The paper shows that this contrastive
    loss alone lays analogies out as parallel lines, and relates the geometry to co-occurrence statistics.

    There is a single table (no separate context vectors): it is both sides of every cosine and the exported
    representation. Follows the authors' code (narutatsuri/cwm, ``model/train.c``): rows initialised uniform in
    ``[-0.5/dim, 0.5/dim]`` and scaled to unit length, plain SGD from lr 0.04 decayed linearly to 1e-4 of it,
    margin 0.15, 2 noise words, window 5 with word2vec's dynamic windows and subsampling 1e-3, 100 dimensions.
    ``l1`` and ``l2`` have no default in the code (command-line arguments); both are 1 here, the plain contrastive
    margin loss.

    Ours:
        - Mini-batches of centre words with summed per-(pair, noise word) hinge losses (the authors: one
          asynchronous SGD step per pair and noise word on many threads; the summed gradient of a batch is their
          sequence of steps taken at once, so their learning rate carries over).
        - The noise words replace the context word of a (centre, context) pair (``train.c`` replaces the centre
          and keeps the context word as ``u``: the same pairs, seen from the other end, as word2vec.c's swap).
        - The recipe keeps min_count 5 on WordNet (the authors' script: 50, on a Wikipedia dump).

    Args:
        margin: ``m``.
        lambda_positive: ``l1``, the weight of the co-occurring pair's cosine.
        lambda_negative: ``l2``, the weight of a noise word's cosine.
        negatives: noise words per pair.
        kwargs: :class:`WordWindowModule` options (vocab_size, dim, noise_power, sparse, optimiser).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        margin: float = 0.15,
        lambda_positive: float = 1.0,
        lambda_negative: float = 1.0,
        negatives: int = 2,
        lr: float = 0.04,
        **kwargs: Any,
    ):
        super().__init__(vocab_size=vocab_size, negatives=negatives, lr=lr, **kwargs)
        weight = self.backbone.embedding.weight
        with torch.no_grad():  # train.c's InitNet: uniform (-0.5/d, 0.5/d), then each row to unit length
            nn.init.uniform_(weight, -0.5 / self.feature_dim, 0.5 / self.feature_dim)
            weight.div_(weight.norm(dim=1, keepdim=True).clamp(min=1e-12))

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        centres, contexts = self.context_pairs(views[0])
        noise, keep = self.sample_negatives(contexts)
        words = self.backbone(centres)
        loss = contrastive_word_loss(
            words,
            self.backbone(contexts),
            self.backbone(noise),
            keep,
            self.hparams.margin,
            self.hparams.lambda_positive,
            self.hparams.lambda_negative,
        )
        return TrainingOutput(loss, features=words.detach())


__all__ = ["ContrastiveWordModel"]
