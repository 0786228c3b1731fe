"""Augmentation throughput on the CPU: the batched tensor pipeline against the per-sample torchvision v2 pipeline.

Both make the same views with the same options: ``build_augmentation(name, size, ...)`` (per sample, as the
loader runs it with ``augment_on="cpu"``) and ``BatchMultiView.from_augmentation(name, size, ...)`` (a whole
batch, as ``augment_on="device"`` runs it after the transfer). Candidates:

* ``per_sample_tensor``: the v2 views applied to each uint8 ``(3, S, S)`` tensor (Digits, SyntheticImages),
  then each view stacked into a batch (the default collate).
* ``per_sample_pil``: the same on PIL images (CIFAR, STL-10, ImageFolder datasets yield PIL images).
* ``batched``: ``BatchMultiView`` on the uint8 ``(B, 3, S, S)`` batch with a seeded CPU generator.

The images are ``SyntheticImages`` gratings at the output size (32 and 224 by default), so every crop is
resampled from an image of the output's size. Throughput is images per second, one image giving all its
views; each candidate is timed over ``--batches`` batches after one untimed batch, candidates interleaved over
``--rounds`` rounds (order reversed every other round), medians reported, per wall-clock second and per
second of process CPU time (steadier on a shared machine). One process, ``--threads`` torch threads (default 1).

Run from the repository root: ``python benchmarks/bench_augment.py --out bench_augment.json``; ``--quick`` is a
smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from reprzoo.datamodules import BatchMultiView, SyntheticImages, build_augmentation

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def make_images(size: int, n: int) -> torch.Tensor:
    data = SyntheticImages(image_size=size, train_size=n, test_size=1, seed=0)
    data.setup()
    return data._train.images


def candidates(name: str, size: int, images: torch.Tensor, options: dict) -> dict[str, Callable[[], object]]:
    per_sample = build_augmentation(name, size, MEAN, STD, **options)
    batched = BatchMultiView.from_augmentation(name, size, MEAN, STD, **options)
    pil = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
    generator = torch.Generator().manual_seed(0)

    def collate(samples):
        return [torch.stack(view) for view in zip(*samples)]

    return {
        "per_sample_tensor": lambda: collate([per_sample(image) for image in images]),
        "per_sample_pil": lambda: collate([per_sample(image) for image in pil]),
        "batched": lambda: batched(images, generator),
    }


def measure(run: Callable[[], object], batches: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``batches`` calls (after one untimed call)."""
    run()  # untimed: first-call allocations
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(batches):
        run()
    return time.perf_counter() - started, time.process_time() - cpu_started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=2, help="timed batches per candidate and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--augmentation", default="simsiam", help="a name in AUGMENTATIONS")
    parser.add_argument("--options", type=json.loads, default={}, help='augmentation kwargs as JSON: {"blur_prob": 0}')
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 px, batch 8, one round")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batch_size, args.batches, args.rounds = [16], 8, 1, 1
    torch.set_num_threads(args.threads)

    views_per_image = len(BatchMultiView.from_augmentation(args.augmentation, args.sizes[0], MEAN, STD, **args.options))
    load_start = os.getloadavg()
    rows = []
    for size in args.sizes:
        images = make_images(size, args.batch_size)
        runs = candidates(args.augmentation, size, images, args.options)
        seconds: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        for r in range(args.rounds):
            for key in runs if r % 2 == 0 else reversed(list(runs)):
                seconds[key].append(measure(runs[key], args.batches))
        images = args.batch_size * args.batches
        per_round = {k: [round(images / wall, 1) for wall, _ in v] for k, v in seconds.items()}
        per_cpu_s = {k: statistics.median(round(images / cpu, 1) for _, cpu in v) for k, v in seconds.items()}
        medians = {k: statistics.median(v) for k, v in per_round.items()}
        for key in runs:
            rows.append(
                {
                    "image_size": size,
                    "pipeline": key,
                    "images_per_s": medians[key],
                    "per_round": per_round[key],
                    "images_per_cpu_s": per_cpu_s[key],
                    "vs_per_sample_pil": round(medians[key] / medians["per_sample_pil"], 2),
                    "vs_per_sample_tensor": round(medians[key] / medians["per_sample_tensor"], 2),
                }
            )
            print(
                f"{size:>4} px  {key:<18} {medians[key]:>9.1f} img/s  {per_cpu_s[key]:>9.1f} img/CPU-s  rounds {per_round[key]}",
                flush=True,
            )
    results = {
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out) if args.out else None},
        "views_per_image": views_per_image,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "results": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
