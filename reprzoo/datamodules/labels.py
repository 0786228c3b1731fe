"""Label protocols of the supervised wing, for any datamodule whose splits are ``(sample, label)`` datasets.

- :func:`zero_shot_split`: train on some classes, evaluate retrieval among the others ("A Metric Learning Reality
  Check", arXiv:2003.08505: the first half of the classes for training, the second half for testing).
- :func:`noisy_labels`: symmetric or asymmetric label noise at a rate, seeded, on the training split only (the
  protocol of "Early-Learning Regularization Prevents Memorization of Noisy Labels", arXiv:2007.00151, Sec. 5).
- :func:`few_labels`: ``n`` labels per class kept, the rest unlabelled (-1): the semi-supervised protocol of
  FixMatch (arXiv:2001.07685).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from torch.utils.data import ConcatDataset, Dataset

NoiseKind = Literal["symmetric", "asymmetric"]


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """The labels of a dataset of ``(sample, label)`` pairs, in index order (-1 where unlabelled): read from its
    ``labels`` or ``targets`` attribute when it has one, else item by item."""
    labels = getattr(dataset, "labels", getattr(dataset, "targets", None))
    if labels is None:
        labels = [-1 if item[1] is None else int(item[1]) for item in (dataset[i] for i in range(len(dataset)))]
    return torch.as_tensor(labels, dtype=torch.long).reshape(-1)


class Relabelled(Dataset):
    """``(sample, new label)`` for the positions ``indices`` of ``base``: a subset with its labels replaced."""

    def __init__(self, base: Dataset, indices: Sequence[int], labels: torch.Tensor):
        if len(indices) != len(labels):
            raise ValueError(f"{len(indices)} indices but {len(labels)} labels")
        self.base, self.indices, self.labels = base, list(indices), labels.long()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        sample, _ = self.base[self.indices[i]]
        return sample, int(self.labels[i])


def relabel(base: Dataset, indices: Sequence[int], labels: torch.Tensor) -> Dataset:
    """The positions ``indices`` of ``base`` with ``labels``: an in-memory image dataset (``images`` and ``labels``
    tensors, e.g. ``TensorImageDataset``) stays one (device augmentation reads it), anything else is wrapped."""
    if callable(getattr(base, "subset", None)):  # a dataset that knows how to keep its extras (captions)
        return base.subset(indices, labels.long())
    images = getattr(base, "images", None)
    if isinstance(images, torch.Tensor) and isinstance(getattr(base, "labels", None), torch.Tensor):
        return type(base)(images[torch.as_tensor(list(indices), dtype=torch.long)], labels.long())
    return Relabelled(base, indices, labels)


def zero_shot_split(train: Dataset, test: Dataset, num_classes: int) -> tuple[Dataset, Dataset, int]:
    """``(train, test, seen)``: the samples of classes ``0 .. seen-1`` (both splits) to train on, those of the other
    classes to evaluate on, ``seen = num_classes // 2``; each side's labels renumbered from 0."""
    if num_classes < 4:
        raise ValueError(f"a zero-shot split needs at least 4 classes (2 seen, 2 unseen), got {num_classes}")
    seen = num_classes // 2
    labels = torch.cat([dataset_labels(train), dataset_labels(test)])
    parts = (getattr(train, "images", None), getattr(test, "images", None))
    if all(isinstance(p, torch.Tensor) for p in parts) and type(train) is type(test):
        both: Dataset = type(train)(torch.cat(parts), labels)
    else:
        both = ConcatDataset([train, test])
    seen_idx = torch.nonzero(labels < seen).flatten()
    unseen_idx = torch.nonzero(labels >= seen).flatten()
    return relabel(both, seen_idx.tolist(), labels[seen_idx]), relabel(both, unseen_idx.tolist(), labels[unseen_idx] - seen), seen


def noise_transition(kind: NoiseKind, rate: float, num_classes: int) -> torch.Tensor:
    """The ``(C, C)`` label-noise transition matrix ``T[i, j] = P(noisy j | clean i)``.

    ``symmetric``: the label is replaced, with probability ``rate``, by one of the *other* classes uniformly (ELR's
    code: ``rate`` of the labels are wrong). ``asymmetric``: with probability ``rate`` class ``i`` becomes class
    ``(i + 1) mod C`` (the class-dependent flip ELR uses for CIFAR-100; CIFAR-10's hand-made pairs have no analogue
    for other label sets).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"the noise rate must be in [0, 1), got {rate}")
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {num_classes}")
    eye = torch.eye(num_classes)
    if kind == "symmetric":
        return (1 - rate) * eye + rate * (1 - eye) / (num_classes - 1)
    if kind == "asymmetric":
        return (1 - rate) * eye + rate * eye.roll(1, dims=1)
    raise ValueError(f"label noise kind must be 'symmetric' or 'asymmetric', got {kind!r}")


def noisy_labels(labels: torch.Tensor, kind: NoiseKind, rate: float, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Labels with noise drawn from :func:`noise_transition`: exactly ``round(rate x n)`` labels are changed
    (a seeded random subset), each to a class drawn from its row of the transition without the diagonal."""
    transition = noise_transition(kind, rate, num_classes)
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    flipped = torch.randperm(n, generator=generator)[: round(rate * n)]
    noisy = labels.clone()
    if len(flipped):
        off = transition[labels[flipped]].clone()
        off[torch.arange(len(flipped)), labels[flipped]] = 0.0
        noisy[flipped] = torch.multinomial(off, 1, generator=generator).flatten()
    return noisy


def few_labels(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Labels with only ``per_class`` of each class kept (a seeded draw); the others become -1 (unlabelled)."""
    if per_class < 1:
        raise ValueError(f"labels_per_class must be at least 1, got {per_class}")
    generator = torch.Generator().manual_seed(seed)
    kept = torch.full_like(labels, -1)
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} training samples, fewer than labels_per_class={per_class}")
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        kept[chosen] = c
    return kept


def apply_label_protocol(
    train: Dataset,
    test: Dataset,
    num_classes: int | None,
    class_split: str | None = None,
    label_noise: dict[str, Any] | None = None,
    labels_per_class: int | None = None,
    seed: int = 0,
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """The splits under the requested protocols, and what the datamodule should record: ``num_classes`` (the
    training classes), ``clean_train_labels``, ``unseen_classes`` and ``zero_shot``."""
    info: dict[str, Any] = {"num_classes": num_classes, "zero_shot": False}
    if (class_split or label_noise or labels_per_class) and not num_classes:
        raise ValueError("class_split, label_noise and labels_per_class need labelled data (num_classes)")
    if class_split not in (None, "zero_shot"):
        raise ValueError(f"class_split must be None or 'zero_shot', got {class_split!r}")
    if class_split == "zero_shot":
        train, test, seen = zero_shot_split(train, test, num_classes)
        info.update(num_classes=seen, unseen_classes=num_classes - seen, zero_shot=True)
    clean = dataset_labels(train)
    info["clean_train_labels"] = clean
    labels = clean
    if label_noise:
        unknown = set(label_noise) - {"kind", "rate"}
        if unknown:
            raise ValueError(f"label_noise takes 'kind' and 'rate', got {sorted(unknown)}")
        labels = noisy_labels(labels, label_noise.get("kind", "symmetric"), float(label_noise["rate"]), info["num_classes"], seed)
        info["noise_rate_measured"] = float((labels != clean).float().mean())
    if labels_per_class:
        labels = few_labels(labels, int(labels_per_class), seed)
    if labels is not clean:
        train = relabel(train, range(len(train)), labels)
    return train, test, info


__all__ = [
    "Relabelled",
    "apply_label_protocol",
    "dataset_labels",
    "few_labels",
    "noise_transition",
    "noisy_labels",
    "relabel",
    "zero_shot_split",
]
