"""Labelled documents for supervised document encoders (the RCNN of "Word and Document Embeddings based on Neural
Network Approaches", CVIB): the texts of :class:`Sentences`' labelled evaluations, whose training part is given with
its labels instead of unlabelled: the mini 20-newsgroups posts with their topics, or the shipped Debian package
descriptions with their sections."""

from __future__ import annotations

from reprzoo.datamodules.text.sentences import LABELLED_EVALUATIONS, Sentences, _Encoded, labelled_texts
from reprzoo.datamodules.text.tokenizers import TokenizerKind
from reprzoo.errors import UnknownNameError


class TopicSentences(Sentences):
    """Labelled documents: trains on the kNN bank's 70% with their labels and is evaluated (kNN, probe) on the other
    30%, the same seeded split as ``Sentences(evaluation=topics)``; the tokenizer is fitted on the training texts
    only.

    Args:
        topics: ``newsgroups`` (the mini 20-newsgroups: 200 posts, 2 topics) or ``debian_sections`` (the shipped
            Debian package descriptions of the 16 sections with at least 100 packages: 3,761 texts).
        kwargs: :class:`Sentences` options (tokenizer, vocab_size, max_length, batch_size, views).
    """

    def __init__(
        self,
        topics: str = "newsgroups",
        views: int = 1,
        tokenizer: TokenizerKind = "wordpiece",
        vocab_size: int = 8000,
        max_length: int = 128,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int | None = None,
    ):
        if topics not in LABELLED_EVALUATIONS:
            raise UnknownNameError("labelled topics", topics, list(LABELLED_EVALUATIONS))
        # explicit arguments (not **kwargs): the command line reads a datamodule's options from its signature
        super().__init__(
            corpus=LABELLED_EVALUATIONS[topics],
            evaluation=topics,
            views=views,
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            max_length=max_length,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            seed=seed,
        )
        self.topics = topics

    def _train_positions(self) -> list[int]:
        return self._label_split()[0]

    def _texts(self) -> list[str]:
        texts = labelled_texts(self.topics)[0]
        return [texts[i] for i in self._train_positions()]

    def _splits(self):
        _, query = super()._splits()
        labels = labelled_texts(self.topics)[1]
        train = _Encoded(self.encode(self._texts()), [labels[i] for i in self._train_positions()], views=self.views)
        return train, query


__all__ = ["TopicSentences"]
