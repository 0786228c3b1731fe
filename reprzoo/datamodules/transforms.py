"""Multi-view augmentations (torchvision v2, on PIL images or uint8 tensors) with the papers' defaults."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
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
) -> AugmentationView:
    """One view of the augmentation family shared by SimCLR, MoCo v2, SimSiam and BYOL.

    Random resized crop, horizontal flip, colour jitter (brightness, contrast, saturation, hue), grayscale,
    Gaussian blur (kernel about 10% of the image side) and solarisation, then normalisation. The result
    (:class:`AugmentationView`) makes torchvision's random draws and calls Pillow and numpy kernels directly; its
    ``reference`` is the same view as a torchvision v2 pipeline, the definition it is tested against.
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
    return AugmentationView(v2.Compose(ops), view_kwargs)


def _float32(p: float) -> float:
    # torchvision compares its float32 draws with the probability as a float32 (``torch.rand(1) >= p``)
    return float(np.float32(p))


class AugmentationView:
    """An ``augmentation_view`` on PIL images or uint8 ``(3, H, W)`` tensors, fast on small images.

    Runs the operations of ``reference`` (the torchvision v2 pipeline of the view) with the same random draws from
    torch's global generator, in the same order, but calls torchvision's PIL kernels (Pillow's crop and resize,
    ``ImageEnhance`` brightness, contrast and saturation, grayscale) directly, rotates the hue in numpy as
    torchvision's tensor kernel does (continuous; PIL's HSV hue has 256 steps), blurs with a separable kernel
    (scipy) and normalises in numpy: at 32 px torchvision's per-call overhead on tiny tensors, not the pixels,
    dominated the cost. Each operation equals torchvision's kernel to within one uint8 level (the tests compare
    them); a uint8 tensor is converted to a PIL image first. Anything else (float tensors, other channel counts,
    PIL modes other than RGB) goes through ``reference`` itself.

    Attributes:
        reference: the view as a torchvision v2 ``Compose`` (its ``transforms`` are exposed as ``transforms``).
        view_kwargs: the arguments of ``augmentation_view`` that built it.
    """

    def __init__(self, reference: v2.Compose, view_kwargs: dict):
        self.reference, self.view_kwargs = reference, view_kwargs
        k = view_kwargs
        self.size = int(k["size"])
        self.crop_scale = tuple(float(s) for s in k["crop_scale"])
        self.log_ratio = [float(v) for v in torch.log(torch.tensor((3.0 / 4.0, 4.0 / 3.0)))]  # as RandomResizedCrop
        self.hflip_prob, self.jitter_prob = _float32(k["hflip_prob"]), _float32(k["jitter_prob"])
        self.gray_prob, self.blur_prob = _float32(k["gray_prob"]), _float32(k["blur_prob"])
        self.solarize_prob = _float32(k["solarize_prob"])
        jitter_ops = [c for c in reference.transforms if isinstance(c, v2.RandomApply)]
        jitter = next((t for c in jitter_ops for t in c.transforms if isinstance(t, v2.ColorJitter)), None)
        # the ranges torchvision derived from the strengths (None: that operation is off)
        self.jitter_ranges = (
            [jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue] if jitter is not None else [None] * 4
        )
        self.kernel_size = max(3, int(0.1 * self.size) // 2 * 2 + 1)
        self.blur_sigma = tuple(float(s) for s in k["blur_sigma"])
        std = np.asarray(k["std"], dtype=np.float64)
        self.scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(-1, 1, 1)
        self.shift = (-np.asarray(k["mean"], dtype=np.float64) / std).astype(np.float32).reshape(-1, 1, 1)

    @property
    def transforms(self) -> list:
        return self.reference.transforms

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value}" for key, value in self.view_kwargs.items())
        return f"{type(self).__name__}({options})"

    def __call__(self, image) -> torch.Tensor:
        from PIL import Image

        if isinstance(image, torch.Tensor):
            if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3 or len(self.shift) != 3:
                return self.reference(image)
            image = Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB")
        elif not isinstance(image, Image.Image) or image.mode != "RGB" or len(self.shift) != 3:
            return self.reference(image)
        return self.normalise(self._augment(image))

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a random resized crop, drawn exactly as ``RandomResizedCrop`` draws it."""
        area = height * width
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(*self.crop_scale).item()
            aspect_ratio = torch.exp(torch.empty(1).uniform_(*self.log_ratio)).item()
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = int(torch.randint(0, height - h + 1, size=(1,)).item())
                j = int(torch.randint(0, width - w + 1, size=(1,)).item())
                return i, j, h, w
        in_ratio = width / height  # torchvision's fallback: a centred crop
        if in_ratio < 3.0 / 4.0:
            w, h = width, int(round(width / (3.0 / 4.0)))
        elif in_ratio > 4.0 / 3.0:
            w, h = int(round(height * (4.0 / 3.0))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def crop_and_flip(self, image):
        """The random resized crop (cropped, then resized bilinearly by Pillow) and the flip of a PIL image."""
        return self.flip(self.crop(image))

    def steps(self) -> list[tuple[str, Callable]]:
        """The view's operations in order, each a function of a PIL image drawing its own random parameters (the
        view up to normalisation is their composition; ``benchmarks/bench_pipeline.py --profile`` times each)."""
        return [("crop", self.crop), ("flip", self.flip), ("jitter", self.jitter), ("grayscale", self.grayscale),
                ("blur", self.blur), ("solarize", self.solarize)]  # fmt: skip

    def crop(self, image):
        from PIL import Image

        top, left, h, w = self.crop_box(*image.size)
        return image.crop((left, top, left + w, top + h)).resize((self.size, self.size), Image.BILINEAR)

    def flip(self, image):
        from PIL import Image

        if self.hflip_prob > 0 and torch.rand(1).item() < self.hflip_prob:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def jitter(self, image):
        from PIL import Image, ImageEnhance

        if not (self.jitter_prob > 0 and torch.rand(1).item() < self.jitter_prob):
            return image
        order = torch.randperm(4).tolist()
        factors = [None if r is None else float(torch.empty(1).uniform_(r[0], r[1])) for r in self.jitter_ranges]
        for i in order:
            factor = factors[i]
            if factor is None:
                continue
            if i == 0:
                image = ImageEnhance.Brightness(image).enhance(factor)
            elif i == 1:
                image = ImageEnhance.Contrast(image).enhance(factor)
            elif i == 2:
                image = ImageEnhance.Color(image).enhance(factor)
            else:  # continuous, as torchvision's tensor kernel (PIL's HSV hue has 256 steps)
                image = Image.fromarray(adjust_hue_uint8(np.asarray(image), factor), "RGB")
        return image

    def grayscale(self, image):
        if self.gray_prob > 0 and torch.rand(1).item() < self.gray_prob:
            image = image.convert("L").convert("RGB")
        return image

    def blur(self, image):
        from PIL import Image

        if self.blur_prob > 0 and torch.rand(1).item() < self.blur_prob:
            sigma = torch.empty(1).uniform_(*self.blur_sigma).item()
            image = Image.fromarray(gaussian_blur_uint8(np.asarray(image), self.kernel_size, sigma), "RGB")
        return image

    def solarize(self, image):
        from PIL import ImageOps

        if self.solarize_prob > 0 and torch.rand(1).item() < self.solarize_prob:
            image = ImageOps.solarize(image, 128)
        return image

    def _augment(self, image):
        """The view up to normalisation, as a PIL image (the random draws of ``reference``, in its order)."""
        for _, step in self.steps():
            image = step(image)
        return image

    def normalise(self, image) -> torch.Tensor:
        """``ToDtype`` and ``Normalize`` of a PIL image: a float32 ``(3, H, W)`` tensor."""
        out = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1)).astype(np.float32)  # planes: fastest here
        out *= self.scale  # (x / 255 - mean) / std
        out += self.shift
        return torch.from_numpy(out)


def adjust_hue_uint8(pixels: np.ndarray, shift: float) -> np.ndarray:
    """torchvision's ``adjust_hue`` of a uint8 ``(H, W, 3)`` array: the HSV hue rotated by ``shift`` turns in float32
    (the formula of :func:`reprzoo.datamodules.batch_augment.adjust_hue`, in numpy: faster on one image), converted
    back as ``to_dtype`` converts (``x * (256 - 1e-3)``, truncated)."""
    r, g, b = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32) * np.float32(1 / 255)  # planes
    value = np.maximum(np.maximum(r, g), b)
    chroma = value - np.minimum(np.minimum(r, g), b)
    # hue in sixths of a turn, from the channel holding the maximum (red wins ties, then green: as torchvision)
    hue = np.where(value == r, g - b, np.where(value == g, b - r + 2 * chroma, r - g + 4 * chroma))
    hue /= np.where(chroma > 0, chroma, np.float32(1))
    hue += np.float32(6 * shift)
    hue -= np.floor(hue / 6) * 6  # in [0, 6)
    out = np.empty((pixels.shape[0], pixels.shape[1], 3), dtype=np.uint8)
    for i, n in enumerate((5.0, 3.0, 1.0)):  # channel = v - chroma * clamp(min(k, 4 - k), 0, 1), k = (hue + n) mod 6
        k = hue + np.float32(n)
        k = np.where(k >= 6, k - 6, k)
        k = np.clip(np.minimum(k, 4 - k), 0, 1)
        k *= chroma
        channel = np.subtract(value, k, out=k)
        channel *= np.float32(256 - 1e-3)
        out[..., i] = channel  # truncated, as to_dtype converts
    return out


def gaussian_blur_kernel(kernel_size: int, sigma: float) -> np.ndarray:
    """torchvision's 1-D Gaussian kernel of ``kernel_size`` taps (float32, sums to 1)."""
    half = (kernel_size - 1) / 2
    x = np.linspace(-half, half, kernel_size, dtype=np.float64) / sigma
    kernel = np.exp(-0.5 * x * x)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_blur_uint8(pixels: np.ndarray, kernel_size: int, sigma: float) -> np.ndarray:
    """torchvision's ``gaussian_blur`` of a uint8 ``(H, W, C)`` array (reflect padding, rounded back to uint8) as two
    1-D passes; taps beyond 4 sigma (weights under 3e-4 of the centre's) are left out on large kernels."""
    from scipy import ndimage

    kernel_size = min(kernel_size, 2 * max(1, math.ceil(4 * sigma)) + 1)
    kernel = gaussian_blur_kernel(kernel_size, sigma)
    out = ndimage.correlate1d(pixels.astype(np.float32), kernel, axis=0, mode="mirror")
    out = ndimage.correlate1d(out, kernel, axis=1, mode="mirror", output=out)
    return np.rint(out, out=out).clip(0, 255, out=out).astype(np.uint8)


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
        draft_for_views(image, self.transforms)
        return [t(image) for t in self.transforms]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.transforms)} views)"


def draft_for_views(image, views: Sequence[Callable]) -> None:
    """Let a JPEG that is not decoded yet (``open_image``) decode at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling,
    Pillow's ``draft``) where every crop any of ``views`` can take still has at least the view's output side in
    pixels: the smallest crop of a view of scale ``(s, _)`` has a side of at least ``sqrt(s * area * 3/4)``
    (aspect ratios in (3/4, 4/3)). Nothing happens for decoded images, other formats or views that are not
    ``augmentation_view`` views."""
    if getattr(image, "format", None) != "JPEG" or not hasattr(image, "draft") or getattr(image, "tile", None) == []:
        return
    limits = []
    for view in views:
        kwargs = getattr(view, "view_kwargs", None)
        if not kwargs:
            return
        limits.append(math.sqrt(kwargs["crop_scale"][0] * 0.75) / kwargs["size"])
    width, height = image.size
    reduction = min(limits) * math.sqrt(width * height)  # how many times smaller the smallest crop may get
    if reduction >= 2:
        image.draft("RGB", (math.ceil(width / reduction), math.ceil(height / reduction)))


def open_image(path: str) -> object:
    """An ImageFolder sample: an RGB PIL image, as torchvision's loader gives, but an RGB JPEG is returned opened
    and not decoded yet (its bytes in memory, no open file), so that a training transform can decode it at a
    reduced scale (:func:`draft_for_views`); any pixel access decodes it in full."""
    import io

    from PIL import Image

    with open(path, "rb") as f:
        image = Image.open(io.BytesIO(f.read()))
    if image.format == "JPEG" and image.mode == "RGB":
        return image
    return image.convert("RGB")


class CroppedViews:
    """The geometric part of each view of a multi-view augmentation on the CPU, for ``augment_on='device'`` on images
    of any size: each view's random resized crop and flip as a uint8 ``(3, size, size)`` tensor, drawn exactly as the
    view draws them; ``BatchMultiView(..., cropped=True)`` does the rest of each view on the training device.

    Args:
        views: ``augmentation_view`` views (``AugmentationView``).
    """

    def __init__(self, views: Sequence[AugmentationView]):
        if not views or not all(isinstance(v, AugmentationView) for v in views):
            raise ValueError("CroppedViews needs augmentation_view(...) views")
        self.views = list(views)

    def __call__(self, image) -> list[torch.Tensor]:
        from PIL import Image

        if isinstance(image, torch.Tensor):
            image = Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB")
        draft_for_views(image, self.views)
        image = image.convert("RGB") if image.mode != "RGB" else image
        out = []
        for view in self.views:
            crop = view.crop_and_flip(image)
            out.append(torch.from_numpy(np.ascontiguousarray(np.asarray(crop).transpose(2, 0, 1))))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.views)} views)"


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
