"""Helpers shared by the benchmark scripts: timed loops, interleaved rounds, the machine's record.

The scripts run as ``python benchmarks/<script>.py`` (this folder is then on ``sys.path``) and are loaded by
file path in the tests, so each inserts this folder into ``sys.path`` before ``import _timing``.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch.utils.data import DataLoader, Dataset

#: reprzoo's ``augmentation_view`` options equal to the defaults of lightly's SimSiamTransform (both benchmarks' views)
LIGHTLY_MATCHED_AUGMENTATION = {
    "crop_scale": (0.2, 1.0),
    "hflip_prob": 0.5,
    "jitter": (0.4, 0.4, 0.4, 0.1),
    "jitter_prob": 0.8,
    "gray_prob": 0.2,
    "blur_prob": 0.5,
    "blur_sigma": (0.1, 2.0),
}


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so that a clock read after it covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(
    batches: Iterable, step: Callable[[Any], None], warmup: int, steps: int, batch_size: int, device: torch.device
) -> float:
    """Run ``warmup`` untimed then ``steps`` timed calls of ``step`` on consecutive batches (loading included)."""
    it = iter(batches)
    for _ in range(warmup):
        step(next(it))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(next(it))
    sync(device)
    return steps * batch_size / (time.perf_counter() - t0)


def loader_images_per_s(
    make_loader: Callable[[], Iterable],
    step: Callable[[Any], None],
    warmup: int,
    steps: int,
    batch_size: int,
    device: torch.device,
) -> float:
    """``images_per_s`` over a fresh loader, whose worker processes are stopped afterwards."""
    loader = make_loader()
    rate = images_per_s(loader, step, warmup, steps, batch_size, device)
    shutdown(loader)
    return rate


def image_loader(dataset: Dataset, batch_size: int, workers: int, pin_memory: bool) -> DataLoader:
    """A training loader as the examples build one: shuffled, last partial batch dropped."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,  # as reprzoo's loaders; each measurement builds a new loader anyway
    )


def repeat(batch):
    """The same batch forever: the input of a model-only (no data pipeline) measurement."""
    while True:
        yield batch


def shutdown(*loaders) -> None:
    """Stop the worker processes of finished loaders before the next candidate runs."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
    gc.collect()


def interleaved_rounds(
    candidates: dict[str, Callable[[], float]], rounds: int, threads: int, seed: int, label: str = ""
) -> dict[str, list[float]]:
    """Each candidate's images/s per round; the order is reversed every other round so that a change of load
    during the run hits every candidate alike. Threads and seed are reset before each candidate."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        for name in candidates if r % 2 == 0 else reversed(list(candidates)):
            torch.set_num_threads(threads)
            torch.manual_seed(seed + r)
            rate = candidates[name]()
            results[name].append(rate)
            print(f"round {r + 1}/{rounds} {label}{name:28s} {rate:9.2f} images/s", file=sys.stderr, flush=True)
    return results


def medians(rounds: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in rounds.items()}


class PILImages(Dataset):
    """The same images as a torchvision dataset would give them: ``(transform(PIL image), label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable):
        from PIL import Image

        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
        self.labels = [int(y) for y in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]


def reprzoo_optimizer(model) -> torch.optim.Optimizer:
    """What ``configure_optimizers`` builds, without a Trainer: reprzoo's parameter groups and optimiser."""
    from reprzoo.training.optim import build_optimizer, split_weight_decay

    hp = model.hparams
    groups: list[dict] = []
    for group in model.param_groups():
        options = {k: v for k, v in group.items() if k != "params"}
        groups += split_weight_decay(group["params"], hp.weight_decay, **options)
    return build_optimizer(hp.optimizer, groups, hp.lr, hp.momentum)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, the CPU model (with its core count) otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores)"


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(device: torch.device, packages: Iterable[str] = ("torchvision", "lightning", "timm", "lightly")) -> dict:
    """Versions, CPU, threads and device of this run (packages that are not installed are left out)."""
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in (*packages, "reprzoo"):
        try:
            env[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    env.update(
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        device=str(device),
        device_name=device_name(device),
    )
    return env


def main(argv: list[str] | None, parse_args: Callable, run: Callable, report: Callable[[dict], str]) -> dict[str, Any]:
    """A benchmark script's command line: parse, run, print the report, write the results to ``--out`` as JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    results = run(args)
    print(report(results))
    out: Path | None = args.out
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {out}")
    return results
