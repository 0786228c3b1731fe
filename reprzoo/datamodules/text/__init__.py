"""Text datamodules and their parts: real corpora that ship offline (``corpora``), word vocabularies (``vocab``),
word-window batches for word-embedding methods (``words``) and the inference preprocessing a pushed text model
rebuilds (``preprocess``)."""

from reprzoo.datamodules.text.code import CodePairs
from reprzoo.datamodules.text.neighbours import GraphNeighbours, TaggedPairs
from reprzoo.datamodules.text.polarity import PolaritySentences
from reprzoo.datamodules.text.sentences import TOKENIZER_FILE, Sentences, TextDataModule, TextPairs
from reprzoo.datamodules.text.topics import TopicSentences
from reprzoo.datamodules.text.vocab import VOCAB_FILE, Vocabulary
from reprzoo.datamodules.text.words import WordWindows

__all__ = [
    "CodePairs",
    "GraphNeighbours",
    "PolaritySentences",
    "TOKENIZER_FILE",
    "VOCAB_FILE",
    "Sentences",
    "TextDataModule",
    "TaggedPairs",
    "TextPairs",
    "TopicSentences",
    "Vocabulary",
    "WordWindows",
]
