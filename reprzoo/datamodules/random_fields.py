"""Random field augmentations: "Random Field Augmentations for Self-Supervised Representation Learning" (Mansfield
et al., 2023, arXiv:2311.03629).

The parameters of the usual global transformations (translation, rotation, brightness, saturation, hue) become
functions of the pixel position, each an independent Gaussian random field: white noise low-pass filtered with a
Gaussian kernel of ``length_scale`` (a fraction of the image side), rescaled to unit standard deviation and
multiplied by the transformation's ``strength``. A very long length scale gives back the global transformation;
short ones warp and recolour locally. The paper finds mild settings help and strong ones destroy image structure,
so the defaults are mild.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from reprzoo.datamodules.transforms import AUGMENTATIONS, IMAGENET_MEAN, IMAGENET_STD, MultiViewTransform, augmentation_view


def gaussian_random_field(
    num_fields: int, height: int, width: int, length_scale: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(num_fields, height, width)`` stationary Gaussian fields with mean 0 and variance 1 at every pixel.

    White noise filtered in the Fourier domain by a Gaussian of standard deviation ``length_scale * max(h, w)``
    pixels (periodic boundary), divided by the filter's theoretical standard deviation, not by each draw's: a very
    long length scale gives a constant field drawn from N(0, 1), i.e. the global transformation.
    """
    if length_scale <= 0:
        raise ValueError(f"length_scale must be positive, got {length_scale}")
    noise = torch.randn(num_fields, height, width, generator=generator)
    sigma = length_scale * max(height, width)
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.fftfreq(width)[None, :]
    kernel = torch.exp(-2 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))  # Fourier transform of a Gaussian
    field = torch.fft.ifft2(torch.fft.fft2(noise) * kernel).real
    return field / kernel.pow(2).mean().sqrt()  # Var = mean |K|^2 for unit white noise


class RandomFieldTransform:
    """Pixel-wise translation, rotation and colour shifts drawn from Gaussian random fields, on a float image
    ``(C, H, W)`` in [0, 1] (or a batch ``(B, C, H, W)``, one draw per image).

    Args:
        translation: standard deviation of the displacement field, as a fraction of the image side.
        rotation: standard deviation of the rotation-angle field in degrees (each pixel rotates about the centre).
        brightness: standard deviation of the additive brightness field.
        saturation: standard deviation of the log-saturation factor field.
        hue: standard deviation of the hue-rotation field, in turns (1.0 = 360 degrees).
        length_scale: correlation length of every field, as a fraction of the image side.
        p: probability of transforming an image at all.
    """

    def __init__(
        self,
        translation: float = 0.02,
        rotation: float = 5.0,
        brightness: float = 0.05,
        saturation: float = 0.1,
        hue: float = 0.01,
        length_scale: float = 0.1,
        p: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        if min(translation, rotation, brightness, saturation, hue) < 0:
            raise ValueError("random field strengths must be non-negative")
        self.translation, self.rotation, self.brightness = translation, rotation, brightness
        self.saturation, self.hue, self.length_scale, self.p = saturation, hue, length_scale, p
        self.generator = generator

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim == 3:
            return self(image[None])[0]
        if not image.is_floating_point():
            raise TypeError("RandomFieldTransform works on float images in [0, 1]; convert with ToDtype first")
        out = [self._one(x) if self.p >= 1 or torch.rand((), generator=self.generator) < self.p else x for x in image]
        return torch.stack(out)

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = x.shape
        dx, dy, angle, bright, sat, hue = gaussian_random_field(6, h, w, self.length_scale, self.generator).to(x)
        # geometry: sample x at R(theta(p)) p + t(p) in normalised coordinates [-1, 1]
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device), indexing="ij"
        )
        theta = angle * math.radians(self.rotation)
        cos, sin = torch.cos(theta), torch.sin(theta)
        grid_x = cos * xs - sin * ys + 2 * self.translation * dx
        grid_y = sin * xs + cos * ys + 2 * self.translation * dy
        warped = F.grid_sample(
            x[None], torch.stack([grid_x, grid_y], -1)[None], mode="bilinear", padding_mode="reflection", align_corners=True
        )[0]
        if x.shape[0] != 3:
            return (warped + self.brightness * bright).clamp(0, 1)
        # colour in YIQ: brightness shifts Y, saturation scales the chroma (I, Q), hue rotates it
        yiq = torch.einsum("ij,jhw->ihw", _RGB_TO_YIQ.to(x), warped)
        luma = yiq[0] + self.brightness * bright
        chroma_scale = torch.exp(self.saturation * sat)
        phi = 2 * math.pi * self.hue * hue
        i = chroma_scale * (torch.cos(phi) * yiq[1] - torch.sin(phi) * yiq[2])
        q = chroma_scale * (torch.sin(phi) * yiq[1] + torch.cos(phi) * yiq[2])
        rgb = torch.einsum("ij,jhw->ihw", _YIQ_TO_RGB.to(x), torch.stack([luma, i, q]))
        return rgb.clamp(0, 1)


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


class RandomFieldViewsTransform(MultiViewTransform):
    """``num_views`` views of the SimSiam/MoCo v2 augmentation family, each followed by random field transforms
    (the paper adds them to its baseline augmentations), then normalisation.

    Args:
        size: output side.
        num_views: views per image.
        field_kwargs: options of :class:`RandomFieldTransform`.
        mean, std: normalisation.
        view_kwargs: options of :func:`augmentation_view` (crop scale, jitter, blur, ...).
    """

    def __init__(
        self,
        size: int = 224,
        num_views: int = 2,
        field_kwargs: dict | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        **view_kwargs,
    ):
        field = RandomFieldTransform(**(field_kwargs or {}))
        # the base view stops at [0, 1] (identity normalisation) so that the fields act on pixel values
        identity = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        super().__init__(
            [_FieldView(augmentation_view(size, **identity, **view_kwargs), field, mean, std) for _ in range(num_views)]
        )


class _FieldView:
    """base view in [0, 1] -> random fields -> normalisation (a class, not a closure: loaders pickle it)."""

    def __init__(self, base, field: RandomFieldTransform, mean: Sequence[float], std: Sequence[float]):
        self.base, self.field = base, field
        self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

    def __call__(self, image):
        return (self.field(self.base(image)) - self.mean) / self.std


AUGMENTATIONS["random_field"] = RandomFieldViewsTransform  # reprzoo.datamodules imports this module
