"""Multi-view augmentations (torchvision v2, on PIL images or uint8 tensors) with the papers' defaults."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def augmentation_view(
    size: int,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    hflip_prob: float = 0.5,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    jitter_prob: float = 0.8,
    gray_prob: float = 0.2,
    blur_prob: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    solarize_prob: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """One view of the augmentation family shared by SimCLR, MoCo v2, SimSiam and BYOL.

    Random resized crop, horizontal flip, colour jitter (brightness, contrast, saturation, hue), grayscale,
    Gaussian blur (kernel about 10% of the image side) and solarisation, then normalisation.
    """
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
    ops: list[Callable] = [v2.ToImage(), v2.RandomResizedCrop(size, scale=crop_scale, antialias=True)]
    if hflip_prob > 0:
        ops.append(v2.RandomHorizontalFlip(hflip_prob))
    if jitter_prob > 0:
        ops.append(v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_prob))
    if gray_prob > 0:
        ops.append(v2.RandomGrayscale(gray_prob))
    if blur_prob > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=blur_sigma)], p=blur_prob))
    if solarize_prob > 0:
        ops.append(v2.RandomSolarize(threshold=128, p=solarize_prob))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def eval_transform(size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Deterministic preprocessing for evaluation and for ``reprzoo.load(...).transform``: resize, centre crop."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


class MultiViewTransform:
    """Applies each of ``transforms`` to the same input and returns the list of views."""

    def __init__(self, transforms: Sequence[Callable]):
        if not transforms:
            raise ValueError("MultiViewTransform needs at least one transform")
        self.transforms = list(transforms)

    def __call__(self, image) -> list[torch.Tensor]:
        return [t(image) for t in self.transforms]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.transforms)} views)"


class SimSiamTransform(MultiViewTransform):
    """Two views with SimSiam's augmentation (arXiv:2011.10566, Sec. 4, following MoCo v2): crop scale (0.2, 1),
    colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, grayscale p=0.2, blur p=0.5, flip. CIFAR recipes set
    ``blur_prob=0`` (32x32 images are too small to blur)."""

    def __init__(self, size: int = 224, num_views: int = 2, **view_kwargs):
        super().__init__([augmentation_view(size, **view_kwargs) for _ in range(num_views)])


class BYOLTransform(MultiViewTransform):
    """BYOL's asymmetric pair (arXiv:2006.07733, Table 6): jitter (0.4, 0.4, 0.2, 0.1) with p=0.8, grayscale
    p=0.2; blur p=1.0 / 0.1 and solarisation p=0 / 0.2 for the first / second view."""

    def __init__(
        self,
        size: int = 224,
        blur_probs: tuple[float, float] = (1.0, 0.1),
        solarize_probs: tuple[float, float] = (0.0, 0.2),
        **view_kwargs,
    ):
        view_kwargs.setdefault("jitter", (0.4, 0.4, 0.2, 0.1))
        view_kwargs.setdefault("crop_scale", (0.08, 1.0))
        super().__init__(
            [
                augmentation_view(size, blur_prob=b, solarize_prob=s, **view_kwargs)
                for b, s in zip(blur_probs, solarize_probs)
            ]
        )


AUGMENTATIONS: dict[str, type[MultiViewTransform]] = {"simsiam": SimSiamTransform, "byol": BYOLTransform}


def build_augmentation(name: str, size: int, mean, std, **kwargs) -> MultiViewTransform:
    """A named multi-view augmentation for images of side ``size``."""
    from reprzoo.errors import UnknownNameError

    if name not in AUGMENTATIONS:
        raise UnknownNameError("augmentation", name, AUGMENTATIONS)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}  # YAML lists -> tuples
    return AUGMENTATIONS[name](size=size, mean=mean, std=std, **kwargs)
