"""The shared base of embedding methods: backbone, embed(), optimiser and schedule, EMA targets, evaluation.

A method subclass builds its heads in ``__init__`` and implements ``training_loss(views, labels, indices)``; everything else
(optimiser, LR scaling, warmup + cosine, EMA updates, online probe, kNN and collapse monitors, logging) is here
once. Evaluation is attached, not inherited: :meth:`EmbeddingModule.build_evaluators` lists evaluator objects
(``reprzoo.metrics.evaluators``) around the module's torchmetrics; each validation/test batch is embedded once and
its features go to every evaluator.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Iterator

import lightning as L
import torch
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.components.ema import cosine_tau, ema_update
from reprzoo.components.retrieval import encode_query
from reprzoo.metrics import EffectiveRank, EmbeddingStd, KNNAccuracy, OnlineLinearProbe, normalized_std
from reprzoo.metrics.evaluators import (
    CollapseEvaluator,
    EvaluationProtocol,
    Evaluator,
    KNNEvaluator,
    ProbeEvaluator,
    resolve_protocol,
)
from reprzoo.training.optim import (
    OptimizerName,
    SchedulerName,
    build_optimizer,
    build_scheduler,
    global_batch_size,
    scaled_lr,
    split_weight_decay,
    steps_per_epoch,
)

BANK = 0  # evaluation loaders come as [bank (labelled reference set), queries]

#: Devices whose convolutions run faster in channels-last memory format, where ``channels_last=None`` turns it on:
#: CUDA (cuDNN) and the CPU (oneDNN; measured on one core, ``benchmarks/bench_simsiam.py``). Not MPS.
CHANNELS_LAST_DEVICES = ("cuda", "cpu")


@dataclass
class TrainingOutput:
    """What a method's ``training_loss`` returns.

    Attributes:
        loss: the method's objective for this batch.
        features: backbone features of the first view, for the online probe (detached there).
        embeddings: the vectors the loss compares (projector output), for the collapse monitor.
    """

    loss: torch.Tensor
    features: torch.Tensor
    embeddings: torch.Tensor | None = None


class EmbeddingModule(L.LightningModule, abc.ABC):
    """Base LightningModule for representation-learning methods.

    Args:
        backbone: a registered in-house name (``resnet18_cifar``, ``mean_pooled_embeddings``, ...), any timm model
            name, or an ``nn.Module`` exposing ``num_features`` (used as it is; not pushable: the zoo rebuilds
            backbones by name).
        backbone_kwargs: extra constructor arguments of the backbone (e.g. ``img_size`` of a ViT).
        num_classes: classes of the evaluation labels; the CLI links it from the datamodule. ``None`` turns the
            online probe and kNN monitor off.
        optimizer: ``sgd``, ``lars`` or ``adamw``.
        lr: base learning rate, scaled by ``global batch / lr_reference_batch``.
        lr_reference_batch: the batch of the linear scaling rule; ``None`` uses ``lr`` as given.
        weight_decay: decay of weights (biases and norm parameters get none).
        momentum: SGD/LARS momentum.
        scheduler: ``warmup_cosine`` (per step), ``linear`` (decay to ``min_lr_ratio``, word2vec's) or ``constant``.
        warmup_epochs: epochs of linear warmup.
        min_lr_ratio: final LR of the cosine as a fraction of the peak.
        online_probe: train a linear classifier on detached features and log its accuracy.
        probe_lr: absolute learning rate of the probe (no weight decay).
        knn_k: neighbours of the kNN monitor.
        knn_temperature: temperature of its similarity weights.
        channels_last: run convolutions in channels-last memory format; ``None`` (default): on when the model has
            2-d convolutions and trains on a CUDA device or the CPU (:data:`CHANNELS_LAST_DEVICES`), where it speeds
            them up (cuDNN; oneDNN on the CPU: a SimSiam ResNet-18 step at 32 px about 10% faster on one core, a
            ResNet-tiny step about 40%); the same results to float32 rounding.
        compile: compile the backbone's forward with ``torch.compile`` when training starts (in place: parameter
            names and checkpoints are unchanged).
        compile_kwargs: options of ``torch.compile``, e.g. ``{"mode": "max-autotune"}``.
        fused_optimizer: torch's fused SGD/AdamW; ``None`` uses it when the parameters are on a CUDA device.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet18_cifar",
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.05,
        lr_reference_batch: int | None = 256,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: SchedulerName = "warmup_cosine",
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.0,
        online_probe: bool = True,
        probe_lr: float = 0.1,
        knn_k: int = 200,
        knn_temperature: float = 0.1,
        channels_last: bool | None = None,
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
        fused_optimizer: bool | None = None,
    ):
        super().__init__()
        # a module passed as the backbone is saved in the state dict, not pickled into the hyperparameters
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        #: (registered name, kwargs) of the backbone built, as a pushed config records it (None for a module)
        self.backbone_spec = (backbone if isinstance(backbone, str) else None, dict(backbone_kwargs or {}))
        self.feature_dim: int = self.backbone.num_features
        self.probe = OnlineLinearProbe(self.feature_dim, num_classes) if (online_probe and num_classes) else None
        self.knn = KNNAccuracy(num_classes, knn_k, knn_temperature) if num_classes else None
        self.feature_std = EmbeddingStd()
        self.feature_rank = EffectiveRank()
        self.channels_last_active = bool(channels_last)
        self._ema_step: int | None = None  # the optimiser step of the last EMA update
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    def resize_probe(self, in_dim: int) -> None:
        """Rebuild the online probe for ``in_dim`` features: for methods whose probed representation is not the
        backbone's output (an embedding layer, concatenated members, an aggregate of tokens)."""
        if self.probe is not None:
            self.probe = OnlineLinearProbe(in_dim, self.probe.classifier.out_features)

    # ----------------------------------------------------------------- what a method provides
    @abc.abstractmethod
    def training_loss(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices: torch.Tensor | None = None
    ) -> TrainingOutput:
        """The method's objective on a list of augmented views (each ``(batch, ...)``).

        ``labels`` are the batch's labels (-1 where unlabelled), for the supervised methods and label-aware
        positives; ``indices`` are the samples' positions in the training set, for memory banks keyed by sample.
        Self-supervised methods ignore both.
        """

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) module pairs updated by EMA after each step; empty for methods without a target."""
        return []

    #: EMA decay at the start and end of training (BYOL's cosine schedule); used when momentum_pairs is not empty.
    tau_base: float = 0.996
    tau_final: float = 1.0

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups as ``{"name", "params": [(name, param)], ...options}``; the probe is added by the base.

        Override to give a head its own options, e.g. ``fixed_lr=True`` for SimSiam's predictor.
        """
        return [{"name": "model", "params": list(self._named_trainable(exclude=("probe.",)))}]

    # ----------------------------------------------------------------- the encoder contract
    #: the form of what ``embed`` returns, recorded in a pushed model's config: ``dense`` ``(batch, dim)``,
    #: ``multi_vector`` ``(batch, n, dim)``, ``sparse`` ``(batch, vocabulary)`` or ``slots`` ``(batch, k, dim)``.
    representation_kind: str = "dense"

    def encoder(self) -> nn.Module:
        """The module that maps a preprocessed input batch to this method's representation: what validation
        measures, what ``embed`` returns and what a pushed model exports (``reprzoo.load(name).embed``).

        The backbone by default. A method whose representation is more than its backbone returns a module built
        from its own submodules (``nn.Sequential(self.backbone, self.embedding)``), or :class:`Represent` around
        one of its functions when the representation reads most of the method
        (``reprzoo.components.representation``).
        """
        return self.backbone

    @property
    def embedding_dim(self) -> int:
        """Size of the last axis of the representation (``feature_dim`` unless ``encoder`` adds layers)."""
        return int(getattr(self.encoder(), "num_features", self.feature_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation of a preprocessed batch, computed by :meth:`encoder`."""
        return self.encoder()(self._format(x))

    #: how a retriever's query and document representations are compared (``dot``, ``cosine``, ``maxsim``;
    #: ``reprzoo.metrics.retrieval.SIMILARITIES``): what its retrieval evaluation and an index rank by. ``None``: the
    #: datamodule's evaluation decides (cosine for most methods).
    retrieval_similarity: str | None = None

    def embed_query(self, x) -> torch.Tensor:
        """A retriever's query representation: the query tower of a
        :class:`~reprzoo.components.retrieval.DualEncoder` ``encoder()``, else :meth:`embed`."""
        return encode_query(self.encoder(), self._format(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def _format(self, x):
        if self.channels_last_active and isinstance(x, torch.Tensor) and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _named_trainable(self, exclude: tuple[str, ...] = ()) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if p.requires_grad and not name.startswith(exclude):
                yield name, p

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        views, labels, *rest = batch  # (views, labels, indices) from EmbeddingDataModule; indices optional
        indices = rest[0] if rest else None
        if isinstance(views, (list, tuple)):
            views = [self._format(v) for v in views]
        out = self.training_loss(views, labels, indices)
        loss = out.loss
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        if out.embeddings is not None and self._logs_this_step():
            self.log("train/embedding_std", normalized_std(out.embeddings), sync_dist=True)
        if self.probe is not None:
            probe_loss = self.probe.training_loss(out.features, labels)
            self.log("train/probe_loss", probe_loss, sync_dist=True)
            self.log("train/probe_top1", self.probe.train_top1, on_step=False, on_epoch=True)
            loss = loss + probe_loss
        return loss

    def _logs_this_step(self) -> bool:
        # step-level metrics reach the loggers every ``log_every_n_steps`` only: the collapse monitor (a reduction
        # and, with sync_dist, an all-reduce per step) is computed on those steps alone
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        return connector is None or bool(connector.should_update_logs)

    def on_train_start(self) -> None:
        super().on_train_start()
        self._ema_step = self.trainer.global_step  # resumed runs: the step the weights were saved at

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        pairs = self.momentum_pairs
        if not pairs:
            return
        step = self.trainer.global_step  # optimiser steps so far: one per group of accumulated batches
        if step == self._ema_step:
            return  # a micro-batch of gradient accumulation: no optimiser step, so no EMA update either
        self._ema_step = step
        tau = cosine_tau(step, self.trainer.estimated_stepping_batches, self.tau_base, self.tau_final)
        for online, target in pairs:
            ema_update(target, online, tau)
        self.log("train/tau", tau)

    # ----------------------------------------------------------------- evaluation
    def build_evaluators(self) -> list[Evaluator]:
        """What validation and test measure: evaluators (``reprzoo.metrics.evaluators``) around this module's
        metrics, which stay registered on the module (their states are its submodules').

        The base lists kNN (``knn_top1``), the online probe (``probe_top1``) and the collapse monitors
        (``feature_std``, ``effective_rank``). A method that measures more returns
        ``[*super().build_evaluators(), MyEvaluator(self.my_metric)]``; the list is built afresh for every
        evaluation epoch. Every evaluator gets each batch's features, embedded once by :meth:`embed`.
        """
        evaluators: list[Evaluator] = []
        if self.knn is not None:
            evaluators.append(KNNEvaluator(self.knn))
        if self.probe is not None:
            evaluators.append(ProbeEvaluator(self.probe))
        evaluators.append(CollapseEvaluator(self.feature_std, self.feature_rank))
        return evaluators

    def evaluation_protocol(self) -> EvaluationProtocol:
        """How the evaluation loaders are read: the datamodule's ``evaluation_protocol`` (a name or an
        :class:`~reprzoo.metrics.evaluators.EvaluationProtocol`), else ``labelled_bank_and_queries`` (loader 0 the
        labelled bank, loader 1 the queries; a single loader is queries only)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        spec = getattr(datamodule, "evaluation_protocol", None)
        if callable(spec) and not isinstance(spec, EvaluationProtocol):
            spec = spec()
        return resolve_protocol(spec)

    def _running_evaluators(self, protocol: EvaluationProtocol) -> list[Evaluator]:
        # built at the first batch of an evaluation epoch, dropped at its end
        running = self.__dict__.get("_evaluators_running")
        if running is None:
            running = [e for e in self.build_evaluators() if protocol.name in e.protocols]
            running += protocol.evaluators()  # the benchmark's own (word similarity, a human similarity matrix)
            self.__dict__["_evaluators_running"] = running
        return running

    def _eval_step(self, batch, dataloader_idx: int, num_loaders: int) -> None:
        protocol = self.evaluation_protocol()
        item = protocol.read(batch, dataloader_idx, num_loaders)
        evaluators = self._running_evaluators(protocol)
        if not evaluators:
            return
        # once, for every evaluator; a retriever's queries by its query tower
        features = self.embed_query(item.inputs) if item.role == "query" else self.embed(item.inputs)
        for evaluator in evaluators:
            evaluator.update(features, item.labels, bank=item.bank, module=self, batch=item)

    def _eval_epoch_end(self, stage: str) -> None:
        evaluators = self._running_evaluators(self.evaluation_protocol())
        try:
            for evaluator in evaluators:
                evaluator.compute_and_log(self.log, stage, self)
        finally:
            for evaluator in evaluators:
                evaluator.reset()
            self.__dict__.pop("_evaluators_running", None)

    def _num_loaders(self, attribute: str) -> int:
        # Lightning keeps one batch count per loader; a bare DataLoader's len() would be its batch count.
        counts = getattr(self._trainer, attribute, None) if self._trainer is not None else None
        return len(counts) if isinstance(counts, (list, tuple)) else 1

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self._num_loaders("num_val_batches"))

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self._num_loaders("num_test_batches"))

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.embed(x)

    # ----------------------------------------------------------------- optimisation
    def global_batch_size(self) -> int | None:
        datamodule = getattr(self.trainer, "datamodule", None)
        batch_size = getattr(datamodule, "batch_size", None)
        if batch_size is None:
            return None
        return global_batch_size(
            batch_size, self.trainer.num_devices, self.trainer.num_nodes, self.trainer.accumulate_grad_batches
        )

    def effective_lr(self) -> float:
        """Base LR after the linear scaling rule, for the global batch of this run's device layout."""
        batch = self.global_batch_size()
        if batch is None:
            return self.hparams.lr
        return scaled_lr(self.hparams.lr, batch, self.hparams.lr_reference_batch)

    def configure_model(self) -> None:
        # before the strategy moves and wraps the model and the optimiser is built: the auto channels-last switch
        if self._trainer is not None:
            self.default_memory_format(self.trainer.strategy.root_device)

    def default_memory_format(self, device: torch.device | str) -> bool:
        """With ``channels_last=None``: switch to channels-last when the model has 2-d convolutions and trains on a
        device of :data:`CHANNELS_LAST_DEVICES` (what ``configure_model`` does for the trainer's device; a loop
        without a Trainer calls it itself, then formats its inputs with ``_format``). Returns whether it is on."""
        if self.hparams.get("channels_last") is None and not self.channels_last_active:
            if torch.device(device).type in CHANNELS_LAST_DEVICES and any(isinstance(m, nn.Conv2d) for m in self.modules()):
                self.to(memory_format=torch.channels_last)  # every 4-d weight: backbones, EMA targets, decoders
                self.channels_last_active = True
        return self.channels_last_active

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.hparams.get("compile") and getattr(self.backbone, "_compiled_call_impl", None) is None:
            self.backbone.compile(**(self.hparams.get("compile_kwargs") or {}))

    def configure_optimizers(self):
        hp = self.hparams
        lr = self.effective_lr()
        groups: list[dict] = []
        for group in self.param_groups():
            options = {k: v for k, v in group.items() if k not in ("params",)}
            groups += split_weight_decay(group["params"], hp.weight_decay, **options)
        if self.probe is not None:
            groups.append({"name": "probe", "params": list(self.probe.parameters()), "lr": hp.probe_lr, "weight_decay": 0.0})
        optimizer = build_optimizer(hp.optimizer, groups, lr, hp.momentum, fused=hp.get("fused_optimizer"))
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(hp.warmup_epochs * steps_per_epoch(total, self.trainer.max_epochs or 1))
        scheduler = build_scheduler(optimizer, hp.scheduler, warmup, total, hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
