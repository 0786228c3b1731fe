"""Evaluation is attached, not inherited: methods list evaluator objects (``build_evaluators``), each evaluation batch
is embedded once, datamodules declare their evaluation protocol, and no method overrides a private hook of the base."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from reprzoo.datamodules import SyntheticImages
from reprzoo.lightning_modules import FineTune, list_methods
from reprzoo.lightning_modules.base import EmbeddingModule
from reprzoo.lightning_modules.compatible.base import CompatibleModule
from reprzoo.lightning_modules.vision_ssl.mlc import MLC
from reprzoo.lightning_modules.vision_ssl.simsiam import SimSiam
from reprzoo.metrics.evaluators import (
    LABELLED_BANK_AND_QUERIES,
    ClusteringEvaluator,
    CollapseEvaluator,
    Evaluator,
    EvaluatorLike,
    KNNEvaluator,
    LabelledBankAndQueries,
    ProbeEvaluator,
    resolve_protocol,
)

#: private names the base defines for itself (ABCMeta gives every subclass its own ``_abc_impl``)
BASE_PRIVATE = {n for n in vars(EmbeddingModule) if n.startswith("_") and not n.startswith("__")} - {"_abc_impl"}


def private_overrides(cls: type) -> dict[str, set[str]]:
    """``{class name: names}`` of the base's private attributes that ``cls`` or a class before the base in its MRO
    (mixins included) defines again."""
    mro = cls.__mro__
    found = {}
    for klass in mro[: mro.index(EmbeddingModule)]:
        names = BASE_PRIVATE & set(vars(klass))
        if names:
            found[klass.__qualname__] = names
    return found


def test_no_method_overrides_a_private_hook_of_the_base():
    """Methods add evaluation through ``build_evaluators`` (public) and never redefine ``_eval_step``,
    ``_eval_epoch_end`` or any other underscore-prefixed attribute of :class:`EmbeddingModule`."""
    assert {"_eval_step", "_eval_epoch_end"} <= BASE_PRIVATE
    classes = [info.cls for info in list_methods()] + [FineTune, CompatibleModule]
    assert len(classes) > 40
    offenders = {cls.__name__: found for cls in classes if (found := private_overrides(cls))}
    assert not offenders, f"private hooks of EmbeddingModule overridden: {offenders}"


def tiny_simsiam(cls=SimSiam, **kwargs):
    options = dict(
        backbone="resnet_tiny_cifar",
        num_classes=4,
        knn_k=5,
        proj_hidden_dim=32,
        proj_output_dim=16,
        proj_layers=2,
        pred_hidden_dim=8,
    )
    return cls(**{**options, **kwargs})


def tiny_data(**kwargs):
    return SyntheticImages(
        num_classes=4, train_size=32, test_size=32, image_size=16, batch_size=16, augmentation_kwargs={"blur_prob": 0.0}, **kwargs
    )


def test_default_evaluators_wrap_the_registered_metrics():
    model = tiny_simsiam()
    evaluators = model.build_evaluators()
    assert [type(e) for e in evaluators] == [KNNEvaluator, ProbeEvaluator, CollapseEvaluator]
    assert all(isinstance(e, EvaluatorLike) for e in evaluators)
    knn, probe, collapse = evaluators
    modules = dict(model.named_modules())
    # the same objects, still submodules where they were: state-dict keys and the export's metric filter unchanged
    assert knn.metric is model.knn is modules["knn"] and probe.probe is modules["probe"]
    assert collapse.std is modules["feature_std"] and collapse.rank is modules["feature_rank"]
    assert [type(e) for e in tiny_simsiam(online_probe=False).build_evaluators()] == [KNNEvaluator, CollapseEvaluator]
    assert [type(e) for e in tiny_simsiam(num_classes=None).build_evaluators()] == [CollapseEvaluator]


class Recorder(Evaluator):
    """Records what the module hands over and logs a constant."""

    def __init__(self):
        self.seen: list[tuple[bool, bool, int, int]] = []

    def update(self, features, labels, *, bank, module, batch):
        assert batch.labels is labels and batch.raw is not None
        self.seen.append((bank, batch.with_bank, batch.dataloader_idx, features.shape[0]))

    def compute_and_log(self, log_fn, stage, module):
        if self.seen:
            log_fn(f"{stage}/recorded_batches", float(len(self.seen)))


class RecordingSimSiam(SimSiam):
    def build_evaluators(self):
        self.recorder = getattr(self, "recorder", None) or Recorder()
        return [*super().build_evaluators(), self.recorder]


def test_a_method_lists_an_extra_evaluator_and_each_batch_is_embedded_once(tiny_trainer_kwargs):
    model = tiny_simsiam(RecordingSimSiam)
    calls = []
    embed = model.embed
    model.embed = lambda x: calls.append(x.shape[0]) or embed(x)
    result = L.Trainer(**tiny_trainer_kwargs).validate(model, datamodule=tiny_data(), verbose=False)[0]
    # two bank batches then two query batches, each embedded once for all four evaluators
    assert calls == [16, 16, 16, 16]
    assert model.recorder.seen == [(True, True, 0, 16), (True, True, 0, 16), (False, True, 1, 16), (False, True, 1, 16)]
    assert result["val/recorded_batches"] == 4.0
    assert {"val/knn_top1", "val/probe_top1", "val/feature_std", "val/effective_rank"} <= result.keys()
    assert "_evaluators_running" not in model.__dict__  # dropped at the end of the epoch: rebuilt for the next
    assert not model.knn.update_called and not model.probe.val_top1.update_called  # reset


def test_mlc_clusters_the_features_embedded_once(tiny_trainer_kwargs):
    model = MLC(backbone="resnet_tiny_cifar", num_classes=4, proj_hidden_dim=16, proj_output_dim=8, knn_k=5)
    assert isinstance(model.build_evaluators()[-1], ClusteringEvaluator)
    calls = []
    backbone_forward = model.backbone.forward
    model.backbone.forward = lambda x: calls.append(x.shape[0]) or backbone_forward(x)
    result = L.Trainer(**tiny_trainer_kwargs).validate(model, datamodule=tiny_data(), verbose=False)[0]
    assert calls == [16, 16, 16, 16]  # no second backbone pass for the cluster head
    assert 0.0 <= result["val/cluster_acc"] <= 1.0 and 0.0 <= result["val/cluster_nmi"] <= 1.0


def test_protocols():
    assert isinstance(resolve_protocol(None), LabelledBankAndQueries)
    assert resolve_protocol(LABELLED_BANK_AND_QUERIES).name == LABELLED_BANK_AND_QUERIES
    protocol = LabelledBankAndQueries()
    assert resolve_protocol(protocol) is protocol
    x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    assert protocol.read((x, y), 0, 2).bank and not protocol.read((x, y), 1, 2).bank
    single = protocol.read((x, y), 0, 1)
    assert not single.bank and not single.with_bank and single.inputs is x
    assert SyntheticImages.evaluation_protocol == LABELLED_BANK_AND_QUERIES
    with pytest.raises(NotImplementedError, match="planned"):
        resolve_protocol("held_out_edges")
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        resolve_protocol("bogus")


def test_a_datamodule_declares_its_protocol_and_only_evaluators_that_understand_it_run(tiny_trainer_kwargs):
    class OtherProtocol(LabelledBankAndQueries):
        name = "other"

    class Other(Recorder):
        protocols = ("other",)

    class Model(SimSiam):
        def build_evaluators(self):
            self.other = getattr(self, "other", None) or Other()
            return [*super().build_evaluators(), self.other]

    data = tiny_data()
    data.evaluation_protocol = OtherProtocol()
    model = tiny_simsiam(Model)
    result = L.Trainer(**tiny_trainer_kwargs).validate(model, datamodule=data, verbose=False)[0]
    assert result == {"val/recorded_batches": 4.0}  # kNN, probe and collapse read labelled banks only

    data.evaluation_protocol = "held_out_edges"
    with pytest.raises(NotImplementedError, match="held_out_edges"):
        L.Trainer(**tiny_trainer_kwargs).validate(tiny_simsiam(), datamodule=data, verbose=False)
