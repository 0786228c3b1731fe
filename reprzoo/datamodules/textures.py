"""Texture tiles with synthetic defects, for anomaly detection: offline, from the photographs shipped in
scikit-image's wheel.

The textures are ``skimage.data.brick``, ``grass`` and ``gravel``: 512x512 greyscale photographs bundled with
scikit-image (they load without pooch or a network). Their docstrings say each was downloaded from CC0Textures
(brick: "Bricks25", gravel: "Gravel04") or DeviantArt (grass: "Grass-01" by linolafett) "and licensed under the
Creative Commons CC0 License"; scikit-image then cropped, rescaled or transformed them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reprzoo.datamodules.images import ImageDataModule, TensorImageDataset
from reprzoo.errors import ReprzooError

TEXTURES = ("brick", "grass", "gravel")
DEFECTS = ("patch", "scratch", "blob")
TRAIN_ROWS = 384  # rows [0, 384) of each photograph give training tiles, rows [384, 512) test tiles


def load_texture(name: str) -> np.ndarray:
    """A scikit-image texture as a ``(512, 512)`` uint8 array (bundled with scikit-image; nothing is downloaded)."""
    if name not in TEXTURES:
        from reprzoo.errors import UnknownNameError

        raise UnknownNameError("texture", name, TEXTURES)
    try:
        import skimage.data
    except ImportError:
        raise ReprzooError("the Textures dataset needs scikit-image: pip install scikit-image") from None
    return np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)


def tiles(image: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Every ``size x size`` tile of ``image`` at ``stride``, row by row: ``(N, size, size)``."""
    rows, cols = range(0, image.shape[0] - size + 1, stride), range(0, image.shape[1] - size + 1, stride)
    return np.stack([image[r : r + size, c : c + size] for r in rows for c in cols])


def add_defect(tile: np.ndarray, kind: str, rng: np.random.Generator, donors: list[np.ndarray]) -> np.ndarray:
    """A copy of the uint8 ``tile`` with one synthetic defect.

    ``patch``: a square of another texture (side 1/4 to 2/5 of the tile) pasted at a random place; ``scratch``: a
    straight dark or bright line 2-3 px wide across most of the tile; ``blob``: a soft-edged elliptical stain that
    darkens or brightens the tile by 60-100 grey levels at its centre.
    """
    out = tile.astype(np.float64)
    size = tile.shape[0]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "patch":
        side = int(rng.integers(size // 4, int(size / 2.5) + 1))
        donor = donors[int(rng.integers(len(donors)))]
        dy, dx = rng.integers(0, donor.shape[0] - side, size=2)
        y, x = rng.integers(0, size - side, size=2)
        out[y : y + side, x : x + side] = donor[dy : dy + side, dx : dx + side]
    elif kind == "scratch":
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(size * 0.3, size * 0.7, size=2)
        half_length, width = rng.uniform(0.35, 0.6) * size, rng.uniform(2.0, 3.0)
        along = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        across = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
        mask = (np.abs(across) <= width / 2) & (np.abs(along) <= half_length)
        out[mask] = 0.8 * (255.0 if rng.random() < 0.5 else 0.0) + 0.2 * out[mask]
    elif kind == "blob":
        cy, cx = rng.uniform(size * 0.2, size * 0.8, size=2)
        ry, rx = rng.uniform(size / 10, size / 4.5, size=2)
        weight = np.exp(-0.5 * (((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2) ** 2)  # flat top, soft edge
        out += (1 if rng.random() < 0.5 else -1) * rng.uniform(60, 100) * weight
    else:
        from reprzoo.errors import UnknownNameError

        raise UnknownNameError("defect", kind, DEFECTS)
    return np.clip(out, 0, 255).round().astype(np.uint8)


class Textures(ImageDataModule):
    """Clean tiles of one scikit-image texture for training; clean and defective tiles of it for testing.

    Label 0 is a clean tile and labels 1, 2, 3 name the defect (:data:`DEFECTS`: a pasted patch of another
    texture, a scratch, a blob), so the one-class protocol with ``normal_class`` 0 measures clean against defective
    tiles, and against each kind of defect. Training tiles come from the photograph's top 384 rows (stride
    ``tile // 4``), test tiles from its bottom 128 rows (stride ``tile // 2``): the splits share no pixel. Each
    test tile appears once clean and once with each defect (seeded by ``seed``); tiles of ``tile`` pixels are
    resized to ``image_size`` and repeated over three channels.

    Args:
        texture: ``brick``, ``grass`` or ``gravel`` (patches are pasted from the other two).
        tile: side of a tile in the 512x512 photograph, in pixels.
        seed: seed of the defects.
    """

    num_classes = 1 + len(DEFECTS)
    class_names = ("clean", *DEFECTS)
    normal_class = 0  # what `reprzoo anomaly fit` takes as normal when no --normal-class is given
    mean, std = (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)
    default_image_size = 32

    def __init__(
        self,
        texture: str = "brick",
        tile: int = 64,
        seed: int = 0,
        augmentation_kwargs: dict[str, Any] | None = None,
        num_workers: int = 0,
        **kwargs,
    ):
        if texture not in TEXTURES:
            from reprzoo.errors import UnknownNameError

            raise UnknownNameError("texture", texture, TEXTURES)
        if not 8 <= tile <= 128:
            raise ValueError(f"tile must be between 8 and 128 pixels, got {tile}")
        super().__init__(augmentation_kwargs=augmentation_kwargs, num_workers=num_workers, **kwargs)
        self.texture, self.tile, self.defect_seed = texture, tile, seed

    def _as_images(self, gray: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(gray).float().unsqueeze(1)
        images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return images.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()

    def _splits(self):
        image = load_texture(self.texture)
        donors = [load_texture(name) for name in TEXTURES if name != self.texture]
        train = tiles(image[:TRAIN_ROWS], self.tile, max(self.tile // 4, 1))
        clean = tiles(image[TRAIN_ROWS:], self.tile, max(self.tile // 2, 1))
        rng = np.random.default_rng(self.defect_seed)
        test = [clean] + [np.stack([add_defect(t, kind, rng, donors) for t in clean]) for kind in DEFECTS]
        test_labels = torch.arange(len(test)).repeat_interleave(len(clean))
        return (
            TensorImageDataset(self._as_images(train), torch.zeros(len(train), dtype=torch.long)),
            TensorImageDataset(self._as_images(np.concatenate(test)), test_labels),
        )


__all__ = ["DEFECTS", "TEXTURES", "Textures", "add_defect", "load_texture", "tiles"]
