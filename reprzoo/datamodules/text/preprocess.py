"""Text in, model input out: the inference preprocessing of text models, rebuilt from a pushed model's config and
its preprocessing files (``vocab.json``, ``tokenizer.json``).

``build_text_preprocessor(preprocessing, read_file)`` returns a callable ``texts -> batch`` for the kind the
config names:

- ``words``: a word vocabulary (word-embedding methods). A text of one word gives that word's id; a text of many
  gives its known words (the encoder averages their vectors). A text with no known word is refused, naming it.
- ``tokenizer``: a Hugging Face ``tokenizers`` tokenizer (``tokenizer.json``): padded ``{"input_ids",
  "attention_mask"}``, truncated to ``max_length`` (said once per preprocessor when it happens).
- ``subwords``: a word vocabulary and fastText's hashed character n-grams (``minn``, ``maxn``, ``bucket``): every
  word gets its id (-1 when unknown) and its n-gram buckets, so that a word never seen in training still has a
  vector (fastText, :class:`SubwordLookup`).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch

from reprzoo.datamodules.text.tokenizers import truncate
from reprzoo.errors import ReprzooError


def _check_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ReprzooError("no text to embed: pass one string or a list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ReprzooError(f"text {i} is a {type(t).__name__}, not a string")
        if not t.strip():
            raise ReprzooError(f"text {i} is empty: an empty string has no representation")
    return texts


class WordLookup:
    """Texts -> word ids of a vocabulary: ``{"input_ids": (n, L), "attention_mask": (n, L)}`` (one word: L = 1).

    Args:
        vocabulary: a :class:`~reprzoo.datamodules.text.vocab.Vocabulary`.
        lowercase: tokens are lowercased (the vocabulary was built that way).
    """

    kind = "words"

    def __init__(self, vocabulary, lowercase: bool = True):
        self.vocabulary, self.lowercase = vocabulary, lowercase

    def tokens(self, text: str) -> list[str]:
        from reprzoo.datamodules.text.corpora import simple_tokenize

        return simple_tokenize(text) if self.lowercase else text.split()

    def __call__(self, texts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        texts = _check_texts(texts)
        rows = []
        for text in texts:
            whole = text.strip().lower() if self.lowercase else text.strip()
            # a vocabulary entry as written (a phrase such as "new_york"), else the text's words
            ids = [self.vocabulary.index[whole]] if whole in self.vocabulary else self.vocabulary.encode(self.tokens(text))
            if not ids:
                from difflib import get_close_matches

                near = get_close_matches(text.strip().lower(), self.vocabulary.words, n=3)
                hint = f" (did you mean {', '.join(near)}?)" if near else ""
                raise ReprzooError(f"no word of {text[:60]!r} is in the vocabulary of {len(self.vocabulary)} words{hint}")
            rows.append(ids)
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class TokenizerPreprocessor:
    """Texts -> ``{"input_ids", "attention_mask"}`` with a ``tokenizers.Tokenizer``, padded to the longest text
    and truncated to ``max_length`` tokens (one warning per preprocessor the first time a text is cut)."""

    kind = "tokenizer"

    def __init__(self, tokenizer, max_length: int = 128, pad_id: int = 0):
        self.tokenizer, self.max_length, self.pad_id = tokenizer, max_length, pad_id
        self._warned = False

    @classmethod
    def from_bytes(cls, data: bytes, max_length: int = 128) -> "TokenizerPreprocessor":
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as err:  # tokenizers raises plain Exception subclasses for malformed files
            raise ReprzooError(f"tokenizer.json does not parse as a Hugging Face tokenizer ({err})") from None
        pad = tokenizer.token_to_id("[PAD]")
        return cls(tokenizer, max_length, 0 if pad is None else pad)

    def __call__(self, texts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        texts = _check_texts(texts)
        encodings = self.tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        if max(lengths) > self.max_length and not self._warned:
            self._warned = True
            warnings.warn(
                f"{sum(n > self.max_length for n in lengths)} text(s) longer than the model's {self.max_length} "
                "tokens were truncated (said once)",
                stacklevel=3,
            )
        width = min(max(lengths), self.max_length)
        ids = torch.full((len(texts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(texts), width, dtype=torch.long)
        for i, e in enumerate(encodings):
            kept = truncate(e.ids, self.max_length)  # as the datamodules cut: the final [SEP] is kept
            ids[i, : len(kept)] = torch.tensor(kept)
            mask[i, : len(kept)] = 1
        return {"input_ids": ids, "attention_mask": mask}


# ----------------------------------------------------------------------------------------------- fastText subwords
#: fastText's word boundary symbols (``Dictionary::BOW`` / ``EOW``)
BOW, EOW = "<", ">"


def fasttext_hash(text: str | bytes) -> int:
    """32-bit FNV-1a of the UTF-8 bytes, as fastText's ``Dictionary::hash``: each byte is read as a *signed* char
    and sign-extended (``h ^= uint32_t(int8_t(c))``), which the released models were trained with."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    h = 2166136261
    for byte in data:
        h = ((h ^ (byte | 0xFFFFFF00 if byte >= 0x80 else byte)) * 16777619) & 0xFFFFFFFF
    return h


def character_ngrams(word: str, minn: int = 3, maxn: int = 6) -> list[str]:
    """The character n-grams of ``<word>`` (``minn <= n <= maxn``, in fastText's order: by start, then length),
    as ``Dictionary::computeSubwords``: whole UTF-8 characters, the boundary-only 1-grams ``<`` and ``>`` left
    out, the whole ``<word>`` included when it is short enough, repeats kept."""
    padded = BOW + word + EOW
    grams = []
    for i in range(len(padded)):
        for n in range(minn, maxn + 1):
            if i + n > len(padded):
                break
            if n == 1 and (i == 0 or i + n == len(padded)):
                continue
            grams.append(padded[i : i + n])
    return grams


def subword_buckets(word: str, minn: int = 3, maxn: int = 6, bucket: int = 2_000_000) -> list[int]:
    """The n-gram rows of a word: ``fasttext_hash(ngram) % bucket`` for each of :func:`character_ngrams` (fastText
    adds the vocabulary size to index its input matrix; these are rows of the n-gram table alone)."""
    if maxn < minn or bucket <= 0:
        return []
    return [fasttext_hash(g) % bucket for g in character_ngrams(word, minn, maxn)]


class SubwordLookup(WordLookup):
    """Texts -> word ids and their hashed character n-grams (fastText): ``{"input_ids": (n, L)`` word ids, -1 for
    a word outside the vocabulary, ``"attention_mask": (n, L), "ngram_ids": (n, L, G)`` n-gram rows,
    ``"ngram_mask": (n, L, G)}``. Every token of a text is kept: an unknown word is represented by its n-grams
    alone (a token with neither is dropped; a text left with no token is refused).

    Args:
        vocabulary: a :class:`~reprzoo.datamodules.text.vocab.Vocabulary`.
        minn, maxn: n-gram lengths (fastText's ``-minn``/``-maxn``).
        bucket: rows of the n-gram table (``-bucket``).
        lowercase: tokens are lowercased (the vocabulary was built that way).
    """

    kind = "subwords"

    def __init__(self, vocabulary, minn: int = 3, maxn: int = 6, bucket: int = 2_000_000, lowercase: bool = True):
        super().__init__(vocabulary, lowercase)
        self.minn, self.maxn, self.bucket = int(minn), int(maxn), int(bucket)

    def __call__(self, texts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        texts = _check_texts(texts)
        rows = []
        for text in texts:
            words = []
            for token in self.tokens(text):
                word_id = self.vocabulary.index.get(token, -1)
                grams = subword_buckets(token, self.minn, self.maxn, self.bucket)
                if word_id >= 0 or grams:
                    words.append((word_id, grams))
            if not words:
                raise ReprzooError(f"{text[:60]!r} has no word and no character n-gram of {self.minn}-{self.maxn} characters")
            rows.append(words)
        width = max(len(r) for r in rows)
        grams_width = max(1, max(len(g) for r in rows for _, g in r))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        ngram_ids = torch.zeros(len(rows), width, grams_width, dtype=torch.long)
        ngram_mask = torch.zeros(len(rows), width, grams_width, dtype=torch.long)
        for i, words in enumerate(rows):
            for j, (word_id, grams) in enumerate(words):
                ids[i, j], mask[i, j] = word_id, 1
                ngram_ids[i, j, : len(grams)] = torch.tensor(grams, dtype=torch.long)
                ngram_mask[i, j, : len(grams)] = 1
        return {"input_ids": ids, "attention_mask": mask, "ngram_ids": ngram_ids, "ngram_mask": ngram_mask}


def build_text_preprocessor(preprocessing: dict[str, Any], read_file: Callable[[str], bytes]) -> Callable:
    """The preprocessor a text model's config names; ``read_file(name)`` returns a checked preprocessing file."""
    kind = preprocessing.get("tokenizer")
    if kind == "words":
        from reprzoo.datamodules.text.vocab import Vocabulary

        return WordLookup(Vocabulary.from_json(read_file(preprocessing["vocabulary"])), preprocessing.get("lowercase", True))
    if kind == "tokenizer":
        return TokenizerPreprocessor.from_bytes(read_file(preprocessing["file"]), int(preprocessing.get("max_length", 128)))
    if kind == "subwords":
        from reprzoo.datamodules.text.vocab import Vocabulary

        return SubwordLookup(
            Vocabulary.from_json(read_file(preprocessing["vocabulary"])),
            int(preprocessing["minn"]),
            int(preprocessing["maxn"]),
            int(preprocessing["bucket"]),
            preprocessing.get("lowercase", True),
        )
    raise ReprzooError(f"unknown text preprocessing {kind!r} (known: words, tokenizer, subwords)")


__all__ = [
    "SubwordLookup",
    "TokenizerPreprocessor",
    "WordLookup",
    "build_text_preprocessor",
    "character_ngrams",
    "fasttext_hash",
    "subword_buckets",
]
