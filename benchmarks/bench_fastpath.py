"""Fast-path training throughput: SimSiam, BYOL and SimCLR in reprzoo against lightly, at two scales, one device.

For each method in ``--methods`` and each setting in ``--settings``:

* ``resnet18@32``: ResNet-18 (ImageNet stem, 512-d features) on 32x32 images, the heads of lightly's
  ``examples/pytorch/<method>.py`` (SimSiam 512-512-128 / 128-64-128, BYOL 512-1024-256 / 256-1024-256, SimCLR
  512-512-128);
* ``resnet50@224``: ResNet-50 (2048-d features) on 224x224 images, the papers' heads (= lightly's defaults:
  SimSiam 2048-2048-2048 / 2048-512-2048, BYOL 2048-4096-256 / 256-4096-256, SimCLR 2048-2048-128);

five candidates are timed, interleaved over ``--rounds`` rounds (order reversed every other round):

* ``lightly``: lightly end to end. A torchvision ResNet without its ``fc`` (lightly's examples), lightly's heads
  and loss (``SimSiamProjectionHead``/``SimSiamPredictionHead`` + ``NegativeCosineSimilarity``;
  ``BYOLProjectionHead``/``BYOLPredictionHead`` + ``update_momentum`` with ``cosine_schedule``; ``SimCLRProjectionHead``
  + ``NTXentLoss(temperature=0.5)``), lightly's ``SimSiamTransform``/``BYOLTransform``/``SimCLRTransform`` at the
  input size on PIL images (what a torchvision dataset yields), a DataLoader and a plain PyTorch loop.
* ``lightly_model_only``: the same training step on one batch of views made once (no data pipeline: the ceiling).
* ``reprzoo_cpu``: ``reprzoo.lightning_modules.<Method>`` with the same head sizes on timm's ResNet (the same
  architecture and parameter count as torchvision's; checked; the heads differ by a few thousand parameters:
  reprzoo's BYOL heads have a bias before their BN, lightly's SimCLR output BN has affine parameters) and ``SyntheticImages(augment_on="cpu")``: the
  per-sample torchvision v2 augmentation in the loader, a plain loop around ``training_loss`` and an optimiser built
  by reprzoo's own helpers.
* ``reprzoo_device``: the same with ``augment_on="device"``: the loader yields uint8 batches, augmented as whole
  batches on the training device by ``reprzoo.datamodules.batch_augment`` inside the timed step (on a CPU run the
  "device" is the CPU, so this is the batched tensor path).
* ``reprzoo_model_only``: reprzoo's training step on the same premade views as lightly's ceiling.

Both sides train with SGD lr 0.06 (lightly's examples; no momentum or weight decay), BYOL's target network is an EMA
updated every step (tau from 0.996 on BYOL's cosine schedule). reprzoo's ``simsiam``, ``byol`` and ``simclr``
augmentations have lightly's transforms' defaults (crop scales, jitter strengths and probabilities, grayscale, blur,
BYOL's asymmetric blur/solarisation); blur kernels and normalisation constants differ (no effect on cost).
Data: ``reprzoo.datamodules.SyntheticImages`` generated at the setting's size (nothing is downloaded); each
measurement builds a fresh loader over exactly ``warmup + steps`` batches. Throughput is in images per second
(one image = its two views); medians over rounds are reported, with e2e/ceiling and reprzoo/lightly ratios.

Budget: the defaults (batch 128 at 32 px and 16 at 224 px, 2 timed steps after 1 warmup step, 2 rounds, one torch
thread and one loader worker) run 28 training steps per method and setting (13 per round plus one untimed step per
model): the full run took 32 minutes on the idle 2-core CPU (2026-11-23, BENCHMARKS.md), most of it ResNet-50 at
224 px, which trains at about 1 image/s (0.7 for BYOL) on one thread. On a GPU use e.g.
``--device cuda --batch-size 256 --steps 20 --warmup 5 --workers 8 --threads 4 [--bf16]
[--channels-last]``.

Run from the repository root: ``python benchmarks/bench_fastpath.py --out bench_fastpath.json``; ``--quick`` is a
smoke run (16 px and 32 px images, batch 4, 1 step: about 45 s for all six groups, 12 s for ``--settings
resnet18@32``).
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing, also when this file is loaded by path
import _timing  # noqa: E402
from _timing import (  # noqa: E402
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
)

LR = 0.06  # lightly's examples: SGD, no momentum, no weight decay
TEMPERATURE = 0.5  # NTXentLoss's default, as lightly's SimCLR example uses it
TAU_BASE = 0.996  # BYOL's initial EMA decay (both sides, cosine schedule to 1)
SCHEDULE_STEPS = 1000  # length of that schedule (any value: it only sets tau)
METHODS = ("simsiam", "byol", "simclr")


@dataclass(frozen=True)
class Setting:
    """A backbone at an input size; ``heads[method]`` = (projector hidden, output, predictor hidden)."""

    arch: str  # torchvision's name on lightly's side, timm's on reprzoo's
    image_size: int
    batch_size: int
    quick_image_size: int
    heads: dict[str, tuple[int, int, int]]


SETTINGS = {
    "resnet18@32": Setting(
        "resnet18", 32, 128, 16, {"simsiam": (512, 128, 64), "byol": (1024, 256, 1024), "simclr": (512, 128, 0)}
    ),
    "resnet50@224": Setting(
        "resnet50", 224, 16, 32, {"simsiam": (2048, 2048, 512), "byol": (4096, 256, 4096), "simclr": (2048, 128, 0)}
    ),
}
FULL_DEFAULTS = {"steps": 2, "warmup": 1, "rounds": 2, "workers": 1, "threads": 1}
QUICK_DEFAULTS = {"steps": 1, "warmup": 1, "rounds": 1, "workers": 0, "threads": 1, "batch_size": 4}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument(
        "--batch-size", type=int, default=None, help="images per step in every setting (default: 128 at 32 px, 16 at 224 px)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help=f"timed steps per candidate and round (default {FULL_DEFAULTS['steps']})"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help=f"untimed loader steps before them (default {FULL_DEFAULTS['warmup']})"
    )
    p.add_argument(
        "--rounds", type=int, default=None, help=f"interleaved rounds; medians reported (default {FULL_DEFAULTS['rounds']})"
    )
    p.add_argument("--threads", type=int, default=None, help=f"torch intra-op threads (default {FULL_DEFAULTS['threads']})")
    p.add_argument(
        "--workers", type=int, default=None, help=f"DataLoader workers of every pipeline (default {FULL_DEFAULTS['workers']})"
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast around forward and loss (both sides)")
    p.add_argument("--channels-last", action="store_true", help="channels-last models and inputs (both sides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run: 16/32 px, batch 4, 1 step, 1 round (explicit options win)")
    args = p.parse_args(argv)
    for key, value in (QUICK_DEFAULTS if args.quick else FULL_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.steps, args.warmup, args.rounds, args.threads) < 1 or args.workers < 0:
        p.error("need --steps, --warmup, --rounds, --threads >= 1 and --workers >= 0")
    if args.batch_size is not None and args.batch_size < 2:
        p.error("--batch-size must be at least 2 (batch norm and NT-Xent need two samples)")
    return args


# --------------------------------------------------------------------------------------------- lightly side
class LightlyModel(nn.Module):
    """``method`` assembled as lightly's examples do: torchvision trunk, lightly's heads, loss and EMA helpers."""

    def __init__(self, method: str, arch: str, heads: tuple[int, int, int]):
        import torchvision
        from lightly import loss
        from lightly.models import modules, utils

        super().__init__()
        self.method = method
        resnet = getattr(torchvision.models, arch)()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten(1))  # up to global average pooling
        features, (hidden, out, predictor_hidden) = resnet.fc.in_features, heads
        if method == "simclr":
            self.projection_head = modules.SimCLRProjectionHead(features, hidden, out)
            self.criterion = loss.NTXentLoss(temperature=TEMPERATURE)
            return
        self.criterion = loss.NegativeCosineSimilarity()
        if method == "simsiam":
            self.projection_head = modules.SimSiamProjectionHead(features, hidden, out)
            self.prediction_head = modules.SimSiamPredictionHead(out, predictor_hidden, out)
            return
        self.projection_head = modules.BYOLProjectionHead(features, hidden, out)
        self.prediction_head = modules.BYOLPredictionHead(out, predictor_hidden, out)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        utils.deactivate_requires_grad(self.backbone_momentum)
        utils.deactivate_requires_grad(self.projection_head_momentum)

    def momentum_update(self, step: int) -> None:
        """BYOL's EMA, called before each step as in lightly's example; nothing for the other methods."""
        if self.method != "byol":
            return
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(step, SCHEDULE_STEPS, TAU_BASE, 1.0)
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)

    def loss(self, views: list[torch.Tensor]) -> torch.Tensor:
        x0, x1 = views[:2]
        z0, z1 = self.projection_head(self.backbone(x0)), self.projection_head(self.backbone(x1))
        if self.method == "simclr":
            return self.criterion(z0, z1)
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        if self.method == "simsiam":
            z0, z1 = z0.detach(), z1.detach()
        else:
            with torch.no_grad():
                z0, z1 = (self.projection_head_momentum(self.backbone_momentum(x)) for x in (x0, x1))
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


def lightly_transform(method: str, size: int):
    from lightly import transforms

    if method == "simsiam":
        return transforms.SimSiamTransform(input_size=size)
    if method == "byol":  # each view's transform has its own input size (default 224)
        return transforms.BYOLTransform(
            transforms.BYOLView1Transform(input_size=size), transforms.BYOLView2Transform(input_size=size)
        )
    return transforms.SimCLRTransform(input_size=size)


# --------------------------------------------------------------------------------------------- reprzoo side
def reprzoo_model(method: str, setting: Setting) -> nn.Module:
    from reprzoo import lightning_modules as lm

    hidden, out, predictor_hidden = setting.heads[method]
    common = dict(
        backbone=setting.arch,  # timm's ResNet: torchvision's architecture (parameter counts checked)
        num_classes=None,  # no online probe or kNN monitor (lightly's examples have none)
        online_probe=False,
        optimizer="sgd",
        lr=LR,
        lr_reference_batch=None,
        momentum=0.0,
        weight_decay=0.0,
        scheduler="constant",
        warmup_epochs=0.0,
    )
    if method == "simsiam":
        return lm.SimSiam(proj_hidden_dim=hidden, proj_output_dim=out, proj_layers=3, pred_hidden_dim=predictor_hidden, **common)
    if method == "byol":  # reprzoo's predictor has the projector's hidden width, as lightly's example sets it
        return lm.BYOL(proj_hidden_dim=hidden, proj_output_dim=out, tau_base=TAU_BASE, **common)
    # both SimCLR heads end in a BatchNorm: lightly's with affine parameters, reprzoo's without (the authors' code)
    return lm.SimCLR(proj_hidden_dim=hidden, proj_output_dim=out, proj_output_bn=True, temperature=TEMPERATURE, **common)


def reprzoo_ema(model) -> Callable[[int], None]:
    """What the base's ``on_train_batch_end`` does after each step (BYOL's EMA; nothing for the others)."""
    from reprzoo.components.ema import cosine_tau, ema_update

    def update(step: int) -> None:
        for online, target in model.momentum_pairs:
            ema_update(target, online, cosine_tau(step, SCHEDULE_STEPS, model.tau_base, model.tau_final))

    return update


def synthetic_images(method: str, size: int, batch_size: int, args, augment_on: str):
    from reprzoo.datamodules import SyntheticImages

    return SyntheticImages(
        num_classes=10,
        train_size=(args.warmup + args.steps) * batch_size,  # one epoch per measurement: no epoch restart timed
        test_size=batch_size,
        seed=args.seed,
        image_size=size,
        augmentation=method,  # reprzoo's defaults for these three are lightly's transforms' defaults
        batch_size=batch_size,
        num_workers=args.workers,
        pin_memory=torch.device(args.device).type == "cuda",
        augment_on=augment_on,
    )


# --------------------------------------------------------------------------------------------- measurement
def training_step(optimizer, loss_of: Callable, before: Callable[[int], None], after: Callable[[int], None], args):
    """One optimiser step on a list of views, with the run's device, memory format and autocast."""
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    counter = iter(range(sys.maxsize))

    def step(views: list[torch.Tensor]) -> None:
        i = next(counter)
        views = [v.to(device, non_blocking=True).contiguous(memory_format=fmt) for v in views]
        before(i)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = loss_of(views)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        after(i)

    return step


def parameter_counts(lightly: LightlyModel, reprzoo: nn.Module) -> dict[str, int]:
    """Backbones must be equal; whole models may differ by a few head parameters: reprzoo's BYOL heads have a bias
    before their BN (3 x hidden with the target), lightly's SimCLR output BN has affine parameters (2 x out)."""
    counts = {}
    for side, model in (("lightly", lightly), ("reprzoo", reprzoo)):
        counts[f"{side}_backbone"] = sum(p.numel() for p in model.backbone.parameters())
        counts[f"{side}_total"] = sum(p.numel() for p in model.parameters())
    if counts["lightly_backbone"] != counts["reprzoo_backbone"]:
        raise RuntimeError(f"the backbones differ: {counts}")
    if abs(counts["reprzoo_total"] - counts["lightly_total"]) > 0.01 * counts["lightly_total"]:
        raise RuntimeError(f"the models differ by more than 1%: {counts}")
    return counts


def measure(method: str, setting_name: str, args) -> dict[str, Any]:
    """All candidates of one method at one setting, interleaved over rounds."""
    device, setting = torch.device(args.device), SETTINGS[setting_name]
    size = setting.quick_image_size if args.quick else setting.image_size
    batch = args.batch_size or setting.batch_size
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    data_cpu = synthetic_images(method, size, batch, args, "cpu")
    data_device = synthetic_images(method, size, batch, args, "device")
    data_cpu.setup("fit")
    images, labels = data_cpu._train.images, data_cpu._train.labels  # the generated uint8 (N, 3, S, S) images
    lightly_data = PILImages(images, labels, lightly_transform(method, size))

    torch.manual_seed(args.seed)
    lightly = LightlyModel(method, setting.arch, setting.heads[method]).to(device, memory_format=fmt)
    reprzoo = reprzoo_model(method, setting).to(device, memory_format=fmt).train()
    params = parameter_counts(lightly, reprzoo)
    lightly_step = training_step(
        torch.optim.SGD(lightly.parameters(), lr=LR), lightly.loss, lightly.momentum_update, lambda i: None, args
    )
    reprzoo_step = training_step(
        reprzoo_optimizer(reprzoo), lambda views: reprzoo.training_loss(views).loss, lambda i: None, reprzoo_ema(reprzoo), args
    )

    def lightly_loader(workers: int = args.workers):
        return image_loader(lightly_data, batch, workers, pin_memory=device.type == "cuda")

    generator = torch.Generator(device).manual_seed(args.seed)

    def augmented_on_device(batch_):  # what on_after_batch_transfer does under a Trainer
        uint8_images = batch_[0].to(device, non_blocking=True)
        reprzoo_step(data_device.batch_augmentation(uint8_images, generator=generator))

    # the ceilings' input: one batch of views made once through lightly's transform, shared by both models;
    # one untimed step per model on it (allocator and kernel warmup)
    premade = [v.to(device) for v in next(iter(lightly_loader(workers=0)))[0]]
    lightly_step(premade)
    reprzoo_step(premade)

    def through_loader(make_loader, step):
        return lambda: loader_images_per_s(make_loader, step, args.warmup, args.steps, batch, device)

    def model_only(step):
        return lambda: images_per_s(repeat(premade), step, 0, args.steps, batch, device)

    candidates = {
        "lightly": through_loader(lightly_loader, lambda b: lightly_step(b[0])),
        "lightly_model_only": model_only(lightly_step),
        "reprzoo_cpu": through_loader(data_cpu.train_dataloader, lambda b: reprzoo_step(b[0])),
        "reprzoo_device": through_loader(data_device.train_dataloader, augmented_on_device),
        "reprzoo_model_only": model_only(reprzoo_step),
    }
    rounds = interleaved_rounds(candidates, args.rounds, args.threads, args.seed, label=f"{method:8s}{setting_name:13s}")
    median = medians(rounds)
    pipelines = {}
    for name in ("lightly", "reprzoo_cpu", "reprzoo_device"):
        ceiling = f"{name.split('_')[0]}_model_only"
        pipelines[name] = {
            "end_to_end": median[name],
            "model_only": median[ceiling],
            "e2e_over_ceiling": median[name] / median[ceiling],
            "e2e_vs_lightly": median[name] / median["lightly"],
            "model_only_vs_lightly": median[ceiling] / median["lightly_model_only"],
        }
    # free the models before the next setting (rebinding, not del: the closures above share these variables)
    lightly = reprzoo = lightly_step = reprzoo_step = premade = candidates = None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "method": method,
        "setting": setting_name,
        "arch": setting.arch,
        "image_size": size,
        "batch_size": batch,
        "parameters": params,
        "pipelines": pipelines,
        "rounds": rounds,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    for message in (".*does not have many workers.*", ".*to_tensor.*deprecated.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    started, load_start = time.perf_counter(), loadavg()
    groups = [measure(method, setting, args) for setting in args.settings for method in args.methods]
    return {
        "units": "images/s (one image = two augmented views), median over rounds",
        "command": "python benchmarks/bench_fastpath.py " + " ".join(getattr(args, "argv", [])),
        "config": {
            key: getattr(args, key)
            for key in (
                "methods",
                "settings",
                "batch_size",
                "steps",
                "warmup",
                "rounds",
                "threads",
                "workers",
                "device",
                "bf16",
                "channels_last",
                "seed",
                "quick",
            )
        },
        "environment": environment(device),
        "results": groups,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "wall_s": time.perf_counter() - started,
    }


PIPELINE_LABELS = {"lightly": "lightly", "reprzoo_cpu": "reprzoo, augment_on=cpu", "reprzoo_device": "reprzoo, augment_on=device"}


def markdown_table(results: dict[str, Any]) -> str:
    env, config = results["environment"], results["config"]
    device = f"{env['device_name']} ({env['device']})"
    extras = "".join(f", {flag}" for flag in ("bf16", "channels_last") if config[flag])
    rows = [
        f"Device: {device}; {config['threads']} torch thread(s), {config['workers']} loader worker(s){extras}.",
        "",
        "| method | setting | batch | pipeline | end-to-end img/s | model-only img/s | e2e / ceiling | e2e vs lightly | model-only vs lightly | device |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for group in results["results"]:
        setting = f"{group['arch']} @ {group['image_size']} px"
        for name, row in group["pipelines"].items():
            rows.append(
                f"| {group['method']} | {setting} | {group['batch_size']} | {PIPELINE_LABELS[name]} | {row['end_to_end']:.1f} | "
                f"{row['model_only']:.1f} | {row['e2e_over_ceiling']:.2f} | {row['e2e_vs_lightly']:.2f} | "
                f"{row['model_only_vs_lightly']:.2f} | {env['device_name']} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return _timing.main(argv, parse_args, run, markdown_table)


if __name__ == "__main__":
    main()
