"""A token stream for word-window methods (CBOW, skip-gram, fastText, CMOW): every (centre word, context window)
of a corpus, with word2vec's frequent-word subsampling and dynamic windows, built a batch at a time.

A training batch is ``([{"center": (B,), "context": (B, 2w), "context_mask": (B, 2w)}], labels, positions)``:
the ids of B centre words, the ids of the up to ``w`` words on each side of each (in order: left to right, the
centre's slot excluded) and which of them are real (inside the sentence and inside that centre's sampled window).
Evaluation reads the vocabulary itself (:class:`~reprzoo.metrics.text.VocabularyProtocol`): each evaluation batch
is a chunk of word ids, and the word-similarity and analogy evaluators score the vectors the method returns for
them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reprzoo.datamodules.base import EmbeddingDataModule
from reprzoo.datamodules.resumable import ResumableDataLoader, sample_seed
from reprzoo.datamodules.text.vocab import VOCAB_FILE, Vocabulary
from reprzoo.errors import ReprzooError

#: corpora by name: a function giving one text per sentence or document (``reprzoo.datamodules.text.corpora``).
CORPORA = ("wordnet", "lee", "newsgroups")


def corpus_texts(corpus: str) -> list[str]:
    """The texts of a named corpus (:data:`CORPORA`) or of a UTF-8 text file (one sentence or document a line)."""
    from reprzoo.datamodules.text import corpora

    if corpus == "wordnet":
        return corpora.wordnet_corpus()
    if corpus == "lee":
        return corpora.lee_background()
    if corpus == "newsgroups":
        return corpora.mini_newsgroups()[0]
    path = Path(corpus).expanduser()
    if not path.is_file():
        from reprzoo.errors import UnknownNameError

        raise UnknownNameError("corpus (or text file)", corpus, list(CORPORA))
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ReprzooError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); convert it with iconv") from None


@functools.lru_cache(maxsize=4)
def prepare_corpus(
    corpus: str,
    max_sentences: int | None,
    min_count: int,
    max_vocab: int | None,
    phrases: int = 0,
    phrase_threshold: float = 100.0,
) -> tuple[Vocabulary, list[np.ndarray]]:
    """The vocabulary of a corpus and its sentences as id arrays (those of two known words or more); cached, as
    the command line reads the data once to size the model and the trainer reads it again."""
    from reprzoo.datamodules.text.corpora import simple_tokenize

    texts = corpus_texts(corpus)
    if max_sentences is not None:
        texts = texts[:max_sentences]
    tokenised = [simple_tokenize(t) for t in texts]
    if phrases:
        from reprzoo.datamodules.text.phrases import phrase_passes

        tokenised = phrase_passes(tokenised, phrases, min_count, phrase_threshold)
    vocabulary = Vocabulary.build(tokenised, min_count, max_vocab)
    sentences = [np.asarray(vocabulary.encode(s), dtype=np.int64) for s in tokenised]
    sentences = [s for s in sentences if len(s) > 1]
    if not sentences:
        raise ReprzooError(f"corpus {corpus!r} has no sentence of two known words (min_count={min_count})")
    return vocabulary, sentences


class _Sentences(Dataset):
    """Tokenised sentences as id arrays, label -1 (what the fingerprint hashes)."""

    def __init__(self, sentences: list[np.ndarray]):
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.sentences[i]), -1


class WindowBatches(Dataset):
    """Item ``(i, epoch)`` is training batch ``i`` of ``epoch``: centre words drawn without replacement from the
    epoch's subsampled stream, each with its dynamic window. Deterministic in ``(seed, epoch, i)``."""

    def __init__(
        self,
        tokens: np.ndarray,
        sentence_ids: np.ndarray,
        keep: np.ndarray,
        window: int,
        batch_size: int,
        seed: int,
        dynamic_window: bool = True,
    ):
        self.tokens, self.sentence_ids, self.keep = tokens, sentence_ids, keep
        self.window, self.batch_size, self.seed, self.dynamic_window = window, batch_size, seed, dynamic_window
        expected = float(keep[tokens].sum())  # expected occurrences kept per epoch
        self.num_batches = max(1, int(expected * 0.99) // batch_size)
        self._epoch: int | None = None

    def __len__(self) -> int:
        return self.num_batches

    def _stream(self, epoch: int) -> None:
        if self._epoch == epoch:
            return
        rng = np.random.default_rng(sample_seed(self.seed, epoch, -1))
        kept = rng.random(len(self.tokens)) < self.keep[self.tokens]
        self._kept_tokens, self._kept_sentences = self.tokens[kept], self.sentence_ids[kept]
        self._order = rng.permutation(len(self._kept_tokens))
        self._epoch = epoch

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor, torch.Tensor]:
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        self._stream(epoch)
        n, w = len(self._order), self.window
        centres = self._order[(np.arange(i * self.batch_size, (i + 1) * self.batch_size)) % n]
        offsets = np.concatenate([np.arange(-w, 0), np.arange(1, w + 1)])
        positions = centres[:, None] + offsets[None, :]
        inside = (positions >= 0) & (positions < n)
        positions = np.clip(positions, 0, n - 1)
        same = self._kept_sentences[positions] == self._kept_sentences[centres][:, None]
        mask = inside & same
        if self.dynamic_window:  # word2vec's reduced window: b ~ U{1..w} per centre, so near words count more
            rng = np.random.default_rng(sample_seed(self.seed, epoch, i))
            reach = rng.integers(1, w + 1, size=len(centres))
            mask &= np.abs(offsets)[None, :] <= reach[:, None]
        batch = {
            "center": torch.from_numpy(self._kept_tokens[centres]),
            "context": torch.from_numpy(np.where(mask, self._kept_tokens[positions], 0)),
            "context_mask": torch.from_numpy(mask),
        }
        return [batch], torch.full((len(centres),), -1, dtype=torch.long), torch.from_numpy(centres)


def _first(items: list) -> Any:
    return items[0]


class WordWindows(EmbeddingDataModule):
    """Centre words and their context windows from a corpus, with a vocabulary built on it.

    Args:
        corpus: ``wordnet`` (WordNet 3.0 definitions and examples, about 1.6M words), ``lee`` (the Lee background
            corpus, 60k words), ``newsgroups`` (the mini 20-newsgroups) or a UTF-8 text file, one sentence a line.
        min_count: words seen fewer times are dropped (word2vec's ``min_count``).
        max_vocab: keep at most this many of the most frequent words.
        window: maximum words on each side of the centre (word2vec's ``window``).
        dynamic_window: sample each centre's window uniformly in ``1..window`` (word2vec).
        sample: frequent-word subsampling threshold (``1e-3`` in word2vec.c; 0 turns it off).
        max_sentences: use only the first N sentences (quick runs and tests).
        batch_size: centre words per step.
        eval_batch_size: words per evaluation batch.
        similarity: word-similarity benchmarks to evaluate (``wordsim353``, ``simlex999``).
        analogies: evaluate 3CosAdd analogy accuracy on the 19,544 Google questions.
        analogy_vocab: restrict analogy candidates (and questions) to the N most frequent words, as gensim's
            ``restrict_vocab``.
        subwords: fastText's character n-grams, ``{"minn": 3, "maxn": 6, "bucket": 2000000}``: a pushed model then
            preprocesses text with them (kind ``subwords``), so that it embeds words outside the vocabulary. Set
            it to the method's own ``minn``, ``maxn`` and ``bucket`` (:class:`~reprzoo.lightning_modules.FastText`
            checks); None (default): word ids only.
        phrases: passes of phrase detection (Mikolov et al., 2013b): frequent bigrams become one token
            (``new_york``), ``reprzoo.datamodules.text.phrases``; 0 (default) keeps words.
        phrase_threshold: the score a bigram must exceed in the first pass (word2phrase.c's 100; halved each pass).
    """

    evaluation_protocol = None  # set per instance: a VocabularyProtocol over this datamodule's words
    #: init args a method takes from this data (``model_args()``; the CLI fills them)
    model_args_keys = ("vocab_size",)

    def __init__(
        self,
        corpus: str = "wordnet",
        min_count: int = 5,
        max_vocab: int | None = None,
        window: int = 5,
        dynamic_window: bool = True,
        sample: float = 1e-3,
        max_sentences: int | None = None,
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        similarity: Sequence[str] = ("wordsim353", "simlex999"),
        analogies: bool = True,
        analogy_vocab: int = 30000,
        subwords: dict[str, int] | None = None,
        phrases: int = 0,
        phrase_threshold: float = 100.0,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, seed=seed)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.corpus, self.min_count, self.max_vocab = corpus, min_count, max_vocab
        self.window, self.dynamic_window, self.sample = window, dynamic_window, sample
        self.max_sentences, self.eval_batch_size = max_sentences, eval_batch_size
        self.similarity, self.analogies, self.analogy_vocab = tuple(similarity), analogies, analogy_vocab
        if subwords is not None and set(subwords) != {"minn", "maxn", "bucket"}:
            raise ValueError(f"subwords takes minn, maxn and bucket, got {sorted(subwords)}")
        self.subwords = None if subwords is None else {k: int(v) for k, v in subwords.items()}
        if phrases < 0:
            raise ValueError(f"phrases counts passes of phrase detection (>= 0), got {phrases}")
        self.phrases, self.phrase_threshold = phrases, phrase_threshold
        self.vocabulary: Vocabulary | None = None
        self._tokens: np.ndarray | None = None
        self._sentence_ids: np.ndarray | None = None

    # ------------------------------------------------------------------ data
    def _splits(self):
        self.vocabulary, sentences = prepare_corpus(
            self.corpus, self.max_sentences, self.min_count, self.max_vocab, self.phrases, self.phrase_threshold
        )
        self._tokens = np.concatenate(sentences)
        self._sentence_ids = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])
        self.evaluation_protocol = self._protocol()
        return _Sentences(sentences), _Ids(len(self.vocabulary))

    @property
    def vocab_size(self) -> int:
        """Words of the vocabulary (built from the corpus on first use)."""
        self.setup()
        return len(self.vocabulary)

    def model_args(self) -> dict[str, Any]:
        """Init args a method takes from this data (the CLI fills those the method accepts and the user left
        unset): the vocabulary size."""
        return {"vocab_size": self.vocab_size}

    def train_dataloader(self) -> DataLoader:
        self.setup()
        keep = self.vocabulary.keep_probabilities(self.sample)
        batches = WindowBatches(
            self._tokens, self._sentence_ids, keep, self.window, self.batch_size, self.training_seed(), self.dynamic_window
        )
        loader = ResumableDataLoader(
            batches, 1, seed=self.training_seed(), drop_last=False, collate_fn=_first, num_workers=self.num_workers
        )
        trainer = self.trainer
        if trainer is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress
            loader.processed_batches = lambda: progress.current.processed
        return loader

    def _ids_loader(self) -> list[DataLoader]:
        return [DataLoader(self._test, batch_size=self.eval_batch_size, shuffle=False)]

    def val_dataloader(self) -> list[DataLoader]:
        self.setup()
        return self._ids_loader()

    def test_dataloader(self) -> list[DataLoader]:
        self.setup()
        return self._ids_loader()

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        return self._ids_loader()[0]

    def _protocol(self):
        from reprzoo.metrics.text import VocabularyProtocol

        return VocabularyProtocol(
            self.vocabulary.words, similarity=self.similarity, analogies=self.analogies, analogy_vocab=self.analogy_vocab
        )

    # ------------------------------------------------------------------ inference
    def preprocessing(self) -> dict[str, Any]:
        if self.subwords:  # fastText: words and their hashed character n-grams (unseen words get vectors)
            return {"modality": "text", "tokenizer": "subwords", "vocabulary": VOCAB_FILE, "lowercase": True, **self.subwords}
        return {"modality": "text", "tokenizer": "words", "vocabulary": VOCAB_FILE, "lowercase": True}

    def preprocessing_files(self) -> dict[str, bytes]:
        self.setup()
        return {VOCAB_FILE: self.vocabulary.to_json()}


class _Ids(Dataset):
    """Word ids 0..n-1 as ``(id, -1)``: the evaluation reads the whole vocabulary."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.tensor(i), -1


__all__ = ["CORPORA", "WindowBatches", "WordWindows", "corpus_texts"]
