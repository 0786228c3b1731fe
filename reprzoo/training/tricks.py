"""Training tricks any method can use, as Lightning callbacks: annealed gradient noise and EfficientTrain's
low-frequency-crop curriculum.

- :class:`GradientNoise`: "Adding Gradient Noise Improves Learning for Very Deep Networks" (Neelakantan, Vilnis, Le,
  Sutskever, Kaiser, Kurach & Martens, 2015, arXiv:1511.06807).
- :class:`EfficientTrain`: "EfficientTrain: Exploring Generalized Curriculum Learning for Training Visual Backbones"
  (Wang, Yue, Lu, Liu, Zhong, Song & Huang, ICCV 2023, arXiv:2211.09703).

EfficientTrain is a callback that rewrites the training batch in ``on_train_batch_start`` rather than a datamodule
transform: it needs the epoch (the trainer has it), it applies to whatever views any datamodule yields (augmented on
the CPU or on the device, after augmentation as in the paper), and no datamodule or method has to know about it.
"""

from __future__ import annotations

import math
from typing import Sequence

import lightning as L
import torch

__all__ = ["EfficientTrain", "GradientNoise", "band_width", "low_frequency_crop", "noise_variance"]


def noise_variance(step: int, eta: float = 0.01, gamma: float = 0.55) -> float:
    """The annealed variance ``sigma_t^2 = eta / (1 + t)^gamma`` of the gradient noise at optimiser step ``t``."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    return eta / (1.0 + step) ** gamma


class GradientNoise(L.Callback):
    """Adds ``N(0, sigma_t^2)`` to every gradient after the backward pass, ``sigma_t^2 = eta / (1 + t)^gamma``.

    Runs in ``on_before_optimizer_step``: once per optimiser step (after all micro-batches of gradient accumulation,
    after AMP's unscaling, before gradient clipping), with ``t`` the number of optimiser steps taken so far
    (``trainer.global_step``). The noise is drawn from a generator seeded by ``(seed, t)``: reproducible, the same
    after a resume, and the same on every rank, so that data-parallel replicas (whose gradients are already
    all-reduced) stay identical.

    Args:
        eta: the noise scale; the paper picks it from {0.01, 0.3, 1.0}.
        gamma: the decay exponent (0.55 in the paper).
        seed: seed of the noise.
        exclude: parameter-name prefixes that get no noise (the online probe measures the method; it is not trained
            by it).
    """

    def __init__(self, eta: float = 0.01, gamma: float = 0.55, seed: int = 0, exclude: Sequence[str] = ("probe.",)):
        if eta < 0 or gamma < 0:
            raise ValueError(f"eta and gamma must be non-negative, got eta={eta}, gamma={gamma}")
        self.eta, self.gamma, self.seed, self.exclude = eta, gamma, seed, tuple(exclude)
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device, step: int) -> torch.Generator:
        generator = self._generators.get(device)
        if generator is None:
            generator = self._generators[device] = torch.Generator(device)
        return generator.manual_seed(self.seed * 1_000_003 + step)

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        step = trainer.global_step
        std = math.sqrt(noise_variance(step, self.eta, self.gamma))
        if std == 0:
            return
        generators: dict[torch.device, torch.Generator] = {}
        for name, param in pl_module.named_parameters():  # a fixed order: the same draws for the same parameter
            if param.grad is None or name.startswith(self.exclude):
                continue
            device = param.grad.device
            if device not in generators:
                generators[device] = self._generator(device, step)
            noise = torch.randn(param.grad.shape, generator=generators[device], device=device, dtype=param.grad.dtype)
            param.grad.add_(noise, alpha=std)
        pl_module.log("train/gradient_noise_std", std)


def low_frequency_crop(images: torch.Tensor, band: int) -> torch.Tensor:
    """EfficientTrain's low-frequency cropping: the 2-d FFT of each image, the central ``band x band``
    frequencies kept (``-band/2 .. band/2 - 1`` on each axis), and the inverse FFT to a ``band x band`` image.

    The spectrum is scaled by ``(band / H) (band / W)`` so that intensities are preserved (the mean is the same); the
    real part is returned. A ``band`` of at least the image side returns the images unchanged.

    Args:
        images: ``(..., H, W)`` real images.
        band: the side of the kept band (even).
    """
    if images.ndim < 2:
        raise ValueError(f"images must be (..., H, W), got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if band >= h and band >= w:
        return images
    if band <= 0 or band % 2:
        raise ValueError(f"band must be a positive even number, got {band}")
    if band > h or band > w:
        raise ValueError(f"band {band} does not fit images of {h}x{w}")
    x = images if images.dtype in (torch.float32, torch.float64) else images.float()  # FFTs of half floats: float32
    spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    top, left = h // 2 - band // 2, w // 2 - band // 2  # zero frequency sits at (h // 2, w // 2) after the shift
    cropped = spectrum[..., top : top + band, left : left + band] * (band * band / (h * w))
    out = torch.fft.ifft2(torch.fft.ifftshift(cropped, dim=(-2, -1))).real
    return out.to(images.dtype)


#: EfficientTrain's schedule of the band for 300 ImageNet epochs at 224 px: 160 up to epoch 180 (60% of training),
#: 192 up to epoch 240 (80%), then the full 224; as (start as a fraction of training, fraction of the image side).
EFFICIENTTRAIN_SCHEDULE: tuple[tuple[float, float], ...] = ((0.0, 160 / 224), (0.6, 192 / 224), (0.8, 1.0))


def band_width(
    epoch: int, max_epochs: int, image_size: int, schedule: Sequence[Sequence[float]] = EFFICIENTTRAIN_SCHEDULE
) -> int:
    """The band at ``epoch`` (0-based) of ``max_epochs``: the last stage of ``schedule`` whose start
    (fraction of training) has been reached, its fraction of ``image_size`` rounded to an even number."""
    if max_epochs < 1 or not 0 <= epoch:
        raise ValueError(f"need 0 <= epoch and max_epochs >= 1, got epoch={epoch}, max_epochs={max_epochs}")
    progress = epoch / max_epochs
    fraction = next(f for start, f in reversed(list(schedule)) if progress >= start - 1e-9)
    return min(image_size, 2 * max(1, round(fraction * image_size / 2)))


class EfficientTrain(L.Callback):
    """Replaces each training image view by its low-frequency crop (:func:`low_frequency_crop`) at the band the
    schedule gives for the current epoch: smaller, smoother images early in training, the full images at the end.

    Applied to the 4-d float views of the batch (``(views, labels, indices)`` with ``views`` a list, or a single
    image tensor first), after augmentation; batches of other modalities raise. The network must accept the smaller
    images (any backbone with global pooling does).

    Ours:
        - Only the low-frequency cropping; the paper's weaker-to-stronger RandAugment schedule is left to the
          method's augmentation.
        - The band is rounded to an even number of pixels (22, 28 and 32 for 32-px images).

    Args:
        schedule: ``(start, fraction)`` stages: from ``start`` (fraction of the epochs) on, the band is ``fraction`` of
            the image side.
    """

    def __init__(self, schedule: Sequence[Sequence[float]] = EFFICIENTTRAIN_SCHEDULE):
        if not schedule or schedule[0][0] != 0:
            raise ValueError("the schedule's first stage must start at 0")
        self.schedule = tuple(tuple(stage) for stage in schedule)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        views = batch[0]
        if isinstance(views, list):  # rewritten in place: training_step receives this same batch
            for i, view in enumerate(views):
                views[i] = self._crop(view, trainer)
        elif isinstance(views, torch.Tensor) and isinstance(batch, list):
            batch[0] = self._crop(views, trainer)
        else:
            raise TypeError(f"EfficientTrain rewrites image views held in a list, got {type(views).__name__}")

    def _crop(self, view: torch.Tensor, trainer: L.Trainer) -> torch.Tensor:
        if not (isinstance(view, torch.Tensor) and view.ndim == 4 and view.is_floating_point()):
            raise TypeError("EfficientTrain applies to (batch, channels, H, W) float image views")
        band = band_width(trainer.current_epoch, trainer.max_epochs or 1, min(view.shape[-2:]), self.schedule)
        return low_frequency_crop(view, band)
