"""DeepPermNet: permutation matrices, the loss against loop-by-loop formulas, tiling and shuffling of images."""

from __future__ import annotations

import math

import pytest
import torch

from reprzoo.lightning_modules import DeepPermNet
from reprzoo.lightning_modules.vision_ssl.deeppermnet import grid_tiles, shuffle_tiles
from reprzoo.losses import permutation_loss, permutation_matrix, sinkhorn


def test_permutation_matrix_maps_pieces_to_their_shuffled_order():
    perm = torch.tensor([[2, 0, 1], [0, 1, 2]])
    p = permutation_matrix(perm)
    x = torch.randn(3, 4)
    for b in range(2):
        assert torch.equal(p[b] @ x, x[perm[b]])  # row i of P picks piece perm[i]
        assert torch.equal(p[b].sum(0), torch.ones(3)) and torch.equal(p[b].sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="permutations of 0..n-1"):
        permutation_matrix(torch.tensor([[0, 0, 1]]))


def test_permutation_loss_matches_loops():
    q = sinkhorn(torch.randn(4, 3, 3), iterations=30)
    p = permutation_matrix(torch.stack([torch.randperm(3) for _ in range(4)]))
    ce = sum(-math.log(float(q[b, i, j])) for b in range(4) for i in range(3) for j in range(3) if p[b, i, j] == 1) / 4
    l2 = sum(float(q[b, i, j] - p[b, i, j]) ** 2 for b in range(4) for i in range(3) for j in range(3)) / 4
    assert permutation_loss(q, p).item() == pytest.approx(ce, rel=1e-5)
    assert permutation_loss(q, p, "l2").item() == pytest.approx(l2, rel=1e-5)
    assert permutation_loss(p, p).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="kind must be"):
        permutation_loss(q, p, "hinge")
    with pytest.raises(ValueError, match=r"\(batch, n, n\)"):
        permutation_loss(q[:, :2], p[:, :2])


def test_full_cell_tiles_reassemble_the_image_and_shuffling_is_undone_by_p():
    images = torch.randn(2, 3, 12, 12)
    tiles = grid_tiles(images, grid=3, tile_size=4)
    assert tiles.shape == (2, 9, 3, 4, 4)
    rebuilt = tiles.view(2, 3, 3, 3, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(2, 3, 12, 12)
    assert torch.equal(rebuilt, images)
    shuffled, perm = shuffle_tiles(tiles)
    for b in range(2):
        for i in range(9):
            assert torch.equal(shuffled[b, i], tiles[b, perm[b, i]])
    p = permutation_matrix(perm)
    restored = torch.einsum("bij,bi...->bj...", p, shuffled)  # P^T undoes the shuffle
    assert torch.equal(restored, tiles)


def test_smaller_tiles_stay_inside_their_cells():
    images = torch.arange(2 * 10 * 10, dtype=torch.float32).view(2, 1, 10, 10)
    tiles = grid_tiles(images, grid=2, tile_size=3, generator=torch.Generator().manual_seed(0))
    for b in range(2):
        for cell in range(4):
            r0, c0 = (cell // 2) * 5, (cell % 2) * 5
            top, left = divmod(int(tiles[b, cell, 0, 0, 0].item()) - b * 100, 10)
            assert r0 <= top <= r0 + 2 and c0 <= left <= c0 + 2
            assert torch.equal(tiles[b, cell, 0], images[b, 0, top : top + 3, left : left + 3])
    with pytest.raises(ValueError, match="tile_size"):
        grid_tiles(images, grid=2, tile_size=6)


def test_model_predicts_a_column_stochastic_matrix_and_learns_signal():
    model = DeepPermNet(backbone="resnet_tiny_cifar", grid=2, tile_dim=16, hidden_dim=32, num_classes=10)
    x = torch.randn(4, 3, 32, 32)
    shuffled, perm = shuffle_tiles(grid_tiles(x, 2, 13))
    q = model.predict_permutation(shuffled)
    assert q.shape == (4, 4, 4) and torch.allclose(q.sum(-2), torch.ones(4, 4), atol=1e-5)
    out = model.training_loss([x])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    with pytest.raises(ValueError, match="grid >= 2"):
        DeepPermNet(backbone="resnet_tiny_cifar", grid=1)
    with pytest.raises(ValueError, match="loss must be"):
        DeepPermNet(backbone="resnet_tiny_cifar", loss="hinge")
