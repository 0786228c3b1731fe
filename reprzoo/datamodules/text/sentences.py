"""Sentence- and document-level text datamodules: texts tokenised with a subword tokenizer trained on the training
split (``reprzoo.datamodules.text.tokenizers``), padded into ``{"input_ids", "attention_mask"}`` batches.

- :class:`Sentences`: a corpus of sentences or documents (WordNet definitions, the Lee background corpus, the mini
  20-newsgroups, Debian package descriptions, a text file), each sample in ``views`` copies (unsupervised sentence
  methods: SimCSE-style dropout views, masked-LM, auto-encoders). Evaluated on the Lee documents against human
  similarity (``lee``) or with kNN and a probe on labelled texts: newsgroup topics (``newsgroups``) or Debian
  package sections (``debian_sections``).
- :class:`TextPairs`: (query, document) pairs with in-batch negatives (and mined hard negatives): WordNet
  definition -> its words (a reverse dictionary), or a Debian package's synopsis -> its long description; evaluated
  as retrieval of the held-out pairs' documents (``reprzoo.metrics.retrieval``: MRR@10, nDCG@10, Recall@k computed
  with ``ir-measures``).

A pushed model stores the tokenizer (``tokenizer.json``) and ``reprzoo.load(name).encode(texts)`` rebuilds it.
"""

from __future__ import annotations

import abc
import hashlib
from collections import Counter
from functools import lru_cache
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from reprzoo.datamodules.base import EmbeddingDataModule
from reprzoo.datamodules.text.tokenizers import PAD_ID, TokenizerKind, train_tokenizer, truncate
from reprzoo.errors import ReprzooError, UnknownNameError

TOKENIZER_FILE = "tokenizer.json"


def pad_ids(rows: Sequence[torch.Tensor], pad_id: int = PAD_ID) -> dict[str, torch.Tensor]:
    """Variable-length 1-d id tensors -> ``{"input_ids": (n, L), "attention_mask": (n, L)}``, right-padded."""
    width = max(max((len(r) for r in rows), default=1), 1)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def collate_text(samples: list[Any]) -> Any:
    """Batch dataset items whose samples are id tensors (or lists of them, one per view): training items
    ``(views, label, index)``, evaluation items ``(ids, label)``."""
    first = samples[0][0]
    labels = torch.as_tensor([s[1] for s in samples])
    if isinstance(first, (list, tuple)):
        inputs: Any = [pad_ids([s[0][v] for s in samples]) for v in range(len(first))]
    else:
        inputs = pad_ids([s[0] for s in samples])
    if len(samples[0]) > 2:
        return inputs, labels, torch.as_tensor([s[2] for s in samples])
    return inputs, labels


class _Encoded(Dataset):
    """Token ids of texts (or lists of them), with their labels (-1: unlabelled); ``views`` > 0 gives each sample
    as a list of that many copies."""

    def __init__(self, ids: list, labels: Sequence[int], views: int = 0):
        self.ids, self.labels, self.views = ids, list(labels), views

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        sample = self.ids[i] if not self.views else [self.ids[i]] * self.views
        return sample, self.labels[i]


class _Indexed(Dataset):
    """Evaluation items ``(ids, position)``: the protocol reads the position (a document's row in a matrix)."""

    def __init__(self, ids: list[torch.Tensor]):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return self.ids[i], i


class TextDataModule(EmbeddingDataModule):
    """Base of tokenised text datamodules: trains the tokenizer on the training texts and pads batches.

    Subclasses implement :meth:`_texts` (training texts, for the tokenizer) and build their splits with
    :meth:`encode`.

    Args:
        tokenizer: ``wordpiece``, ``bpe`` or ``bytelevel`` (``reprzoo.datamodules.text.tokenizers``).
        vocab_size: the tokenizer's vocabulary (the model's embedding table: the CLI passes it on).
        max_length: tokens kept per text (longer texts are truncated, as at inference).
        batch_size, num_workers, pin_memory, seed: loader options (:class:`EmbeddingDataModule`).
    """

    model_args_keys = ("vocab_size",)

    def __init__(
        self,
        tokenizer: TokenizerKind = "wordpiece",
        vocab_size: int = 8000,
        max_length: int = 128,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, seed=seed)
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
        self.tokenizer_kind, self.requested_vocab, self.max_length = tokenizer, vocab_size, max_length
        self.tokenizer = None

    @abc.abstractmethod
    def _texts(self) -> list[str]:
        """The training texts the tokenizer learns from."""

    def fit_tokenizer(self):
        if self.tokenizer is None:
            texts = self._texts()
            if not texts:
                raise ReprzooError(f"{type(self).__name__} has no training text")
            self.tokenizer = train_tokenizer(texts, self.tokenizer_kind, self.requested_vocab)
        return self.tokenizer

    @property
    def vocab_size(self) -> int:
        return self.fit_tokenizer().get_vocab_size()

    def model_args(self) -> dict[str, Any]:
        """Init args a method takes from this data (the CLI fills those it accepts and the user left unset)."""
        return {"vocab_size": self.vocab_size}

    def encode(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Token ids of texts (``[CLS] ... [SEP]``), truncated to ``max_length`` (keeping the final ``[SEP]``)."""
        tokenizer = self.fit_tokenizer()
        out = []
        for encoding in tokenizer.encode_batch(list(texts)):
            out.append(torch.tensor(truncate(encoding.ids, self.max_length), dtype=torch.long))
        return out

    def collate(self, samples):
        return collate_text(samples)

    def _collate_fn(self):
        return collate_text

    def preprocessing(self) -> dict[str, Any]:
        return {"modality": "text", "tokenizer": "tokenizer", "file": TOKENIZER_FILE, "max_length": self.max_length}

    def preprocessing_files(self) -> dict[str, bytes]:
        return {TOKENIZER_FILE: self.fit_tokenizer().to_str().encode("utf-8")}


def _split(n: int, test_share: float, salt: str) -> tuple[list[int], list[int]]:
    """A deterministic split by hashing each position (stable across processes and Python versions)."""
    train, test = [], []
    for i in range(n):
        h = int(hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (test if h < test_share else train).append(i)
    return train, test


#: the Debian sections of the ``debian_sections`` evaluation: those with at least this many packages in the corpus
#: (16 sections, 3,761 of the fixture's 5,000 packages: libs, libdevel, python, doc, perl, devel, utils, ...)
DEBIAN_MIN_SECTION_SIZE = 100

#: labelled evaluation -> the corpus its texts come from
LABELLED_EVALUATIONS = {"newsgroups": "newsgroups", "debian_sections": "debian"}


@lru_cache(maxsize=2)
def _debian_sections(min_size: int) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    from reprzoo.datamodules.text import corpora

    records = corpora.debian_packages()
    counts = Counter(r["section"] for r in records)
    names = sorted(s for s, n in counts.items() if n >= min_size)
    kept = [r for r in records if r["section"] in names]
    return tuple(corpora.package_text(r) for r in kept), tuple(names.index(r["section"]) for r in kept), tuple(names)


def debian_sections(min_size: int = DEBIAN_MIN_SECTION_SIZE) -> tuple[list[str], list[int], list[str]]:
    """The shipped Debian packages of the sections with at least ``min_size`` packages, as ``(texts, labels,
    section_names)``: a package's text is its synopsis and long description (``corpora.package_text``), in package
    order; section names sorted."""
    texts, labels, names = _debian_sections(min_size)
    return list(texts), list(labels), list(names)


def labelled_texts(evaluation: str) -> tuple[list[str], list[int], list[str]]:
    """``(texts, labels, label_names)`` of a labelled evaluation: ``newsgroups`` or ``debian_sections``."""
    from reprzoo.datamodules.text import corpora

    if evaluation == "newsgroups":
        return corpora.mini_newsgroups()
    if evaluation == "debian_sections":
        return debian_sections()
    raise UnknownNameError("labelled text evaluation", evaluation, list(LABELLED_EVALUATIONS))


def labelled_split(evaluation: str) -> tuple[list[int], list[int]]:
    """Positions of a labelled evaluation's kNN bank (70%) and held-out queries (30%), seeded by its name: the split
    every datamodule evaluating on it uses."""
    return _split(len(labelled_texts(evaluation)[0]), 0.3, evaluation)


class Sentences(TextDataModule):
    """A corpus of sentences or documents, each training sample in ``views`` copies.

    Args:
        corpus: ``wordnet`` (definitions and examples of WordNet 3.0), ``lee`` (the Lee background corpus),
            ``newsgroups`` (mini 20-newsgroups), ``debian`` (the 5,000 shipped Debian package descriptions,
            synopsis and long description) or a UTF-8 file, one text a line.
        views: copies of each training sample (2 for dropout-noise contrastive methods; 1 otherwise).
        evaluation: ``lee`` (Pearson of the 50 Lee documents' cosine similarities with human judgments),
            ``newsgroups`` (kNN and probe on the mini 20-newsgroups' topics, a seeded 70/30 split) or
            ``debian_sections`` (kNN and probe on the sections of the shipped Debian packages, those with at least
            :data:`DEBIAN_MIN_SECTION_SIZE` packages, a seeded 70/30 split).
        max_texts: use only the first N texts of the corpus.
        kwargs: :class:`TextDataModule` options (tokenizer, vocab_size, max_length, batch_size).
    """

    def __init__(self, corpus: str = "wordnet", views: int = 1, evaluation: str = "lee", max_texts: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if evaluation not in ("lee", *LABELLED_EVALUATIONS):
            raise UnknownNameError("text evaluation", evaluation, ["lee", *LABELLED_EVALUATIONS])
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.corpus, self.views, self.evaluation, self.max_texts = corpus, views, evaluation, max_texts
        self.num_classes = None  # known before setup for a labelled evaluation: the CLI links it
        if evaluation == "newsgroups":
            self.num_classes = 2  # the mini 20-newsgroups' two topics
        elif evaluation == "debian_sections":
            self.num_classes = len(debian_sections()[2])
        self.evaluation_protocol = None

    def _texts(self) -> list[str]:
        from reprzoo.datamodules.text import corpora
        from reprzoo.datamodules.text.words import corpus_texts

        if self.corpus == "debian":
            texts = [corpora.package_text(r) for r in corpora.debian_packages()]
        else:
            texts = [t for t in corpus_texts(self.corpus) if t.strip()]
        return texts[: self.max_texts] if self.max_texts else texts

    def _label_split(self) -> tuple[list[int], list[int]]:
        """Positions of the labelled evaluation's kNN bank (70%) and queries (30%), seeded by its name."""
        return labelled_split(self.evaluation)

    def _splits(self):
        from reprzoo.datamodules.text import corpora

        train = _Encoded(self.encode(self._texts()), [-1] * len(self._texts()), views=self.views)
        if self.evaluation == "lee":
            from reprzoo.metrics.text import DocumentSimilarityProtocol

            docs, human = corpora.lee_test()
            self.evaluation_protocol = DocumentSimilarityProtocol(human, "lee_pearson")
            return train, _Indexed(self.encode(docs))
        texts, labels, names = labelled_texts(self.evaluation)
        self.num_classes = len(names)
        bank, queries = self._label_split()
        ids = self.encode(texts)
        self._bank_train = _Encoded([ids[i] for i in bank], [labels[i] for i in bank])
        return train, _Encoded([ids[i] for i in queries], [labels[i] for i in queries])

    def _eval_loaders(self, query: Dataset) -> list[DataLoader]:
        if self.evaluation == "lee":  # one loader of (document, position): the protocol scores the whole matrix
            return [self._loader(query, train=False)]
        return super()._eval_loaders(query)


__all__ = [
    "DEBIAN_MIN_SECTION_SIZE",
    "TOKENIZER_FILE",
    "Sentences",
    "TextDataModule",
    "collate_text",
    "debian_sections",
    "labelled_texts",
    "pad_ids",
]


class TextPairs(TextDataModule):
    """(query, document) pairs for contrastive text methods (in-batch negatives: the other pairs' documents):
    each training sample is ``[query ids, document ids]``.

    Sources:
        ``wordnet_definitions``: a WordNet 3.0 definition (the query) and its synset's words, ``"bank, depository
        financial institution"`` (the document): a reverse dictionary.
        ``debian_descriptions``: a Debian package's one-line synopsis (the query) and its long description (the
        document), the 5,000 shipped packages (``corpora.debian_packages``); a query's one relevant document is
        its own package's.

    Evaluation: the held-out pairs (a deterministic ``test_share`` of the synsets, by hash) as retrieval, each query
    against every held-out document, with MRR@10, nDCG@10, Recall@10 and Recall@100 (``ir-measures``).

    Args:
        source: the pairs.
        test_share: share of pairs held out for evaluation.
        max_pairs: use only the first N pairs (before the split).
        similarity: ``cosine`` or ``dot``: how the evaluation compares queries and documents.
        kwargs: :class:`TextDataModule` options (tokenizer, vocab_size, max_length, batch_size).
    """

    SOURCES = ("wordnet_definitions", "debian_descriptions")

    def __init__(
        self,
        source: str = "wordnet_definitions",
        test_share: float = 0.05,
        max_pairs: int | None = None,
        similarity: str = "cosine",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if source not in self.SOURCES:
            raise UnknownNameError("pair source", source, list(self.SOURCES))
        if not 0 < test_share < 1:
            raise ValueError(f"test_share must be in (0, 1), got {test_share}")
        self.source, self.test_share, self.max_pairs, self.similarity = source, test_share, max_pairs, similarity
        self.evaluation_protocol = None
        self._pairs: list[tuple[str, str]] | None = None

    def pairs(self) -> list[tuple[str, str]]:
        """Every (query, document) pair of the source, in a fixed order."""
        if self._pairs is None:
            from reprzoo.datamodules.text import corpora

            if self.source == "debian_descriptions":
                pairs = [(r["synopsis"], r["description"]) for r in corpora.debian_packages() if r["description"]]
            else:
                pairs = [(g["definition"], ", ".join(g["words"])) for g in corpora.wordnet_glosses() if g["definition"]]
            self._pairs = pairs[: self.max_pairs] if self.max_pairs else pairs
        return self._pairs

    def _split_positions(self) -> tuple[list[int], list[int]]:
        return _split(len(self.pairs()), self.test_share, self.source)

    def _texts(self) -> list[str]:
        train, _ = self._split_positions()
        pairs = self.pairs()
        return [t for i in train for t in pairs[i]]

    def _splits(self):
        from reprzoo.metrics.retrieval import QueryDocumentProtocol

        pairs = self.pairs()
        train, test = self._split_positions()
        queries = self.encode([pairs[i][0] for i in train])
        documents = self.encode([pairs[i][1] for i in train])
        training = _Encoded([[q, d] for q, d in zip(queries, documents)], [-1] * len(train))
        training.views = 0  # each sample is already its [query, document] views
        ids = [f"p{i}" for i in test]
        self.evaluation_protocol = QueryDocumentProtocol({q: {q: 1} for q in ids}, ids, ids, similarity=self.similarity)
        self._eval_documents = _Indexed(self.encode([pairs[i][1] for i in test]))
        return training, _Indexed(self.encode([pairs[i][0] for i in test]))

    def _eval_loaders(self, query: Dataset) -> list[DataLoader]:
        return [self._loader(self._eval_documents, train=False), self._loader(query, train=False)]


__all__ += ["TextPairs"]
