"""Evaluators: what validation and test measure, as objects a method lists rather than hooks it inherits.

An :class:`~reprzoo.lightning_modules.base.EmbeddingModule` embeds each validation/test batch once (``embed``) and
hands the features to every evaluator of its list (``build_evaluators``); at the end of the epoch each evaluator
computes its metrics and logs them under ``{stage}/...`` (``val`` or ``test``), then is reset. An evaluator wraps
torchmetrics metrics (synced across ranks) that stay registered on the module as submodules, where their states
live (``self.knn``, ``self.probe``, ...): the evaluator holds references to them, nothing else. The module builds
its list afresh for every evaluation epoch, so a metric replaced after ``__init__`` (``resize_probe``, an old model
set later) is the one measured.

How a datamodule's evaluation loaders are read is its *evaluation protocol* (:class:`EvaluationProtocol`), which a
datamodule declares with ``evaluation_protocol`` (a name of :data:`PROTOCOLS`, or an instance); without one it is
``labelled_bank_and_queries``: loader 0 is the labelled reference set (the "bank", the training split without
augmentation), loader 1 the queries (a single loader is queries only), batches are ``(inputs, labels)``. An evaluator
names the protocols it understands (``protocols``) and runs only under those. A protocol that carries its benchmark
(a vocabulary with word-similarity sets, documents with a human similarity matrix, queries and documents with
relevance judgments: ``reprzoo.metrics.text``, ``reprzoo.metrics.retrieval``) is given as an instance and adds its
own evaluators (:meth:`EvaluationProtocol.evaluators`). Protocols to come (held-out edges, next-item targets) are
reserved in :data:`PLANNED_PROTOCOLS`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch

from reprzoo.errors import ReprzooError
from reprzoo.metrics.clustering import clustering_accuracy, normalized_mutual_info_score
from reprzoo.metrics.collapse import EffectiveRank, EmbeddingStd
from reprzoo.metrics.compatibility import CrossModelRetrieval, log_compatibility_matrix
from reprzoo.metrics.fewshot import FewShotAccuracy
from reprzoo.metrics.knn import KNNAccuracy
from reprzoo.metrics.nested_knn import NestedKNN
from reprzoo.metrics.probe import OnlineLinearProbe

LogFn = Callable[[str, Any], None]  # the module's ``self.log(name, value)``

LABELLED_BANK_AND_QUERIES = "labelled_bank_and_queries"


# ----------------------------------------------------------------------------------------------- protocols
@dataclass
class EvaluationBatch:
    """One evaluation batch as its protocol reads it.

    Attributes:
        inputs: what ``module.embed`` takes.
        labels: ``(batch,)`` class labels, -1 where unlabelled.
        bank: the batch belongs to the labelled reference set (kNN's bank, a retrieval gallery), not the queries.
        with_bank: this evaluation has a reference set at all (``False``: a single loader of queries).
        dataloader_idx: the loader the batch came from.
        raw: the batch as the loader gave it.
        role: ``query`` where the inputs are a retriever's queries (embedded with ``module.embed_query``), else ``""``.
    """

    inputs: Any
    labels: torch.Tensor
    bank: bool
    with_bank: bool
    dataloader_idx: int = 0
    raw: Any = None
    role: str = ""


class EvaluationProtocol(abc.ABC):
    """How the evaluation loaders of a datamodule are read: which loader is which and what a batch holds."""

    name: str = ""

    @abc.abstractmethod
    def read(self, batch: Any, dataloader_idx: int, num_loaders: int) -> EvaluationBatch:
        """The :class:`EvaluationBatch` of a raw batch from loader ``dataloader_idx`` of ``num_loaders``."""

    def evaluators(self) -> list["Evaluator"]:
        """Evaluators this protocol's data brings, run besides the module's own (word similarity and analogies
        over a vocabulary, a human similarity matrix of documents): they need the benchmark the datamodule holds,
        not the method. None by default."""
        return []


class PlannedProtocolError(ReprzooError, NotImplementedError):
    """A datamodule declared an evaluation protocol that a wing to come will build (one clear line, not a stub)."""


class LabelledBankAndQueries(EvaluationProtocol):
    """``[bank, queries]`` loaders of ``(inputs, labels)`` batches (:class:`~reprzoo.datamodules.EmbeddingDataModule`);
    a single loader is queries only."""

    name = LABELLED_BANK_AND_QUERIES
    bank_loader = 0

    def read(self, batch: Any, dataloader_idx: int, num_loaders: int) -> EvaluationBatch:
        inputs, labels = batch[0], batch[1]
        with_bank = num_loaders > 1
        return EvaluationBatch(inputs, labels, with_bank and dataloader_idx == self.bank_loader, with_bank, dataloader_idx, batch)


#: implemented protocols by name.
PROTOCOLS: dict[str, type[EvaluationProtocol]] = {LABELLED_BANK_AND_QUERIES: LabelledBankAndQueries}

#: protocols reserved for datamodules to come (named so that a datamodule can declare them; not implemented yet).
PLANNED_PROTOCOLS: dict[str, str] = {
    "held_out_edges": "a graph with held-out edges to rank against sampled non-edges (link prediction)",
    "next_item": "sequences whose next item is the target (next-item prediction)",
}


def resolve_protocol(spec: str | EvaluationProtocol | None) -> EvaluationProtocol:
    """The protocol a datamodule declares: ``None`` is ``labelled_bank_and_queries``; a name of :data:`PROTOCOLS`
    or an :class:`EvaluationProtocol` instance otherwise."""
    if spec is None:
        return LabelledBankAndQueries()
    if isinstance(spec, EvaluationProtocol):
        return spec
    if spec in PROTOCOLS:
        return PROTOCOLS[spec]()
    if spec in PLANNED_PROTOCOLS:
        raise PlannedProtocolError(f"evaluation protocol {spec!r} ({PLANNED_PROTOCOLS[spec]}) is planned, not implemented yet")
    raise ValueError(f"unknown evaluation protocol {spec!r}; known: {sorted(PROTOCOLS)}")


# ----------------------------------------------------------------------------------------------- evaluators
@runtime_checkable
class EvaluatorLike(Protocol):
    """The interface the module calls (:class:`Evaluator` implements it; any object with these methods will do)."""

    protocols: tuple[str, ...]

    def update(
        self, features: torch.Tensor, labels: torch.Tensor, *, bank: bool, module: Any, batch: EvaluationBatch
    ) -> None: ...

    def compute_and_log(self, log_fn: LogFn, stage: str, module: Any) -> None: ...

    def reset(self) -> None: ...


class Evaluator(abc.ABC):
    """Base of evaluators.

    ``update`` gets each batch's features (``module.embed`` of the inputs, computed once for all evaluators), its
    labels, whether it is a bank batch, the module and the :class:`EvaluationBatch` (for evaluators that need more
    than the features: another model's features of the same inputs, a head of the module). ``compute_and_log`` logs
    through ``log_fn`` (the module's ``self.log``) under ``{stage}/``; it logs nothing when nothing was seen.
    ``reset`` resets the wrapped metrics (those ``metrics()`` returns, by default).
    """

    #: the evaluation protocols this evaluator understands.
    protocols: tuple[str, ...] = (LABELLED_BANK_AND_QUERIES,)

    def metrics(self) -> tuple[Any, ...]:
        """The torchmetrics metrics this evaluator wraps (``None`` entries are skipped)."""
        return ()

    @abc.abstractmethod
    def update(self, features: torch.Tensor, labels: torch.Tensor, *, bank: bool, module: Any, batch: EvaluationBatch) -> None:
        """Add one batch's features (bank or queries) to the wrapped metrics."""

    @abc.abstractmethod
    def compute_and_log(self, log_fn: LogFn, stage: str, module: Any) -> None:
        """Log the epoch's values under ``{stage}/`` (nothing when nothing was seen)."""

    def reset(self) -> None:
        for metric in self.metrics():
            if metric is not None:
                metric.reset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class KNNEvaluator(Evaluator):
    """Weighted kNN top-1 of the queries against the labelled bank: ``{stage}/knn_top1`` (:class:`KNNAccuracy`),
    and the k it used (``k`` capped by the bank's class sizes) as ``{stage}/knn_k``."""

    def __init__(self, metric: KNNAccuracy):
        self.metric = metric

    def metrics(self):
        return (self.metric,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        self.metric.update(features, labels, bank=bank)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if self.metric.update_called:
            log_fn(f"{stage}/knn_top1", self.metric.compute())
            if self.metric.k_used is not None:  # None: no bank or no queries (the accuracy is nan)
                log_fn(f"{stage}/knn_k", float(self.metric.k_used))


class NestedKNNEvaluator(KNNEvaluator):
    """:class:`KNNEvaluator` of a :class:`NestedKNN`: also ``{stage}/knn_top1@{m}`` for every prefix size m."""

    metric: NestedKNN

    def compute_and_log(self, log_fn, stage, module) -> None:
        if self.metric.update_called:
            full = self.metric.compute()
            for m, accuracy in self.metric.prefix_accuracies.items():
                log_fn(f"{stage}/knn_top1@{m}", accuracy)
            log_fn(f"{stage}/knn_top1", full)
            if getattr(self.metric, "k_used", None) is not None:
                log_fn(f"{stage}/knn_k", float(self.metric.k_used))


class ProbeEvaluator(Evaluator):
    """The online linear probe's accuracy on the queries: ``{stage}/probe_top1`` (its ``val_top1``)."""

    def __init__(self, probe: OnlineLinearProbe):
        self.probe = probe

    def metrics(self):
        return (self.probe.val_top1,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            self.probe.update(features, labels)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if self.probe.val_top1.update_called:
            log_fn(f"{stage}/probe_top1", self.probe.val_top1.compute())


class CollapseEvaluator(Evaluator):
    """Collapse monitors of the queries' features: ``{stage}/feature_std`` and ``{stage}/effective_rank``."""

    def __init__(self, std: EmbeddingStd, rank: EffectiveRank):
        self.std, self.rank = std, rank

    def metrics(self):
        return (self.std, self.rank)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            self.std.update(features)
            self.rank.update(features)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if self.std.update_called:
            log_fn(f"{stage}/feature_std", self.std.compute())
            log_fn(f"{stage}/effective_rank", self.rank.compute())


class ClassifierEvaluator(Evaluator):
    """Accuracy of a classifier head on the queries' features: ``{stage}/{name}`` (a torchmetrics accuracy of
    logits against labels, e.g. ``MulticlassAccuracy(..., ignore_index=-1)``)."""

    def __init__(self, metric, classifier: Callable[[torch.Tensor], torch.Tensor], name: str = "top1"):
        self.metric, self.classifier, self.name = metric, classifier, name

    def metrics(self):
        return (self.metric,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            self.metric.update(self.classifier(features), labels)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if self.metric.update_called:
            log_fn(f"{stage}/{self.name}", self.metric.compute())


class FewShotEvaluator(Evaluator):
    """N-way K-shot episodes on the queries (:class:`FewShotAccuracy`): ``{stage}/fewshot_{ways}way_{shots}shot``
    (and ``..._ci95``), and the same with each prototype transform of ``prototype_transforms`` (``{suffix:
    transform}``) as ``{stage}/fewshot_{...}_{suffix}`` (BECLR's ``_opta``), on the same episodes."""

    def __init__(self, metric: FewShotAccuracy, prototype_transforms: Mapping[str, Callable] | None = None):
        self.metric, self.prototype_transforms = metric, dict(prototype_transforms or {})

    def metrics(self):
        return (self.metric,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            self.metric.update(features, labels)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not self.metric.update_called:
            return
        for name, value in self.metric.compute().items():
            log_fn(f"{stage}/fewshot_{name}", value)
        for suffix, transform in self.prototype_transforms.items():
            for name, value in self.metric.evaluate(transform).items():
                log_fn(f"{stage}/fewshot_{name}_{suffix}", value)


class ClusteringEvaluator(Evaluator):
    """Clusters the queries at the end of the epoch: ``{stage}/cluster_acc`` (best one-to-one matching) and
    ``{stage}/cluster_nmi``.

    Args:
        metric: collects per-query outputs and labels; its ``compute()`` returns ``(outputs, labels)`` of every rank.
        assign: ``(outputs, num_clusters) -> cluster ids``, on the gathered (labelled) outputs.
        num_clusters: clusters to form; ``None`` or 0 turns the evaluator off.
        outputs: ``features -> what is collected`` (default: the features themselves).
        max_samples: at most this many queries are clustered (a seeded subset).
    """

    def __init__(
        self,
        metric,
        assign: Callable[[torch.Tensor, int], torch.Tensor],
        num_clusters: int | None,
        outputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_samples: int | None = None,
    ):
        self.metric, self.assign, self.num_clusters = metric, assign, num_clusters
        self.outputs, self.max_samples = outputs, max_samples

    def metrics(self):
        return (self.metric,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            self.metric.update(self.outputs(features) if self.outputs is not None else features, labels)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not (self.metric.update_called and self.num_clusters):
            return
        outputs, labels = self.metric.compute()
        keep = labels >= 0
        outputs, labels = outputs[keep], labels[keep]
        if self.max_samples is not None and len(labels) > self.max_samples:
            subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
            subset = subset[: self.max_samples].to(labels.device)
            outputs, labels = outputs[subset], labels[subset]
        if len(labels) > self.num_clusters:
            clusters = self.assign(outputs, self.num_clusters)
            log_fn(f"{stage}/cluster_acc", clustering_accuracy(clusters, labels))
            log_fn(f"{stage}/cluster_nmi", normalized_mutual_info_score(clusters, labels))


class CompatibilityEvaluator(Evaluator):
    """Cross-model retrieval against a frozen old model (``module.old``, a
    :class:`~reprzoo.lightning_modules.compatible.base.CompatibleModule`), with the bank as the gallery:
    ``{stage}/compat_top1`` and ``compat_map`` (new queries, old gallery), ``old_top1`` and ``old_map`` (the old model
    alone), ``self_top1`` (the new model alone), ``ecc`` (1 when compat_top1 > old_top1), and the 2 x 2 matrix as
    a heatmap (``{stage}/compatibility``) on rank zero's logger.

    The new model's queries are compared with the old gallery through their first ``module.compatible_dim``
    coordinates (``compatible_embed``); the old model's features come from ``module.old_features`` of the inputs.
    Nothing is measured without an old model or without a bank.
    """

    def __init__(self, compat: CrossModelRetrieval, old: CrossModelRetrieval, new: CrossModelRetrieval):
        self.compat, self.old, self.new = compat, old, new

    def metrics(self):
        return (self.compat, self.old, self.new)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if module.old is None or not batch.with_bank:
            return
        old = module.old_features(batch.inputs)
        if bank:
            self.compat.update(old, labels, gallery=True)
            self.old.update(old, labels, gallery=True)
            self.new.update(features, labels, gallery=True)
        else:
            width = module.compatible_dim  # compatible_embed of the inputs, from the features already computed
            self.compat.update(features if width >= features.shape[-1] else features[:, :width], labels)
            self.old.update(old, labels)
            self.new.update(features, labels)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not all(m.update_called for m in self.metrics()):
            return
        compat, old, new = (m.compute() for m in self.metrics())
        log_fn(f"{stage}/compat_top1", compat["top1"])
        log_fn(f"{stage}/compat_map", compat["map"])
        log_fn(f"{stage}/old_top1", old["top1"])
        log_fn(f"{stage}/old_map", old["map"])
        log_fn(f"{stage}/self_top1", new["top1"])
        log_fn(f"{stage}/ecc", float(compat["top1"] > old["top1"]))
        if module.trainer.is_global_zero and module.logger is not None:
            matrix = torch.tensor([[old["top1"], float("nan")], [compat["top1"], new["top1"]]])
            log_compatibility_matrix(module.logger, matrix, ["old", "new"], module.global_step, f"{stage}/compatibility")


__all__ = [
    "LABELLED_BANK_AND_QUERIES",
    "PLANNED_PROTOCOLS",
    "PROTOCOLS",
    "ClassifierEvaluator",
    "ClusteringEvaluator",
    "CollapseEvaluator",
    "CompatibilityEvaluator",
    "EvaluationBatch",
    "EvaluationProtocol",
    "Evaluator",
    "EvaluatorLike",
    "FewShotEvaluator",
    "KNNEvaluator",
    "LabelledBankAndQueries",
    "NestedKNNEvaluator",
    "ProbeEvaluator",
    "resolve_protocol",
]
