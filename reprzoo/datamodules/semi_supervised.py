"""Batches of semi-supervised training: ``batch_size`` labelled samples and ``unlabelled_ratio`` times as many
unlabelled ones in every batch, as FixMatch draws them ("FixMatch: Simplifying Semi-Supervised Learning with
Consistency and Confidence", arXiv:2001.07685, Sec. 2: ``B`` labelled and ``mu B`` unlabelled, ``mu = 7``).

An epoch is one pass over the unlabelled samples (shuffled, the last incomplete batch dropped); the few labelled
ones are cycled: reshuffled each time they run out, so they are drawn many times an epoch. The order is fixed by
``(seed, epoch)``. Each index comes as a key ``(index, round)`` that
:class:`~reprzoo.datamodules.base.TransformedDataset` seeds its augmentation with: ``round`` is the epoch for an
unlabelled sample and ``epoch * MAX_CYCLES + cycle`` for a labelled one, so a labelled sample drawn twice in an
epoch gets two different views. A batch is its labelled samples first, then its unlabelled ones; their labels
(-1 for the unlabelled) tell the method which is which.

The sampler yields the batches one after the other as a flat sequence of keys, and the loader cuts it into
batches of ``(1 + unlabelled_ratio) * batch_size``: being a ``DistributedSampler`` (as
:class:`~reprzoo.datamodules.resumable.ResumableSampler`), Lightning does not replace it under DDP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from reprzoo.datamodules.labels import dataset_labels

if TYPE_CHECKING:  # base.py builds its training loader from here
    from reprzoo.datamodules.base import TransformedDataset

#: bound on the passes over the labelled set within one epoch (keys of labelled samples stay distinct across epochs)
MAX_CYCLES = 1 << 20


class SemiSupervisedSampler(DistributedSampler):
    """Keys of batches of ``batch_size`` labelled and ``unlabelled_ratio * batch_size`` unlabelled samples, batch
    after batch (a loader with batch size :attr:`samples_per_batch` cuts them apart).

    Deterministic given ``(seed, epoch)`` (``set_epoch``, which Lightning calls each epoch). Under DDP the
    unlabelled order is split in strided shards (as ``DistributedSampler``) and each rank draws its labelled
    samples from its own stream; ``rank`` and ``world_size`` default to the process group's (0 and 1 without one).

    Args:
        labelled: indices of the labelled training samples.
        unlabelled: indices of the unlabelled ones.
        batch_size: labelled samples per batch (FixMatch's ``B``).
        unlabelled_ratio: unlabelled samples per labelled one in a batch (FixMatch's ``mu``, 7).
        seed: seed of the order.
        rank: this process's rank.
        world_size: number of ranks.
    """

    def __init__(
        self,
        labelled: Sequence[int],
        unlabelled: Sequence[int],
        batch_size: int,
        unlabelled_ratio: int = 7,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        if batch_size < 1 or unlabelled_ratio < 1:
            raise ValueError(f"batch_size and unlabelled_ratio must be positive, got {batch_size} and {unlabelled_ratio}")
        if len(labelled) == 0:
            raise ValueError("semi-supervised batches need at least one labelled sample")
        if world_size is None or rank is None:
            up = dist.is_available() and dist.is_initialized()
            world_size, rank = (dist.get_world_size(), dist.get_rank()) if up else (1, 0)
        self.labelled = torch.as_tensor(list(labelled), dtype=torch.long)
        self.unlabelled = torch.as_tensor(list(unlabelled), dtype=torch.long)
        super().__init__(
            range(len(self.labelled) + len(self.unlabelled)), num_replicas=world_size, rank=rank, seed=seed, drop_last=True
        )
        self.batch_size, self.unlabelled_ratio = batch_size, unlabelled_ratio
        self._skip = 0
        if self.num_batches == 0:
            raise ValueError(
                f"{len(self.unlabelled)} unlabelled samples make no batch of {self.unlabelled_per_batch} per rank "
                f"({world_size} ranks): lower batch_size or unlabelled_ratio"
            )

    @property
    def unlabelled_per_batch(self) -> int:
        return self.batch_size * self.unlabelled_ratio

    @property
    def samples_per_batch(self) -> int:
        return self.batch_size + self.unlabelled_per_batch

    @property
    def num_batches(self) -> int:
        """Batches of an epoch on this rank."""
        return len(self.unlabelled) // self.num_replicas // self.unlabelled_per_batch

    def __len__(self) -> int:
        return self.num_batches * self.samples_per_batch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._skip = 0
        super().set_epoch(epoch)

    def start_at(self, batches: int) -> None:
        """Skip the first ``batches`` batches of the current epoch (a mid-epoch resume)."""
        self._skip = max(0, batches)

    def _generator(self, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7_919 + stream)

    def batches(self) -> list[list[tuple[int, int]]]:
        """Every batch of the current epoch on this rank, as lists of ``(index, round)`` keys (labelled first)."""
        n = self.num_batches
        order = self.unlabelled[torch.randperm(len(self.unlabelled), generator=self._generator(0))]
        unlabelled = order[self.rank :: self.num_replicas][: n * self.unlabelled_per_batch]
        needed = n * self.batch_size
        generator = self._generator(1 + self.rank)
        cycles = -(-needed // len(self.labelled))
        if cycles > MAX_CYCLES:
            raise ValueError(f"{needed} labelled draws cycle the {len(self.labelled)} labelled samples too often")
        labelled = torch.cat([self.labelled[torch.randperm(len(self.labelled), generator=generator)] for _ in range(cycles)])
        rounds = torch.arange(cycles).repeat_interleave(len(self.labelled)) + self.epoch * MAX_CYCLES
        batches = []
        for b in range(n):
            lab = slice(b * self.batch_size, (b + 1) * self.batch_size)
            unl = unlabelled[b * self.unlabelled_per_batch : (b + 1) * self.unlabelled_per_batch]
            batches.append([(int(i), int(r)) for i, r in zip(labelled[lab], rounds[lab])] + [(int(i), self.epoch) for i in unl])
        return batches

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([key for batch in self.batches()[self._skip :] for key in batch])


class SemiSupervisedDataLoader(DataLoader):
    """The training loader over a :class:`SemiSupervisedSampler` (batches of its ``samples_per_batch``), resuming
    mid-epoch like :class:`~reprzoo.datamodules.resumable.ResumableDataLoader`: its ``state_dict`` is the epoch and
    the batches the training loop processed, read through ``processed_batches`` (set by the datamodule)."""

    def __init__(self, dataset, sampler: SemiSupervisedSampler, **kwargs: Any):
        generator = torch.Generator().manual_seed(sampler.seed)  # worker seeds from a private stream
        super().__init__(
            dataset, batch_size=sampler.samples_per_batch, sampler=sampler, drop_last=True, generator=generator, **kwargs
        )
        self.semi_supervised_sampler = sampler
        self.processed_batches = None

    def state_dict(self) -> dict[str, int]:
        processed = self.processed_batches() if self.processed_batches is not None else 0
        return {"epoch": int(self.semi_supervised_sampler.epoch), "processed_batches": int(processed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, processed = int(state.get("epoch", 0)), int(state.get("processed_batches", 0))
        if processed >= len(self):
            epoch, processed = epoch + 1, 0
        self.semi_supervised_sampler.set_epoch(epoch)
        self.semi_supervised_sampler.start_at(processed)


def split_labelled(labels: Sequence[int] | torch.Tensor) -> tuple[list[int], list[int]]:
    """Indices of the labelled (label >= 0) and unlabelled (label -1) samples."""
    labels = torch.as_tensor(labels)
    return torch.nonzero(labels >= 0).flatten().tolist(), torch.nonzero(labels < 0).flatten().tolist()


def semi_supervised_loader(
    dataset: TransformedDataset, batch_size: int, unlabelled_ratio: int, seed: int, **options: Any
) -> SemiSupervisedDataLoader:
    """The training loader of a semi-supervised datamodule: batches of ``batch_size`` labelled and
    ``unlabelled_ratio * batch_size`` unlabelled samples of ``dataset`` (labelled ones are those of label >= 0 in
    ``dataset.base``), keys seeding each sample's augmentation. ``options`` are ``DataLoader``'s (workers,
    pinning, collate)."""
    labelled, unlabelled = split_labelled(dataset_labels(dataset.base))
    sampler = SemiSupervisedSampler(labelled, unlabelled, batch_size, unlabelled_ratio, seed=seed)
    if dataset.seed is None:
        dataset.seed = seed
    return SemiSupervisedDataLoader(dataset, sampler, **options)


__all__ = ["MAX_CYCLES", "SemiSupervisedDataLoader", "SemiSupervisedSampler", "semi_supervised_loader", "split_labelled"]
