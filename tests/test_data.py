"""Datamodules and multi-view transforms."""

from __future__ import annotations

import pytest
import torch

from reprzoo.datamodules import (
    CIFAR10,
    BYOLTransform,
    Digits,
    EmbeddingDataModule,
    ImageFolder,
    SimSiamTransform,
    SyntheticImages,
    build_augmentation,
)
from reprzoo.errors import ReprzooError, UnknownNameError


def test_digits_offline_split_and_batches():
    dm = Digits(batch_size=16)
    dm.setup()
    assert len(dm._train) + len(dm._test) == 1797 and dm.num_classes == 10
    views, labels, indices = next(iter(dm.train_dataloader()))
    assert len(views) == 2 and views[0].shape == (16, 3, 32, 32) and labels.shape == (16,)
    assert not torch.equal(views[0], views[1])  # two different augmentations
    bank, query = dm.val_dataloader()
    x, y = next(iter(query))
    assert x.shape[1:] == (3, 32, 32) and len(bank.dataset) == len(dm._train)
    assert dm.fingerprint() == Digits().fingerprint()


def test_synthetic_is_deterministic_and_labelled():
    a, b = SyntheticImages(train_size=40, test_size=10, seed=3), SyntheticImages(train_size=40, test_size=10, seed=3)
    a.setup(), b.setup()
    assert torch.equal(a._train.images, b._train.images)
    assert a._train.labels.max() < a.num_classes
    assert a.fingerprint() != SyntheticImages(train_size=40, test_size=10, seed=4).fingerprint()


def test_transforms_views_and_byol_asymmetry():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert len(SimSiamTransform(size=24, num_views=3)(image)) == 3
    byol = BYOLTransform(size=32)
    names = [[type(t).__name__ for t in view.transforms] for view in byol.transforms]
    assert "RandomSolarize" not in names[0][-3:] and any("RandomSolarize" in n for n in names[1])
    views = byol(image)
    assert views[0].shape == (3, 32, 32) and views[0].dtype == torch.float32


def test_unknown_augmentation_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: simsiam"):
        build_augmentation("simsam", 32, (0.5,) * 3, (0.5,) * 3)


def test_missing_dataset_paths_are_clear(tmp_path):
    with pytest.raises(ReprzooError, match="does not exist"):
        ImageFolder(root=str(tmp_path / "nowhere"))
    with pytest.raises(ReprzooError, match="download"):
        CIFAR10(root=str(tmp_path)).setup()


def test_image_folder_reads_classes(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 40), color=(i * 100, 50, 50)).save(tmp_path / split / cls / f"{i}.png")
    dm = ImageFolder(root=str(tmp_path), image_size=32, batch_size=2, num_workers=0)
    assert dm.num_classes == 2
    views, labels, indices = next(iter(dm.train_dataloader()))
    assert views[0].shape == (2, 3, 32, 32)
    assert dm.fingerprint() == ImageFolder(root=str(tmp_path), image_size=32).fingerprint()  # PIL samples


class _Records(EmbeddingDataModule):
    """Dict samples (a tensor, a string, a nested list): a modality the default hash once keyed on memory addresses."""

    def __init__(self, scale: float = 1.0, unhashable: bool = False, batch_size: int = 4):
        super().__init__(batch_size=batch_size, num_workers=0, pin_memory=False, seed=0)
        self.scale, self.unhashable = scale, unhashable

    def _splits(self):
        def item(i):
            sample = {"values": torch.arange(3.0) * self.scale + i, "name": f"record {i}", "tags": [i, (i % 2, "odd")]}
            if self.unhashable:
                sample["handle"] = object()
            return sample, (i % 2 if i % 3 else None)

        return [item(i) for i in range(8)], [item(i) for i in range(8, 12)]


class _PaddedRecords(_Records):
    calls = 0

    def collate(self, samples):
        type(self).calls += 1
        return {"batch_size": len(samples), "items": samples}


def test_fingerprint_is_deterministic_for_any_sample_type():
    a, b = _Records(), _Records()  # fresh instances: fresh tensors and dicts at other addresses
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != _Records(scale=2.0).fingerprint()
    with pytest.raises(ReprzooError, match=r"cannot fingerprint .*\['handle'\].*builtins\.object"):
        _Records(unhashable=True).fingerprint()


def test_update_hash_tells_types_and_layouts_apart():
    import hashlib

    import numpy as np

    from reprzoo.datamodules.fingerprint import update_hash

    def digest(value):
        h = hashlib.sha256()
        update_hash(h, value)
        return h.hexdigest()

    values = [
        1,
        1.0,
        "1",
        True,
        [1],
        (1,),
        {"a": 1},
        torch.tensor([1]),
        torch.tensor([1.0]),
        torch.tensor([[1]]),
        np.array([1], dtype=np.int64),
        np.float64(1.0),
        None,
        b"1",
    ]
    assert len({digest(v) for v in values}) == len(values)
    assert digest({"b": 2, "a": 1}) == digest({"a": 1, "b": 2})
    t = torch.arange(6).reshape(2, 3)
    assert digest(t.T) == digest(t.T.contiguous())  # values, not the memory layout
    assert digest(np.array([{"x": 1}], dtype=object)) == digest(np.array([{"x": 1}], dtype=object))


def test_num_classes_is_optional_and_none_labels_are_minus_one():
    dm = _Records()
    assert dm.num_classes is None
    x, labels = next(iter(dm.val_dataloader()[1]))
    assert set(x) == {"values", "name", "tags"} and x["values"].shape == (4, 3)  # dict samples batch by default
    assert labels.tolist() == [0, -1, 0, 1]  # items 8..11: a None label (item 9) is -1


def test_every_loader_batches_with_the_collate_hook():
    dm = _PaddedRecords()
    dm.setup()
    loaders = [dm.train_dataloader(), *dm.val_dataloader(), *dm.test_dataloader(), dm.predict_dataloader()]
    for loader in loaders:
        batch = next(iter(loader))
        assert batch["batch_size"] == 4
    assert _PaddedRecords.calls == len(loaders)
    views, label, index = next(iter(dm.train_dataloader()))["items"][0]  # training items: (sample, label, index)
    assert isinstance(views, dict) and isinstance(index, int)


def test_class_incremental_needs_labelled_data():
    from reprzoo.datamodules import ClassIncremental

    with pytest.raises(ReprzooError, match="_Records has no num_classes"):
        ClassIncremental(_Records())
