"""Multi hash embeddings: spaCy's ``MultiHashEmbed`` ("Multi hash embeddings in spaCy", Miranda, Kádár, Boyd,
Van Landeghem, Søgaard & Honnibal, 2022, arXiv:2212.09255).

A token is described by several lexical attributes, ``NORM`` (the lowercased form), ``PREFIX`` (its first
character), ``SUFFIX`` (its last three) and ``SHAPE`` (``"Xxxx"``, ``"dd"``): each attribute's 64-bit key is hashed
with four seeds into a small table of its own (thinc's ``HashEmbed``) and the four rows are summed; the attribute
embeddings are concatenated and mixed by a maxout layer (three pieces) with layer normalisation. No vocabulary is
stored: memory is fixed by the tables' rows, and two words that share a bucket under one hash almost never share
all four.

Ours:
    - Attribute strings are keyed with BLAKE2b (64 bits, cut to 62) instead of spaCy's string store (MurmurHash
      64), and a key is bucketed by four seeded universal hashes ``(a lo + b hi + c) mod p mod rows`` instead of
      MurmurHash3's 128 bits split in four: both deterministic across processes, computed here in PyTorch.
    - ``SHAPE`` follows spaCy's ``word_shape`` (``x``/``X``/``d``, other characters kept, runs cut after 4).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch import nn

#: spaCy's default attributes, table sizes and width (``spacy.MultiHashEmbed.v2`` in its English pipelines)
ATTRIBUTES = ("NORM", "PREFIX", "SUFFIX", "SHAPE")
DEFAULT_ROWS = (5000, 1000, 2500, 2500)
_PRIME = 2_147_483_647  # 2^31 - 1: every product of two residues fits in int64
_HALF = (1 << 31) - 1


def word_shape(word: str) -> str:
    """spaCy's word shape: letters to ``x``/``X``, digits to ``d``, other characters kept; a run of the same shape
    character stops after 4 (``"Apple2024!!"`` -> ``"Xxxxxdddd!!"``)."""
    shape, last, run = [], "", 0
    for char in word:
        c = ("X" if char.isupper() else "x") if char.isalpha() else "d" if char.isdigit() else char
        run = run + 1 if c == last else 1
        last = c
        if run <= 4:
            shape.append(c)
    return "".join(shape)


def attribute_strings(word: str) -> tuple[str, str, str, str]:
    """``(NORM, PREFIX, SUFFIX, SHAPE)`` of a word (spaCy's defaults: prefix 1 character, suffix 3)."""
    return word.lower(), word[:1], word[-3:], word_shape(word)


def string_key(text: str, attribute: str) -> int:
    """A stable 62-bit key of an attribute's string (the same in every process, unlike Python's ``hash``)."""
    digest = hashlib.blake2b(f"{attribute}\x00{text}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def token_keys(words: Sequence[str], attributes: Sequence[str] = ATTRIBUTES) -> torch.Tensor:
    """``(len(words), len(attributes))`` int64 keys of each word's attributes."""
    unknown = set(attributes) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attributes {sorted(unknown)}; choose from {ATTRIBUTES}")
    columns = [ATTRIBUTES.index(a) for a in attributes]
    rows = [[string_key(attribute_strings(w)[c], ATTRIBUTES[c]) for c in columns] for w in words]
    return torch.tensor(rows, dtype=torch.long).view(len(words), len(attributes))


class HashEmbed(nn.Module):
    """thinc's ``HashEmbed``: a key's ``num_hashes`` seeded hashes index rows of one ``(rows, width)`` table, summed.

    Args:
        rows: the table's rows (buckets).
        width: embedding width.
        seed: selects the hash functions (each attribute table has its own).
        num_hashes: hashes per key (4 in thinc).
    """

    def __init__(self, rows: int, width: int, seed: int, num_hashes: int = 4):
        super().__init__()
        if rows < 1 or width < 1 or num_hashes < 1:
            raise ValueError(f"rows, width and num_hashes must be >= 1, got {rows}, {width}, {num_hashes}")
        self.rows, self.width, self.seed = rows, width, seed
        self.table = nn.Parameter(torch.empty(rows, width).uniform_(-0.1, 0.1))  # thinc's uniform_init
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("coefficients", torch.randint(1, _PRIME, (3, num_hashes), generator=generator))

    def buckets(self, keys: torch.Tensor) -> torch.Tensor:
        """``(..., num_hashes)`` table rows of int64 ``keys`` (non-negative, below 2^62)."""
        if keys.dtype != torch.long:
            raise ValueError(f"keys must be int64, got {keys.dtype}")
        lo, hi = (keys & _HALF).unsqueeze(-1), ((keys >> 31) & _HALF).unsqueeze(-1)
        a, b, c = self.coefficients
        return ((lo * a % _PRIME + hi * b % _PRIME + c) % _PRIME) % self.rows

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        """``(...)`` keys -> ``(..., width)``: the sum of the keys' rows."""
        return self.table[self.buckets(keys)].sum(-2)


class MultiHashEmbed(nn.Module):
    """spaCy's ``MultiHashEmbed``: one :class:`HashEmbed` per attribute, concatenated, then a maxout layer
    (``pieces`` linear maps, their maximum) with layer normalisation down to ``width``.

    Args:
        width: output width (and each attribute table's width): 96 in spaCy's small pipelines.
        rows: rows of each attribute's table (spaCy's defaults: NORM 5000, PREFIX 1000, SUFFIX 2500, SHAPE 2500).
        attributes: the token attributes, in the order of ``rows`` and of the keys' last axis.
        pieces: maxout pieces (3 in spaCy).
        seed: the first attribute table's seed; the next ones count up (spaCy: 8, 9, 10, 11).
    """

    def __init__(
        self,
        width: int = 96,
        rows: Sequence[int] = DEFAULT_ROWS,
        attributes: Sequence[str] = ATTRIBUTES,
        pieces: int = 3,
        seed: int = 8,
    ):
        super().__init__()
        if len(rows) != len(attributes):
            raise ValueError(f"one table size per attribute: {len(rows)} rows for {len(attributes)} attributes")
        if pieces < 1:
            raise ValueError(f"pieces must be >= 1, got {pieces}")
        self.attributes, self.width, self.pieces = tuple(attributes), width, pieces
        self.embeds = nn.ModuleList(HashEmbed(r, width, seed + i) for i, r in enumerate(rows))
        self.maxout = nn.Linear(width * len(rows), width * pieces)
        self.norm = nn.LayerNorm(width)
        self.num_features = width

    def concatenated(self, keys: torch.Tensor) -> torch.Tensor:
        """``(..., attributes)`` keys -> ``(..., attributes x width)``: the attribute embeddings side by side."""
        if keys.shape[-1] != len(self.embeds):
            raise ValueError(f"keys need one column per attribute ({len(self.embeds)}), got {tuple(keys.shape)}")
        return torch.cat([embed(keys[..., i]) for i, embed in enumerate(self.embeds)], -1)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        """``(..., attributes)`` int64 keys (:func:`token_keys`) -> ``(..., width)`` token vectors."""
        mixed = self.maxout(self.concatenated(keys)).unflatten(-1, (self.width, self.pieces)).amax(-1)
        return self.norm(mixed)

    def embed_words(self, words: Sequence[str]) -> torch.Tensor:
        """``(len(words), width)`` vectors of words."""
        return self(token_keys(words, self.attributes).to(self.maxout.weight.device))


__all__ = [
    "ATTRIBUTES",
    "DEFAULT_ROWS",
    "HashEmbed",
    "MultiHashEmbed",
    "attribute_strings",
    "string_key",
    "token_keys",
    "word_shape",
]
