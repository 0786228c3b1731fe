"""ClassIncremental: tasks partition the classes, labels are remapped contiguously, the replay memory holds exactly
``memory_per_class`` exemplars of every old class, evaluation covers the seen classes only, and the base's
augmentation path (``augment_on: device`` included) still runs."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from reprzoo.datamodules import BANK, QUERY, ClassIncremental, Digits
from reprzoo.datamodules.incremental import dataset_labels, digits_incremental, task_sizes


def all_labels(dataset) -> np.ndarray:
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))])


def test_task_sizes():
    assert task_sizes(100, 5) == [20] * 5
    assert task_sizes(100, 6, initial_classes=50) == [50] + [10] * 5  # "50 + 5 x 10"
    assert task_sizes(10, 3) == [4, 3, 3]
    with pytest.raises(ValueError, match="cannot fill"):
        task_sizes(3, 4)
    with pytest.raises(ValueError, match="initial_classes"):
        task_sizes(10, 2, initial_classes=11)


@pytest.mark.parametrize("order_seed", [None, 3])
def test_tasks_partition_the_classes_with_contiguous_labels(order_seed):
    data = ClassIncremental(Digits(), num_tasks=3, memory_per_class=0, class_order_seed=order_seed)
    data.setup()
    base_labels = dataset_labels(data._full[0])
    seen_tasks = []
    for t in range(3):
        data.set_task(t)
        classes = data.classes_of_task(t)
        assert classes == list(range(classes[0], classes[-1] + 1))  # contiguous
        train = data.train_dataloader().dataset
        labels = all_labels(train.base)
        assert set(labels) == set(classes)  # no memory: the task's classes only
        # each remapped label is one base class, and every sample of the task's base classes is there
        base_of_task = {data.class_order[c] for c in classes}
        expected = np.flatnonzero(np.isin(base_labels, list(base_of_task)))
        assert sorted(data.train_indices.tolist()) == expected.tolist()
        for pos in range(0, len(train), 37):
            assert data.label_map[base_labels[data.train_indices[pos]]] == labels[pos]
        seen_tasks.append(set(classes))
    assert set().union(*seen_tasks) == set(range(10)) and sum(map(len, seen_tasks)) == 10
    if order_seed is not None:
        assert data.class_order != list(range(10))


def test_memory_holds_exactly_memory_per_class_of_every_old_class():
    data = ClassIncremental(Digits(), num_tasks=5, memory_per_class=7, memory_seed=1)
    data.setup()
    data.set_task(3)
    labels = all_labels(data.train_dataloader().dataset.base)
    new = data.new_classes
    assert data.old_classes == list(range(6)) and new == [6, 7]
    counts = np.bincount(labels, minlength=10)
    assert counts[:6].tolist() == [7] * 6 and (counts[8:] == 0).all()
    assert len(data.memory_indices) == 42
    memory_positions = torch.arange(len(labels))[data.is_memory(torch.arange(len(labels)))]
    assert (labels[memory_positions.numpy()] < new[0]).all() and len(memory_positions) == 42
    # the memory of a class does not change between tasks
    data.set_task(4)
    first = set(data.memory_indices.tolist())
    data.set_task(3)
    assert set(data.memory_indices.tolist()) <= first


def test_memory_all_replays_every_old_image():
    data = ClassIncremental(Digits(), num_tasks=2, task=1, memory_per_class="all")
    data.setup()
    labels = all_labels(data.train_dataloader().dataset.base)
    base_labels = dataset_labels(data._full[0])
    assert np.bincount(labels, minlength=10).tolist() == np.bincount(data.label_map[base_labels], minlength=10).tolist()
    for bad in (-1, "some"):
        with pytest.raises(ValueError, match="memory_per_class"):
            ClassIncremental(Digits(), memory_per_class=bad)


def test_evaluation_covers_seen_classes_only():
    data = ClassIncremental(Digits(), num_tasks=2, task=0)
    data.setup()
    loaders = data.val_dataloader()
    bank, queries = (all_labels(loaders[i].dataset) for i in (BANK, QUERY))
    assert set(bank) == set(queries) == set(range(5))
    full_test = all_labels(data._full[1])
    assert len(queries) == int((full_test < 5).sum())  # natural order: every test sample of classes 0-4
    data.set_task(1)
    queries = all_labels(data.val_dataloader()[QUERY].dataset)
    assert set(queries) == set(range(10)) and len(queries) == len(full_test)
    assert data.num_classes == 10 and data.num_seen_classes == 10 and data.seen_classes == list(range(10))


def test_builds_from_a_class_path_mapping_and_overrides_batch_size():
    data = ClassIncremental({"class_path": "reprzoo.datamodules.Digits", "init_args": {"batch_size": 64}}, batch_size=16)
    assert isinstance(data.base, Digits) and data.batch_size == data.base.batch_size == 16
    with pytest.raises(Exception, match="EmbeddingDataModule"):
        ClassIncremental({"class_path": "collections.OrderedDict"})


@pytest.mark.parametrize("augment_on", ["cpu", "device"])
def test_trains_through_the_base_augmentation(augment_on, tiny_trainer_kwargs):
    from reprzoo.lightning_modules import SimSiam

    data = digits_incremental(steps=2, task=1, memory_per_class=5, batch_size=16, augment_on=augment_on)
    seen = []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            views, labels, indices = batch
            assert isinstance(views, list) and views[0].dtype == torch.float32 and views[0].shape[1:] == (3, 32, 32)
            seen.append(labels)

    model = SimSiam(
        backbone="resnet_tiny_cifar", num_classes=data.num_classes, proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=16
    )
    L.Trainer(**tiny_trainer_kwargs, callbacks=[Recorder()]).fit(model, datamodule=data)
    assert seen and all(((y >= 0) & (y < 10)).all() for y in seen)
