"""Data-driven phrases (Mikolov et al., 2013b, arXiv:1310.4546, Section 4): bigrams scored
``(count(ab) - delta) / (count(a) count(b))`` and merged into one token (``new_york``) when the score exceeds a
threshold; several passes build longer phrases.

The score is scaled as in the authors' ``word2phrase.c``: multiplied by the corpus' word count, with their
defaults ``delta`` = ``min_count`` = 5 and threshold 100. Merging is greedy from the left (a word joined to its
left neighbour does not start the next bigram), as gensim's ``Phrases`` does; tests/test_text_words.py compares
the two with gensim given the same scorer.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence


def learn_phrases(
    sentences: Iterable[Sequence[str]], min_count: int = 5, threshold: float = 100.0
) -> dict[tuple[str, str], float]:
    """The bigrams of ``sentences`` whose score exceeds ``threshold``, with their scores."""
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    for sentence in sentences:
        unigrams.update(sentence)
        bigrams.update(zip(sentence, sentence[1:]))
    total = sum(unigrams.values())
    phrases = {}
    for (a, b), count in bigrams.items():
        score = (count - min_count) / (unigrams[a] * unigrams[b]) * total
        if score > threshold:
            phrases[(a, b)] = score
    return phrases


def apply_phrases(sentence: Sequence[str], phrases: dict[tuple[str, str], float], delimiter: str = "_") -> list[str]:
    """``sentence`` with each detected bigram joined by ``delimiter``, greedily from the left."""
    out: list[str] = []
    i = 0
    while i < len(sentence):
        if i + 1 < len(sentence) and (sentence[i], sentence[i + 1]) in phrases:
            out.append(sentence[i] + delimiter + sentence[i + 1])
            i += 2
        else:
            out.append(sentence[i])
            i += 1
    return out


def phrase_passes(
    sentences: list[list[str]], passes: int, min_count: int = 5, threshold: float = 100.0, decay: float = 0.5
) -> list[list[str]]:
    """``passes`` rounds of learning and applying phrases, the threshold multiplied by ``decay`` each round (the
    paper: "2-4 passes over the training data with decreasing threshold value")."""
    for _ in range(passes):
        phrases = learn_phrases(sentences, min_count, threshold)
        sentences = [apply_phrases(s, phrases) for s in sentences]
        threshold *= decay
    return sentences


__all__ = ["apply_phrases", "learn_phrases", "phrase_passes"]
