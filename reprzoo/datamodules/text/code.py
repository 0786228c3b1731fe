"""Python functions and their docstrings: natural-language -> code retrieval and the identifiers of each function
(for identifier deobfuscation), from installed third-party packages.

The shipped fixture ``data/python_functions.jsonl.xz`` holds 3,904 (docstring summary, function source without its
docstring) pairs from scikit-learn, sympy, networkx, click, joblib, jsonargparse, imageio and attrs (BSD/MIT; their
licences in ``data/PYTHON_FUNCTIONS_NOTICE``); ``scripts/make_code_fixture.py`` rebuilds it. The Python standard
library is kept out: it is reserved as an unseen evaluation set.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import lzma
import tokenize
from functools import lru_cache
from pathlib import Path

import torch

from reprzoo.datamodules.text.sentences import TextPairs, _Encoded
from reprzoo.errors import ReprzooError

CODE_FIXTURE = Path(__file__).parent / "data" / "python_functions.jsonl.xz"


@lru_cache(maxsize=1)
def _fixture() -> tuple[dict, ...]:
    if not CODE_FIXTURE.is_file():
        raise ReprzooError(f"the code fixture {CODE_FIXTURE} is missing; run scripts/make_code_fixture.py")
    with lzma.open(CODE_FIXTURE, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


def python_functions() -> list[dict]:
    """The fixture's records: ``package``, ``license``, ``module``, ``name``, ``docstring``, ``code``."""
    return [dict(r) for r in _fixture()]


def _function(code: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    node = tree.body[0] if tree.body else None
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def defined_names(code: str) -> set[str]:
    """The identifiers a function defines: its name, its parameters (not ``self``/``cls``) and the local names it
    binds (assignments, loop and ``with`` targets, comprehension variables, local functions and classes)."""
    node = _function(code)
    if node is None:
        return set()
    names = {node.name}
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(sub.name)
    return names - {"self", "cls", "_"} - set(keyword.kwlist)


def identifier_spans(code: str) -> list[tuple[int, int]]:
    """Character spans of every occurrence of the function's own identifiers (:func:`defined_names`)."""
    names = defined_names(code)
    if not names:
        return []
    starts, total = [], 0
    for line in code.splitlines(keepends=True):
        starts.append(total)
        total += len(line)
    spans = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.NAME and tok.string in names:
                (row, col), (erow, ecol) = tok.start, tok.end
                spans.append((starts[row - 1] + col, starts[erow - 1] + ecol))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return spans


def signature_end(code: str) -> int:
    """Character offset where the function's body starts (after its ``def`` line(s)); 0 when it cannot be parsed."""
    node = _function(code)
    if node is None or not node.body:
        return 0
    lines = code.splitlines(keepends=True)
    cut = sum(len(line) for line in lines[: node.body[0].lineno - 1])
    return cut if code[cut:].strip() else 0


def without_signature(code: str) -> str:
    """The function's body: its ``def`` line(s) removed (CodeSage's hard positive: the name and parameters cannot
    be matched against the docstring's words)."""
    return code[signature_end(code) :]


class CodePairs(TextPairs):
    """(docstring, code) pairs of Python functions for natural-language -> code retrieval.

    Training samples are ``[docstring ids, code ids, identifier flags]``: the flags (1 on tokens of the function's
    own identifiers, aligned with the code's ids) are for identifier deobfuscation. With ``hard_positives`` the
    training code is the function without its signature. Evaluation: the held-out docstrings retrieve their function
    (its full source) among the held-out functions (MRR@10, nDCG@10, Recall@k, as :class:`TextPairs`).

    Args:
        source: ``python_functions`` (the shipped fixture).
        hard_positives: train on the code without its ``def`` line(s).
        kwargs: :class:`TextPairs` options (``test_share``, ``max_pairs``, tokenizer, ``max_length``, batch size).
    """

    SOURCES = ("python_functions",)

    def __init__(self, source: str = "python_functions", hard_positives: bool = True, **kwargs):
        super().__init__(source=source, **kwargs)
        self.hard_positives = hard_positives

    def pairs(self) -> list[tuple[str, str]]:
        if self._pairs is None:
            pairs = [(r["docstring"], r["code"]) for r in _fixture()]
            self._pairs = pairs[: self.max_pairs] if self.max_pairs else pairs
        return self._pairs

    def encode_code(self, codes: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Token ids of code (without its signature with ``hard_positives``) and, aligned with them, 1 on the tokens
        of the function's own identifiers (truncated like :meth:`encode`)."""
        tokenizer = self.fit_tokenizer()
        cuts = [signature_end(c) if self.hard_positives else 0 for c in codes]
        texts = [c[cut:] for c, cut in zip(codes, cuts)]
        ids_out, flags_out = [], []
        for code, cut, encoding in zip(codes, cuts, tokenizer.encode_batch(texts)):
            spans = [(a - cut, b - cut) for a, b in identifier_spans(code) if a >= cut]
            flags = [int(e > s and any(s < b and a < e for a, b in spans)) for s, e in encoding.offsets]
            ids = list(encoding.ids)
            if len(ids) > self.max_length:
                ids, flags = ids[: self.max_length - 1] + ids[-1:], flags[: self.max_length - 1] + [0]
            ids_out.append(torch.tensor(ids, dtype=torch.long))
            flags_out.append(torch.tensor(flags, dtype=torch.long))
        return ids_out, flags_out

    def _splits(self):
        _, queries = super()._splits()  # the evaluation protocol and held-out documents of TextPairs
        pairs = self.pairs()
        train, _ = self._split_positions()
        docstrings = self.encode([pairs[i][0] for i in train])
        codes = [pairs[i][1] for i in train]
        code_ids, flags = self.encode_code(codes)
        training = _Encoded([[q, d, f] for q, d, f in zip(docstrings, code_ids, flags)], [-1] * len(train))
        training.views = 0
        return training, queries


__all__ = [
    "CODE_FIXTURE",
    "CodePairs",
    "defined_names",
    "identifier_spans",
    "python_functions",
    "signature_end",
    "without_signature",
]
