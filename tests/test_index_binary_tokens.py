"""Binary token representations (reprzoo/index/binary_tokens.py): packing round trip, Hamming / inner products
against unpacked bits, the straight-through gradient, calibration and deduplication."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprzoo.index.binary_tokens import (
    binarize,
    binary_inner_products,
    calibrated_binarize,
    deduplicate,
    hamming_distances,
    pack_bits,
    token_scale,
    unpack_bits,
)


@pytest.mark.parametrize("dim", [8, 13, 64])
def test_pack_unpack_round_trip_and_size(dim):
    x = torch.randn(5, 7, dim, generator=torch.Generator().manual_seed(dim))
    packed = pack_bits(x)
    assert packed.dtype == np.uint8 and packed.shape == (5, 7, -(-dim // 8))
    assert torch.equal(unpack_bits(packed, dim), torch.where(x >= 0, 1.0, -1.0))


def test_hamming_and_inner_products_match_unpacked_bits():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 37, generator=g), torch.randn(9, 37, generator=g)
    sa, sb = torch.where(a >= 0, 1.0, -1.0), torch.where(b >= 0, 1.0, -1.0)
    pa, pb = pack_bits(a), pack_bits(b)
    expected_hamming = (sa[:, None] != sb[None]).sum(-1).numpy()
    assert (hamming_distances(pa, pb) == expected_hamming).all()
    assert (binary_inner_products(pa, pb, 37) == (sa @ sb.T).numpy()).all()


def test_straight_through_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], requires_grad=True)
    y = binarize(x)
    assert torch.equal(y, torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0]))
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 0.0]))  # passed through where |x| <= 1
    x2 = x.detach().clone().requires_grad_(True)
    binarize(x2, clip=0).sum().backward()
    assert torch.equal(x2.grad, torch.ones(5))


def test_calibration_keeps_token_scale_and_improves_reconstruction():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 64, generator=g) * torch.exp(1.5 * torch.randn(50, 1, generator=g))  # very different norms
    one_scale = x.abs().mean() * binarize(x)  # the best single scale for all tokens
    for calibration in ("rms", "mean_abs"):
        calibrated = calibrated_binarize(x, calibration)
        torch.testing.assert_close(calibrated.abs(), token_scale(x, calibration).expand_as(x))
        assert (calibrated - x).pow(2).mean() < 0.7 * (one_scale - x).pow(2).mean()
    torch.testing.assert_close(token_scale(x, "rms")[:, 0], x.norm(dim=1) / 8)
    x.requires_grad_(True)
    calibrated_binarize(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_deduplicate_round_trip():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(4, 24, generator=g)
    tokens = base[torch.tensor([0, 1, 0, 2, 1, 0, 3])] + 1e-3 * torch.randn(7, 24, generator=g)  # same signs
    packed = pack_bits(tokens)
    codebook, inverse = deduplicate(packed)
    assert codebook.shape == (4, 3) and (codebook[inverse] == packed).all()


def test_argument_checks():
    with pytest.raises(ValueError, match="calibration"):
        token_scale(torch.ones(2, 3), "max")
    with pytest.raises(ValueError, match="uint8"):
        unpack_bits(np.zeros((2, 3), dtype=np.uint8), 30)
    with pytest.raises(ValueError, match="uint8"):
        hamming_distances(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="uint8"):
        deduplicate(np.zeros(3, dtype=np.uint8))
