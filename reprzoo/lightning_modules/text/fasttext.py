"""fastText: "Enriching Word Vectors with Subword Information" (Bojanowski, Grave, Joulin & Mikolov, TACL 2017,
arXiv:1607.04606)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.word_window import WordWindowModule
from reprzoo.losses.fasttext import fasttext_loss, subword_hidden


class SubwordTable(nn.Module):
    """The hashed character n-gram rows (``bucket`` of them) and, for every vocabulary word, the list of its
    n-gram rows (``Dictionary::initNgrams``), stored flat: word ``w``'s rows are ``index[offsets[w]:offsets[w+1]]``.

    The index is part of the state (a pushed model embeds its vocabulary without re-hashing it); its length is
    ``num_subwords``, which a fresh module takes from its init args and a checkpoint load resizes to.
    """

    def __init__(self, vocab_size: int, bucket: int, dim: int, num_subwords: int = 0, sparse: bool = True):
        super().__init__()
        self.embedding = nn.Embedding(bucket, dim, sparse=sparse)
        self.register_buffer("offsets", torch.zeros(vocab_size + 1, dtype=torch.long))
        self.register_buffer("index", torch.zeros(num_subwords, dtype=torch.long))

    def set_words(self, rows: list[list[int]]) -> None:
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        device = self.offsets.device
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to(device)
        self.index = torch.tensor([g for r in rows for g in r], dtype=torch.long).to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "index")
        if stored is not None and stored.shape != self.index.shape:  # resume or load before the vocabulary is known
            self.index = torch.zeros_like(stored, device=self.index.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def word_sums(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum of the n-gram rows, number of n-grams)`` of vocabulary words ``ids`` (any shape)."""
        flat_ids = ids.reshape(-1)
        starts = self.offsets[flat_ids]
        lengths = self.offsets[flat_ids + 1] - starts
        bag_offsets = lengths.cumsum(0) - lengths
        positions = torch.repeat_interleave(starts - bag_offsets, lengths) + torch.arange(int(lengths.sum()), device=ids.device)
        sums = F.embedding_bag(
            self.index[positions], self.embedding.weight, bag_offsets, mode="sum", sparse=self.embedding.sparse
        )
        return sums.view(*ids.shape, -1), lengths.view(ids.shape)


class SubwordVectors(nn.Module):
    """fastText's word vectors (``FastText::getWordVector``): the mean of a word's own row and its n-gram rows; a
    word outside the vocabulary (id -1) gets the mean of its n-gram rows alone.

    ``forward`` takes vocabulary ids (any shape: their vectors), ``{"input_ids", "attention_mask"}`` (a text's
    words: the mean of their vectors) or the ``subwords`` preprocessing's ``{"input_ids", "attention_mask",
    "ngram_ids", "ngram_mask"}``, where ``input_ids`` is -1 for an unknown word and its n-grams are given.
    """

    def __init__(self, words: nn.Embedding, subwords: SubwordTable):
        super().__init__()
        self.words, self.subwords = words, subwords
        self.num_features = words.embedding_dim

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(x, Mapping):
            ids = x.long()
            sums, counts = self.subwords.word_sums(ids)
            return (self.words(ids) + sums) / (counts + 1).unsqueeze(-1).to(sums.dtype)
        ids = x["input_ids"].long()
        known = ids.ge(0)
        safe = ids.clamp(min=0)
        own = self.words(safe) * known.unsqueeze(-1).to(self.words.weight.dtype)
        if "ngram_ids" in x:
            weights = x["ngram_mask"].unsqueeze(-1).to(own.dtype)
            sums = (self.subwords.embedding(x["ngram_ids"].long()) * weights).sum(-2)
            counts = x["ngram_mask"].sum(-1)
        else:
            sums, counts = self.subwords.word_sums(safe)
        vectors = (own + sums) / (counts + known.long()).clamp(min=1).unsqueeze(-1).to(own.dtype)
        mask = x["attention_mask"].unsqueeze(-1).to(own.dtype)
        return (vectors * mask).sum(-2) / mask.sum(-2).clamp(min=1.0)


@register_method(
    title="Enriching Word Vectors with Subword Information", wing="text-and-retrieval", modality="text", arxiv="1607.04606"
)
class FastText(WordWindowModule):
    """Skip-gram with negative sampling where a word's input vector is built from its character n-grams: the
    n-grams of ``<word>`` with ``minn <= n <= maxn`` characters, hashed (32-bit FNV-1a, ``Dictionary::hash``) into
    ``bucket`` rows, plus the word's own row. Words never seen in training get vectors from their n-grams:
    ``reprzoo.load(name).encode(["unseenword"])`` (the datamodule's ``subwords`` preprocessing hashes them).

    Follows the authors' code (facebookresearch/fastText, ``src/``) where it differs from the paper's text:

    - the input vector is the *mean* of the word row and its n-gram rows (``Model::computeHidden``; the paper
      writes the sum), and each row receives the full gradient of that mean (``Model::update`` normalises the
      gradient for supervised models only; ``mean_gradient=True`` gives the exact gradient);
    - noise words are drawn from the unigram distribution to the power 0.5 (``NegativeSamplingLoss``: counts^0.5;
      word2vec uses 0.75), and a noise word equal to the target is redrawn (``getNegative``);
    - the input matrix is initialised uniform in ``[-1/dim, 1/dim]``, the output matrix to zero.

    Defaults are the authors' (``args.cc`` and the paper): n-grams of 3 to 6 characters, 2M buckets, 5 negatives,
    window 5 (datamodule), subsampling 1e-4 (datamodule: ``WordWindows(sample=1e-4)``; fastText's discard rule is
    word2vec.c's), SGD from lr 0.05 decayed linearly, 100 dimensions (300 in the paper's experiments).

    Ours:
        - Mini-batches of centre words with summed per-pair losses (fastText: asynchronous SGD, one step per pair
          on many threads; the summed gradient of a batch is their sequence of steps taken at once). Within a
          batch every pair sees the vectors of the batch's start.
        - No end-of-sentence token ``</s>``: fastText adds one to the vocabulary and trains on it; WordWindows
          keeps sentences apart instead. No ``wordNgrams`` (word n-grams are for fastText's classifier).
        - The learning rate decays linearly to 1e-4 of its start (fastText: to 0), per step, not per token.
        - The recipe uses 200,000 buckets (a 80 MB n-gram table at 100 dimensions, what a CPU run and the CPU
          tests afford; the default keeps fastText's 2,000,000).
        - A multi-word text is embedded as the mean of its words' vectors, as the zoo's other word-vector models
          (fastText's ``print-sentence-vectors`` averages unit-normalised word vectors).

    Args:
        minn, maxn: n-gram lengths in characters (``-minn``, ``-maxn``).
        bucket: rows of the hashed n-gram table (``-bucket``).
        num_subwords: n-gram rows listed for the whole vocabulary: recorded when training starts (a pushed model's
            init args carry it); leave it unset.
        mean_gradient: the exact gradient of the mean input vector (False: fastText's update, see above).
        negatives: noise words per pair (``-neg``).
        noise_power: exponent of the noise distribution (0.5 in fastText).
        kwargs: :class:`WordWindowModule` options (vocab_size, dim, sparse, optimiser).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        minn: int = 3,
        maxn: int = 6,
        bucket: int = 2_000_000,
        num_subwords: int | None = None,
        mean_gradient: bool = False,
        negatives: int = 5,
        noise_power: float = 0.5,
        lr: float = 0.05,
        **kwargs: Any,
    ):
        if not 1 <= minn <= maxn:
            raise ValueError(f"need 1 <= minn <= maxn, got minn={minn}, maxn={maxn}")
        if bucket < 1:
            raise ValueError(f"bucket must be >= 1, got {bucket}")
        super().__init__(vocab_size=vocab_size, negatives=negatives, noise_power=noise_power, lr=lr, **kwargs)
        dim = self.feature_dim
        self.subwords = SubwordTable(vocab_size, bucket, dim, num_subwords or 0, sparse=self.hparams.sparse)
        nn.init.uniform_(self.backbone.embedding.weight, -1.0 / dim, 1.0 / dim)  # fastText: wi_->uniform(1/dim)
        nn.init.uniform_(self.subwords.embedding.weight, -1.0 / dim, 1.0 / dim)
        self.output = nn.Embedding(vocab_size, dim, sparse=self.hparams.sparse)
        nn.init.zeros_(self.output.weight)  # fastText: wo_->zero()

    # ------------------------------------------------------------------ the vocabulary's n-grams
    def on_fit_start(self) -> None:
        subwords = getattr(getattr(self.trainer, "datamodule", None), "subwords", "missing")
        own = {"minn": self.hparams.minn, "maxn": self.hparams.maxn, "bucket": self.hparams.bucket}
        if subwords != own:
            raise ReprzooError(
                f"FastText needs its n-grams in the datamodule's preprocessing, so that a pushed model embeds unseen "
                f"words: build the data with WordWindows(subwords={own}) (got subwords={subwords})"
            )
        super().on_fit_start()

    def on_validation_start(self) -> None:
        super().on_validation_start()
        vocabulary = getattr(getattr(self.trainer, "datamodule", None), "vocabulary", None)
        fresh = int(self.subwords.offsets[-1]) == 0  # validate() before any fit: the n-grams are not listed yet
        if fresh and vocabulary is not None and len(vocabulary) == self.hparams.vocab_size:
            self.vocabulary_ready(vocabulary)

    def vocabulary_ready(self, vocabulary) -> None:
        from reprzoo.datamodules.text.preprocess import subword_buckets

        h = self.hparams
        rows = [subword_buckets(w, h.minn, h.maxn, h.bucket) for w in vocabulary.words]
        self.subwords.set_words(rows)
        total = int(self.subwords.index.numel())
        if h.num_subwords not in (None, total):
            raise ReprzooError(
                f"num_subwords={h.num_subwords} was given but the vocabulary lists {total} n-grams; leave it unset"
            )
        self.hparams.num_subwords = total  # recorded with the checkpoint: a rebuilt module sizes its index with it

    # ------------------------------------------------------------------ training
    def encoder(self) -> nn.Module:
        return SubwordVectors(self.backbone.embedding, self.subwords)

    def sample_negatives(self, targets: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """fastText's ``getNegative``: a noise word equal to the target is redrawn (a few rounds; what is still
        equal after them is skipped)."""
        ids, keep = super().sample_negatives(targets, k)
        for _ in range(4):
            clash = ~keep
            if not clash.any():
                break
            ids[clash] = torch.multinomial(self.noise, int(clash.sum()), replacement=True)
            keep = ids.ne(targets.unsqueeze(-1))
        return ids, keep

    def centre_vectors(self, centres: torch.Tensor) -> torch.Tensor:
        """The input vectors of vocabulary words with fastText's gradient (:func:`subword_hidden`)."""
        sums, counts = self.subwords.word_sums(centres)
        return subword_hidden(self.backbone(centres), sums, counts + 1, self.hparams.mean_gradient)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        batch = views[0]
        mask = batch["context_mask"]
        rows = mask.any(1)
        hidden = self.centre_vectors(batch["center"][rows])  # once per centre word, shared by its context words
        pair_hidden = hidden.unsqueeze(1).expand(-1, mask.shape[1], -1)[mask[rows]]
        targets = batch["context"][mask]
        noise, keep = self.sample_negatives(targets)
        negatives = self.output(noise) * keep.unsqueeze(-1)
        loss = fasttext_loss(pair_hidden, self.output(targets), negatives)
        return TrainingOutput(loss, features=hidden.detach())

    @property
    def word_vectors(self) -> torch.Tensor:
        """The ``(vocab_size, dim)`` vectors of the vocabulary (word row and n-grams averaged): what is exported."""
        with torch.no_grad():
            return self.encoder()(torch.arange(self.hparams.vocab_size, device=self.output.weight.device))


__all__ = ["FastText", "SubwordTable", "SubwordVectors"]
