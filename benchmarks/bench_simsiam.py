"""SimSiam training throughput: reprzoo against lightly's SimSiam example, side by side in one process.

Setting (lightly's ``examples/pytorch/simsiam.py``): torchvision ResNet-18 trunk (ImageNet stem, 512-d pooled
features), projection head 512-512-128 (3 layers), prediction head 128-64-128, symmetrised negative cosine,
SGD lr 0.06 (no momentum, no weight decay), batch 256, ``SimSiamTransform(input_size=32)`` (crop scale
(0.2, 1), flip 0.5, colour jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2, blur p=0.5 with sigma in
(0.1, 2), ImageNet normalisation). CIFAR-10 cannot be downloaded here, so both pipelines read the same
generated 32x32 images (``reprzoo.datamodules.SyntheticImages``): lightly's as PIL images (what a torchvision
dataset yields), reprzoo's through its own datamodule (uint8 tensors).

Candidates, run interleaved over ``--rounds`` (order reversed every other round), each timed after warmup:

* ``lightly``: lightly's transform, a DataLoader, the example's ``nn.Module`` and plain PyTorch loop.
* ``reprzoo``: ``SyntheticImages`` with the ``simsiam`` augmentation set to lightly's parameters, its
  ``train_dataloader()``, ``reprzoo.lightning_modules.SimSiam(backbone="resnet18")`` (timm's ResNet-18: the same
  architecture and parameter count as torchvision's) with the example's head sizes, a plain loop around
  ``model.training_loss(views)`` and an optimiser built by reprzoo's own helpers with the example's settings.
* ``reprzoo_fit`` (unless ``--no-fit``): the same reprzoo model and datamodule through ``reprzoo fit --config FILE``
  (in process, the command's own ``cli_main``): the Trainer, logger and callbacks the command builds (TensorBoard
  logger, rich progress bar, checkpointing, LR monitor, ...), timed by a callback added in the config.
* ``*_model_only``: the ceiling, the same training step on one batch of views made once as tensors (shared by
  both models), i.e. no data pipeline at all.
* ``lightly_model_only_channels_last``: lightly's model-only step with the model and its inputs in channels-last
  memory format, which the example does not do: the reference for reprzoo's default layout. reprzoo's candidates
  run in reprzoo's default layout (``channels_last=None``: channels-last on CUDA and on the CPU), the plain loop and
  the ceiling through ``model.default_memory_format(device)`` and ``model._format``, as ``reprzoo fit`` does.
* ``*_pipeline_only``: the loader alone (augmentation + collation, no model), to show where time goes.

Throughput is in images per second (one image = two views). Medians over rounds are reported.

Run from the repository root: ``python benchmarks/bench_simsiam.py --out bench_simsiam.json`` (about 5 minutes on a
shared 2-core CPU; results in BENCHMARKS.md); ``--quick`` is a smoke run (under a minute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing, also when this file is loaded by path
import _timing  # noqa: E402
from _timing import (  # noqa: E402
    LIGHTLY_MATCHED_AUGMENTATION,  # noqa: E402
    PILImages,
    environment,
    image_loader,
    images_per_s,
    interleaved_rounds,
    loadavg,
    loader_images_per_s,
    medians,
    repeat,
    reprzoo_optimizer,
    shutdown,
    sync,
)

# lightly's example settings
EXAMPLE_BATCH_SIZE = 256
EXAMPLE_IMAGE_SIZE = 32
EXAMPLE_LR = 0.06
PROJ_HIDDEN, PROJ_OUT, PRED_HIDDEN = 512, 128, 64


QUICK_DEFAULTS = {"steps": 2, "warmup": 1, "rounds": 1, "batch_size": 8, "image_size": 32, "workers": 0, "threads": 1}
# One model thread and one loader worker partition a 2-core machine; on a shared machine two OpenMP threads can
# be several times slower than one when another process holds a core (barriers wait for the descheduled thread).
FULL_DEFAULTS = {
    "steps": 3,
    "warmup": 1,
    "rounds": 3,
    "batch_size": EXAMPLE_BATCH_SIZE,
    "image_size": EXAMPLE_IMAGE_SIZE,
    "workers": 1,
    "threads": 1,
}


# --------------------------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--steps", type=int, default=None, help=f"timed steps per candidate and round (default {FULL_DEFAULTS['steps']})"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"untimed steps before them (pipeline fill, worker start; default {FULL_DEFAULTS['warmup']})",
    )
    p.add_argument(
        "--rounds", type=int, default=None, help=f"interleaved rounds; medians are reported (default {FULL_DEFAULTS['rounds']})"
    )
    p.add_argument("--batch-size", type=int, default=None, help=f"images per step (default {EXAMPLE_BATCH_SIZE}, the example's)")
    p.add_argument("--image-size", type=int, default=None, help=f"side of images and crops (default {EXAMPLE_IMAGE_SIZE})")
    p.add_argument(
        "--workers", type=int, default=None, help=f"DataLoader workers of both pipelines (default {FULL_DEFAULTS['workers']})"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch intra-op threads of the training process (default {FULL_DEFAULTS['threads']})",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument(
        "--no-fit", "--no-trainer", dest="no_fit", action="store_true", help="skip the reprzoo run through `reprzoo fit`"
    )
    p.add_argument("--no-pipeline-only", action="store_true", help="skip the loader-only measurements")
    p.add_argument("--seed", type=int, default=0, help="seed of the images and of the runs (default 0)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny batch, 2 steps, 1 round (explicit options win)")
    args = p.parse_args(argv)
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.steps, args.warmup, args.rounds, args.threads) < 1 or args.batch_size < 2 or args.workers < 0:
        p.error("need --steps, --warmup, --rounds, --threads >= 1, --batch-size >= 2 and --workers >= 0")
    return args


# --------------------------------------------------------------------------------------------- lightly side
class LightlySimSiam(nn.Module):
    """The model of lightly's SimSiam example: torchvision ResNet-18 without its classifier + lightly's heads."""

    def __init__(self):
        import torchvision
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])  # up to global average pooling
        self.projection_head = SimSiamProjectionHead(512, PROJ_HIDDEN, PROJ_OUT)
        self.prediction_head = SimSiamPredictionHead(PROJ_OUT, PRED_HIDDEN, PROJ_OUT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(features)
        p = self.prediction_head(z)
        return z.detach(), p


def lightly_setup(device: torch.device, channels_last: bool = False):
    """The example's model, loss, optimiser and step; ``channels_last``: the model and its inputs in channels-last
    memory format (not in the example: a user's opt-in, measured as a reference for reprzoo's default)."""
    from lightly.loss import NegativeCosineSimilarity

    model = LightlySimSiam().to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    criterion = NegativeCosineSimilarity()
    optimizer = torch.optim.SGD(model.parameters(), lr=EXAMPLE_LR)

    def step(batch) -> None:
        x0, x1 = (v.to(device, non_blocking=True).contiguous(memory_format=memory_format) for v in batch[0])
        z0, p0 = model(x0)
        z1, p1 = model(x1)
        loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return model, step


def lightly_loader(images: torch.Tensor, labels: torch.Tensor, args, pin_memory: bool) -> DataLoader:
    from lightly.transforms import SimSiamTransform

    dataset = PILImages(images, labels, SimSiamTransform(input_size=args.image_size))
    return image_loader(dataset, args.batch_size, args.workers, pin_memory)


# --------------------------------------------------------------------------------------------- reprzoo side
REPRZOO_MODEL_KWARGS = dict(
    backbone="resnet18",  # timm's ResNet-18 = torchvision's architecture (checked: same parameter count)
    proj_hidden_dim=PROJ_HIDDEN,
    proj_output_dim=PROJ_OUT,
    proj_layers=3,
    pred_hidden_dim=PRED_HIDDEN,
    num_classes=None,  # the example has no online probe / kNN monitor
    online_probe=False,
    lr=EXAMPLE_LR,
    lr_reference_batch=None,  # absolute LR as in the example
    momentum=0.0,
    weight_decay=0.0,
    scheduler="constant",
)


def reprzoo_datamodule_kwargs(args) -> dict[str, Any]:
    return dict(
        num_classes=10,
        train_size=(args.warmup + args.steps) * args.batch_size,  # one epoch per round: no epoch restarts timed
        test_size=args.batch_size,
        seed=args.seed,
        image_size=args.image_size,
        augmentation="simsiam",
        augmentation_kwargs=dict(LIGHTLY_MATCHED_AUGMENTATION),
        batch_size=args.batch_size,
        num_workers=args.workers,
    )


def reprzoo_datamodule(args):
    from reprzoo.datamodules.images import SyntheticImages

    return SyntheticImages(**reprzoo_datamodule_kwargs(args))


def reprzoo_setup(device: torch.device):
    from reprzoo.lightning_modules import SimSiam

    model = SimSiam(**REPRZOO_MODEL_KWARGS).to(device)
    model.train()
    model.default_memory_format(device)  # reprzoo's default layout, as `configure_model` sets it under a Trainer
    optimizer = reprzoo_optimizer(model)

    def step(batch) -> None:
        views = [model._format(v.to(device, non_blocking=True)) for v in batch[0]]  # as `training_step` does
        loss = model.training_loss(views).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return model, step


class StepTimes(L.Callback):
    """The clock at the end of every training batch: the ``reprzoo fit`` candidate's timer, added through the
    config's ``trainer.callbacks`` as a user would add a callback (the CLI's own callbacks are kept)."""

    def __init__(self, device: str = "cpu"):
        super().__init__()
        self.device = torch.device(device)
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        sync(self.device)
        self.ends.append(time.perf_counter())


def reprzoo_fit_config(args, root: Path) -> dict[str, Any]:
    """The config of ``reprzoo fit --config FILE``: the example's model and data (as in the plain loop), reprzoo's
    trainer defaults (TensorBoard logger under ``root``, progress bar, checkpoints, LR monitor, validation at the
    end, metrics.json, ...), ``max_steps`` = warmup + timed steps (one epoch), and the timer callback."""
    device = torch.device(args.device)
    model_args = {k: v for k, v in REPRZOO_MODEL_KWARGS.items() if k != "num_classes"}  # the CLI links it from the data
    data_args = reprzoo_datamodule_kwargs(args)
    data_args["augmentation_kwargs"] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in LIGHTLY_MATCHED_AUGMENTATION.items()
    }
    trainer: dict[str, Any] = {
        "accelerator": "gpu" if device.type == "cuda" else "cpu",
        "devices": [device.index or 0] if device.type == "cuda" else 1,
        "max_steps": args.warmup + args.steps,
        "default_root_dir": str(root),
        "callbacks": [{"class_path": f"{StepTimes.__module__}.StepTimes", "init_args": {"device": str(device)}}],
    }
    if device.type == "cuda":  # reprzoo fit's bf16 default on GPUs off: float32, as the other candidates
        trainer["precision"] = "32-true"
    return {
        "seed_everything": args.seed,
        "trainer": trainer,
        "model": {"class_path": "reprzoo.lightning_modules.SimSiam", "init_args": model_args},
        "data": {"class_path": "reprzoo.datamodules.SyntheticImages", "init_args": data_args},
    }


def reprzoo_fit_images_per_s(args, device: torch.device) -> float:
    """reprzoo's SimSiam and datamodule through ``reprzoo fit --config FILE`` (in process: ``cli_main``, the
    command's own entry), with every callback and the logger the command adds; batches timed by a callback."""
    import logging
    import tempfile

    import yaml

    from reprzoo.cli.training import cli_main

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no "GPU available" banners in the output
    with tempfile.TemporaryDirectory(prefix="bench_simsiam_fit_") as tmp:
        config = Path(tmp) / "simsiam_example.yaml"
        config.write_text(yaml.safe_dump(reprzoo_fit_config(args, Path(tmp) / "runs"), sort_keys=False))
        cli = cli_main(["fit", "--config", str(config)])
        timer = next(c for c in cli.trainer.callbacks if type(c).__name__ == "StepTimes")
        shutdown(cli.trainer.train_dataloader)
        del cli
    if len(timer.ends) != args.warmup + args.steps:
        raise RuntimeError(f"reprzoo fit ran {len(timer.ends)} steps, expected {args.warmup + args.steps}")
    elapsed = timer.ends[-1] - timer.ends[args.warmup - 1]
    return args.steps * args.batch_size / elapsed


# --------------------------------------------------------------------------------------------- benchmark
def run(args: argparse.Namespace) -> dict[str, Any]:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*to_tensor.*deprecated.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    load_start = loadavg()

    datamodule = reprzoo_datamodule(args)
    datamodule.setup("fit")
    images, labels = datamodule._train.images, datamodule._train.labels  # the generated uint8 (N, 3, H, W) images
    pin_memory = datamodule.pin_memory

    lightly_model, lightly_step = lightly_setup(device)
    _, lightly_channels_last_step = lightly_setup(device, channels_last=True)
    reprzoo_model, reprzoo_step = reprzoo_setup(device)
    params = {
        "lightly_backbone": sum(p.numel() for p in lightly_model.backbone.parameters()),
        "reprzoo_backbone": sum(p.numel() for p in reprzoo_model.backbone.parameters()),
        "lightly_total": sum(p.numel() for p in lightly_model.parameters()),
        "reprzoo_total": sum(p.numel() for p in reprzoo_model.parameters()),
    }
    if params["lightly_total"] != params["reprzoo_total"] or params["lightly_backbone"] != params["reprzoo_backbone"]:
        raise RuntimeError(f"the two models differ: {params}")

    # the ceiling's input: one batch of views made once (through lightly's transform), shared by both models
    loader = lightly_loader(images, labels, argparse.Namespace(**{**vars(args), "workers": 0}), pin_memory)
    premade = next(iter(loader))
    premade = ([v.to(device) for v in premade[0]], premade[1])
    del loader
    # one untimed step per model first (allocator and kernel warmup), then per-round warmup for loaders only
    lightly_step(premade)
    lightly_channels_last_step(premade)
    reprzoo_step(premade)

    def through_loader(make_loader, step):
        return lambda: loader_images_per_s(make_loader, step, args.warmup, args.steps, args.batch_size, device)

    def model_only(step):
        return lambda: images_per_s(repeat(premade), step, 0, args.steps, args.batch_size, device)

    def pipeline_only(make_loader):
        return through_loader(make_loader, lambda batch: None)

    candidates: dict[str, Callable[[], float]] = {
        "lightly": through_loader(lambda: lightly_loader(images, labels, args, pin_memory), lightly_step),
        "reprzoo": through_loader(lambda: reprzoo_datamodule(args).train_dataloader(), reprzoo_step),
    }
    if not args.no_fit:
        candidates["reprzoo_fit"] = lambda: reprzoo_fit_images_per_s(args, device)
    candidates["lightly_model_only"] = model_only(lightly_step)
    candidates["lightly_model_only_channels_last"] = model_only(lightly_channels_last_step)
    candidates["reprzoo_model_only"] = model_only(reprzoo_step)
    if not args.no_pipeline_only:
        candidates["lightly_pipeline_only"] = pipeline_only(lambda: lightly_loader(images, labels, args, pin_memory))
        candidates["reprzoo_pipeline_only"] = pipeline_only(lambda: reprzoo_datamodule(args).train_dataloader())

    rounds = interleaved_rounds(candidates, args.rounds, args.threads, args.seed)
    median = medians(rounds)

    def ratio(a: str, b: str) -> float | None:
        return median[a] / median[b] if a in median and b in median else None

    pipelines = {}
    for name in ("lightly", "reprzoo", "reprzoo_fit"):
        if name not in median:
            continue
        ceiling = "reprzoo_model_only" if name.startswith("reprzoo") else "lightly_model_only"
        pipelines[name] = {
            "end_to_end": median[name],
            "model_only": median[ceiling],
            "e2e_over_ceiling": ratio(name, ceiling),
            "pipeline_only": median.get(f"{name.split('_')[0]}_pipeline_only"),
        }
    ratios = {
        "reprzoo_over_lightly_end_to_end": ratio("reprzoo", "lightly"),
        "reprzoo_over_lightly_model_only": ratio("reprzoo_model_only", "lightly_model_only"),
        "reprzoo_over_lightly_channels_last_model_only": ratio("reprzoo_model_only", "lightly_model_only_channels_last"),
        "lightly_channels_last_over_example_model_only": ratio("lightly_model_only_channels_last", "lightly_model_only"),
        "reprzoo_fit_over_lightly_end_to_end": ratio("reprzoo_fit", "lightly"),
        "reprzoo_fit_over_plain_loop": ratio("reprzoo_fit", "reprzoo"),
        "reprzoo_over_lightly_pipeline_only": ratio("reprzoo_pipeline_only", "lightly_pipeline_only"),
    }
    pairs = {
        "reprzoo_over_lightly_end_to_end": ("reprzoo", "lightly"),
        "reprzoo_over_lightly_model_only": ("reprzoo_model_only", "lightly_model_only"),
        "reprzoo_fit_over_lightly_end_to_end": ("reprzoo_fit", "lightly"),
        "reprzoo_fit_over_plain_loop": ("reprzoo_fit", "reprzoo"),
    }
    # the median over rounds of each round's ratio: on a shared machine whose load moves between rounds, the two
    # candidates of a round ran minutes apart at most, so this is less sensitive to a round-long load change
    paired_ratios = {
        key: statistics.median(x / y for x, y in zip(rounds[a], rounds[b]))
        for key, (a, b) in pairs.items()
        if a in rounds and b in rounds
    }
    return {
        "units": "images/s (one image = two augmented views), median over rounds",
        "command": "python benchmarks/bench_simsiam.py " + " ".join(getattr(args, "argv", [])),
        "config": {
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "workers": args.workers,
            "threads": args.threads,
            "seed": args.seed,
            "reprzoo_channels_last": reprzoo_model.channels_last_active,
            "quick": args.quick,
            "reprzoo_augmentation": {k: list(v) if isinstance(v, tuple) else v for k, v in LIGHTLY_MATCHED_AUGMENTATION.items()},
        },
        "environment": environment(device),
        "parameters": params,
        "pipelines": pipelines,
        "ratios": ratios,
        "paired_ratios": paired_ratios,
        "medians": median,
        "rounds": rounds,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "wall_s": time.perf_counter() - started,
    }


def markdown_table(results: dict[str, Any]) -> str:
    def fmt(x: float | None, digits: int = 1) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    rows = [
        "| pipeline | end-to-end img/s | model-only img/s | e2e / ceiling | loader-only img/s |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {
        "lightly": "lightly example (plain PyTorch loop)",
        "reprzoo": "reprzoo (plain loop, `training_loss`)",
        "reprzoo_fit": "reprzoo (`reprzoo fit`)",
    }
    for name, row in results["pipelines"].items():
        rows.append(
            f"| {labels[name]} | {fmt(row['end_to_end'])} | {fmt(row['model_only'])} | "
            f"{fmt(row['e2e_over_ceiling'], 2)} | {fmt(row['pipeline_only'], 0)} |"
        )
    reference = results["medians"].get("lightly_model_only_channels_last")
    if reference is not None:
        rows.append(f"| lightly's model in channels-last (a user's opt-in; model only) | | {fmt(reference)} | | |")
    return "\n".join(rows)


def report(results: dict[str, Any]) -> str:
    paired = results.get("paired_ratios", {})
    ratios = [
        f"{key}: {value:.3f}" + (f" (median of per-round ratios {paired[key]:.3f})" if key in paired else "")
        for key, value in results["ratios"].items()
        if value is not None
    ]
    return "\n".join([markdown_table(results), *ratios])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return _timing.main(argv, parse_args, run, report)


if __name__ == "__main__":
    main()
