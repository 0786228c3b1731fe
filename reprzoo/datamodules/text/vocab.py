"""A word vocabulary for word-embedding methods: counts, min-count pruning, frequent-word subsampling and the
unigram^0.75 noise distribution of negative sampling (Mikolov et al., 2013), saved as ``vocab.json`` next to a
pushed model's weights and rebuilt by ``reprzoo.load``."""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import torch

from reprzoo.errors import ReprzooError

VOCAB_FILE = "vocab.json"


class Vocabulary:
    """Words with their corpus counts, most frequent first (ties broken alphabetically: the same corpus gives the
    same ids everywhere).

    Args:
        words: the words, in id order.
        counts: their corpus counts, same order.
    """

    def __init__(self, words: Sequence[str], counts: Sequence[int]):
        if len(words) != len(counts):
            raise ValueError(f"{len(words)} words but {len(counts)} counts")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary lists each word once")
        self.words = list(words)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 5, max_size: int | None = None) -> "Vocabulary":
        """Count the words of tokenised ``sentences``; keep those seen at least ``min_count`` times (the
        ``max_size`` most frequent of them, when given)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counter: Counter[str] = Counter()
        for sentence in sentences:
            counter.update(sentence)
        kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ReprzooError(
                f"no word occurs {min_count} times or more in the corpus ({len(counter)} distinct words): lower min_count"
            )
        return cls([w for w, _ in kept], [c for _, c in kept])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of the tokens that are in the vocabulary (the others are dropped, as word2vec does)."""
        index = self.index
        return [index[t] for t in tokens if t in index]

    def keep_probabilities(self, sample: float = 1e-3) -> np.ndarray:
        """Probability of keeping each occurrence of a word under frequent-word subsampling with threshold
        ``sample``: ``(sqrt(f / (s * total)) + 1) * (s * total) / f`` (capped at 1), the formula of the authors'
        ``word2vec.c`` (the paper writes ``1 - sqrt(t / f)`` for the discard probability). ``sample=0`` keeps all."""
        if sample <= 0:
            return np.ones(len(self), dtype=np.float64)
        threshold = sample * self.total
        f = self.counts.astype(np.float64)
        return np.minimum((np.sqrt(f / threshold) + 1.0) * threshold / f, 1.0)

    def noise_distribution(self, power: float = 0.75) -> torch.Tensor:
        """The negative-sampling distribution: counts raised to ``power``, normalised."""
        weights = torch.from_numpy(self.counts.astype(np.float64)) ** power
        return (weights / weights.sum()).float()

    def to_json(self) -> bytes:
        return json.dumps({"format": "reprzoo-vocabulary/1", "words": self.words, "counts": self.counts.tolist()}).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "Vocabulary":
        try:
            payload = json.loads(data)
            return cls(payload["words"], payload["counts"])
        except (ValueError, KeyError, TypeError) as err:
            raise ReprzooError(f"not a reprzoo vocabulary file ({err})") from None


__all__ = ["VOCAB_FILE", "Vocabulary"]
