"""Densified sparse representations (DSRs): "Densifying Sparse Representations for Passage Retrieval by
Representational Slicing" (Sheng-Chieh Lin, Jimmy Lin, 2021, arXiv:2112.04666).

A ``(vocabulary,)`` sparse vector (SPLADE's term weights) is cut into ``n_slices`` slices; each slice keeps its
largest value and the position of that value inside the slice, giving a dense ``(n_slices,)`` value vector plus an
``(n_slices,)`` index vector. Two DSRs are scored by the gated inner product ``sum_s v_q[s] v_d[s] [i_q[s] = i_d[s]]``:
a slice contributes only when both sides kept the same vocabulary term. With non-negative weights the gated product
is a lower bound of the sparse dot product, and equal to it when every slice holds at most one non-zero on each side.

``layout="contiguous"`` puts terms ``[s L, (s + 1) L)`` in slice ``s`` (``L = ceil(vocabulary / n_slices)``);
``layout="strided"`` (the default) puts term ``t`` in slice ``t mod n_slices`` at position ``t // n_slices``, which
spreads neighbouring (often similarly frequent) wordpiece ids over different slices.

Ours:
    - only the training-free densification and its scoring; the paper's jointly trained dense + DSR model and its
      GPU gather kernel are not here;
    - both layouts are offered and neither is claimed to be the paper's exact slicing (not checked against the
      authors' code here);
    - an all-zero slice keeps value 0 at position 0 (it contributes nothing);
    - scores are computed in query chunks with a broadcast equality mask (``(q, n, n_slices)`` per chunk).
"""

from __future__ import annotations

import math

import torch

LAYOUTS = ("contiguous", "strided")


def densify(sparse: torch.Tensor, n_slices: int, layout: str = "strided") -> tuple[torch.Tensor, torch.Tensor]:
    """DSR of ``(n, vocabulary)`` weights: ``(values, positions)``, both ``(n, n_slices)`` (positions int64 within
    the slice)."""
    if sparse.ndim != 2:
        raise ValueError(f"expected (n, vocabulary) weights, got {tuple(sparse.shape)}")
    if not 1 <= n_slices <= sparse.shape[1]:
        raise ValueError(f"n_slices must be in [1, {sparse.shape[1]}], got {n_slices}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    n, vocabulary = sparse.shape
    width = math.ceil(vocabulary / n_slices)
    padded = torch.nn.functional.pad(sparse, (0, n_slices * width - vocabulary))  # padding terms weigh 0
    if layout == "contiguous":
        slices = padded.view(n, n_slices, width)
    else:  # term t = position * n_slices + slice
        slices = padded.view(n, width, n_slices).transpose(1, 2)
    values, positions = slices.max(dim=-1)
    return values, positions


def term_ids(positions: torch.Tensor, vocabulary: int, layout: str = "strided") -> torch.Tensor:
    """The vocabulary id kept in every slice: ``(n, n_slices)`` positions back to term ids (for inspection)."""
    n_slices = positions.shape[-1]
    width = math.ceil(vocabulary / n_slices)
    slice_index = torch.arange(n_slices, device=positions.device)
    return slice_index * width + positions if layout == "contiguous" else positions * n_slices + slice_index


def densified_scores(
    query_values: torch.Tensor,
    query_positions: torch.Tensor,
    document_values: torch.Tensor,
    document_positions: torch.Tensor,
    chunk: int = 256,
) -> torch.Tensor:
    """Gated inner products ``(q, n)`` of query DSRs ``(q, S)`` against document DSRs ``(n, S)``."""
    if query_values.shape != query_positions.shape or document_values.shape != document_positions.shape:
        raise ValueError("values and positions must have the same shape on each side")
    if query_values.ndim != 2 or document_values.ndim != 2 or query_values.shape[1] != document_values.shape[1]:
        raise ValueError(f"expected (q, S) and (n, S), got {tuple(query_values.shape)} and {tuple(document_values.shape)}")
    out = []
    for start in range(0, len(query_values), chunk):
        qv, qp = query_values[start : start + chunk], query_positions[start : start + chunk]
        gate = qp[:, None, :] == document_positions[None]  # (c, n, S)
        out.append((qv[:, None, :] * document_values[None] * gate).sum(-1))
    return torch.cat(out) if out else query_values.new_zeros(0, len(document_values))
