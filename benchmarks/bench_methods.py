"""Six methods side by side with lightly: training images/s and digits kNN after the same number of steps.

For SimCLR, MoCo v2, BYOL, Barlow Twins, VICReg and DINO, one process trains

* ``lightly``: a LightningModule written the way lightly's ``examples/pytorch_lightning/<method>.py`` are (lightly's
  heads, losses, ``update_momentum`` / ``cosine_schedule``), and
* ``reprzoo``: ``reprzoo.lightning_modules.<Method>``,

on the same backbone (reprzoo's in-house ``resnet_tiny_cifar``, 128-d features: CPU-sized), the same head sizes, the
same optimiser (lightly's example: SGD lr 0.06 without momentum or weight decay; DINO: Adam lr 1e-3), the same
datamodule (``Digits`` at 32 px with the method's augmentation), batch, seed and number of steps, through
``lightning.Trainer`` on one CPU thread. Both sides' online probe and validation are off; after training, both
backbones are scored the same way: weighted kNN top-1 (k=20, T=0.1) of the digits test split against the train split.

Images/s counts images (not views) from the end of the ``--warmup``-th step to the end of training. The two sides of
a method run back to back, lightly first for even-numbered methods and reprzoo first for odd ones.

Run from the repository root: ``python benchmarks/bench_methods.py --out bench_methods.json`` (about 15 minutes on
an idle 2-core CPU with the defaults); ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.datamodules import Digits
from reprzoo.metrics.knn import weighted_knn_predict

BACKBONE = "resnet_tiny_cifar"
FEATURES = 128  # resnet_tiny_cifar's pooled width
LR = 0.06


# ------------------------------------------------------------------------------------------- lightly side
def _lightly():
    import lightly.loss as loss
    import lightly.models.modules as heads
    import lightly.models.utils as utils
    from lightly.utils.scheduler import cosine_schedule

    return loss, heads, utils, cosine_schedule


class LightlyModule(L.LightningModule):
    """Common skeleton of lightly's Lightning examples: a backbone, heads, a loss, ``SGD(lr=0.06)``."""

    momentum_range: tuple[float, float] | None = None

    def __init__(self):
        super().__init__()
        self.backbone = build_backbone(BACKBONE)

    def embed(self, x):
        return self.backbone(x)

    def training_step(self, batch, batch_idx):
        views = batch[0]
        if self.momentum_range is not None:
            _, _, utils, cosine_schedule = _lightly()
            m = cosine_schedule(self.global_step, max(self.trainer.max_steps, 1), *self.momentum_range)  # per step, as reprzoo
            for online, target in self.momentum_pairs():
                utils.update_momentum(online, target, m=m)
        loss = self.loss_of(views)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class LightlySimCLR(LightlyModule):
    def __init__(self):
        super().__init__()
        loss, heads, *_ = _lightly()
        self.projection_head = heads.SimCLRProjectionHead(FEATURES, 512, 128)
        self.criterion = loss.NTXentLoss(temperature=0.5)

    def loss_of(self, views):
        z0, z1 = (self.projection_head(self.backbone(x)) for x in views[:2])
        return self.criterion(z0, z1)


class LightlyMoCo(LightlyModule):
    momentum_range = (0.999, 0.999)  # MoCo v2's constant m (lightly's example anneals 0.996 -> 1)

    def __init__(self):
        super().__init__()
        import copy

        loss, heads, utils, _ = _lightly()
        self.projection_head = heads.MoCoProjectionHead(FEATURES, 512, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        utils.deactivate_requires_grad(self.backbone_momentum)
        utils.deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = loss.NTXentLoss(temperature=0.2, memory_bank_size=(4096, 128))

    def momentum_pairs(self):
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def loss_of(self, views):
        query = self.projection_head(self.backbone(views[0]))
        with torch.no_grad():
            key = self.projection_head_momentum(self.backbone_momentum(views[1]))
        return self.criterion(query, key)


class LightlyBYOL(LightlyModule):
    momentum_range = (0.99, 1.0)

    def __init__(self):
        super().__init__()
        import copy

        loss, heads, utils, _ = _lightly()
        self.projection_head = heads.BYOLProjectionHead(FEATURES, 512, 128)
        self.prediction_head = heads.BYOLPredictionHead(128, 512, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        utils.deactivate_requires_grad(self.backbone_momentum)
        utils.deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = loss.NegativeCosineSimilarity()

    def momentum_pairs(self):
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def loss_of(self, views):
        x0, x1 = views[:2]
        p0 = self.prediction_head(self.projection_head(self.backbone(x0)))
        p1 = self.prediction_head(self.projection_head(self.backbone(x1)))
        with torch.no_grad():
            z0 = self.projection_head_momentum(self.backbone_momentum(x0))
            z1 = self.projection_head_momentum(self.backbone_momentum(x1))
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


class LightlyBarlowTwins(LightlyModule):
    def __init__(self):
        super().__init__()
        loss, heads, *_ = _lightly()
        self.projection_head = heads.BarlowTwinsProjectionHead(FEATURES, 512, 512)
        self.criterion = loss.BarlowTwinsLoss()

    def loss_of(self, views):
        z0, z1 = (self.projection_head(self.backbone(x)) for x in views[:2])
        return self.criterion(z0, z1)


class LightlyVICReg(LightlyBarlowTwins):  # lightly's VICReg example uses the Barlow Twins projection head
    def __init__(self):
        super().__init__()
        loss, *_ = _lightly()
        self.criterion = loss.VICRegLoss()


class LightlyDINO(LightlyModule):
    momentum_range = (0.996, 1.0)

    def __init__(self, out_dim: int = 2048):
        super().__init__()
        import copy

        loss, heads, utils, _ = _lightly()
        self.student_head = heads.DINOProjectionHead(FEATURES, 512, 64, out_dim, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_head = heads.DINOProjectionHead(FEATURES, 512, 64, out_dim)
        utils.deactivate_requires_grad(self.teacher_backbone)
        utils.deactivate_requires_grad(self.teacher_head)
        self.criterion = loss.DINOLoss(
            output_dim=out_dim, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5
        )

    def momentum_pairs(self):
        return [(self.backbone, self.teacher_backbone), (self.student_head, self.teacher_head)]

    def loss_of(self, views):
        teacher_out = [self.teacher_head(self.teacher_backbone(v)) for v in views[:2]]
        student_out = [self.student_head(self.backbone(v)) for v in views]
        return self.criterion(teacher_out, student_out, epoch=self.current_epoch)

    def on_after_backward(self):
        self.student_head.cancel_last_layer_gradients(current_epoch=self.current_epoch)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


# ------------------------------------------------------------------------------------------- reprzoo side
SHARED = dict(
    backbone=BACKBONE,
    online_probe=False,
    lr_reference_batch=None,
    momentum=0.0,
    weight_decay=0.0,
    scheduler="constant",
    warmup_epochs=0.0,
)


def reprzoo_model(name: str) -> nn.Module:
    from reprzoo import lightning_modules as lm

    sgd = dict(SHARED, optimizer="sgd", lr=LR)
    if name == "SimCLR":
        return lm.SimCLR(proj_hidden_dim=512, proj_output_dim=128, temperature=0.5, **sgd)
    if name == "MoCoV2":
        return lm.MoCoV2(proj_hidden_dim=512, proj_output_dim=128, temperature=0.2, queue_size=4096, key_momentum=0.999, **sgd)
    if name == "BYOL":
        return lm.BYOL(proj_hidden_dim=512, proj_output_dim=128, tau_base=0.99, **sgd)
    if name == "BarlowTwins":
        return lm.BarlowTwins(proj_hidden_dim=512, proj_output_dim=512, bias_lr=LR, **sgd)
    if name == "VICReg":
        return lm.VICReg(proj_hidden_dim=512, proj_output_dim=512, **sgd)
    if name == "DINO":
        return lm.DINO(**dict(SHARED, optimizer="adamw", lr=1e-3), **DINO_ARGS)
    raise ValueError(name)


DINO_ARGS = dict(hidden_dim=512, bottleneck_dim=64, out_dim=2048, warmup_teacher_temperature_epochs=5, weight_decay_end=0.0)

#: method -> (lightly module, reprzoo augmentation name and options shared by both sides)
METHODS: dict[str, tuple[Callable[[], LightlyModule], str, dict[str, Any]]] = {
    "SimCLR": (LightlySimCLR, "simsiam", {}),
    "MoCoV2": (LightlyMoCo, "simsiam", {}),
    "BYOL": (LightlyBYOL, "byol", {}),
    "BarlowTwins": (LightlyBarlowTwins, "byol", {}),
    "VICReg": (LightlyVICReg, "byol", {}),
    "DINO": (LightlyDINO, "multicrop", {"num_local": 4, "local_size": 16}),
}


# ------------------------------------------------------------------------------------------- measurement
class Throughput(L.Callback):
    """Images/s from the end of the ``warmup``-th step to the end of the last one."""

    def __init__(self, warmup: int, batch_size: int):
        self.warmup, self.batch_size, self.start, self.end, self.steps = warmup, batch_size, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1
        if self.steps == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()

    def images_per_s(self) -> float:
        return (self.steps - self.warmup) * self.batch_size / (self.end - self.start)


@torch.no_grad()
def knn_top1(model: nn.Module, data: Digits, k: int = 20) -> float:
    model.eval()
    bank_loader, query_loader = data.val_dataloader()

    def embed(loader):
        feats, labels = zip(*[(model.embed(x), y) for x, y in loader])
        return F.normalize(torch.cat(feats), dim=1), torch.cat(labels)

    bank, bank_labels = embed(bank_loader)
    queries, labels = embed(query_loader)
    predicted = weighted_knn_predict(queries, bank, bank_labels, data.num_classes, k=k, temperature=0.1)
    return (predicted == labels).float().mean().item()


def train(model: L.LightningModule, augmentation: str, options: dict, args) -> dict[str, float]:
    L.seed_everything(args.seed, verbose=False)
    data = Digits(
        batch_size=args.batch_size,
        num_workers=0,
        augmentation=augmentation,
        augmentation_kwargs={"blur_prob": 0.0, **options} if augmentation == "simsiam" else options,
    )
    meter = Throughput(args.warmup, args.batch_size)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=args.steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter],
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    return {
        "images_per_s": meter.images_per_s(),
        "knn_top1": knn_top1(model, data),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run(args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"methods": {}, "environment": environment(args)}
    for i, name in enumerate(args.methods):
        lightly_cls, augmentation, options = METHODS[name]
        sides = [("lightly", lightly_cls), ("reprzoo", lambda n=name: reprzoo_model(n))]
        row = {}
        for side, build in sides if i % 2 == 0 else sides[::-1]:
            L.seed_everything(args.seed, verbose=False)
            row[side] = train(build(), augmentation, options, args)
            print(f"{name:12s} {side:8s} {row[side]['images_per_s']:8.1f} img/s  kNN {row[side]['knn_top1']:.3f}", flush=True)
        row["speed_ratio"] = row["reprzoo"]["images_per_s"] / row["lightly"]["images_per_s"]
        results["methods"][name] = row
    results["environment"]["loadavg_end"] = os.getloadavg()
    return results


def environment(args) -> dict[str, Any]:
    import lightly

    return {
        "command": "python benchmarks/bench_methods.py " + " ".join(args.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "lightly": lightly.__version__,
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "loadavg_start": os.getloadavg(),
        "steps": args.steps,
        "batch_size": args.batch_size,
    }


def markdown_table(results: dict[str, Any]) -> str:
    rows = [
        "| method | lightly img/s | reprzoo img/s | reprzoo / lightly | lightly kNN top-1 | reprzoo kNN top-1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["methods"].items():
        rows.append(
            f"| {name} | {r['lightly']['images_per_s']:.0f} | {r['reprzoo']['images_per_s']:.0f} | "
            f"{r['speed_ratio']:.2f} | {r['lightly']['knn_top1']:.3f} | {r['reprzoo']['knn_top1']:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--steps", type=int, default=110, help="training steps (11 per digits epoch at batch 128)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 steps, batch 32")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.batch_size = 4, 1, 32
    args.argv = argv
    results = run(args)
    print(markdown_table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
