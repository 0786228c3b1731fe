"""Class-incremental tasks over any labelled datamodule, for compatible and continual representation learning.

``ClassIncremental`` wraps a datamodule (``base``) and splits its classes into a sequence of tasks, as in the
class-incremental protocols of the compatible-learning papers (CIFAR-100 in 2, 5 or 10 equal steps, or "50 + 5 x 10":
50 classes first, then 5 tasks of 10). Labels are remapped so that task ``t`` holds a contiguous range of labels:
a method can tell old-class samples by ``labels < datamodule.new_classes[0]`` and can reserve classifier rows for
all ``num_classes`` classes from the start.

Training on task ``t`` sees the task's classes plus a replay memory of ``memory_per_class`` exemplars of every old
class (chosen at random with a seed, fixed per class, so the memory of class ``c`` is the same in every later task);
evaluation (the kNN bank and the queries) holds the seen classes only. The bank is the whole training split of the
seen classes: it is a reference set for evaluation, never trained on.

The base datamodule keeps doing the loading and the augmentation: the wrapper hands it the task's subsets and calls
its loaders and its ``on_after_batch_transfer`` (so ``augment_on: device`` works unchanged).

Hooks for methods (what ``trainer.datamodule`` offers during ``fit``):

- ``num_classes`` (all tasks), ``num_seen_classes``, ``seen_classes``, ``new_classes``, ``old_classes``,
  ``classes_of_task(t)``, ``task``, ``num_tasks``;
- ``train_indices``: for each position of the task's training set (the ``indices`` of a training batch), the index
  of the sample in the base training split, for buffers keyed by sample across tasks (e.g. DER's stored logits);
- ``memory_indices``: base-split indices of the replay memory; ``is_memory(indices)``: a mask of memory samples.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from reprzoo.datamodules.base import EmbeddingDataModule
from reprzoo.datamodules.images import TensorImageDataset, as_tensor_images
from reprzoo.errors import ReprzooError


class RemappedSubset(Dataset):
    """``(sample, label_map[label])`` of the samples ``indices`` of ``dataset``."""

    def __init__(self, dataset: Dataset, indices: np.ndarray, label_map: np.ndarray):
        self.dataset, self.indices, self.label_map = dataset, np.asarray(indices, dtype=np.int64), label_map

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        sample, label = self.dataset[int(self.indices[index])]
        return sample, int(self.label_map[label])


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The integer label of every sample, read from a ``labels``/``targets`` attribute when there is one."""
    for attr in ("labels", "targets"):
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return np.asarray(values, dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def task_sizes(num_classes: int, num_tasks: int, initial_classes: int | None = None) -> list[int]:
    """Classes per task: ``initial_classes`` first (default: an equal share), the rest split as evenly as possible
    (earlier tasks take the remainder)."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
    if initial_classes is None:
        rest = [num_classes // num_tasks + (1 if t < num_classes % num_tasks else 0) for t in range(num_tasks)]
        sizes = rest
    else:
        if not 0 < initial_classes <= num_classes:
            raise ValueError(f"initial_classes must be in 1..{num_classes}, got {initial_classes}")
        if num_tasks == 1 and initial_classes != num_classes:
            raise ValueError(f"one task holds all {num_classes} classes, not initial_classes={initial_classes}")
        left, steps = num_classes - initial_classes, num_tasks - 1
        sizes = (
            [initial_classes] + [left // steps + (1 if t < left % steps else 0) for t in range(steps)]
            if steps
            else [initial_classes]
        )
    if min(sizes) < 1:
        raise ValueError(f"{num_classes} classes cannot fill {num_tasks} tasks (initial_classes={initial_classes})")
    return sizes


def _instantiate(spec: EmbeddingDataModule | dict[str, Any]) -> EmbeddingDataModule:
    """A datamodule, or one built from a LightningCLI ``{class_path, init_args}`` mapping."""
    if isinstance(spec, EmbeddingDataModule):
        return spec
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ReprzooError(f"base must be a datamodule or a {{class_path, init_args}} mapping, got {spec!r}")
    import reprzoo.datamodules as datamodules

    path = spec["class_path"]
    module_name, _, name = path.rpartition(".")
    cls = getattr(datamodules, name, None) if module_name in ("", "reprzoo.datamodules") or path.startswith("reprzoo.") else None
    if cls is None and module_name:
        cls = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(cls, type) and issubclass(cls, EmbeddingDataModule)):
        raise ReprzooError(f"base class_path {path!r} names no EmbeddingDataModule")
    return cls(**(spec.get("init_args") or {}))


class ClassIncremental(EmbeddingDataModule):
    """The classes of ``base`` split into ``num_tasks`` tasks; trains on task ``task`` plus a replay memory.

    Args:
        base: the labelled datamodule to split (an instance, or ``{class_path, init_args}`` as in a recipe).
        num_tasks: number of tasks.
        initial_classes: classes of the first task (the "50 + 5 x 10" protocols); ``None`` splits evenly.
        task: the current task, ``0 .. num_tasks - 1``.
        memory_per_class: replay exemplars kept for every old class (0: no replay; ``"all"``: every old image, a
            successor trained on all the data seen so far, as in a model upgrade).
        memory_seed: seed of the random exemplar selection.
        class_order_seed: seed of a random class order; ``None`` keeps the base's label order.
        batch_size: overrides the base's batch size (``None``: the base's).
    """

    def __init__(
        self,
        base: EmbeddingDataModule,
        num_tasks: int = 2,
        initial_classes: int | None = None,
        task: int = 0,
        memory_per_class: int | Literal["all"] = 20,
        memory_seed: int = 0,
        class_order_seed: int | None = None,
        batch_size: int | None = None,
    ):
        base = _instantiate(base)
        if batch_size is not None:
            base.batch_size = batch_size
        super().__init__(batch_size=base.batch_size, num_workers=base.num_workers, pin_memory=base.pin_memory)
        if memory_per_class != "all" and (isinstance(memory_per_class, str) or memory_per_class < 0):
            raise ValueError(f"memory_per_class must be >= 0 or 'all', got {memory_per_class!r}")
        if base.num_classes is None:
            raise ReprzooError(f"ClassIncremental splits the classes of labelled data; {type(base).__name__} has no num_classes")
        self.base = base
        self.num_classes = int(base.num_classes)
        self.num_tasks, self.initial_classes = num_tasks, initial_classes
        self.memory_per_class, self.memory_seed, self.class_order_seed = memory_per_class, memory_seed, class_order_seed
        self.task_sizes = task_sizes(self.num_classes, num_tasks, initial_classes)
        self.task_starts = np.concatenate([[0], np.cumsum(self.task_sizes)]).tolist()
        order = np.arange(self.num_classes)
        if class_order_seed is not None:
            order = np.random.default_rng(class_order_seed).permutation(self.num_classes)
        self.class_order = order.tolist()  # class_order[new label] = the base's label
        self.label_map = np.full(self.num_classes, -1, dtype=np.int64)
        self.label_map[order] = np.arange(self.num_classes)
        self._full: tuple[Dataset, Dataset, Dataset | None] | None = None
        self.train_indices = torch.zeros(0, dtype=torch.long)
        self.memory_indices = torch.zeros(0, dtype=torch.long)
        self.task = -1
        self.set_task(task)

    # ---------------------------------------------------------------- the protocol
    def classes_of_task(self, t: int) -> list[int]:
        """The (remapped) labels of task ``t``: a contiguous range."""
        if not 0 <= t < self.num_tasks:
            raise ValueError(f"task must be in 0..{self.num_tasks - 1}, got {t}")
        return list(range(self.task_starts[t], self.task_starts[t + 1]))

    @property
    def new_classes(self) -> list[int]:
        """Labels introduced by the current task."""
        return self.classes_of_task(self.task)

    @property
    def old_classes(self) -> list[int]:
        """Labels of the earlier tasks (replayed from memory)."""
        return list(range(self.task_starts[self.task]))

    @property
    def seen_classes(self) -> list[int]:
        """Labels of tasks ``0 .. task``: what training has seen and evaluation covers."""
        return list(range(self.task_starts[self.task + 1]))

    @property
    def num_seen_classes(self) -> int:
        return self.task_starts[self.task + 1]

    def set_task(self, t: int) -> None:
        """Move to task ``t``; the loaders built afterwards serve its data."""
        self.classes_of_task(t)  # checks the range
        self.task = t
        if self._full is not None:
            self._install_task()

    def is_memory(self, indices: torch.Tensor) -> torch.Tensor:
        """Mask of the training-batch ``indices`` that are replay exemplars (they sit after the task's samples)."""
        return indices >= len(self.train_indices) - len(self.memory_indices)

    # ---------------------------------------------------------------- splits, delegated to the base
    def _splits(self):  # the base loads; setup() installs the current task on top of its splits
        self.base.setup()
        return self.base._train, self.base._test

    def setup(self, stage: str | None = None) -> None:
        if self._full is None:
            self.base.setup(stage)
            self._full = (self.base._train, self.base._test, self.base._bank_train)
            self._install_task()

    def _install_task(self) -> None:
        train, test, bank = self._full
        train_labels = self._mapped(dataset_labels(train))
        seen, new = self.num_seen_classes, self.task_starts[self.task]
        task_idx = np.flatnonzero((train_labels >= new) & (train_labels < seen))
        memory = self._memory(train_labels, new)
        positions = np.concatenate([task_idx, memory])
        self.train_indices = torch.as_tensor(positions, dtype=torch.long)
        self.memory_indices = torch.as_tensor(memory, dtype=torch.long)
        test_labels = self._mapped(dataset_labels(test))
        test_idx = np.flatnonzero((test_labels >= 0) & (test_labels < seen))
        device_augment = getattr(self.base, "augment_on", "cpu") == "device"
        self.base._train = self._subset(train, positions, tensor_images=device_augment)
        self.base._test = self._subset(test, test_idx)
        if bank is None:
            bank_idx = np.flatnonzero((train_labels >= 0) & (train_labels < seen))
            self.base._bank_train = self._subset(train, bank_idx)
        else:
            bank_labels = self._mapped(dataset_labels(bank))
            self.base._bank_train = self._subset(bank, np.flatnonzero((bank_labels >= 0) & (bank_labels < seen)))
        self._train, self._test, self._bank_train = self.base._train, self.base._test, self.base._bank_train

    def _mapped(self, labels: np.ndarray) -> np.ndarray:
        out = np.full_like(labels, -1)
        valid = (labels >= 0) & (labels < self.num_classes)
        out[valid] = self.label_map[labels[valid]]
        return out

    def _memory(self, labels: np.ndarray, first_new: int) -> np.ndarray:
        """``memory_per_class`` random exemplars of each old class (all of a class that has fewer)."""
        chosen = []
        for c in range(first_new):
            members = np.flatnonzero(labels == c)
            rng = np.random.default_rng([self.memory_seed, self.class_order[c]])
            keep = len(members) if self.memory_per_class == "all" else min(self.memory_per_class, len(members))
            chosen.append(np.sort(rng.choice(members, size=keep, replace=False)) if keep else members[:0])
        return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)

    def _subset(self, dataset: Dataset, indices: np.ndarray, tensor_images: bool = False) -> Dataset:
        if isinstance(dataset, TensorImageDataset) or tensor_images:
            images = as_tensor_images(dataset)  # augment_on=device needs images in memory: keep that layout
            idx = torch.as_tensor(indices, dtype=torch.long)
            return TensorImageDataset(images.images[idx], torch.as_tensor(self._mapped(images.labels[idx].numpy())))
        return RemappedSubset(dataset, indices, self.label_map)

    # ---------------------------------------------------------------- everything else is the base's
    def train_dataloader(self):
        self.setup()
        self.base.trainer = self.trainer  # the base's loader reads the trainer's progress (mid-epoch resume)
        return self.base.train_dataloader()

    def val_dataloader(self):
        self.setup()
        return self.base.val_dataloader()

    def test_dataloader(self):
        self.setup()
        return self.base.test_dataloader()

    def predict_dataloader(self):
        self.setup()
        return self.base.predict_dataloader()

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        self.base.trainer = self.trainer
        return self.base.on_before_batch_transfer(batch, dataloader_idx)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        self.base.trainer = self.trainer  # the base's device augmentation asks its trainer whether it is training
        return self.base.on_after_batch_transfer(batch, dataloader_idx)

    def preprocessing(self) -> dict[str, Any]:
        return self.base.preprocessing()

    def collate(self, samples: list[Any]) -> Any:
        return self.base.collate(samples)  # the loaders are the base's; a loader built from this module batches alike

    def _collate_fn(self) -> Callable[[list[Any]], Any]:
        return self.base._collate_fn()

    def fingerprint(self, max_items: int = 256) -> str:
        self.setup()
        return self.base.fingerprint(max_items)

    @property
    def train_transform(self) -> Callable | None:
        return self.base.train_transform if "base" in self.__dict__ else None

    @train_transform.setter
    def train_transform(self, value: Callable | None) -> None:
        if "base" in self.__dict__:  # EmbeddingDataModule.__init__ sets it before the base is attached
            self.base.train_transform = value

    @property
    def eval_transform(self) -> Callable | None:
        return self.base.eval_transform if "base" in self.__dict__ else None

    @eval_transform.setter
    def eval_transform(self, value: Callable | None) -> None:
        if "base" in self.__dict__:
            self.base.eval_transform = value

    def __repr__(self) -> str:
        return (
            f"ClassIncremental({type(self.base).__name__}, task {self.task + 1}/{self.num_tasks}, "
            f"classes {self.task_sizes}, memory {self.memory_per_class}/class)"
        )


def cifar100_incremental(steps: int = 5, task: int = 0, memory_per_class: int = 20, **cifar_kwargs) -> ClassIncremental:
    """CIFAR-100 in 2, 5 or 10 equal steps (the compatible-learning papers' protocols), natural class order."""
    from reprzoo.datamodules.images import CIFAR100

    if steps not in (2, 5, 10):
        raise ValueError(f"the CIFAR-100 protocols use 2, 5 or 10 steps, got {steps}")
    return ClassIncremental(CIFAR100(**cifar_kwargs), num_tasks=steps, task=task, memory_per_class=memory_per_class)


def digits_incremental(steps: int = 2, task: int = 0, memory_per_class: int = 20, **digits_kwargs) -> ClassIncremental:
    """The offline digits in 2 to 5 steps, for tests and demos."""
    from reprzoo.datamodules.images import Digits

    if not 2 <= steps <= 5:
        raise ValueError(f"digits are split into 2 to 5 steps, got {steps}")
    return ClassIncremental(Digits(**digits_kwargs), num_tasks=steps, task=task, memory_per_class=memory_per_class)


__all__ = ["ClassIncremental", "RemappedSubset", "cifar100_incremental", "dataset_labels", "digits_incremental", "task_sizes"]
