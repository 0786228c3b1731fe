"""Binary token representations: the storage side of "BTR: Binary Token Representations for Efficient Retrieval
Augmented Language Models" (Qingqing Cao, Sewon Min, Yizhong Wang, Hannaneh Hajishirzi, ICLR 2024, arXiv:2310.01329).

BTR precomputes every passage token's representation as a 1-bit vector (``sign``), trained through the sign with a
straight-through estimator, calibrated so that the binary vectors keep the scale the reader expects, and compressed
offline (near-duplicate binary tokens stored once) and packed 8 bits to a byte. This module holds those reusable
pieces: the straight-through sign, a per-token scale for calibration, packing to ``uint8``, Hamming distances and
inner products on packed bits, and exact deduplication of binary tokens.

Ours:
    - only the representation component: BTR's reader (an Atlas/FiD T5 whose upper encoder layers consume the binary
      tokens), its distillation / salient-token training objectives and runtime token merging need a reader LLM and
      question-answering data, and are not built;
    - calibration is a stored per-token scale (``"rms"``, the root mean square, or ``"mean_abs"``, XNOR-Net's
      L1 scale) multiplied back onto the signs; the paper's exact calibration (its authors' code is unreleased:
      github.com/csarron/BTR holds only a README) was not checked here;
    - offline compression is exact deduplication of packed rows (the paper merges near-identical tokens by Hamming
      distance; :func:`hamming_distances` is the building block for that).
"""

from __future__ import annotations

import numpy as np
import torch

CALIBRATIONS = ("rms", "mean_abs")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, clip: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.clip = clip
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if ctx.clip > 0:
            grad = grad * (x.abs() <= ctx.clip).to(grad.dtype)
        return grad, None


def binarize(x: torch.Tensor, clip: float = 1.0) -> torch.Tensor:
    """``sign(x)`` in ``{-1, +1}`` (0 maps to +1) with a straight-through gradient: the incoming gradient passes
    where ``|x| <= clip`` (hard-tanh STE; ``clip <= 0`` passes it everywhere)."""
    return _SignSTE.apply(x, float(clip))


def token_scale(x: torch.Tensor, calibration: str = "rms") -> torch.Tensor:
    """Per-token scale ``(..., 1)`` of ``(..., dim)`` representations, stored next to the bits."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    return x.pow(2).mean(-1, keepdim=True).sqrt() if calibration == "rms" else x.abs().mean(-1, keepdim=True)


def calibrated_binarize(x: torch.Tensor, calibration: str = "rms", clip: float = 1.0) -> torch.Tensor:
    """``scale(x) * sign(x)``: binary directions at the token's own scale (differentiable through the STE)."""
    return token_scale(x, calibration) * binarize(x, clip)


def pack_bits(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pack ``(..., dim)`` signs (bit 1 where ``x >= 0``) into ``(..., ceil(dim / 8))`` uint8, big-endian bits."""
    values = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if values.ndim < 1 or values.shape[-1] < 1:
        raise ValueError(f"expected (..., dim) values, got {values.shape}")
    return np.packbits(values >= 0, axis=-1)


def unpack_bits(packed: np.ndarray, dim: int) -> torch.Tensor:
    """``(..., ceil(dim / 8))`` uint8 back to ``(..., dim)`` float signs in ``{-1, +1}``."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.shape[-1] != -(-dim // 8):
        raise ValueError(f"expected (..., {-(-dim // 8)}) uint8 for dim {dim}, got {packed.shape} {packed.dtype}")
    bits = np.unpackbits(packed, axis=-1, count=dim)
    return torch.from_numpy(bits.astype(np.float32) * 2 - 1)


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances ``(n, m)`` between packed rows ``(n, bytes)`` and ``(m, bytes)``."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected (n, bytes) and (m, bytes) uint8, got {a.shape} {a.dtype} and {b.shape} {b.dtype}")
    return _POPCOUNT[np.bitwise_xor(a[:, None, :], b[None])].sum(-1)


def binary_inner_products(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """Inner products ``(n, m)`` of the ``{-1, +1}`` vectors behind packed rows: ``dim - 2 * hamming`` (padding bits
    of the last byte are 0 on both sides, so they never differ)."""
    return dim - 2 * hamming_distances(a, b)


def deduplicate(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offline compression by exact deduplication: ``(codebook (u, bytes), inverse (n,))`` with
    ``codebook[inverse] == packed``."""
    packed = np.asarray(packed)
    if packed.ndim != 2 or packed.dtype != np.uint8:
        raise ValueError(f"expected (n, bytes) uint8, got {packed.shape} {packed.dtype}")
    codebook, inverse = np.unique(packed, axis=0, return_inverse=True)
    return codebook, inverse.reshape(-1)
