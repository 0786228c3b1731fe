"""Sent2Vec: "Unsupervised Learning of Sentence Embeddings using Compositional n-Gram Features" (Pagliardini, Gupta &
Jaggi, NAACL 2018, arXiv:1703.02507)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.sentence_words import MASK_ID, SentenceWordsModule, compact_words, corpus_counts
from reprzoo.losses.sentence_words import hashed_bigrams, sentence_mean_gradient
from reprzoo.losses.word2vec import negative_sampling_loss


def sentences_of(views: Sequence[Mapping[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of every text of a batch, words compacted to the front: each view of a sample is a sentence
    of its own (TextPairs' definition and words are two sentences, never joined)."""
    parts = [compact_words(v) for v in views]
    width = max(ids.shape[1] for ids, _ in parts)
    ids = torch.cat([F.pad(ids, (0, width - ids.shape[1])) for ids, _ in parts])
    return ids, torch.cat([F.pad(mask, (0, width - mask.shape[1])) for _, mask in parts])


class NGramMean(nn.Module):
    """A tokenised text -> the mean of its unigram and (hashed) word-bigram rows (sent2vec's ``textVector``): the
    bigram rows are computed here from ``input_ids``, so a tokenizer is all a loaded model needs."""

    def __init__(self, table: nn.Embedding, vocab_size: int, bucket: int, word_ngrams: int):
        super().__init__()
        self.table, self.vocab_size, self.bucket, self.word_ngrams = table, vocab_size, bucket, word_ngrams
        self.num_features = table.embedding_dim

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = compact_words(x)
        rows, keep = [ids], [mask]
        if self.word_ngrams == 2 and ids.shape[1] > 1:
            rows.append(hashed_bigrams(ids, self.vocab_size, self.bucket))
            keep.append(mask[:, :-1] & mask[:, 1:])
        rows, weights = torch.cat(rows, 1), torch.cat(keep, 1).unsqueeze(-1).to(self.table.weight.dtype)
        return (self.table(rows) * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@register_method(
    title="Unsupervised Learning of Sentence Embeddings using Compositional n-Gram Features",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1703.02507",
)
class Sent2Vec(SentenceWordsModule):
    """A sentence is the mean of the source vectors of its words and word n-grams; training predicts each word of a
    sentence from the rest of it (CBOW with the whole sentence as the window) by negative sampling.

    Follows the authors' code (epfml/sent2vec, ``FastText::sent2vec``, ``Dictionary::addNgrams`` and
    ``Model::update``): for every word kept by subsampling (fastText's rule with threshold ``sample``), the context
    is the sentence with that word replaced by a placeholder word (here ``[MASK]``, which is never a target), plus
    its bigrams, hashed ``(a * 116049371 + b) mod bucket`` into rows after the vocabulary's; ``dropout_k`` random
    positions of the sentence (at most ``length - 2``) start or end no bigram ("dropoutK"); the hidden vector is
    the mean of all those rows and predicts the word against ``negatives`` noise words from the unigram
    distribution to the 0.5; each context row gets the gradient of the mean (``Model::update`` scales the hidden
    vector's gradient by ``1 / |context|`` for sent2vec, unlike fastText's CBOW). Source rows start uniform in
    ``[-1/dim, 1/dim]``, target rows at zero. Inference: the mean of the unigram and bigram rows of the sentence
    (no placeholder, no dropout). A sample of several texts (TextPairs' definition and words) is several
    sentences.

    Defaults are the tool's (``./fasttext sent2vec``): bigrams, dropoutK 2, 10 negatives, lr 0.2 decayed linearly,
    t = 1e-4, 2,000,000 buckets, 100 dimensions (the paper's models: 600-700).

    Ours:
        - Mini-batches of sentences, per-prediction losses summed, where the tool's asynchronous SGD takes one step
          per prediction; a row used by several sentences of a batch takes the mean of their gradients
          (:func:`~reprzoo.losses.sentence_words.sentence_mean_gradient`; the predictions of one sentence still
          add up, as the tool's consecutive steps). Summed, the steps of the rows that every sentence uses (the
          placeholder, frequent words, frequent noise words) diverge: at lr 1.0, NaN within 30 steps with
          batches of 128 sentences, and in the first epoch with batches of 16.
        - Word ids are the tokenizer's; bigrams are hashed from them with the authors' formula. ``word_ngrams`` is
          1 or 2 (the paper's unigram and bigram models; trigrams would need 64-bit unsigned hashing).
        - A noise word equal to the target is skipped (the tool redraws it); no ``</s>`` token.
        - The WordNet recipe's sizes: 100,000 buckets (a CPU-sized table) and lr 1.0 instead of 0.2 for its small
          corpus (see the recipe).

    Args:
        word_ngrams: 1 (unigrams) or 2 (unigrams and bigrams).
        bucket: rows of the hashed bigram table.
        dropout_k: positions per context whose bigrams are dropped.
        kwargs: :class:`SentenceWordsModule` options (dim, negatives, noise_power, sample, lr, sparse).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        word_ngrams: int = 2,
        bucket: int = 2_000_000,
        dropout_k: int = 2,
        dim: int = 100,
        negatives: int = 10,
        noise_power: float = 0.5,
        sample: float = 1e-4,
        lr: float = 0.2,
        **kwargs: Any,
    ):
        if word_ngrams not in (1, 2):
            raise ValueError(f"word_ngrams must be 1 or 2, got {word_ngrams}")
        if bucket < 1 or dropout_k < 0:
            raise ValueError(f"need bucket >= 1 and dropout_k >= 0, got {bucket} and {dropout_k}")
        rows = (vocab_size or 0) + (bucket if word_ngrams == 2 else 0)
        kwargs.pop("rows", None)  # set from bucket (a rebuilt model's saved init args list it)
        super().__init__(
            vocab_size=vocab_size,
            rows=rows,
            dim=dim,
            negatives=negatives,
            noise_power=noise_power,
            sample=sample,
            lr=lr,
            **kwargs,
        )
        nn.init.uniform_(self.backbone.embedding.weight, -1.0 / dim, 1.0 / dim)
        self.output = nn.Embedding(vocab_size, dim, sparse=self.hparams.sparse)
        nn.init.zeros_(self.output.weight)

    def setup(self, stage: str) -> None:
        """As :class:`SentenceWordsModule`'s, counting the words of every text of a sample (TextPairs: two)."""
        EmbeddingModule.setup(self, stage)
        if stage == "fit":
            samples = getattr(getattr(self.trainer.datamodule, "_train", None), "ids", None)
            if samples is not None:
                samples = [t for s in samples for t in (s if isinstance(s, (list, tuple)) else [s])]
            self.corpus_ready(corpus_counts(SimpleNamespace(_train=SimpleNamespace(ids=samples)), self.hparams.vocab_size))

    def encoder(self) -> nn.Module:
        h = self.hparams
        return NGramMean(self.backbone.embedding, h.vocab_size, h.bucket, h.word_ngrams)

    def contexts(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, weights, targets, sentences)``: for every target word kept by subsampling, the rows of its
        context (the sentence with the target replaced by ``[MASK]``, and its bigrams after dropoutK), their 0/1
        weights, and the sentence (row of ``ids``) it comes from."""
        lengths = mask.sum(1)
        targets = self.subsample(ids, mask) & (lengths >= 2).unsqueeze(1)
        b, i = targets.nonzero(as_tuple=True)
        ctx_ids, ctx_mask = ids[b].clone(), mask[b]
        ctx_ids[torch.arange(len(b), device=ids.device), i] = MASK_ID
        rows, keep = [ctx_ids], [ctx_mask]
        h = self.hparams
        if h.word_ngrams == 2 and ids.shape[1] > 1:
            n = lengths[b]
            k = (n - 2).clamp(min=0).clamp(max=h.dropout_k)
            scores = torch.rand(ctx_ids.shape, device=ids.device).masked_fill(~ctx_mask, 2.0)
            rank = scores.argsort(1).argsort(1)  # a random order of the sentence's positions
            dropped = rank < k.unsqueeze(1)
            rows.append(hashed_bigrams(ctx_ids, h.vocab_size, h.bucket))
            keep.append(ctx_mask[:, :-1] & ctx_mask[:, 1:] & ~dropped[:, :-1] & ~dropped[:, 1:])
        return torch.cat(rows, 1), torch.cat(keep, 1), ids[b, i], b

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        rows, keep, targets, sentences = self.contexts(*sentences_of(views))
        weights = keep.unsqueeze(-1).to(self.backbone.embedding.weight.dtype)
        source = sentence_mean_gradient(self.backbone(rows), rows, keep, sentences)
        hidden = (source * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # Model::computeHidden
        noise, ok = self.sample_negatives(targets)
        words = torch.cat([targets.unsqueeze(1), noise], 1)
        used = torch.cat([torch.ones_like(ok[:, :1]), ok], 1)
        target = sentence_mean_gradient(self.output(words), words, used, sentences)
        loss = negative_sampling_loss(hidden, target[:, 0], target[:, 1:] * ok.unsqueeze(-1))
        return TrainingOutput(loss, features=hidden.detach())


__all__ = ["NGramMean", "Sent2Vec", "sentences_of"]
