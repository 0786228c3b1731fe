"""Batch samplers that choose the composition of training batches, for methods that mine at the batch level.

:class:`PlaceBatchSampler` builds GPM's batches ("Global Proxy-based Hard Mining for Visual Place Recognition",
Ali-bey, Chaib-draa & Giguère, BMVC 2022, arXiv:2302.14217): ``places_per_batch`` classes ("places") with
``samples_per_place`` images each, the places of a batch being one place and its nearest neighbours in the global
index of place proxies that the method rebuilds after every epoch (random places before the first index).

A method hands the sampler to its datamodule before training starts (``datamodule.train_batch_sampler``); the
training loader then iterates it instead of its shuffled order. Batches are lists of ``(index, epoch)`` keys, so
that :class:`~reprzoo.datamodules.base.TransformedDataset` seeds each sample's augmentation as the default loader does.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from reprzoo.datamodules.labels import dataset_labels


class PlaceBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``places_per_batch`` mutually close places times ``samples_per_place`` samples of each.

    Each batch starts from an anchor place, taken in turn from a shuffled order of the places (every place anchors
    about as often), and adds the anchor's ``places_per_batch - 1`` nearest places from :meth:`set_neighbours`
    (random other places before any index is set). The samples of a place are drawn without replacement from a
    shuffled pool that is refilled when it runs out, so an epoch sees every labelled sample about once. Unlabelled
    samples (-1) are never drawn. Under DDP every rank draws the same batches and keeps its share.

    Args:
        labels: ``(n,)`` training labels, -1 for unlabelled samples.
        places_per_batch: M, the places of a batch (clipped to the number of places).
        samples_per_place: K, the samples of each place in a batch.
        seed: seed of the epoch's draws (with the epoch number).
        num_batches: batches per epoch across ranks; default: labelled samples // (M * K), at least 1.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        places_per_batch: int = 2,
        samples_per_place: int = 32,
        seed: int = 0,
        num_batches: int | None = None,
    ):
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if places_per_batch < 1 or samples_per_place < 1:
            raise ValueError(
                f"places_per_batch and samples_per_place must be positive, got {places_per_batch}, {samples_per_place}"
            )
        self.places = torch.unique(labels[labels >= 0])
        if len(self.places) == 0:
            raise ValueError("PlaceBatchSampler needs labelled samples (labels >= 0)")
        self.members = {int(p): torch.nonzero(labels == p).flatten() for p in self.places}
        self.places_per_batch = min(places_per_batch, len(self.places))
        self.samples_per_place = samples_per_place
        self.seed = seed
        labelled = int((labels >= 0).sum())
        self.num_batches = num_batches or max(1, labelled // (self.places_per_batch * samples_per_place))
        self.neighbours: dict[int, list[int]] | None = None
        self.epoch = 0

    def set_neighbours(self, neighbours: torch.Tensor | None) -> None:
        """The global index: row ``p`` of ``neighbours`` lists place ``p``'s nearest places, nearest first (-1 for
        none); ``None`` goes back to random places."""
        if neighbours is None:
            self.neighbours = None
            return
        self.neighbours = {
            int(p): [int(q) for q in neighbours[int(p)].tolist() if q >= 0 and int(q) in self.members] for p in self.places
        }

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def group(self, anchor: int, generator: torch.Generator) -> list[int]:
        """The places of the batch anchored at ``anchor``: the anchor, then its nearest places, then random ones
        where the index holds too few."""
        group = [anchor]
        if self.neighbours is not None:
            group += self.neighbours.get(anchor, [])[: self.places_per_batch - 1]
        if len(group) < self.places_per_batch:
            rest = [int(p) for p in self.places[torch.randperm(len(self.places), generator=generator)] if int(p) not in group]
            group += rest[: self.places_per_batch - len(group)]
        return group

    def batches(self, epoch: int) -> list[list[int]]:
        """The sample indices of every batch of ``epoch`` (all ranks)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        pools: dict[int, list[int]] = {p: [] for p in self.members}

        def draw(place: int) -> list[int]:
            taken: list[int] = []
            while len(taken) < self.samples_per_place:
                if not pools[place]:
                    members = self.members[place]
                    pools[place] = members[torch.randperm(len(members), generator=generator)].tolist()
                need = self.samples_per_place - len(taken)
                taken += pools[place][:need]
                pools[place] = pools[place][need:]
            return taken

        anchors: list[int] = []
        batches = []
        for _ in range(self.num_batches):
            if not anchors:
                anchors = self.places[torch.randperm(len(self.places), generator=generator)].tolist()
            batches.append([i for place in self.group(anchors.pop(), generator) for i in draw(place)])
        return batches

    def __len__(self) -> int:
        return max(1, self.num_batches // _world_size())

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        self.epoch += 1  # Lightning calls set_epoch on samplers, not on batch samplers: count epochs here
        world, rank = _world_size(), (dist.get_rank() if _distributed() else 0)
        for batch in self.batches(epoch)[rank::world][: len(self)]:
            yield [(i, epoch) for i in batch]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _world_size() -> int:
    return dist.get_world_size() if _distributed() else 1


__all__ = ["PlaceBatchSampler", "dataset_labels"]
