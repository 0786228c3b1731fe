"""Sentence-level sentiment: the 200 movie-review sentences of Pang & Lee's polarity data shipped in gensim's test data
(``pang_lee_polarity.cor``, Windows-1252 text: 100 ``__label__neg``, 100 ``__label__pos``), for supervised sentence encoders (CVIB)."""

from __future__ import annotations

from reprzoo.datamodules.text.sentences import TextDataModule, _Encoded, _split
from reprzoo.errors import ReprzooError

POLARITY_FILE = "pang_lee_polarity.cor"
POLARITY_LABELS = ("neg", "pos")


def polarity_sentences() -> tuple[list[str], list[int], list[str]]:
    """The polarity sentences as ``(texts, labels, label_names)``; ``labels[i]`` indexes ``("neg", "pos")``."""
    from reprzoo.datamodules.text.corpora import gensim_data_dir

    path = gensim_data_dir() / POLARITY_FILE
    if not path.is_file():
        raise ReprzooError(f"gensim's test data has no {POLARITY_FILE} ({path}); reinstall gensim: pip install gensim")
    texts, labels = [], []
    for number, line in enumerate(path.read_text(encoding="cp1252", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        tag, _, text = line.strip().partition(" ")
        name = tag.removeprefix("__label__")
        if name not in POLARITY_LABELS or not text:
            raise ReprzooError(f"{path}:{number}: expected '__label__neg|pos <sentence>', got {line[:60]!r}")
        texts.append(text)
        labels.append(POLARITY_LABELS.index(name))
    return texts, labels, list(POLARITY_LABELS)


class PolaritySentences(TextDataModule):
    """Labelled sentiment sentences: trains on a seeded 70% with their labels, evaluated (kNN and probe, the base's
    ``labelled_bank_and_queries`` protocol) on the other 30% against the training 70% as the bank; the tokenizer is
    fitted on the training sentences only.

    Args:
        views: copies of each training sample.
        kwargs: :class:`TextDataModule` options (tokenizer, vocab_size, max_length, batch_size).
    """

    num_classes = len(POLARITY_LABELS)

    def __init__(self, views: int = 1, **kwargs):
        super().__init__(**kwargs)
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.views = views

    def _positions(self) -> tuple[list[int], list[int]]:
        return _split(len(polarity_sentences()[0]), 0.3, "polarity")

    def _texts(self) -> list[str]:
        texts = polarity_sentences()[0]
        return [texts[i] for i in self._positions()[0]]

    def _splits(self):
        texts, labels, _ = polarity_sentences()
        train, test = self._positions()
        ids = self.encode(texts)
        self._bank_train = _Encoded([ids[i] for i in train], [labels[i] for i in train])
        training = _Encoded([ids[i] for i in train], [labels[i] for i in train], views=self.views)
        return training, _Encoded([ids[i] for i in test], [labels[i] for i in test])


__all__ = ["POLARITY_FILE", "PolaritySentences", "polarity_sentences"]
