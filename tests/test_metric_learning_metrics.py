"""Retrieval accuracy of metric learning (reprzoo.metrics.metric_learning) against pytorch-metric-learning's
AccuracyCalculator and a per-query loop, and the zero-shot protocol end to end on digits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprzoo.metrics.metric_learning import map_at_r, precision_at_1, r_precision, retrieval_metrics


def loop_metrics(features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The definitions of "A Metric Learning Reality Check" (Sec. 3.2), one query at a time."""
    x = F.normalize(features.double(), dim=1)
    p1, rp, mapr = [], [], []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        r = sum(int(labels[j] == labels[i]) for j in others)
        if r == 0:
            continue
        sims = torch.stack([x[i] @ x[j] for j in others])
        order = [others[k] for k in torch.argsort(sims, descending=True, stable=True).tolist()]
        rel = [int(labels[j] == labels[i]) for j in order[:r]]
        p1.append(rel[0])
        rp.append(sum(rel) / r)
        mapr.append(sum(sum(rel[: k + 1]) / (k + 1) for k in range(r) if rel[k]) / r)
    return {"precision_at_1": sum(p1) / len(p1), "r_precision": sum(rp) / len(rp), "map_at_r": sum(mapr) / len(mapr)}


def test_matches_a_per_query_loop():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (80,), generator=g)
    features = 2 * F.one_hot(labels, 6).float() + 0.8 * torch.randn(80, 6, generator=g)
    got = retrieval_metrics(features, labels, chunk=17)  # several chunks
    expected = loop_metrics(features, labels)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name
    assert 0.3 < got["map_at_r"] < 0.95  # neither trivial nor perfect: the check above means something


def test_matches_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.inference import CustomKNN

    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 8, (150,), generator=g)
    features = F.one_hot(labels, 8).float() + 0.9 * torch.randn(150, 8, generator=g)
    calc = pml.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), knn_func=CustomKNN(CosineSimilarity())
    )
    ref = calc.get_accuracy(features, labels, features, labels, ref_includes_query=True)
    got = retrieval_metrics(features, labels)
    assert got["precision_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-5)
    assert got["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-5)
    assert got["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-5)


def test_perfect_and_single_metrics():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # class 2 has one sample: its query is skipped
    features = F.one_hot(labels, 3).float()
    assert retrieval_metrics(features, labels) == {"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0}
    assert precision_at_1(features, labels) == r_precision(features, labels) == map_at_r(features, labels) == 1.0
    with pytest.raises(ValueError, match="no query"):
        retrieval_metrics(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        retrieval_metrics(torch.randn(3, 2), torch.tensor([0, 1]))


def test_zero_shot_protocol_logs_retrieval_accuracy_on_unseen_classes():
    """A module validated on Digits(class_split="zero_shot") is scored by MAP@R among the unseen classes (one loader,
    no kNN or probe: their classes were never trained)."""
    import lightning as L

    from reprzoo.datamodules import Digits
    from reprzoo.lightning_modules import SimSiam

    data = Digits(class_split="zero_shot", batch_size=128)
    assert data.num_classes == 5
    model = SimSiam(backbone="resnet_tiny_cifar", num_classes=data.num_classes)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    assert {"val/precision_at_1", "val/r_precision", "val/map_at_r"} <= set(metrics)
    assert "val/knn_top1" not in metrics and "val/probe_top1" not in metrics
    assert 0.0 < metrics["val/map_at_r"] < 1.0
