"""Callbacks every run gets (metrics.json in the run directory, written atomically on rank zero; a validation at the
end of every fit; no empty folder left by a run that fails before training; the embedding plot), and
``PreciseBatchNorm``, which a run adds when its final BatchNorm statistics matter."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import lightning as L
import torch

from reprzoo.atomic import atomic_write_text


class MetricsJSON(L.Callback):
    """Keeps ``metrics.json`` in the run directory: the final value of every logged metric.

    Written at the end of fit, validate and test; later stages add to (and override) earlier values.
    """

    filename = "metrics.json"

    @staticmethod
    def run_dir(trainer: L.Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir)

    def _write(self, trainer: L.Trainer) -> None:
        path = self.run_dir(trainer) / self.filename  # trainer.log_dir broadcasts from rank 0: call it on every rank
        if not trainer.is_global_zero:
            return
        metrics = json.loads(path.read_text()) if path.exists() else {}
        for name, value in trainer.callback_metrics.items():
            value = float(value.item() if isinstance(value, torch.Tensor) else value)
            if math.isfinite(value):
                metrics[name] = value
        metrics["epoch"] = trainer.current_epoch
        metrics["global_step"] = trainer.global_step
        atomic_write_text(path, json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._write(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer)


class ValidateAtFitEnd(L.Callback):
    """Validates after the last training batch of a fit when the schedule would not: recipes validate every few
    epochs (``check_val_every_n_epoch``), so without this a run whose last epoch is not a multiple of it (or one
    that stops at ``max_steps`` mid-epoch) ends without validation metrics in ``metrics.json`` and the last
    checkpoint. Runs that stop early (a signal, an exception) are not validated.
    """

    def __init__(self):
        self._every: int | None = None
        self._changed = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if not trainer.enable_validation or not is_last_training_batch(trainer):
            return
        every = trainer.check_val_every_n_epoch
        if every is not None and every != 1 and (trainer.current_epoch + 1) % every != 0:
            self._every, self._changed = every, True
            trainer.check_val_every_n_epoch = 1  # Lightning checks it after this hook, before the epoch ends
        # validate even if this batch is not a validation batch (max_steps mid-epoch, val_check_interval < 1)
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore(trainer)

    def _restore(self, trainer: L.Trainer) -> None:
        if self._changed:
            trainer.check_val_every_n_epoch, self._changed = self._every, False


def is_last_training_batch(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended is the last of the fit: ``max_steps`` reached, or the last batch of the
    last epoch."""
    last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
    bounded = trainer.max_epochs is not None and trainer.max_epochs > 0  # -1: until max_steps
    last_epoch = trainer.is_last_batch and bounded and trainer.current_epoch + 1 >= trainer.max_epochs
    return last_step or last_epoch


class DiscardEmptyRun(L.Callback):
    """Removes the ``version_N`` folder of a new run that fails before its first training step (a missing dataset, a
    bad argument caught in ``setup``): the logger creates the folder at setup, and an empty run left behind would
    look like a run and shift the next run's number. Kept: resumed runs, runs stopped by a signal, and any folder
    holding more than the config, the hyperparameters and TensorBoard event files (a checkpoint, metrics.json).
    """

    SCAFFOLDING = ("config.yaml", "hparams.yaml")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        logger = trainer.logger
        if (
            isinstance(exception, SIGTERMException)
            or trainer.state.fn != "fit"
            or trainer.ckpt_path is not None
            or trainer.global_step > 0
            or not trainer.is_global_zero
            or not isinstance(logger, TensorBoardLogger)
        ):
            return
        run_dir = Path(logger.log_dir)  # the logger's own: no broadcast on this failure path
        if not run_dir.is_dir():
            return
        files = [p for p in run_dir.rglob("*") if not p.is_dir()]
        if any(p.parent != run_dir or not (p.name in self.SCAFFOLDING or p.name.startswith("events.out.")) for p in files):
            return
        if logger._experiment is not None:
            logger.experiment.close()  # finalize("failed") flushes it next; closed, it writes nothing
        shutil.rmtree(run_dir, ignore_errors=True)


class EmbeddingPlot(L.Callback):
    """Writes the validation queries' embeddings to TensorBoard: a t-SNE scatter coloured by label (an image under
    ``embeddings/tsne``) and the raw vectors for TensorBoard's projector tab (interactive UMAP / t-SNE / PCA).

    Embeds up to ``max_samples`` queries of rank zero's shard with ``pl_module.embed`` (a picture, not a metric:
    no cross-rank gather). Runs at every ``every_n_validations``-th validation of a fit, never in the sanity check.

    Args:
        max_samples: queries embedded and plotted.
        every_n_validations: plot at one validation in this many.
        projector: also write the vectors for the projector tab.
    """

    def __init__(self, max_samples: int = 1000, every_n_validations: int = 1, projector: bool = True):
        self.max_samples, self.every_n, self.projector = max_samples, every_n_validations, projector
        self._features: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._validations = 0

    def _active(self, trainer: L.Trainer) -> bool:
        experiment = getattr(trainer.logger, "experiment", None) if trainer.logger else None
        return (
            trainer.is_global_zero
            and not trainer.sanity_checking
            and hasattr(experiment, "add_figure")
            and self._validations % self.every_n == 0
        )

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        num_loaders = len(trainer.num_val_batches) if isinstance(trainer.num_val_batches, list) else 1
        if dataloader_idx != num_loaders - 1 or not self._active(trainer):  # the queries are the last loader
            return
        if sum(len(f) for f in self._features) >= self.max_samples:
            return
        x, labels = batch[0], batch[1]
        with torch.no_grad():
            self._features.append(pl_module.embed(x).float().cpu())
        self._labels.append(labels.cpu())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._features and self._active(trainer):
            features = torch.cat(self._features)[: self.max_samples]
            labels = torch.cat(self._labels)[: self.max_samples]
            experiment = trainer.logger.experiment
            experiment.add_figure("embeddings/tsne", tsne_figure(features, labels), global_step=trainer.global_step)
            # a validate() after fit is at the same step: tensorboard would print "Embedding dir exists" and rewrite it
            written = Path(experiment.get_logdir(), f"{trainer.global_step:05d}", "val").exists()
            if self.projector and not written:
                experiment.add_embedding(features, metadata=labels.tolist(), global_step=trainer.global_step, tag="val")
        self._features, self._labels = [], []
        if not trainer.sanity_checking:
            self._validations += 1


def tsne_figure(features: torch.Tensor, labels: torch.Tensor, seed: int = 0):
    """A matplotlib scatter of the 2-D t-SNE of ``features`` coloured by ``labels``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(features) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features.numpy())
    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    scatter = axis.scatter(points[:, 0], points[:, 1], c=labels.numpy(), cmap="tab10", s=6)
    axis.set_xticks([]), axis.set_yticks([])
    axis.set_title(f"t-SNE of {len(features)} validation embeddings")
    if labels.unique().numel() <= 20:
        axis.legend(*scatter.legend_elements(), loc="best", fontsize=6, markerscale=0.6)
    figure.tight_layout()
    return figure


class PreciseBatchNorm(L.Callback):
    """Recompute the backbone's BatchNorm running statistics after the last training batch as plain averages over
    ``num_batches`` training batches, with the trained weights ("precise BN", Radosavovic et al., "On Network Design
    Spaces for Visual Recognition", arXiv:1905.13214; Wu & Johnson, "Rethinking 'Batch' in BatchNorm",
    arXiv:2105.07576). The weights do not change; the final validation and checkpoint see the new statistics.

    The exponential running averages lag the weights by about ``1 / momentum`` steps, so a short run ends with
    evaluation-mode features far from its training-mode ones (measured: cosine 0.57 after one digits epoch, 0.94
    after three). That matters most for a model that will serve as the frozen old model of a compatible successor:
    losses that match the successor's training-mode features to the old model's evaluation-mode ones then chase
    the lag (Stationary Representations' successor of a 1-epoch digits model, cross-model mAP against the old
    model's own 0.760 without: 0.685; against 0.895 with: 0.925).

    Batches come from a fresh training loader of the datamodule (the running loop's loader and its resume state are
    left alone) through the transfer hooks (device augmentation included); only the first view is used. Under DDP
    each rank averages its shard, then the statistics are averaged across ranks.
    ``reprzoo fit ... --trainer.callbacks+=PreciseBatchNorm``.

    Args:
        num_batches: training batches to average over (fewer when the loader is shorter).
    """

    def __init__(self, num_batches: int = 200):
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        self.num_batches = num_batches
        self.batches_used = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if is_last_training_batch(trainer):
            datamodule = trainer.datamodule
            loader = datamodule.train_dataloader() if datamodule is not None else trainer.train_dataloader
            self.batches_used = recalibrate_batchnorm(pl_module, loader, self.num_batches)
            if trainer.world_size > 1:
                for m in batchnorms(pl_module.backbone):
                    m.running_mean.copy_(trainer.strategy.reduce(m.running_mean, reduce_op="mean"))
                    m.running_var.copy_(trainer.strategy.reduce(m.running_var, reduce_op="mean"))


def batchnorms(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(pl_module: L.LightningModule, loader, num_batches: int) -> int:
    """Replace the running statistics of ``pl_module.backbone``'s BatchNorm layers by their average over the first
    ``num_batches`` batches of ``loader`` (``embed`` of each batch's first view); returns the batches used."""
    norms = batchnorms(pl_module.backbone)
    if not norms or loader is None:
        return 0
    was_training, momenta = pl_module.training, [m.momentum for m in norms]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    pl_module.train()
    used = 0
    try:
        for batch in loader:
            if used >= num_batches:
                break
            # Lightning's own transfer path (private): the datamodule's device augmentation runs as in training
            views = pl_module._apply_batch_transfer_handler(batch, pl_module.device)[0]
            pl_module.embed(views[0] if isinstance(views, (list, tuple)) else views)
            used += 1
    finally:
        for m, momentum, state in zip(norms, momenta, saved):
            m.momentum = momentum
            if int(m.num_batches_tracked) == 0:  # not reached by embed (or no batch): keep what it had
                m.load_state_dict(state)
        pl_module.train(was_training)
    return used
