"""Anomaly detection with a Gaussian of normal data in a zoo encoder's features.

"Modeling the Distribution of Normal Data in Pre-Trained Deep Features for Anomaly Detection", Oliver Rippel,
Patrick Mertens and Dorit Merhof, ICPR 2020, arXiv:2005.14140. Nothing is trained: the features of normal training
images are taken at several layers of a pretrained encoder (each layer's output average-pooled over positions), a
multivariate Gaussian is fitted per layer with the covariance shrunk by Ledoit-Wolf, and the anomaly score of an
image is the sum over layers of its Mahalanobis distances to those Gaussians.

Ours:
    - The encoder is any zoo image model loaded by name (``reprzoo.load``), e.g. the shipped SimSiam ResNet trained
      on digits, not an ImageNet-classification EfficientNet; the layers default to the encoder's stem and stages
      (:func:`reprzoo.analysis.features.default_layers`) instead of EfficientNet's nine levels.
    - No test-time augmentation and no input resizing beyond the model's own preprocessing.

``reprzoo anomaly fit NAME --data D --normal-class K --out DIR`` and ``reprzoo anomaly score DIR`` are its command
line (:mod:`reprzoo.cli.anomaly`). The detector is saved as safetensors with a JSON record holding the file's
SHA-256: nothing is unpickled, and a modified file is refused. The module sits beside ``reprzoo.analysis`` (it uses
the zoo and the analysis's forward hooks; nothing in the library imports it) and needs no command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from reprzoo.errors import ReprzooError

DETECTOR_FILE, RECORD_FILE = "detector.safetensors", "detector.json"
FORMAT = "reprzoo-anomaly/1"
PAPER = "Modeling the Distribution of Normal Data in Pre-Trained Deep Features for Anomaly Detection"


# ---------------------------------------------------------------------------------------------------- statistics
def ledoit_wolf(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean, Ledoit-Wolf shrunk covariance and shrinkage of the rows of ``x`` ``(N, D)``, in float64.

    Ledoit & Wolf, "A well-conditioned estimator for large-dimensional covariance matrices" (2004): with the
    centred samples ``x_k``, ``S = (1/N) sum_k x_k x_k^T`` and ``m = tr(S) / D``, the covariance is
    ``(1 - s) S + s m I`` with ``s = min(b2, d2) / d2``, ``d2 = ||S - m I||_F^2 / D`` and
    ``b2 = (1/N^2) sum_k ||x_k x_k^T - S||_F^2 / D`` (the norms under their normalised Frobenius norm).
    """
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"ledoit_wolf needs (N, D) features with N >= 2, got {tuple(x.shape)}")
    x = x.double()
    n, d = x.shape
    mean = x.mean(0)
    centred = x - mean
    emp = centred.T @ centred / n
    m = torch.trace(emp) / d
    d2 = ((emp - m * torch.eye(d, dtype=x.dtype)) ** 2).sum() / d
    # sum_k ||x_k x_k^T - S||^2 = sum_k ||x_k||^4 - N ||S||^2 (the cross term is 2 N ||S||^2)
    b2_bar = ((centred**2).sum(1) ** 2).sum() - n * (emp**2).sum()
    b2 = torch.clamp(b2_bar / (n**2 * d), max=d2)
    shrinkage = 0.0 if float(d2) == 0.0 else float(b2 / d2)
    covariance = (1 - shrinkage) * emp + shrinkage * m * torch.eye(d, dtype=x.dtype)
    return mean, covariance, shrinkage


def mahalanobis(x: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``sqrt((x - mean)^T precision (x - mean))`` for each row of ``x`` ``(N, D)``: ``(N,)`` float64."""
    diff = x.double() - mean.double()
    return torch.einsum("nd,de,ne->n", diff, precision.double(), diff).clamp_min(0).sqrt()


def auroc(scores: torch.Tensor, anomalous: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` (higher = more anomalous) for the binary labels ``anomalous``: the
    probability that an anomalous sample scores above a normal one, ties counting one half (Mann-Whitney U)."""
    scores, anomalous = torch.as_tensor(scores).double().flatten(), torch.as_tensor(anomalous).bool().flatten()
    if len(scores) != len(anomalous):
        raise ValueError(f"{len(scores)} scores but {len(anomalous)} labels")
    positives, negatives = int(anomalous.sum()), int((~anomalous).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs both normal and anomalous samples")
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    rank_sum = torch.zeros(len(values), dtype=scores.dtype).index_add_(0, inverse, ranks)
    ranks = (rank_sum / counts)[inverse]  # tied scores share their mean rank
    u = ranks[anomalous].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


# ---------------------------------------------------------------------------------------------------- detector
@dataclass
class GaussianAnomalyDetector:
    """One Gaussian per layer of normal features; the score is the sum of the Mahalanobis distances.

    Attributes:
        layers: layer name -> ``{"mean": (D,), "covariance": (D, D), "precision": (D, D)}`` (float64), in order.
        shrinkage: layer name -> its Ledoit-Wolf shrinkage.
        record: what the detector was fitted on (model, data, normal class), written next to it by :meth:`save`.
    """

    layers: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    shrinkage: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def fit(self, features: Mapping[str, torch.Tensor]) -> GaussianAnomalyDetector:
        """Fit on normal data: ``features`` maps a layer name to its ``(N, D)`` pooled features."""
        if not features:
            raise ValueError("fit needs the features of at least one layer")
        sizes = {name: len(x) for name, x in features.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every layer needs the same samples, got {sizes}")
        self.layers, self.shrinkage = {}, {}
        for name, x in features.items():
            mean, covariance, shrinkage = ledoit_wolf(x)
            self.layers[name] = {"mean": mean, "covariance": covariance, "precision": torch.linalg.inv(covariance)}
            self.shrinkage[name] = shrinkage
        return self

    def layer_scores(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mahalanobis distance of each sample to each layer's Gaussian: layer name -> ``(N,)``."""
        if not self.layers:
            raise ReprzooError("the detector is not fitted")
        missing = [name for name in self.layers if name not in features]
        if missing:
            raise ReprzooError(f"no features for layer(s) {missing}; the detector was fitted on {list(self.layers)}")
        out = {}
        for name, stats in self.layers.items():
            x = features[name]
            if x.ndim != 2 or x.shape[1] != len(stats["mean"]):
                raise ReprzooError(f"layer {name}: features {tuple(x.shape)} but the Gaussian is {len(stats['mean'])}-d")
            out[name] = mahalanobis(x, stats["mean"], stats["precision"])
        return out

    def score(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Anomaly score ``(N,)``: the sum over layers of the Mahalanobis distances (higher = more anomalous)."""
        return torch.stack(list(self.layer_scores(features).values())).sum(0)

    def save(self, folder: str | Path) -> Path:
        """Write ``detector.safetensors`` and ``detector.json`` (layers, shrinkage, record, the file's SHA-256)."""
        from safetensors.torch import save_file

        from reprzoo.atomic import atomic_write, atomic_write_text
        from reprzoo.zoo.repo import sha256_file

        if not self.layers:
            raise ReprzooError("the detector is not fitted")
        folder = Path(folder)
        tensors = {f"{name}:{key}": t.contiguous() for name, stats in self.layers.items() for key, t in stats.items()}
        path = atomic_write(folder / DETECTOR_FILE, lambda tmp: save_file(tensors, str(tmp)))
        record = {
            "format": FORMAT,
            "paper": PAPER,
            "layers": list(self.layers),
            "shrinkage": self.shrinkage,
            **self.record,
            "weights": {"file": DETECTOR_FILE, "sha256": sha256_file(path), "size": path.stat().st_size},
        }
        atomic_write_text(folder / RECORD_FILE, json.dumps(record, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> GaussianAnomalyDetector:
        """A saved detector, after checking its file's size and SHA-256 against ``detector.json``."""
        from reprzoo.zoo.repo import IntegrityError, read_all_tensors, sha256_file

        folder = Path(folder)
        try:
            record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReprzooError(f"{folder} holds no {RECORD_FILE}: not a saved anomaly detector") from None
        except json.JSONDecodeError as err:
            raise IntegrityError(f"{folder / RECORD_FILE} is not valid JSON ({err})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise IntegrityError(f"{folder / RECORD_FILE} is not a {FORMAT} record")
        path, expected = folder / DETECTOR_FILE, record.get("weights") or {}
        if not path.is_file():
            raise IntegrityError(f"{folder} lacks {DETECTOR_FILE}")
        if path.stat().st_size != expected.get("size") or sha256_file(path) != expected.get("sha256"):
            raise IntegrityError(
                f"{path} does not match the size and SHA-256 that {RECORD_FILE} records: the file was modified or "
                "corrupted; refusing to load it"
            )
        tensors = read_all_tensors(path)
        layers = {}
        for name in record["layers"]:
            try:
                layers[name] = {key: tensors[f"{name}:{key}"] for key in ("mean", "covariance", "precision")}
            except KeyError as err:
                raise IntegrityError(f"{path} lacks tensor {err}") from None
        extra = {k: v for k, v in record.items() if k not in ("format", "paper", "layers", "shrinkage", "weights")}
        return cls(layers=layers, shrinkage={k: float(v) for k, v in record["shrinkage"].items()}, record=extra)


# ---------------------------------------------------------------------------------------------------- features
def layer_features(
    encoder, dataset, layers: list[str] | None = None, batch_size: int = 256, device: str = "cpu"
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(features, labels)``: each layer's average-pooled output ``(N, C)`` over a dataset of ``(input, label)``
    pairs, through forward hooks on ``encoder.encoder`` (:func:`reprzoo.analysis.features.collect_features`)."""
    from torch.utils.data import DataLoader

    from reprzoo.analysis.features import collect_features

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    features, labels = collect_features(encoder, loader, layers=layers, device=device)
    return features.layers, labels


def random_init(encoder, seed: int = 0):
    """The same architecture as a loaded zoo encoder at random initialisation, built afresh from the model's config
    under ``seed`` (format 2: the method's ``encoder()``; format 1: the bare backbone): the baseline a trained
    encoder should beat."""
    from reprzoo.backbones import build_backbone
    from reprzoo.lightning_modules.registry import without_local_args
    from reprzoo.zoo.classes import check_backbone_kwargs, check_init_args, method_class
    from reprzoo.zoo.encoder import Encoder

    config = encoder.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if str(config.get("format_version", "")).split(".", 1)[0] == "1":
            arch = config["architecture"]
            module = build_backbone(arch["backbone"], **check_backbone_kwargs(arch.get("backbone_kwargs") or {}))
        else:
            method = config.get("method") or {}
            cls = method_class(method.get("class_path") or method.get("name", ""))
            module = cls(**check_init_args(without_local_args(method.get("init_args") or {}))).encoder()
    device = next(encoder.encoder.parameters()).device
    baseline = Encoder(module, config, encoder._folder, encoder.source, encoder.revision, encoder.dim)
    return baseline.eval().to(device)


def select_class(features: Mapping[str, torch.Tensor], labels: torch.Tensor, cls: int) -> dict[str, torch.Tensor]:
    """The rows of ``features`` whose label is ``cls``."""
    keep = labels == cls
    if not bool(keep.any()):
        raise ReprzooError(f"no training sample has label {cls} (labels present: {sorted(labels.unique().tolist())})")
    return {name: x[keep] for name, x in features.items()}


def auroc_report(scores: torch.Tensor, labels: torch.Tensor, normal_class: int) -> dict[str, Any]:
    """AUROC of normal (label ``normal_class``) against every other label, and against each other label alone."""
    anomalous = labels != normal_class
    per_class = {}
    for c in sorted(set(labels.tolist()) - {normal_class}):
        pair = (labels == normal_class) | (labels == c)
        per_class[int(c)] = auroc(scores[pair], anomalous[pair])
    return {
        "normal_class": int(normal_class),
        "auroc": auroc(scores, anomalous),
        "auroc_per_anomalous_class": per_class,
        "normal": int((~anomalous).sum()),
        "anomalous": int(anomalous.sum()),
    }


def one_class_protocol(
    train: tuple[Mapping[str, torch.Tensor], torch.Tensor],
    test: tuple[Mapping[str, torch.Tensor], torch.Tensor],
    classes: list[int] | None = None,
) -> dict[int, dict[str, Any]]:
    """One class normal, the others anomalous, for each class in turn: normal class -> its :func:`auroc_report` on
    the test split.

    ``train`` and ``test`` are ``(features, labels)`` from :func:`layer_features`, computed once; one detector is
    fitted per class on the training rows of that class (default: every class both splits hold)."""
    (train_x, train_y), (test_x, test_y) = train, test
    classes = sorted(set(train_y.tolist()) & set(test_y.tolist())) if classes is None else classes
    out = {}
    for c in classes:
        detector = GaussianAnomalyDetector().fit(select_class(train_x, train_y, c))
        out[int(c)] = auroc_report(detector.score(test_x), test_y, c)
    return out


def data_splits(data: str, transform, overrides: Mapping[str, Any] | None = None):
    """``(train, test)`` datasets of ``(input, label)`` of a datamodule named ``data`` (``Digits``, ``Textures``,
    ...), preprocessed with ``transform`` (the model's own)."""
    from reprzoo.zoo.embedding import embedding_dataset

    if Path(data).expanduser().is_dir():
        raise ReprzooError(f"{data} is a folder: anomaly detection needs a datamodule with labels (e.g. Digits, Textures)")
    return tuple(embedding_dataset(data, split, transform, dict(overrides or {}))[0] for split in ("train", "test"))


__all__ = [
    "GaussianAnomalyDetector",
    "auroc",
    "auroc_report",
    "data_splits",
    "layer_features",
    "ledoit_wolf",
    "mahalanobis",
    "one_class_protocol",
    "random_init",
    "select_class",
]
