"""The training split without augmentation, for methods that take a pass over their training images before (or
while) training: G-SimCLR's autoencoder and k-means, InterCLR's initial clustering."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader

from reprzoo.datamodules.base import EmbeddingDataModule, TransformedDataset


def unaugmented_train_loader(trainer: L.Trainer, batch_size: int = 256, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """The images of the running fit's training split with the datamodule's evaluation transform, as
    ``(image, label)`` batches; in dataset index order (the ``indices`` of training batches) unless ``shuffle``."""
    loader = trainer.train_dataloader
    datamodule = trainer.datamodule
    if loader is None or datamodule is None or getattr(datamodule, "eval_transform", None) is None:
        raise RuntimeError("this method needs Trainer.fit with a reprzoo datamodule (it reads the training images)")
    dataset = loader.dataset
    base = dataset.base if isinstance(dataset, TransformedDataset) else dataset
    return DataLoader(
        TransformedDataset(base, datamodule.eval_transform),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        num_workers=getattr(datamodule, "num_workers", 0),
        # batched as the datamodule's own loaders batch (its collate hook: padding, dict samples)
        collate_fn=datamodule._collate_fn() if isinstance(datamodule, EmbeddingDataModule) else None,
    )


@torch.no_grad()
def extract(fn: Callable[[torch.Tensor], torch.Tensor], loader: DataLoader, device: torch.device) -> torch.Tensor:
    """``fn`` applied to every batch of ``loader`` (moved to ``device``, dicts and tuples too), concatenated."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    return torch.cat([fn(move_data_to_device(x, device)).float() for x, _ in loader])
