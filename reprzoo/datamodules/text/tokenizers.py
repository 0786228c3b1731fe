"""Tokenizers trained with Hugging Face ``tokenizers`` on the training corpus: WordPiece (BERT's), BPE, byte-level
BPE (GPT-2's, no unknown tokens; with ``vocab_size`` 261 it is plain UTF-8 bytes: the 256 byte symbols and the
special tokens, no merges) and word-level (whole words, for word-based sentence methods). Every tokenizer has the same special tokens, so that a method can
rely on them: ``[PAD]`` = 0, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``; encodings are ``[CLS] text [SEP]``.

A trained tokenizer is saved as ``tokenizer.json`` next to a pushed model's weights and rebuilt by
``reprzoo.load`` (``reprzoo.datamodules.text.preprocess.TokenizerPreprocessor``). Training is deterministic for a
given corpus and settings, and cached in the process (the command line prepares the data twice).
"""

from __future__ import annotations

import hashlib
from typing import Literal, Sequence

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID = 0
TokenizerKind = Literal["wordpiece", "bpe", "bytelevel", "wordlevel"]


def truncate(ids: Sequence[int], max_length: int) -> list[int]:
    """Token ids cut to ``max_length`` keeping the last one (the ``[SEP]`` of ``[CLS] ... [SEP]``): the one
    truncation of reprzoo's text data and of an exported model's tokenizer, so both see the same ids."""
    ids = list(ids)
    return ids[: max_length - 1] + ids[-1:] if len(ids) > max_length else ids


def train_tokenizer(texts: Sequence[str], kind: TokenizerKind = "wordpiece", vocab_size: int = 8000, min_frequency: int = 2):
    """A ``tokenizers.Tokenizer`` of ``kind`` trained on ``texts`` (lowercased, accents stripped, for WordPiece
    and BPE; byte-level keeps case), with :data:`SPECIAL_TOKENS` first and the ``[CLS] ... [SEP]`` template."""
    key = (hashlib.sha256("\n".join(texts).encode("utf-8", "surrogatepass")).hexdigest(), kind, vocab_size, min_frequency)
    if key not in _TRAINED:
        if len(_TRAINED) >= 4:
            _TRAINED.pop(next(iter(_TRAINED)))
        _TRAINED[key] = _train(texts, kind, vocab_size, min_frequency)
    return _TRAINED[key]


_TRAINED: dict = {}


def _train(texts: Sequence[str], kind: str, vocab_size: int, min_frequency: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    elif kind == "wordlevel":  # whole words (lowercased, split on whitespace and punctuation): word-based methods
        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    elif kind == "bytelevel":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose wordpiece, bpe, bytelevel or wordlevel")
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    assert tokenizer.token_to_id("[PAD]") == PAD_ID
    return tokenizer


__all__ = ["PAD_ID", "SPECIAL_TOKENS", "TokenizerKind", "train_tokenizer", "truncate"]
