"""A modality-agnostic datamodule for embedding methods.

Training batches are ``(views, labels, indices)``: a list of augmented views of each sample, its label (-1 when
unlabelled) and its index in the training split (for memory banks keyed by sample). Validation and test give two loaders, the labelled reference set (``bank``, the training split
without augmentation) then the queries, so that kNN and probe metrics work for any modality.

A sample may be anything ``collate`` can batch: an image tensor, token ids of any length, node ids, a dict. Every
loader the base builds batches with :meth:`EmbeddingDataModule.collate` (torch's ``default_collate`` unless a
subclass overrides it, e.g. to pad token ids into ``{"input_ids", "attention_mask"}``).
"""

from __future__ import annotations

import abc
import hashlib
import os
from typing import Any, Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from reprzoo.datamodules.fingerprint import update_hash
from reprzoo.datamodules.resumable import ResumableDataLoader, sample_seed

BANK, QUERY = 0, 1  # dataloader_idx of the two evaluation loaders


class TransformedDataset(Dataset):
    """``(sample, label)`` pairs of ``base`` with ``transform`` applied to the sample; ``(sample, label, index)``
    with ``with_index``. A ``None`` label (unlabelled data) becomes -1.

    A key ``(index, epoch)`` (from :class:`~reprzoo.datamodules.resumable.ResumableSampler`) with ``seed`` set runs
    the transform under its own random state, seeded from ``(seed, epoch, index)``: the views of a sample do not
    depend on worker count, prefetching or on where a resumed run restarted.
    """

    def __init__(self, base: Dataset, transform: Callable | None, with_index: bool = False, seed: int | None = None):
        self.base, self.transform, self.with_index, self.seed = base, transform, with_index, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]):
        index, epoch = key if isinstance(key, tuple) else (key, None)
        sample, label = self.base[index]
        if label is None:
            label = -1
        if self.transform is not None:
            if epoch is not None and self.seed is not None:
                with torch.random.fork_rng(devices=[]):
                    # the CPU generator only: torch.manual_seed also queues every accelerator's (2 ms a sample)
                    torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
                    sample = self.transform(sample)
            else:
                sample = self.transform(sample)
        return (sample, label, index) if self.with_index else (sample, label)


class EmbeddingDataModule(L.LightningDataModule, abc.ABC):
    """Loaders shared by every method; a subclass provides the splits and the transforms.

    Subclasses implement ``_splits()`` returning ``(train, test)`` datasets of ``(sample, label)`` without
    transforms, and set ``train_transform`` (multi-view) and ``eval_transform``. Unlabelled data gives the label
    -1 (or ``None``) and leaves ``num_classes`` at ``None``: the evaluation then skips what needs labels (kNN and
    linear probe) and measures the rest. A modality whose samples do not stack (token ids of different lengths)
    overrides :meth:`collate`.

    Args:
        batch_size: samples per device and step.
        num_workers: loader worker processes per device.
        pin_memory: pin host memory for faster copies to an accelerator (default: when CUDA is available).
        seed: seed of the training order and of the per-sample augmentations (default: the process seed set by
            ``seed_everything``). Training loaders resume mid-epoch exactly (``reprzoo.datamodules.resumable``).
    """

    #: classes of the labels; ``None`` for unlabelled data (no kNN or probe metrics).
    num_classes: int | None = None
    #: how a module reads the evaluation loaders (``reprzoo.metrics.evaluators.PROTOCOLS``): ``[bank, queries]`` of
    #: ``(sample, label)`` batches. A datamodule with another evaluation (query/document relevance, held-out edges,
    #: next-item targets) declares its own, and the evaluators that understand it run.
    evaluation_protocol: str = "labelled_bank_and_queries"
    #: a batch sampler over the training split that a method sets in its ``setup("fit")`` to choose the composition
    #: of training batches (GPM's batches of similar places); it yields lists of ``(index, epoch)`` keys. ``None``:
    #: shuffled batches of ``batch_size``. Such loaders do not resume mid-epoch.
    train_batch_sampler: Sampler | None = None

    def __init__(self, batch_size: int = 256, num_workers: int = 4, pin_memory: bool | None = None, seed: int | None = None):
        super().__init__()
        self.seed = seed
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = min(num_workers, os.cpu_count() or 1)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_transform: Callable | None = None
        self.eval_transform: Callable | None = None
        self._train: Dataset | None = None
        self._test: Dataset | None = None
        self._bank_train: Dataset | None = None  # the train split whose labels kNN votes with (STL-10: labelled part)

    @abc.abstractmethod
    def _splits(self) -> tuple[Dataset, Dataset]:
        """``(train, test)`` datasets of ``(sample, label)`` pairs, untransformed."""

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            self._train, self._test = self._splits()

    def train_labels(self) -> torch.Tensor:
        """The labels of the training split in index order (-1 where unlabelled), as the batches carry them."""
        from reprzoo.datamodules.labels import dataset_labels

        self.setup()
        return dataset_labels(self._train)

    def preprocessing(self) -> dict[str, Any]:
        """How to turn a raw sample into model input at inference time (stored in a hub model's config)."""
        return {}

    def preprocessing_files(self) -> dict[str, bytes]:
        """Files the inference pipeline needs besides ``preprocessing()`` (a ``tokenizer.json``, a vocabulary, a
        graph's node index), by file name: a pushed model stores them next to its weights, hashed in its config,
        and ``reprzoo.load(name).preprocessing_file(filename)`` returns them checked. None by default."""
        return {}

    def fingerprint(self, max_items: int = 256) -> str:
        """A short hash of the training split (its length and first samples), recorded as provenance in cards.

        Deterministic for any sample type :func:`~reprzoo.datamodules.fingerprint.update_hash` knows (tensors,
        arrays, numbers, strings, PIL images, and dicts, lists and tuples of them): the same data gives the same
        fingerprint in every process. Other types raise :class:`~reprzoo.datamodules.fingerprint.UnhashableSampleError`.
        """
        self.setup()
        h = hashlib.sha256(f"{type(self).__name__}:{len(self._train)}".encode())
        for i in range(min(len(self._train), max_items)):
            sample, label = self._train[i]
            update_hash(h, sample, f"{type(self).__name__} training sample {i}")
            update_hash(h, label, f"{type(self).__name__} training label {i}")
        return h.hexdigest()[:16]

    def collate(self, samples: list[Any]) -> Any:
        """Batch a list of dataset items: training items ``(views, label, index)``, evaluation items
        ``(sample, label)``. Used by every loader the base builds.

        torch's ``default_collate`` (tensors stacked, numbers to tensors, dicts and lists batched element-wise).
        Override for samples that do not stack, e.g. pad variable-length token ids into
        ``{"input_ids", "attention_mask"}`` (the method's encoder then receives that dict).
        """
        return default_collate(samples)

    def _collate_fn(self) -> Callable[[list[Any]], Any]:
        # the plain function when not overridden: worker processes started by spawn then need not pickle the
        # datamodule (and the trainer it points to)
        return default_collate if type(self).collate is EmbeddingDataModule.collate else self.collate

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        options = dict(
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self._collate_fn(),
        )
        if not train:
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, **options)
        if isinstance(dataset, TransformedDataset) and dataset.seed is None:
            dataset.seed = self.training_seed()
        if self.train_batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=self.train_batch_sampler, **options)
        if getattr(self, "unlabelled_ratio", None):  # FixMatch-style batches: B labelled + ratio x B unlabelled
            from reprzoo.datamodules.semi_supervised import semi_supervised_loader

            loader = semi_supervised_loader(dataset, self.batch_size, self.unlabelled_ratio, self.training_seed(), **options)
        else:
            loader = ResumableDataLoader(dataset, self.batch_size, seed=self.training_seed(), drop_last=True, **options)
        trainer = self.trainer
        if trainer is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress
            loader.processed_batches = lambda: progress.current.processed
        return loader

    def training_seed(self) -> int:
        return int(self.seed if self.seed is not None else torch.initial_seed() % 2**31)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(TransformedDataset(self._train, self.train_transform, with_index=True), train=True)

    def _eval_loaders(self, query: Dataset) -> list[DataLoader]:
        bank = self._bank_train if self._bank_train is not None else self._train
        return [
            self._loader(TransformedDataset(bank, self.eval_transform), train=False),
            self._loader(TransformedDataset(query, self.eval_transform), train=False),
        ]

    def val_dataloader(self) -> list[DataLoader]:
        self.setup()
        return self._eval_loaders(self._test)

    def test_dataloader(self) -> list[DataLoader]:
        self.setup()
        return self._eval_loaders(self._test)

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(TransformedDataset(self._test, self.eval_transform), train=False)
