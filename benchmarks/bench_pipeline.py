"""Input pipeline alone (augmentation + collation, no model): reprzoo against lightly's ``SimSiamTransform``, one process.

Two settings, each with candidates interleaved over ``--rounds`` (order reversed every other round), medians:

* ``32`` px, images in memory: the ``SyntheticImages`` gratings, lightly's transform on PIL images (what a
  torchvision dataset yields) against reprzoo's ``SyntheticImages.train_dataloader()`` (uint8 tensors), and against
  reprzoo's previous per-sample path (the same views as torchvision v2 pipelines, ``AugmentationView.reference``,
  and each sample seeded with ``torch.manual_seed``, as before).
* ``224`` px, an ImageFolder of JPEG files: scikit-image's photos (astronaut, coffee, chelsea, rocket,
  immunohistochemistry, retina, hubble_deep_field) cut into overlapping tiles of ``--tile`` px (``0``: the whole
  photos, 300 to 1411 px), written as JPEG (quality 90) to a temporary folder. lightly: torchvision's ``ImageFolder``
  with its default loader and lightly's transform; reprzoo: the ``ImageFolder`` datamodule (``augment_on=cpu``), the
  previous path (the v2 views, full decoding, ``torch.manual_seed`` per sample), the decoded-image cache (``cache_images=memory``) and the
  device path's CPU share (``augment_on=device``: the loader's uint8 crops), plus that path with the batched rest of
  the views applied on the CPU (what a GPU would do after the transfer, here on the same core).

``--profile N`` also times each operation of one 32 px view on N images, for lightly, the previous path and reprzoo's.

Every loader has ``--workers`` workers (default 0: augmentation and collation in the timing process, one thread) and
the same batch size; reprzoo's views use lightly's parameters (crop scale (0.2, 1), flip 0.5, jitter (0.4, 0.4, 0.4,
0.1) p=0.8, grayscale 0.2, blur p=0.5 with sigma in (0.1, 2)). Images/s count images (two views each).

Run from the repository root: ``python benchmarks/bench_pipeline.py --out bench_pipeline.json``; ``--quick`` is a
smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing, also when this file is loaded by path
import _timing  # noqa: E402
from _timing import (  # noqa: E402
    LIGHTLY_MATCHED_AUGMENTATION,  # noqa: E402
    PILImages,
    environment,
    interleaved_rounds,
    loadavg,
    loader_images_per_s,
    medians,
    shutdown,
)

# scikit-image's colour photos that ship with it (no download): 300 to 1411 px
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")
FULL = {"batch_32": 256, "batch_224": 32, "batches": 2, "warmup": 1, "rounds": 3, "tile": 256}
QUICK = {"batch_32": 8, "batch_224": 4, "batches": 1, "warmup": 1, "rounds": 1, "tile": 128}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=["32", "224"], choices=["32", "224"])
    p.add_argument("--batch-32", type=int, default=None, help=f"batch at 32 px (default {FULL['batch_32']})")
    p.add_argument("--batch-224", type=int, default=None, help=f"batch at 224 px (default {FULL['batch_224']})")
    p.add_argument("--batches", type=int, default=None, help=f"timed batches per candidate and round ({FULL['batches']})")
    p.add_argument("--warmup", type=int, default=None, help=f"untimed batches first ({FULL['warmup']})")
    p.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds ({FULL['rounds']})")
    p.add_argument("--tile", type=int, default=None, help=f"side of the JPEG tiles, 0: whole photos ({FULL['tile']})")
    p.add_argument("--workers", type=int, default=0, help="loader workers of every candidate (default 0)")
    p.add_argument("--profile", type=int, default=0, help="also time each operation of a 32 px view on this many images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run (explicit options win)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def jpeg_folder(root: Path, tile: int, quick: bool) -> Path:
    """``root/train/<photo>/<i>.jpg`` (and a one-image ``val``): tiles of scikit-image's photos, as JPEG."""
    import numpy as np
    from PIL import Image
    from skimage import data

    names = PHOTOS[:2] if quick else PHOTOS
    for name in names:
        photo = np.asarray(getattr(data, name)())
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        photo = photo[..., :3]
        for split in ("train", "val"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
        h, w = photo.shape[:2]
        if tile <= 0:  # whole photos, 8 files each (enough for a batch)
            for k in range(8):
                Image.fromarray(photo).save(root / "train" / name / f"{k}.jpg", quality=90)
            Image.fromarray(photo).save(root / "val" / name / "0.jpg", quality=90)
            continue
        step = max(tile // 2, 1)  # overlapping tiles: more files per photo
        k = 0
        for top in range(0, max(h - tile, 0) + 1, step):
            for left in range(0, max(w - tile, 0) + 1, step):
                Image.fromarray(photo[top : top + tile, left : left + tile]).save(root / "train" / name / f"{k}.jpg", quality=90)
                k += 1
        Image.fromarray(photo[:tile, :tile]).save(root / "val" / name / "0.jpg", quality=90)
    return root


def loader_over(dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers)


def cycle(loader_factory: Callable[[], DataLoader]) -> Callable[[], Any]:
    """A fresh loader per measurement whose iterator restarts when an epoch ends (small folders)."""

    class Endless:
        def __init__(self):
            self.loader = loader_factory()

        def __iter__(self):
            while True:
                yield from self.loader

    return Endless


def previous_loader(datamodule) -> DataLoader:
    """reprzoo's previous per-sample path through the datamodule's own loader: the same views as torchvision v2
    pipelines (``AugmentationView.reference``), each sample seeded with ``torch.manual_seed`` as before."""
    from reprzoo.datamodules.base import TransformedDataset
    from reprzoo.datamodules.resumable import sample_seed
    from reprzoo.datamodules.transforms import MultiViewTransform

    class PreviousSeeding(TransformedDataset):
        def __getitem__(self, key):
            index, epoch = key
            sample, label = self.base[index]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, epoch, index))
                sample = self.transform(sample)
            return sample, label, index

    datamodule.train_transform = MultiViewTransform([view.reference for view in datamodule.train_transform.transforms])
    loader = datamodule.train_dataloader()
    loader.dataset.__class__ = PreviousSeeding
    return loader


def setting_32(args) -> dict[str, Callable[[], float]]:
    from lightly.transforms import SimSiamTransform as LightlySimSiamTransform

    from reprzoo.datamodules.images import SyntheticImages

    batch, n = args.batch_32, (args.warmup + args.batches) * args.batch_32

    def datamodule():
        return SyntheticImages(
            train_size=n,
            image_size=32,
            augmentation="simsiam",
            augmentation_kwargs=dict(LIGHTLY_MATCHED_AUGMENTATION),
            batch_size=batch,
            num_workers=args.workers,
            seed=args.seed,
        )

    dm = datamodule()
    dm.setup("fit")
    lightly_data = PILImages(dm._train.images, dm._train.labels, LightlySimSiamTransform(input_size=32))
    rate = lambda make: lambda: loader_images_per_s(make, lambda b: None, args.warmup, args.batches, batch, torch.device("cpu"))  # noqa: E731
    return {
        "lightly": rate(lambda: loader_over(lightly_data, batch, args.workers)),
        "reprzoo": rate(lambda: datamodule().train_dataloader()),
        "reprzoo_previous": rate(lambda: previous_loader(datamodule())),
    }


def setting_224(args, root: Path) -> dict[str, Callable[[], float]]:
    from lightly.transforms import SimSiamTransform as LightlySimSiamTransform
    from torchvision import datasets

    from reprzoo.datamodules.images import ImageFolder

    batch = args.batch_224
    cpu = torch.device("cpu")

    def datamodule(**kwargs):
        return ImageFolder(
            root=str(root),
            image_size=224,
            augmentation="simsiam",
            augmentation_kwargs=dict(LIGHTLY_MATCHED_AUGMENTATION),
            batch_size=batch,
            num_workers=args.workers,
            **kwargs,
        )

    lightly_data = datasets.ImageFolder(root / "train", transform=LightlySimSiamTransform(input_size=224))
    cached = datamodule(cache_images="memory")
    cached.setup("fit")  # decoded once, before the timing
    device_dm = datamodule(augment_on="device")

    def device_path(batch_):
        images = batch_[0]
        device_dm.batch_augmentation(images, torch.Generator().manual_seed(0))

    def rate(make, step=lambda b: None):
        return lambda: loader_images_per_s(cycle(make), step, args.warmup, args.batches, batch, cpu)

    return {
        "lightly": rate(lambda: loader_over(lightly_data, batch, args.workers)),
        "reprzoo": rate(lambda: datamodule().train_dataloader()),
        "reprzoo_previous": rate(lambda: previous_loader(datamodule())),
        "reprzoo_cached": rate(lambda: cached.train_dataloader()),
        "reprzoo_device_loader": rate(lambda: device_dm.train_dataloader()),
        "reprzoo_device_loader_and_batch": rate(lambda: device_dm.train_dataloader(), device_path),
    }


def profile_ops(n: int, rounds: int, seed: int) -> dict[str, dict[str, float]]:
    """Microseconds per view of each operation of one 32 px view, for lightly (PIL images), reprzoo's previous path
    (the v2 views on uint8 tensors) and reprzoo's (``AugmentationView.steps()`` on uint8 tensors): medians over
    ``rounds`` passes over ``n`` images, pipelines interleaved."""
    import statistics

    from lightly.transforms import SimSiamTransform as LightlySimSiamTransform
    from PIL import Image

    from reprzoo.datamodules.images import SyntheticImages

    dm = SyntheticImages(train_size=n, image_size=32, augmentation_kwargs=dict(LIGHTLY_MATCHED_AUGMENTATION), seed=seed)
    dm.setup("fit")
    tensors = list(dm._train.images)
    pils = [Image.fromarray(t.permute(1, 2, 0).numpy()) for t in tensors]
    lightly_view = LightlySimSiamTransform(input_size=32).transforms[0].transform
    view = dm.train_transform.transforms[0]
    to_pil = ("to PIL", lambda t: Image.fromarray(t.permute(1, 2, 0).numpy(), "RGB"))

    def named(ops):  # RandomApply([X]) is named after X
        return [(type((getattr(op, "transforms", None) or [op])[0]).__name__, op) for op in ops]

    pipelines = {
        "lightly": (pils, named(lightly_view.transforms)),
        "reprzoo_previous": (tensors, named(view.reference.transforms)),
        "reprzoo": (tensors, [to_pil, *view.steps(), ("normalise", view.normalise)]),
    }
    times: dict[str, dict[str, list[float]]] = {name: {op: [] for op, _ in ops} for name, (_, ops) in pipelines.items()}
    for r in range(rounds):
        for name in pipelines if r % 2 == 0 else reversed(list(pipelines)):
            inputs, ops = pipelines[name]
            spent = dict.fromkeys(times[name], 0.0)
            torch.manual_seed(seed + r)
            for x in inputs:
                for op, fn in ops:
                    t0 = time.perf_counter()
                    x = fn(x)
                    spent[op] += time.perf_counter() - t0
            for op, total in spent.items():
                times[name][op].append(total / len(inputs) * 1e6)
    out = {name: {op: statistics.median(v) for op, v in per_op.items()} for name, per_op in times.items()}
    for name in out:
        out[name]["total"] = sum(out[name].values())
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    warnings.filterwarnings("ignore", message=".*to_tensor.*deprecated.*")
    torch.set_num_threads(1)
    started, load_start = time.perf_counter(), loadavg()
    results: dict[str, Any] = {"settings": {}}
    if args.profile:
        results["profile_us_per_view_32px"] = profile_ops(args.profile, args.rounds, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            if setting == "32":
                candidates = setting_32(args)
            else:
                candidates = setting_224(args, jpeg_folder(Path(tmp) / "jpeg", args.tile, args.quick))
            rounds = interleaved_rounds(candidates, args.rounds, 1, args.seed, label=f"{setting}px ")
            median = medians(rounds)
            results["settings"][setting] = {
                "medians": median,
                "rounds": rounds,
                "over_lightly": {name: value / median["lightly"] for name, value in median.items()},
            }
            shutdown()
    results.update(
        units="images/s of the loader alone (one image = two views), median over rounds",
        command="python benchmarks/bench_pipeline.py " + " ".join(getattr(args, "argv", [])),
        config={k: v for k, v in vars(args).items() if k not in ("out", "argv")},
        environment=environment(torch.device("cpu"), packages=("torchvision", "lightly", "PIL", "scipy")),
        loadavg_start=load_start,
        loadavg_end=loadavg(),
        wall_s=time.perf_counter() - started,
    )
    return results


def report(results: dict[str, Any]) -> str:
    rows = []
    for name, per_op in results.get("profile_us_per_view_32px", {}).items():
        rows.append(f"{name}: " + ", ".join(f"{op} {us:.0f}" for op, us in per_op.items()) + " (us per view)")
    rows += ["| setting | pipeline | img/s | vs lightly |", "|---|---|---:|---:|"]
    for setting, res in results["settings"].items():
        for name, value in res["medians"].items():
            rows.append(f"| {setting} px | {name} | {value:.1f} | {res['over_lightly'][name]:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return _timing.main(argv, parse_args, run, report)


if __name__ == "__main__":
    main()
