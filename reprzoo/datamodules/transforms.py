"""Multi-view augmentations (torchvision v2, on PIL images or uint8 tensors) with the papers' defaults."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torchvision.transforms import v2

from reprzoo.datamodules.action_sequence import ActionSequenceTransform
from reprzoo.datamodules.rotation_pairs import RotationPairsTransform

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
    view_kwargs = dict(locals())  # recorded on the result: BatchMultiView rebuilds this view on device
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
    view = v2.Compose(ops)
    view.view_kwargs = view_kwargs
    return view


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
            [augmentation_view(size, blur_prob=b, solarize_prob=s, **view_kwargs) for b, s in zip(blur_probs, solarize_probs)]
        )


class MultiCropTransform(MultiViewTransform):
    """DINO's multi-crop ("Emerging Properties in Self-Supervised Vision Transformers", arXiv:2104.14294, Sec. 3.1
    and Appendix; from SwAV's multi-crop, arXiv:2006.09882): ``num_global`` crops at ``size`` of scale
    ``crop_scale`` (0.4, 1) and ``num_local`` crops at ``local_size`` of scale ``local_crop_scale`` (0.05, 0.4),
    all with flip, colour jitter (0.4, 0.4, 0.2, 0.1) p=0.8 and grayscale p=0.2. The global crops follow BYOL's
    asymmetry: blur p=1.0 then 0.1 and solarisation p=0 then 0.2 (``blur_probs``, ``solarize_probs``; crops past
    their length reuse the last value); local crops are blurred with p=0.5.

    Returns the list of views, global crops first; the default collate turns it into a list of view batches of
    two sizes. ``local_size`` defaults to DINO's 96/224 of ``size``.
    """

    def __init__(
        self,
        size: int = 224,
        local_size: int | None = None,
        num_global: int = 2,
        num_local: int = 8,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        local_crop_scale: tuple[float, float] = (0.05, 0.4),
        blur_probs: Sequence[float] = (1.0, 0.1),
        solarize_probs: Sequence[float] = (0.0, 0.2),
        local_blur_prob: float = 0.5,
        **view_kwargs,
    ):
        if num_global < 1 or num_local < 0:
            raise ValueError(f"multi-crop needs num_global >= 1 and num_local >= 0, got {num_global} and {num_local}")
        if not blur_probs or not solarize_probs:
            raise ValueError("blur_probs and solarize_probs need at least one value")
        local_size = local_size or max(1, round(size * 96 / 224))
        view_kwargs.setdefault("jitter", (0.4, 0.4, 0.2, 0.1))
        for single in ("blur_prob", "solarize_prob"):
            if single in view_kwargs:
                raise ValueError(f"multi-crop sets {single} per crop: use {single}s (global crops) and local_blur_prob")
        last_blur, last_solarize = len(blur_probs) - 1, len(solarize_probs) - 1
        global_views = [
            augmentation_view(
                size,
                crop_scale,
                blur_prob=blur_probs[min(i, last_blur)],
                solarize_prob=solarize_probs[min(i, last_solarize)],
                **view_kwargs,
            )
            for i in range(num_global)
        ]
        local_views = [
            augmentation_view(local_size, local_crop_scale, blur_prob=local_blur_prob, **view_kwargs) for _ in range(num_local)
        ]
        super().__init__(global_views + local_views)
        self.num_global, self.num_local, self.size, self.local_size = num_global, num_local, size, local_size


class SimCLRTransform(MultiViewTransform):
    """Two views with SimCLR's augmentation (arXiv:2002.05709, Appendix A): random resized crop of scale
    (0.08, 1) with horizontal flip, colour distortion of strength s (jitter (0.8s, 0.8s, 0.8s, 0.2s) with p=0.8,
    grayscale p=0.2) and Gaussian blur p=0.5. ImageNet uses s=1; the CIFAR-10 runs (Appendix B.9) use s=0.5 and
    leave out the blur (``blur_prob=0``)."""

    def __init__(self, size: int = 224, num_views: int = 2, jitter_strength: float = 1.0, **view_kwargs):
        s = jitter_strength
        view_kwargs.setdefault("jitter", (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s))
        view_kwargs.setdefault("crop_scale", (0.08, 1.0))
        super().__init__([augmentation_view(size, **view_kwargs) for _ in range(num_views)])


class Cutout:
    """FixMatch's Cutout (arXiv:2001.07685, Appendix; from DeVries & Taylor 2017): a square of side ``fraction``
    of the image's shorter side, centred uniformly at random (clipped at the borders), filled with ``fill``
    (grey 127, as the authors' ``CutoutAbs``). On uint8 ``(C, H, W)`` tensors; draws from torch's random state."""

    def __init__(self, fraction: float = 0.5, fill: int = 127):
        if not 0 <= fraction <= 1:
            raise ValueError(f"cutout fraction must be in [0, 1], got {fraction}")
        self.fraction, self.fill = fraction, fill

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        side = int(self.fraction * min(h, w))
        if side == 0:
            return image
        cy, cx = (torch.rand(2) * torch.tensor([h, w])).tolist()
        y0, x0 = int(max(0, cy - side / 2)), int(max(0, cx - side / 2))
        image = image.clone()
        image[..., y0 : min(h, y0 + side), x0 : min(w, x0 + side)] = self.fill
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fraction={self.fraction}, fill={self.fill})"


class FixMatchTransform(MultiViewTransform):
    """FixMatch's weak and strong views ("FixMatch: Simplifying Semi-Supervised Learning with Consistency and
    Confidence", Sohn et al., NeurIPS 2020, arXiv:2001.07685, Sec. 2.3): ``[weak, strong]``.

    Weak: horizontal flip (p=0.5) and a random translation of up to 12.5% of the side (reflect-padded random crop,
    as the authors' CIFAR code). Strong: its own flip and translation, then RandAugment (``num_ops`` 2,
    torchvision's ``RandAugment`` at a fixed ``magnitude`` of 31 bins) and Cutout of half the side (grey). Both are
    then normalised. Device augmentation (``augment_on='device'``) does not implement it.

    ``crop_scale`` (default ``None``: the translation above) replaces the translation by a random resized crop of
    that scale in both views (the Digits datamodule passes its default crop scale to every augmentation; a recipe
    sets ``crop_scale: null`` for FixMatch's translation). Ours: one fixed RandAugment magnitude instead of the
    paper's magnitude drawn per operation.
    """

    def __init__(
        self,
        size: int = 32,
        hflip_prob: float = 0.5,
        translate: float = 0.125,
        crop_scale: tuple[float, float] | None = None,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        cutout: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        if crop_scale is not None:
            geometric: list[Callable] = [v2.RandomResizedCrop(size, scale=crop_scale, antialias=True)]
        else:
            geometric = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
            if translate > 0:
                geometric.append(v2.RandomCrop(size, padding=int(round(translate * size)), padding_mode="reflect"))
        if hflip_prob > 0:
            geometric.append(v2.RandomHorizontalFlip(hflip_prob))
        normalise = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        strong: list[Callable] = [v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment_magnitude)]
        if cutout > 0:
            strong.append(Cutout(cutout))
        weak_view = v2.Compose([v2.ToImage(), *geometric, *normalise])
        strong_view = v2.Compose([v2.ToImage(), *geometric, *strong, *normalise])
        super().__init__([weak_view, strong_view])


AUGMENTATIONS: dict[str, type[MultiViewTransform]] = {"simsiam": SimSiamTransform, "byol": BYOLTransform}
AUGMENTATIONS["action_sequence"] = ActionSequenceTransform  # views plus their transformation parameters
AUGMENTATIONS["simclr"] = SimCLRTransform
AUGMENTATIONS["multicrop"] = MultiCropTransform  # global and local crops of two sizes (DINO, OBoW)
AUGMENTATIONS["rotation_pairs"] = RotationPairsTransform  # two views and their relative rotation (SIE)
AUGMENTATIONS["fixmatch"] = FixMatchTransform  # [weak, strong] views of semi-supervised consistency


def build_augmentation(name: str, size: int, mean, std, **kwargs) -> MultiViewTransform:
    """A named multi-view augmentation for images of side ``size``."""
    from reprzoo.errors import UnknownNameError

    if name not in AUGMENTATIONS:
        raise UnknownNameError("augmentation", name, AUGMENTATIONS)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}  # YAML lists -> tuples
    return AUGMENTATIONS[name](size=size, mean=mean, std=std, **kwargs)
