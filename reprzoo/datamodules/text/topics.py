"""Labelled documents for supervised document encoders (the RCNN of "Word and Document Embeddings based on Neural
Network Approaches"): the mini 20-newsgroups posts of :class:`Sentences`' ``newsgroups`` evaluation split, whose
training part is given with its topics instead of unlabelled."""

from __future__ import annotations

from reprzoo.datamodules.text.sentences import Sentences, _Encoded, _split
from reprzoo.datamodules.text.tokenizers import TokenizerKind


class TopicSentences(Sentences):
    """The mini 20-newsgroups (200 posts, 2 topics) as labelled documents: trains on the kNN bank's 70% with their
    topics and is evaluated (kNN, probe) on the other 30%, the same seeded split as ``Sentences(corpus=
    "newsgroups", evaluation="newsgroups")``; the tokenizer is fitted on the training posts only.

    Args:
        kwargs: :class:`Sentences` options (tokenizer, vocab_size, max_length, batch_size, views).
    """

    def __init__(
        self,
        views: int = 1,
        tokenizer: TokenizerKind = "wordpiece",
        vocab_size: int = 8000,
        max_length: int = 128,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int | None = None,
    ):
        # explicit arguments (not **kwargs): the command line reads a datamodule's options from its signature
        super().__init__(
            corpus="newsgroups",
            evaluation="newsgroups",
            views=views,
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            max_length=max_length,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            seed=seed,
        )

    def _train_positions(self) -> list[int]:
        from reprzoo.datamodules.text import corpora

        return _split(len(corpora.mini_newsgroups()[0]), 0.3, "newsgroups")[0]

    def _texts(self) -> list[str]:
        from reprzoo.datamodules.text import corpora

        texts = corpora.mini_newsgroups()[0]
        return [texts[i] for i in self._train_positions()]

    def _splits(self):
        from reprzoo.datamodules.text import corpora

        _, query = super()._splits()
        labels = corpora.mini_newsgroups()[1]
        train = _Encoded(self.encode(self._texts()), [labels[i] for i in self._train_positions()], views=self.views)
        return train, query


__all__ = ["TopicSentences"]
