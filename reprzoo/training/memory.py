"""A pre-flight memory check of CPU image training: a run whose training step cannot fit in the machine's memory
fails before training with one line (its estimate, the memory available and what to change), instead of being
killed by the kernel with no message.

The estimate is a lower bound of what one training step holds: the activations autograd saves in the backbone's
forward (measured on a probe batch of 2 images per view at most 16x16 px, scaled by the pixels of the real views
and the batch size), the weights, their gradients and two optimiser states. The probe takes a fraction of a
second; the backbone's normalisation statistics are restored afterwards. GPU runs are not checked (the CUDA
allocator fails with its own message), nor datamodules other than images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprzoo.errors import ReprzooError

#: Set to 1 to skip the check (a machine with swap, or an estimate known to be too cautious).
SKIP_ENV = "REPRZOO_SKIP_MEMORY_CHECK"
#: Side of the probe images at most: activations of convolutional networks scale with the pixels.
PROBE_SIDE = 16
PROBE_BATCH = 2  # batch norm in training mode needs more than one value per channel


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``psutil`` when installed, else ``MemAvailable`` of
    /proc/meminfo); ``None`` when neither says."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class MemoryEstimate:
    """Bytes one training process needs at least: ``per_sample * batch_size + fixed``."""

    per_sample: int  # activations of one sample (all its views)
    fixed: int  # weights, gradients, optimiser states
    batch_size: int
    views: list[tuple[int, ...]]  # shape (C, H, W) of each view

    @property
    def total(self) -> int:
        return self.per_sample * self.batch_size + self.fixed

    def batch_that_fits(self, available: int, processes: int = 1) -> int:
        return max(0, int((available / max(processes, 1) - self.fixed) // max(self.per_sample, 1)))


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def saved_activation_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves in ``module(x)`` (each storage once, parameters excluded)."""
    parameters = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if pointer not in parameters:
                saved[pointer] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, nested)
            pass
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = module(x)
    del out  # the graph and what it saved
    return sum(saved.values())


def _view_shapes(datamodule: Any) -> list[tuple[int, ...]]:
    """Shapes ``(C, H, W)`` of the training views one sample becomes: the sizes of ``augmentation_view``'s views, or
    another augmentation applied to a blank image."""
    size = int(datamodule.image_size)
    transform = getattr(datamodule, "train_transform", None)
    views = getattr(transform, "transforms", None)
    if isinstance(views, list) and views and all("size" in (getattr(v, "view_kwargs", None) or {}) for v in views):
        return [(3, int(v.view_kwargs["size"]), int(v.view_kwargs["size"])) for v in views]  # augmentation_view's
    if transform is not None:  # another augmentation: applied to a blank image
        from PIL import Image

        views = transform(Image.new("RGB", (size, size)))
        views = views if isinstance(views, (list, tuple)) else [views]
        shapes = [tuple(v.shape) for v in views if isinstance(v, torch.Tensor) and v.ndim == 3]
        if shapes:
            return shapes
    return [(3, size, size)] * 2  # device augmentation: two views at the training size


def _probe(backbone: nn.Module, shapes: list[tuple[int, ...]]) -> dict[tuple[int, ...], float] | None:
    """Saved activation bytes of one image of each view shape (measured at most :data:`PROBE_SIDE` px, scaled by
    the pixels); the backbone's training modes and buffers (batch-norm statistics) are restored afterwards."""
    modes = [(m, m.training) for m in backbone.modules()]
    buffers = {name: b.detach().clone() for name, b in backbone.named_buffers()}
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    probed: dict[tuple[int, ...], float] = {}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # a tiny batch: threads only add synchronisation (seconds on a loaded machine)
        backbone.train()
        for shape in set(shapes):
            channels, height, width = shape
            probe_h, probe_w = min(height, PROBE_SIDE), min(width, PROBE_SIDE)
            x = torch.randn(PROBE_BATCH, channels, probe_h, probe_w, device=device)
            per_image = saved_activation_bytes(backbone, x) / PROBE_BATCH
            probed[shape] = per_image * (height * width) / (probe_h * probe_w)
    except Exception:  # noqa: BLE001 - a backbone with a fixed input size (a ViT): not checked
        return None
    finally:
        torch.set_num_threads(threads)
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for name, b in backbone.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
    return probed


def estimate_training_memory(model: nn.Module, datamodule: Any, half_precision: bool = False) -> MemoryEstimate | None:
    """The memory one training step of ``model`` on ``datamodule``'s batches needs at least (:class:`MemoryEstimate`),
    or ``None`` when it cannot be probed (no ``backbone``, a backbone that refuses the probe size)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        return None
    if any(isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params() for m in backbone.modules()):
        return None  # a probe would initialise them (with other random numbers than training would)
    with torch.random.fork_rng(devices=[]):  # the probe's random numbers leave the run's stream as it was
        shapes = _view_shapes(datamodule)
        probed = _probe(backbone, shapes)
    if probed is None:
        return None
    per_sample = sum(probed[shape] for shape in shapes) * (0.5 if half_precision else 1.0)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return MemoryEstimate(int(per_sample), parameters + 3 * trainable, int(datamodule.batch_size), shapes)


def check_training_memory(model: nn.Module, datamodule: Any, trainer: Any) -> MemoryEstimate | None:
    """Fail (:class:`ReprzooError`, one line) when a CPU image run's training step cannot fit in the available
    memory. Returns the estimate, or ``None`` where nothing was checked (GPU, not images, ``REPRZOO_SKIP_MEMORY_CHECK``)."""
    from reprzoo.datamodules.images import ImageDataModule

    if os.environ.get(SKIP_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return None
    if not isinstance(datamodule, ImageDataModule):
        return None
    try:
        if trainer.strategy.root_device.type != "cpu":
            return None
        processes = max(int(trainer.num_devices), 1)  # processes on this machine (DDP over gloo on the CPU)
        half = "16" in str(trainer.precision)
    except Exception:  # noqa: BLE001 - a strategy not set up yet: unsure, so not checked
        return None
    available = available_memory()
    if available is None:
        return None
    try:  # the splits (cached: the trainer's setup does not load them again)
        datamodule.setup("fit")
        train_size = len(datamodule._train)
    except Exception:  # noqa: BLE001 - a missing dataset: the trainer's setup reports it in its usual place
        return None
    if datamodule.batch_size > train_size // processes:
        return None  # not one full batch: RefuseEmptyTraining says so, in its own words
    estimate = estimate_training_memory(model, datamodule, half_precision=half)
    if estimate is None:
        return None
    needed = estimate.total * processes
    if needed > available:
        side = max(shape[-1] for shape in estimate.views)
        fits = estimate.batch_that_fits(available, processes)
        batch_hint = f"at most {fits} could fit" if fits >= 1 else "no batch size fits at this image size"
        where = f" in each of {processes} processes" if processes > 1 else ""
        raise ReprzooError(
            f"this run needs at least {gigabytes(needed)} of memory ({estimate.batch_size} images x "
            f"{len(estimate.views)} views of up to {side}x{side} px per training step{where}, estimated on a probe "
            f"batch) but {gigabytes(available)} is available; lower --data.image_size (now {datamodule.image_size}) "
            f"or --data.batch_size ({batch_hint}), or set {SKIP_ENV}=1 to try anyway"
        )
    return estimate
