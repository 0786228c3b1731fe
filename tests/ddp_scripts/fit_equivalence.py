"""A few training steps of SimSiam / DirectPred on deterministic views, for the DDP equivalence test.

``python fit_equivalence.py OUT_DIR --devices 2 --batch-size 16 --runs simsiam,directpred`` trains with
``Trainer(strategy="ddp", devices=2)`` on CPU (gloo; Lightning launches rank 1 by re-running this script) and
writes, per rank, ``OUT_DIR/{run}_rank{r}.pt`` (the synced per-step ``train/loss``, the learning rates, the final
state dict) after every run has trained, then ``OUT_DIR/{run}_val_rank{r}.pt`` (the validation metrics).
``tests/test_distributed.py`` imports :func:`fit` and :func:`validate` for the single-process reference
(``devices=1``, the doubled batch) and compares.

torch's ``SyncBatchNorm`` only runs on GPUs, so multi-process runs here sync batch norm with
:class:`GatherSyncBatchNorm`, a CPU stand-in that normalises the all-gathered batch (``reprzoo.distributed.gather``,
whose backward sums gradients over ranks), installed through the plugin slot (``LayerSync``) that
``Trainer(sync_batchnorm=True)`` fills with torch's layers.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.transforms import v2

from reprzoo.datamodules import MultiViewTransform, SyntheticImages, TransformedDataset, eval_transform
from reprzoo.distributed import gather
from reprzoo.lightning_modules import DirectPred, SimSiam

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*sync_dist=True.*")

TRAIN_SIZE, TEST_SIZE, IMAGE_SIZE = 128, 64, 16
GLOBAL_BATCH = 32  # 4 steps per epoch


class DeterministicViews(SyntheticImages):
    """Synthetic gratings with two fixed views: the image and its mirror image (no random augmentation).

    Under DDP, Lightning replaces the training sampler by ``DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED)``:
    rank r reads positions r, r+2, ... of the epoch's permutation ``randperm(N, seed + epoch)``, so step s of 2 ranks
    with batch b reads positions [2bs, 2b(s+1)) of it. ``single_process_order=True`` gives one process the same
    permutation (a one-replica ``DistributedSampler`` with that seed), so both runs see the same global batches.
    """

    def __init__(self, batch_size: int, single_process_order: bool = False, seed: int = 0):
        super().__init__(
            num_classes=4,
            train_size=TRAIN_SIZE,
            test_size=TEST_SIZE,
            image_size=IMAGE_SIZE,
            seed=0,
            batch_size=batch_size,
            num_workers=0,
            pin_memory=False,
        )
        view = eval_transform(self.image_size, self.mean, self.std)
        self.train_transform = MultiViewTransform([view, v2.Compose([v2.RandomHorizontalFlip(p=1.0), view])])
        self.single_process_order, self.sampler_seed = single_process_order, seed

    def train_dataloader(self) -> DataLoader:
        if not self.single_process_order:
            return super().train_dataloader()  # the datamodule's own loader; Lightning adds the DistributedSampler
        self.setup()
        dataset = TransformedDataset(self._train, self.train_transform, with_index=True)
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=self.sampler_seed)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True, num_workers=0)


class GatherSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm synced across ranks for CPU tensors: in distributed training, normalise the all-gathered batch
    (forward and running statistics as one process computes them on the global batch) and keep this rank's rows.

    Not a ``nn.SyncBatchNorm`` subclass: DDP refuses those on CPU modules.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)  # plain batch norm
        factor = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        full = gather(input)
        out = F.batch_norm(full, self.running_mean, self.running_var, self.weight, self.bias, True, factor, self.eps)
        n, r = input.shape[0], dist.get_rank()
        return out[r * n : (r + 1) * n]


class GatherSyncBatchNormPlugin(LayerSync):
    """What ``Trainer(sync_batchnorm=True)`` installs (``TorchSyncBatchNorm``), with CPU-capable layers."""

    def apply(self, model: nn.Module) -> nn.Module:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module._original_class = type(module)
                module.__class__ = GatherSyncBatchNorm
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        for module in model.modules():
            if isinstance(module, GatherSyncBatchNorm):
                module.__class__ = module.__dict__.pop("_original_class")
        return model


class Recorder(L.Callback):
    """Per step: the ``train/loss`` Lightning logged (synced over ranks: ``sync_dist=True``) and the LR of each group."""

    def __init__(self):
        self.losses: list[float] = []
        self.lrs: list[list[float]] = []
        self.sync_bn_layers = 0

    def on_train_start(self, trainer, pl_module):
        self.sync_bn_layers = sum(isinstance(m, GatherSyncBatchNorm) for m in pl_module.modules())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def build_model(method: str) -> L.LightningModule:
    common = dict(
        backbone="resnet_tiny_cifar",
        num_classes=4,
        lr=0.3,
        lr_reference_batch=GLOBAL_BATCH,
        weight_decay=1e-4,
        warmup_epochs=0.0,
        knn_k=10,
        proj_hidden_dim=64,
        proj_output_dim=32,
    )
    if method == "simsiam":
        return SimSiam(proj_layers=2, pred_hidden_dim=16, **common)
    if method == "directpred":
        return DirectPred(optimizer="sgd", **common)
    raise ValueError(method)


def fit(run: str, devices: int, batch_size: int, out_dir: str):
    """Train ``run`` (``simsiam``, ``directpred``; suffix ``_nosync`` for plain per-rank batch norm) for one epoch
    in float64 (so that only a real difference, not float32 rounding, separates the runs); write the record."""
    method, _, variant = run.partition("_")
    L.seed_everything(0, workers=True)
    model = build_model(method)
    data = DeterministicViews(batch_size, single_process_order=devices == 1)
    recorder = Recorder()
    sync = devices > 1 and variant != "nosync"
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        plugins=[GatherSyncBatchNormPlugin()] if sync else None,
        precision="64-true",
        max_epochs=1,
        check_val_every_n_epoch=2,  # no validation inside fit: validate() runs it afterwards
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
        default_root_dir=out_dir,
    )
    trainer.fit(model, datamodule=data)
    record = {
        "run": run,
        "world_size": trainer.world_size,
        "rank": trainer.global_rank,
        "losses": recorder.losses,
        "lrs": recorder.lrs,
        "sync_bn_layers": recorder.sync_bn_layers,
        "effective_lr": model.effective_lr(),
        "global_batch": model.global_batch_size(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    _save(record, out_dir, f"{run}_rank{trainer.global_rank}.pt")
    return trainer, model, data


def validate(run: str, trainer: L.Trainer, model: L.LightningModule, data: DeterministicViews, out_dir: str) -> dict:
    """kNN, probe and collapse metrics of the trained model (each rank evaluates its shard of bank and queries)."""
    metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    record = {"run": run, "rank": trainer.global_rank, "val": {k: float(v) for k, v in metrics.items()}}
    _save(record, out_dir, f"{run}_val_rank{trainer.global_rank}.pt")
    return record


def _save(record: dict, out_dir: str, name: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    torch.save(record, os.path.join(out_dir, name))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=GLOBAL_BATCH // 2)
    parser.add_argument("--runs", default="simsiam,directpred")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = args.runs.split(",")
    trained = [fit(run, args.devices, args.batch_size, args.out_dir) for run in runs]  # every trajectory first
    for run, (trainer, model, data) in zip(runs, trained):
        if not run.endswith("_nosync"):
            validate(run, trainer, model, data, args.out_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
