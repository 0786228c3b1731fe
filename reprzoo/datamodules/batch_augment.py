"""The ``augmentation_view`` family applied to a whole batch of image tensors at once, on any device.

``BatchAugmentation`` takes the same keyword arguments as :func:`reprzoo.datamodules.transforms.augmentation_view`
and draws the same per-sample random parameters, but from one ``torch.Generator`` for the whole batch, and
applies each operation to the batch in one go: random resized crop and horizontal flip as one ``grid_sample``,
colour jitter with per-sample factors, grayscale, Gaussian blur as one grouped separable convolution,
solarisation, normalisation. ``BatchMultiView`` builds the list of views of a named multi-view augmentation
(``simsiam``, ``byol``, ...) from the per-view settings that ``augmentation_view`` records. Given one batch of crops
per view (``CroppedViews``: the loader of an ``ImageFolder`` decodes images of any size and takes each view's random
resized crop and flip as uint8), it does the rest of each view (``cropped=True``).

Where it differs from the per-sample torchvision v2 pipeline (the tests compare the two statistically):

* Colour jitter applies its four operations in one random order per batch, not one order per sample
  (torchvision draws a permutation per image); the factors and the jitter probability are per sample.
* Everything after the crop runs in float32 in [0, 1] instead of rounding to uint8 after each operation, so
  values differ by quantisation (at most a few 1/255); solarisation inverts values >= 127.5/255, which is
  torchvision's uint8 threshold 128 after rounding.
* The crop is resampled bilinearly without antialiasing. That equals torchvision's antialiased resize whenever
  the crop is no larger than the output (every crop of an image stored at the output size, as for digits,
  CIFAR and STL-10); crops larger than the output are slightly aliased. ImageFolder's crops are taken on the CPU
  by Pillow, as on the per-sample path (antialiased).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from reprzoo.datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD, MultiViewTransform, build_augmentation
from reprzoo.errors import ReprzooError

CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision RandomResizedCrop's default, as augmentation_view uses it
CROP_ATTEMPTS = 10  # tries before torchvision's centre-crop fallback
SOLARIZE_THRESHOLD = 127.5 / 255  # uint8 threshold 128 of RandomSolarize(128), on [0, 1] floats before rounding
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
CPU_CHUNK_ELEMENTS = 2**19  # values per chunk on the CPU: 2 MiB of float32, a batch of 224 px views in cache


def blur_kernel_size(size: int) -> int:
    """The Gaussian kernel side ``augmentation_view`` uses for crops of side ``size`` (about 10%, odd, >= 3)."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]; floating images (assumed in [0, 1]) are returned as they are."""
    if images.ndim != 4:
        raise ValueError(f"images must be a (batch, channels, height, width) tensor, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    return images


@dataclass
class AugmentationParams:
    """Per-sample parameters of one batch (each ``(batch,)`` unless noted), as drawn by ``BatchAugmentation``.

    Attributes:
        boxes: ``(batch, 4)`` crop boxes ``(top, left, height, width)`` in integer pixels of the input.
        flip: horizontal flip.
        jitter: whether colour jitter applies; where it does not, the factors below are the identity.
        brightness, contrast, saturation: jitter factors (1 = unchanged).
        hue: hue shift in turns (0 = unchanged).
        jitter_order: the order of brightness (0), contrast (1), saturation (2), hue (3) for the whole batch.
        gray: convert to grayscale.
        blur: blur, with standard deviation ``sigma`` in pixels.
        solarize: invert values above the threshold.
    """

    boxes: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    jitter_order: list[int]
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor

    def __getitem__(self, index: slice) -> AugmentationParams:
        """The parameters of a slice of the batch."""
        return AugmentationParams(**{k: v if k == "jitter_order" else v[index] for k, v in vars(self).items()})

    def to(self, device) -> AugmentationParams:
        return AugmentationParams(**{k: v if k == "jitter_order" else v.to(device) for k, v in vars(self).items()})


def _uniform(shape, low: float, high: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device) * (high - low) + low


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = CROP_RATIO,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """``(n, 4)`` boxes ``(top, left, height, width)`` drawn as torchvision's ``RandomResizedCrop`` draws one.

    Each sample tries ``CROP_ATTEMPTS`` (area fraction in ``scale``, log-uniform aspect in ``ratio``) pairs and
    keeps the first whose rounded box fits; a sample where none fits gets torchvision's fallback, the largest
    centred box with the aspect ratio clamped to ``ratio``.
    """
    area = height * width
    target = area * _uniform((n, CROP_ATTEMPTS), scale[0], scale[1], generator, device)
    aspect = torch.exp(_uniform((n, CROP_ATTEMPTS), math.log(ratio[0]), math.log(ratio[1]), generator, device))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first of equal maxima
    found = fits.any(dim=1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)

    in_ratio = width / height  # torchvision's fallback: a centred crop
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    offsets = torch.rand((n, 2), generator=generator, device=device)
    top = torch.minimum(torch.floor(offsets[:, 0] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(offsets[:, 1] * (width - w + 1)), width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).long()


def _sample_positions(start: torch.Tensor, extent: torch.Tensor, out: int, size: int) -> torch.Tensor:
    """``(batch, out)`` normalised grid positions resizing ``[start, start + extent)`` to ``out`` pixels."""
    centres = torch.arange(out, device=start.device, dtype=start.dtype) + 0.5
    # torchvision's bilinear resize of the crop alone: source pixel (u + 0.5) * extent / out - 0.5, clamped to
    # the crop, so edge samples never blend in pixels outside the box
    src = centres[None] * (extent / out)[:, None] - 0.5
    src = torch.minimum(src.clamp(min=0), (extent - 1)[:, None]) + start[:, None]
    return (2 * src + 1) / size - 1  # grid_sample's align_corners=False convention


def resized_crops(
    images: torch.Tensor, boxes: torch.Tensor, size: int | tuple[int, int], flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop ``boxes`` (``(top, left, height, width)`` per sample) out of float ``images``, resize each crop to
    ``size`` bilinearly and mirror the samples where ``flip``: one ``grid_sample`` for the batch.

    Equals torchvision's ``resized_crop`` (then ``hflip``) for crops no larger than ``size``; larger crops are
    resampled without antialiasing.
    """
    n, c, height, width = images.shape
    out_h, out_w = (size, size) if isinstance(size, int) else size
    top, left, h, w = boxes.to(device=images.device, dtype=images.dtype).unbind(dim=1)
    xs = _sample_positions(left, w, out_w, width)
    ys = _sample_positions(top, h, out_h, height)
    if flip is not None:  # the flip is a reversed column map of the same crop
        xs = torch.where(flip.to(images.device)[:, None], xs.flip(1), xs)
    grid = torch.stack([xs[:, None, :].expand(n, out_h, out_w), ys[:, :, None].expand(n, out_h, out_w)], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """``(batch, 1, H, W)`` luma of RGB ``images`` with torchvision's weights."""
    r, g, b = images.unbind(dim=1)
    return (r * GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(1)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each image by its factor (torchvision's brightness)."""
    return (images * _per_sample(factor)).clamp_(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean luma (torchvision's contrast)."""
    means = images.mean(dim=(2, 3))  # the mean luma is the luma of the channel means
    if images.shape[1] == 3:
        means = means @ torch.tensor(GRAY_WEIGHTS, device=images.device, dtype=images.dtype)
    return torch.lerp(_per_sample(means), images, _per_sample(factor)).clamp_(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its own luma (torchvision's saturation)."""
    if images.shape[1] == 1:
        return images
    return torch.lerp(grayscale(images), images, _per_sample(factor)).clamp_(0, 1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each image by ``shift`` turns (torchvision's hue, batched)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)  # saturation * value
    is_r, is_g = value == r, value == g
    # hue in sixths of a turn, from the channel holding the maximum (red wins ties, then green: as torchvision)
    hue = torch.where(is_r, g - b, torch.where(is_g, (b - r).add_(chroma, alpha=2), (r - g).add_(chroma, alpha=4)))
    hue = hue.div_(torch.where(chroma > 0, chroma, 1.0)).add_(6 * shift.view(-1, 1, 1))
    hue = hue.sub_(torch.floor(hue / 6).mul_(6))  # in [0, 6); floor is several times faster than remainder on the CPU
    # HSV -> RGB: channel n is v - s*v*clamp(min(k, 4 - k), 0, 1) with k = (hue + n) mod 6, n = 5, 3, 1
    out = torch.empty_like(images)
    for i, n in enumerate((5.0, 3.0, 1.0)):
        k = hue + n
        k = torch.where(k >= 6, k - 6, k)
        k = torch.minimum(k, 4 - k).clamp_(0, 1)
        torch.sub(value, k.mul_(chroma), out=out[:, i])
    return out


def solarize(images: torch.Tensor, threshold: float = SOLARIZE_THRESHOLD) -> torch.Tensor:
    """Invert the values at or above ``threshold`` (torchvision's solarize)."""
    return torch.where(images >= threshold, 1 - images, images)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own ``sigma`` (reflect padding, as torchvision): one grouped separable conv."""
    n, c, height, width = images.shape
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma.to(images)[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n * c, kernel_size)
    x = F.pad(images.reshape(1, n * c, height, width), (half, half, half, half), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=n * c)
    x = F.conv2d(x, kernel[:, None, :, None], groups=n * c)
    return x.reshape(n, c, height, width)


def _apply_to(images: torch.Tensor, chosen: torch.Tensor, op, *per_sample: torch.Tensor) -> torch.Tensor:
    """``op`` applied to the images where ``chosen`` (a boolean per image) only, in place: the others are left
    as they are."""
    idx = chosen.nonzero().squeeze(1)
    if len(idx) == 0:
        return images
    if len(idx) == len(images):
        return op(images, *per_sample)
    return images.index_copy_(0, idx, op(images.index_select(0, idx), *(v[idx] for v in per_sample)))


class BatchAugmentation:
    """One view of the ``augmentation_view`` family for a batch of images, with per-sample random parameters.

    Takes exactly the keyword arguments of :func:`reprzoo.datamodules.transforms.augmentation_view`, with the same
    meaning, so a recipe's ``augmentation_kwargs`` mean the same on the CPU and the device path.

    Args:
        size: side of the output crops (the input may be any fixed size; multi-crop views use several sizes).
        crop_scale: range of the crop's area as a fraction of the image's.
        hflip_prob: probability of a horizontal flip.
        jitter: brightness, contrast, saturation and hue strengths of the colour jitter.
        jitter_prob: probability that an image is colour-jittered.
        gray_prob: probability of conversion to grayscale.
        blur_prob: probability of a Gaussian blur, kernel about 10% of ``size``.
        blur_sigma: range of the blur's standard deviation in pixels.
        solarize_prob: probability of solarisation.
        mean: per-channel mean of the final normalisation.
        std: per-channel standard deviation of the final normalisation.
    """

    def __init__(
        self,
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
    ):
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        if not 0 < crop_scale[0] <= crop_scale[1]:
            raise ValueError(f"crop_scale must be (min, max) with 0 < min <= max, got {crop_scale}")
        for name, p in [("hflip_prob", hflip_prob), ("jitter_prob", jitter_prob), ("gray_prob", gray_prob),
                        ("blur_prob", blur_prob), ("solarize_prob", solarize_prob)]:  # fmt: skip
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ValueError(f"jitter must be 4 non-negative strengths with hue <= 0.5, got {jitter}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma must be (min, max) with 0 < min <= max, got {blur_sigma}")
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel, got {len(mean)} and {len(std)}")
        self.size, self.crop_scale, self.hflip_prob = size, tuple(crop_scale), hflip_prob
        self.jitter, self.jitter_prob, self.gray_prob = tuple(jitter), jitter_prob, gray_prob
        self.blur_prob, self.blur_sigma, self.solarize_prob = blur_prob, tuple(blur_sigma), solarize_prob
        self.mean, self.std = tuple(mean), tuple(std)
        self.kernel_size = blur_kernel_size(size)

    def sample_params(
        self, n: int, height: int, width: int, generator: torch.Generator | None = None, device=None
    ) -> AugmentationParams:
        """Draw the parameters of ``n`` images of ``height x width`` (on ``generator``'s device by default)."""
        device = generator.device if generator is not None else device
        boxes = sample_crop_boxes(n, height, width, self.crop_scale, CROP_RATIO, generator, device)
        flip = _bernoulli(n, self.hflip_prob, generator, device)
        jitter = _bernoulli(n, self.jitter_prob, generator, device)
        factors = []
        for strength in self.jitter[:3]:  # torchvision's range (max(0, 1 - s), 1 + s); identity where not jittered
            f = _uniform(n, max(0.0, 1.0 - strength), 1.0 + strength, generator, device)
            factors.append(torch.where(jitter, f, torch.ones_like(f)))
        hue = _uniform(n, -self.jitter[3], self.jitter[3], generator, device)
        hue = torch.where(jitter, hue, torch.zeros_like(hue))
        order = torch.randperm(4, generator=generator, device=device).tolist()
        gray = _bernoulli(n, self.gray_prob, generator, device)
        blur = _bernoulli(n, self.blur_prob, generator, device)
        sigma = _uniform(n, self.blur_sigma[0], self.blur_sigma[1], generator, device)
        solarize = _bernoulli(n, self.solarize_prob, generator, device)
        return AugmentationParams(boxes, flip, jitter, *factors, hue, order, gray, blur, sigma, solarize)

    def apply(self, images: torch.Tensor, params: AugmentationParams, cropped: bool = False) -> torch.Tensor:
        """Augment ``images`` (uint8, or float in [0, 1]) with given parameters; returns normalised float32.

        ``cropped``: the images are this view's random resized crops, already flipped (``CroppedViews`` on the
        CPU), so the crop and flip parameters are not used. On the CPU the batch goes through in chunks of about
        ``CPU_CHUNK_ELEMENTS`` values, so that the chain of elementwise operations works in cache.
        """
        if cropped and tuple(images.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"cropped images must be {self.size}x{self.size}, got {tuple(images.shape[-2:])}")
        channels = to_float_images(images[:0]).shape[1]  # checks the shape and dtype
        if channels not in (1, 3) or channels != len(self.mean):
            raise ValueError(f"images have {channels} channels; expected 1 or 3, matching mean/std ({len(self.mean)})")
        n = len(images)
        step = n
        if images.device.type == "cpu":
            step = max(1, CPU_CHUNK_ELEMENTS // (channels * max(self.size**2, images[0, 0].numel())))
        if step >= n:
            return self._apply(images, params, cropped)
        out = torch.empty(n, channels, self.size, self.size, device=images.device)
        for i in range(0, n, step):
            out[i : i + step] = self._apply(images[i : i + step], params[i : i + step], cropped)
        return out

    def _apply(self, images: torch.Tensor, params: AugmentationParams, cropped: bool = False) -> torch.Tensor:
        x = to_float_images(images)
        p = params.to(x.device)
        if cropped:  # a fresh float copy: the ops below work in place
            x = x.clone() if x is images else x
        else:
            x = resized_crops(x, p.boxes, self.size, p.flip if self.hflip_prob > 0 else None)
        if self.jitter_prob > 0:
            ops = [
                (self.jitter[0] > 0, adjust_brightness, p.brightness),
                (self.jitter[1] > 0, adjust_contrast, p.contrast),
                (self.jitter[2] > 0, adjust_saturation, p.saturation),
                (self.jitter[3] > 0, adjust_hue, p.hue),
            ]
            for i in p.jitter_order:
                active, op, factor = ops[i]
                if active:
                    x = op(x, factor)
        if self.gray_prob > 0 and x.shape[1] == 3:
            x = _apply_to(x, p.gray, lambda chosen: grayscale(chosen).repeat(1, 3, 1, 1))
        if self.blur_prob > 0:
            x = _apply_to(x, p.blur, lambda chosen, sigma: gaussian_blur(chosen, sigma, self.kernel_size), p.sigma)
        if self.solarize_prob > 0:
            x = _apply_to(x, p.solarize, solarize)
        scale = torch.tensor([1 / s for s in self.std], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], device=x.device, dtype=x.dtype)
        return torch.addcmul(shift.view(1, -1, 1, 1), x, scale)  # (x - mean) / std

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None, cropped: bool = False) -> torch.Tensor:
        """Augment a batch ``(batch, channels, height, width)`` (uint8, or float in [0, 1]) on its own device.

        Parameters come from ``generator`` (on any device; drawn there and moved to the images), or from the
        default generator of the images' device. ``cropped``: see :meth:`apply`.
        """
        to_float_images(images[:0])  # checks the shape and dtype
        params = self.sample_params(len(images), images.shape[-2], images.shape[-1], generator, images.device)
        return self.apply(images, params, cropped)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k != "kernel_size")
        return f"{type(self).__name__}({options})"


class BatchMultiView:
    """The list of views of a multi-view augmentation, each a ``BatchAugmentation``, for a batch of images."""

    def __init__(self, views: Sequence[BatchAugmentation]):
        if not views:
            raise ValueError("BatchMultiView needs at least one view")
        self.views = list(views)

    @classmethod
    def from_augmentation(cls, name: str, size: int, mean, std, **kwargs) -> BatchMultiView:
        """The device counterpart of ``build_augmentation(name, size, mean, std, **kwargs)``, view for view.

        Works for every augmentation in ``AUGMENTATIONS`` that is a plain list of ``augmentation_view`` views
        (each records its settings in ``view_kwargs``); others raise ``ReprzooError``.
        """
        transform = build_augmentation(name, size, mean, std, **kwargs)
        plain = isinstance(transform, MultiViewTransform) and type(transform).__call__ is MultiViewTransform.__call__
        views = getattr(transform, "transforms", [])
        if not (plain and views and all(hasattr(view, "view_kwargs") for view in views)):
            raise ReprzooError(
                f"augmentation '{name}' has no device implementation yet: augment_on='device' supports augmentations "
                "whose views are all augmentation_view(...) views (such as simsiam, byol); use augment_on='cpu'"
            )
        return cls([BatchAugmentation(**view.view_kwargs) for view in views])

    def __call__(
        self, images: torch.Tensor | Sequence[torch.Tensor], generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """The views of a batch of images; or, given a list of batches (one per view: the uint8 crops of
        ``CroppedViews``, as ``ImageFolder`` yields them with ``augment_on='device'``), the rest of each view."""
        if isinstance(images, (list, tuple)):
            if len(images) != len(self.views):
                raise ValueError(f"{len(images)} batches of crops for {len(self.views)} views")
            return [view(x, generator, cropped=True) for view, x in zip(self.views, images)]
        x = to_float_images(images)  # converted once for all views
        return [view(x, generator) for view in self.views]

    def __len__(self) -> int:
        return len(self.views)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.views})"


__all__ = [
    "AugmentationParams",
    "BatchAugmentation",
    "BatchMultiView",
    "blur_kernel_size",
    "gaussian_blur",
    "resized_crops",
    "sample_crop_boxes",
]
