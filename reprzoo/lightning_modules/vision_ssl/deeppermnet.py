"""DeepPermNet: "DeepPermNet: Visual Permutation Learning" (Santa Cruz, Fernando, Cherian, Gould; CVPR 2017,
arXiv:1704.02729)."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.permutation import PermutationLossKind, permutation_loss, permutation_matrix
from reprzoo.losses.sinkhorn import sinkhorn


def grid_tiles(images: torch.Tensor, grid: int, tile_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut ``(batch, C, H, W)`` images into ``grid x grid`` cells and take a ``tile_size`` square at a random offset
    inside each cell (the gap keeps the task from being solved by matching edges). Returns
    ``(batch, grid * grid, C, tile_size, tile_size)``, cells in raster order."""
    b, _, h, w = images.shape
    cell = min(h, w) // grid
    if not 0 < tile_size <= cell:
        raise ValueError(f"tile_size must be in (0, {cell}] for {h}x{w} images on a {grid}x{grid} grid, got {tile_size}")
    n = grid * grid
    offsets = torch.randint(0, cell - tile_size + 1, (2, b, n), generator=generator).to(images.device)
    cells = torch.arange(n, device=images.device)
    top = (cells // grid) * cell + offsets[0]  # (b, n)
    left = (cells % grid) * cell + offsets[1]
    span = torch.arange(tile_size, device=images.device)
    rows = (top[..., None] + span)[..., :, None]  # (b, n, t, 1)
    cols = (left[..., None] + span)[..., None, :]  # (b, n, 1, t)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 1, 4, 2, 3)  # (b, n, C, t, t)


def shuffle_tiles(tiles: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle each sample's tiles by its own random permutation: ``shuffled[b, i] = tiles[b, perm[b, i]]``."""
    b, n = tiles.shape[:2]
    perm = torch.rand(b, n, generator=generator).argsort(dim=1).to(tiles.device)
    return tiles[torch.arange(b, device=tiles.device)[:, None], perm], perm


class PermutationHead(nn.Module):
    """DeepPermNet's head on the shared tile encoder: per tile "fc6" (512, ReLU, weights shared across tiles), the
    tiles' fc6 concatenated, dropout 0.5, "fc7" (4096, ReLU), dropout 0.5, "fc8" with n^2 outputs reshaped to the
    n x n score matrix (the authors' Caffe model for self-supervised learning)."""

    def __init__(self, in_dim: int, num_tiles: int, tile_dim: int = 512, hidden_dim: int = 4096, dropout: float = 0.5):
        super().__init__()
        self.num_tiles = num_tiles
        self.tile_fc = nn.Sequential(nn.Linear(in_dim, tile_dim), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(num_tiles * tile_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_tiles * num_tiles),
        )

    def forward(self, tile_features: torch.Tensor) -> torch.Tensor:
        b, n = tile_features.shape[:2]
        scores = self.fuse(self.tile_fc(tile_features).reshape(b, -1))
        return scores.view(b, n, n)


@register_method(title="DeepPermNet: Visual Permutation Learning", wing="vision-ssl", arxiv="1704.02729")
class DeepPermNet(EmbeddingModule):
    """Visual permutation learning as a pretext task: an image is cut into a grid of tiles, the tiles are shuffled
    by a random permutation P, a shared CNN (the backbone) encodes each tile, an MLP predicts an n x n score matrix,
    unrolled Sinkhorn normalisation (row, then column) turns its exponential into a doubly stochastic Q, and the
    loss compares Q with P. The representation is the backbone applied to whole images.

    Defaults follow the authors' Caffe release for self-supervised learning: 3x3 grid, 64-px tiles cropped at random
    inside 75-px cells (``tile_fraction`` 64/75), softmax then one Sinkhorn iteration (a softmax over the n^2 scores
    followed by a row normalisation is the row normalisation of exp(scores)), the multi-label multinomial logistic
    loss, SGD lr 0.001 with momentum 0.9 and weight decay 5e-4 at batch 256. Only the first view of a batch is used
    (recipes ask the datamodule for one).

    Args:
        grid: tiles per side (n = grid^2 tiles).
        tile_fraction: side of a tile as a fraction of its grid cell.
        tile_dim: width of the shared per-tile layer.
        hidden_dim: width of the layer on the concatenated tiles.
        dropout: dropout before and after that layer.
        sinkhorn_iterations: unrolled row/column normalisations.
        loss: ``cross_entropy`` (the authors') or ``l2``.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        grid: int = 3,
        tile_fraction: float = 64 / 75,
        tile_dim: int = 512,
        hidden_dim: int = 4096,
        dropout: float = 0.5,
        sinkhorn_iterations: int = 1,
        loss: PermutationLossKind = "cross_entropy",
        lr: float = 0.001,
        lr_reference_batch: int | None = 256,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        if grid < 2 or not 0 < tile_fraction <= 1 or sinkhorn_iterations < 1:
            raise ValueError(
                f"need grid >= 2, 0 < tile_fraction <= 1, sinkhorn_iterations >= 1; got {grid}, {tile_fraction}, {sinkhorn_iterations}"
            )
        if loss not in ("cross_entropy", "l2"):
            raise ValueError(f"loss must be 'cross_entropy' or 'l2', got {loss!r}")
        super().__init__(lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay, **kwargs)
        self.permutation_head = PermutationHead(self.feature_dim, grid * grid, tile_dim, hidden_dim, dropout)

    def predict_permutation(self, shuffled_tiles: torch.Tensor) -> torch.Tensor:
        """Doubly stochastic ``(batch, n, n)`` estimate of the permutation matrix of ``(batch, n, C, t, t)`` tiles."""
        b, n = shuffled_tiles.shape[:2]
        features = self.backbone(self._format(shuffled_tiles.flatten(0, 1))).view(b, n, -1)
        scores = self.permutation_head(features)
        return sinkhorn(scores.float(), epsilon=1.0, iterations=self.hparams.sinkhorn_iterations)

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        images = views[0]
        tile_size = max(1, int(hp.tile_fraction * (min(images.shape[-2:]) // hp.grid)))
        shuffled, perm = shuffle_tiles(grid_tiles(images, hp.grid, tile_size))
        predicted = self.predict_permutation(shuffled)
        loss = permutation_loss(predicted, permutation_matrix(perm), hp.loss)
        if self._trainer is not None:
            solved = (predicted.argmax(dim=-1) == perm).all(dim=-1).float().mean()
            self.log("train/permutation_solved", solved)  # rows' argmax recover the whole permutation
        with torch.no_grad():  # the probe and collapse monitor look at whole images, like embed()
            features = self.backbone(images)
        return TrainingOutput(loss, features=features, embeddings=None)
