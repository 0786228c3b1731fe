"""Embedding a dataset with a zoo model: a datamodule's evaluation split (with the model's own preprocessing) or a
folder of images, batched through ``encoder.embed``. Shared by ``reprzoo embed``, ``reprzoo finetune --task knn`` and
``reprzoo analyze``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reprzoo.errors import ReprzooError


def to_device(batch, device):
    """A batch (a tensor, or a dict, list or tuple of them: token ids and their mask, node ids) on ``device``."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    return move_data_to_device(batch, device)


def embed_split(encoder, dataset, batch_size: int, device: str):
    """``(features, labels)`` of a dataset of ``(input, label)`` pairs, in order, through ``encoder.embed``."""
    import torch
    from torch.utils.data import DataLoader

    chunks, labels = [], []
    with torch.inference_mode():
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
            chunks.append(encoder.embed(to_device(x, device)).float().cpu())
            labels.append(torch.as_tensor(y))
    return torch.cat(chunks), torch.cat(labels)


def embedding_dataset(data: str, split: str, transform, overrides: dict[str, Any]):
    """``(dataset, files)``: a datamodule split, or the images of a folder (with their paths)."""
    path = Path(data).expanduser()
    if path.is_dir():
        if overrides:
            raise ReprzooError("--data.* options apply to datamodules, not to a folder of images")
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in ImageFiles.SUFFIXES)
        if not files:
            raise ReprzooError(f"{path} holds no images ({', '.join(ImageFiles.SUFFIXES)})")
        return ImageFiles(files, transform), files
    from reprzoo.datamodules import BANK, QUERY
    from reprzoo.zoo.classes import datamodule_class

    cls = datamodule_class(data)
    accepted = init_params(cls)
    for key in overrides:
        if key not in accepted:
            from reprzoo.errors import UnknownNameError

            raise UnknownNameError(f"option of {cls.__name__}", key, accepted)
    datamodule = cls(**overrides)
    datamodule.eval_transform = transform  # the model's preprocessing, not the dataset's
    loaders = datamodule.val_dataloader()
    return loaders[BANK if split == "train" else QUERY].dataset, None


def init_params(cls: type) -> set[str]:
    """Keyword arguments a class accepts, following ``**kwargs`` up its bases."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


class ImageFiles:
    """The images of a list of files through a transform, each with label -1."""

    SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

    def __init__(self, files: list[Path], transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.files[index]) as img:
            return self.transform(img.convert("RGB")), -1


__all__ = ["ImageFiles", "embed_split", "embedding_dataset", "init_params", "to_device"]
