"""Image datamodules: Digits (offline), synthetic gratings, CIFAR-10/100, STL-10 and any ImageFolder.

Small datasets are held as uint8 tensors; the real datasets load through torchvision and are never
downloaded unless ``download=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from reprzoo.datamodules.base import EmbeddingDataModule, TransformedDataset
from reprzoo.datamodules.batch_augment import BatchMultiView
from reprzoo.datamodules.resumable import sample_seed
from reprzoo.datamodules.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CroppedViews,
    build_augmentation,
    eval_transform,
    open_image,
)
from reprzoo.errors import ReprzooError

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
STL10_MEAN, STL10_STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)


class TensorImageDataset(Dataset):
    """Images held as one uint8 ``(N, C, H, W)`` tensor, with integer labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


def as_tensor_images(dataset: Dataset) -> TensorImageDataset:
    """A fixed-size in-memory image dataset as a ``TensorImageDataset`` (no copy where the layout allows): a
    ``TensorImageDataset`` as it is, or a torchvision dataset holding a uint8 ``data`` array (CIFAR's
    ``(N, H, W, C)``, STL-10's ``(N, C, H, W)``) with ``targets`` or ``labels``."""
    if isinstance(dataset, TensorImageDataset):
        return dataset
    data = getattr(dataset, "data", None)
    labels = getattr(dataset, "targets", getattr(dataset, "labels", None))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 4 and labels is not None):
        raise ReprzooError(
            f"augment_on='device' needs the training images in memory at one size, which {type(dataset).__name__} "
            "does not provide; use augment_on='cpu'"
        )
    images = torch.from_numpy(data)
    if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):  # channels last (CIFAR)
        images = images.permute(0, 3, 1, 2)
    return TensorImageDataset(images, torch.as_tensor(np.asarray(labels)))


class ImageDataModule(EmbeddingDataModule):
    """Base of the image datamodules: multi-view augmentation for training, resize + normalise for evaluation.

    Args:
        root: where the dataset lives (or is downloaded to, with ``download=True``).
        image_size: side of the training crops and of the evaluation images.
        augmentation: name of the multi-view augmentation (``simsiam``, ``byol``).
        augmentation_kwargs: overrides of its defaults, e.g. ``{blur_prob: 0.0, crop_scale: [0.2, 1.0]}``.
        download: let torchvision download the dataset (needs internet).
        augment_on: ``cpu`` augments each sample in the loader (torchvision v2); ``device`` makes the train loader
            yield the un-augmented uint8 images and augments whole batches on the training device after the
            transfer (``reprzoo.datamodules.batch_augment``: same options, same views, one random jitter order
            per batch). Images of one size held in memory are cropped on the device too; ``ImageFolder`` decodes
            and takes each view's random resized crop and flip in the loader (``CroppedViews``, uint8 at
            ``image_size``), and the device does the rest of each view.
        class_split: ``zero_shot`` trains on the first half of the classes and evaluates retrieval among the
            others (precision@1, R-precision, MAP@R; ``num_classes`` is then the training classes'): the metric-
            learning protocol of ``reprzoo.datamodules.labels``.
        label_noise: ``{"kind": "symmetric" | "asymmetric", "rate": r}``: noisy training labels (seeded by
            ``label_seed``); evaluation labels stay clean and ``clean_train_labels`` keeps the true ones.
        labels_per_class: keep this many labels per class; the other training samples are unlabelled (-1).
        unlabelled_ratio: with ``labels_per_class``: each training batch holds ``batch_size`` labelled samples and
            ``unlabelled_ratio`` times as many unlabelled ones (FixMatch's mu = 7,
            ``reprzoo.datamodules.semi_supervised``); ``None``: shuffled batches.
        label_seed: seed of the label noise and of the labelled subset.
    """

    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    default_image_size: int = 224

    def __init__(
        self,
        root: str = "data",
        image_size: int | None = None,
        augmentation: str = "simsiam",
        augmentation_kwargs: dict[str, Any] | None = None,
        download: bool = False,
        batch_size: int = 256,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        augment_on: Literal["cpu", "device"] = "cpu",
        class_split: Literal["zero_shot"] | None = None,
        label_noise: dict[str, Any] | None = None,
        labels_per_class: int | None = None,
        unlabelled_ratio: int | None = None,
        label_seed: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        if class_split not in (None, "zero_shot"):
            raise ValueError(f"class_split must be None or 'zero_shot', got {class_split!r}")
        self.class_split, self.label_noise, self.labels_per_class, self.label_seed = (
            class_split,
            dict(label_noise) if label_noise else None,
            labels_per_class,
            label_seed,
        )
        self.clean_train_labels: torch.Tensor | None = None
        if unlabelled_ratio is not None and not labels_per_class:
            raise ValueError("unlabelled_ratio composes batches of labelled and unlabelled samples: it needs labels_per_class")
        self.unlabelled_ratio = unlabelled_ratio
        if class_split == "zero_shot":
            from reprzoo.metrics.metric_learning import ZeroShotRetrieval

            self.evaluation_protocol = ZeroShotRetrieval()
        if augment_on not in ("cpu", "device"):
            raise ValueError(f"augment_on must be 'cpu' or 'device', got {augment_on!r}")
        self.root = Path(root).expanduser()
        self.image_size = image_size or self.default_image_size
        self.download = download
        self.augmentation = augmentation
        self.train_transform = build_augmentation(
            augmentation, self.image_size, self.mean, self.std, **(augmentation_kwargs or {})
        )
        self.eval_transform = eval_transform(self.image_size, self.mean, self.std)
        self.augment_on = augment_on
        self.batch_augmentation: BatchMultiView | None = None
        self._augmentation_generator: torch.Generator | None = None
        self._device_views: list = []  # the CPU views, for CroppedViews (ImageFolder)
        if augment_on == "device":
            self.batch_augmentation = BatchMultiView.from_augmentation(
                augmentation, self.image_size, self.mean, self.std, **(augmentation_kwargs or {})
            )
            self._device_views = list(self.train_transform.transforms)
            self.train_transform = None

    def __init_subclass__(cls, **kwargs):
        # a subclass's class-level ``num_classes = 10`` is the dataset's class count; the property below gives the
        # classes a model trains on (half of them under ``class_split="zero_shot"``)
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("num_classes"), int):
            cls._all_classes = cls.__dict__["num_classes"]
            delattr(cls, "num_classes")

    _all_classes: int | None = None

    @property
    def num_classes(self) -> int | None:
        """Classes of the training labels: the dataset's, or the seen half under ``class_split="zero_shot"``."""
        total = self._all_classes
        if total is None or getattr(self, "class_split", None) != "zero_shot":
            return total
        return total // 2

    @num_classes.setter
    def num_classes(self, value: int | None) -> None:
        self._all_classes = value

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        from reprzoo.datamodules.labels import apply_label_protocol, dataset_labels

        train, test = self._splits()
        train, test, info = apply_label_protocol(
            train, test, self._all_classes, self.class_split, self.label_noise, self.labels_per_class, self.label_seed
        )
        self._train, self._test = train, test
        self.clean_train_labels = info["clean_train_labels"]
        if self.labels_per_class:  # kNN votes with the labelled samples only
            from reprzoo.datamodules.labels import relabel

            labels = dataset_labels(train)
            kept = torch.nonzero(labels >= 0).flatten()
            self._bank_train = relabel(train, kept.tolist(), labels[kept])

    def _eval_loaders(self, query):
        if self.class_split == "zero_shot":  # one loader: the unseen classes, each sample a query against the rest
            return [self._loader(TransformedDataset(query, self.eval_transform), train=False)]
        return super()._eval_loaders(query)

    def train_dataloader(self):
        if self.augment_on == "cpu":
            return super().train_dataloader()
        self.setup()
        if self.augments_crops_on_device():
            return self._loader(TransformedDataset(as_tensor_images(self._train), None, with_index=True), train=True)
        # images of different sizes (ImageFolder): crops and flips in the loader, the rest of each view on the device
        return self._loader(TransformedDataset(self._train, CroppedViews(self._device_views), with_index=True), train=True)

    def augments_crops_on_device(self) -> bool:
        """With ``augment_on='device'``: whether the loader yields whole images of one size (crops taken on the
        device) rather than each view's crop (``CroppedViews``)."""
        return True

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With ``augment_on='device'``: a training batch of uint8 images becomes its list of augmented views."""
        trainer = self.trainer
        if self.batch_augmentation is None or trainer is None or not trainer.training:
            return batch
        images, labels, indices = batch
        device = images[0].device if isinstance(images, (list, tuple)) else images.device  # ImageFolder: crops per view
        return self.batch_augmentation(images, generator=self._generator(device)), labels, indices

    def _generator(self, device: torch.device) -> torch.Generator:
        # reseeded per batch from (seed, rank, epoch, batch): reproducible, different on every rank, and the same
        # after a mid-epoch resume as in the uninterrupted run
        if self._augmentation_generator is None or self._augmentation_generator.device != device:
            self._augmentation_generator = torch.Generator(device)
        trainer = self.trainer
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        seed = sample_seed(self.training_seed() + 7919 * trainer.global_rank, trainer.current_epoch, batch)
        return self._augmentation_generator.manual_seed(seed)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "modality": "image",
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": "bilinear",
            "crop": "center",
        }

    def _torchvision(self, cls, **kwargs):
        try:
            return cls(str(self.root), download=self.download, **kwargs)
        except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
            raise ReprzooError(
                f"{cls.__name__} not found under {self.root} ({err}). Point --data.root at the folder that holds "
                "it, or pass --data.download true on a machine with internet."
            ) from None


class Digits(ImageDataModule):
    """scikit-learn's handwritten digits (1797 8x8 images, 10 classes) as 32x32 RGB: offline, for demos and tests.

    A stratified 80/20 train/test split with a fixed seed. Horizontal flips are off by default (a flipped
    digit is another symbol).
    """

    num_classes = 10
    mean, std = (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)
    default_image_size = 32

    def __init__(self, augmentation_kwargs: dict[str, Any] | None = None, num_workers: int = 0, **kwargs):
        defaults = {"hflip_prob": 0.0, "crop_scale": (0.4, 1.0)}
        super().__init__(augmentation_kwargs={**defaults, **(augmentation_kwargs or {})}, num_workers=num_workers, **kwargs)

    def _splits(self):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
        labels = torch.tensor(data.target)
        idx_train, idx_test = train_test_split(
            torch.arange(len(labels)).numpy(), test_size=0.2, random_state=0, stratify=labels.numpy()
        )
        return TensorImageDataset(images[idx_train], labels[idx_train]), TensorImageDataset(images[idx_test], labels[idx_test])


class SyntheticImages(ImageDataModule):
    """Generated oriented gratings: the class sets orientation and frequency; phase, colour and noise vary.

    Deterministic for a given ``seed``; nothing to download.
    """

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    default_image_size = 32

    def __init__(
        self,
        num_classes: int = 10,
        train_size: int = 2000,
        test_size: int = 500,
        seed: int = 0,
        num_workers: int = 0,
        augmentation_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(augmentation_kwargs=augmentation_kwargs, num_workers=num_workers, **kwargs)
        self.num_classes, self.train_size, self.test_size, self.seed = num_classes, train_size, test_size, seed

    def _generate(self, n: int, generator: torch.Generator) -> TensorImageDataset:
        size = self.image_size
        labels = torch.randint(0, self.num_classes, (n,), generator=generator)
        angle = labels.float() * torch.pi / self.num_classes
        freq = 2 + (labels % 3).float()
        phase = torch.rand(n, generator=generator) * 2 * torch.pi
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        proj = xs[None] * angle.cos()[:, None, None] + ys[None] * angle.sin()[:, None, None]
        wave = 0.5 + 0.5 * torch.sin(torch.pi * freq[:, None, None] * proj + phase[:, None, None])
        colour = 0.5 + 0.5 * torch.rand(n, 3, 1, 1, generator=generator)
        img = wave[:, None] * colour + 0.1 * torch.randn(n, 3, size, size, generator=generator)
        return TensorImageDataset((img.clamp(0, 1) * 255).to(torch.uint8), labels)

    def _splits(self):
        g = torch.Generator().manual_seed(self.seed)
        return self._generate(self.train_size, g), self._generate(self.test_size, g)


class CIFAR10(ImageDataModule):
    """CIFAR-10 through torchvision (50k train / 10k test, 32x32)."""

    num_classes = 10
    mean, std = CIFAR10_MEAN, CIFAR10_STD
    default_image_size = 32

    def _splits(self):
        from torchvision import datasets

        return self._torchvision(datasets.CIFAR10, train=True), self._torchvision(datasets.CIFAR10, train=False)


class CIFAR100(ImageDataModule):
    """CIFAR-100 through torchvision (50k train / 10k test, 32x32, 100 classes)."""

    num_classes = 100
    mean, std = CIFAR100_MEAN, CIFAR100_STD
    default_image_size = 32

    def _splits(self):
        from torchvision import datasets

        return self._torchvision(datasets.CIFAR100, train=True), self._torchvision(datasets.CIFAR100, train=False)


class STL10(ImageDataModule):
    """STL-10 through torchvision: trains on ``train+unlabeled`` (105k, unlabelled ones labelled -1), kNN bank on
    the 5k labelled train images, queries on the 8k test images; 96x96."""

    num_classes = 10
    mean, std = STL10_MEAN, STL10_STD
    default_image_size = 96

    def _splits(self):
        from torchvision import datasets

        self._bank_train = self._torchvision(datasets.STL10, split="train")
        return self._torchvision(datasets.STL10, split="train+unlabeled"), self._torchvision(datasets.STL10, split="test")


#: Side of the images an ImageFolder infers at most: ImageNet's training size (larger photos are cropped to it).
MAX_INFERRED_IMAGE_SIZE = 224
#: Image sizes an ImageFolder infers are multiples of this (the strides of CNN stems, ViT patches of 8).
IMAGE_SIZE_MULTIPLE = 8
#: Upscaling factor of the images above which a given ``image_size`` is warned about.
UPSCALE_WARNING = 2.0


def sample_image_sides(folder: Path, max_files: int = 64) -> list[int]:
    """The shorter sides of up to ``max_files`` images of ``folder/<class>/``: classes spread evenly over the sorted
    class folders, the first files (sorted) of each, so the same folder gives the same sample and a folder of a
    million images is not listed whole. Read from the file headers only (PIL opens lazily); unreadable files are
    skipped."""
    import math
    import os

    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = sorted(d for d in folder.iterdir() if d.is_dir())
    if len(classes) > max_files:
        classes = [classes[int(i * len(classes) / max_files)] for i in range(max_files)]
    per_class = math.ceil(max_files / max(len(classes), 1))
    files: list[Path] = []
    for directory in classes:
        found: list[Path] = []
        for parent, dirs, names in os.walk(directory):  # torchvision's ImageFolder also reads nested folders
            dirs.sort()
            found += [Path(parent, n) for n in sorted(names) if Path(n).suffix.lower() in IMG_EXTENSIONS]
            if len(found) >= per_class:
                break
        files += found[:per_class]
    sides = []
    for path in files[:max_files]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except (OSError, ValueError):
            continue
    return sides


def infer_image_size(sides: Sequence[int]) -> int:
    """The training size for images of these shorter sides: their median, rounded to the nearest multiple of
    :data:`IMAGE_SIZE_MULTIPLE` (at least one multiple), at most :data:`MAX_INFERRED_IMAGE_SIZE`."""
    median = float(np.median(np.asarray(sides, dtype=float)))
    rounded = max(IMAGE_SIZE_MULTIPLE, int(median / IMAGE_SIZE_MULTIPLE + 0.5) * IMAGE_SIZE_MULTIPLE)
    return min(rounded, MAX_INFERRED_IMAGE_SIZE)


class DecodedImages(Dataset):
    """The images of a torchvision ``ImageFolder`` decoded once, kept as uint8 pixels: ``(RGB PIL image, label)``
    items as the folder gives them, without decoding a file again.

    The pixels of all images sit in one flat uint8 buffer, in memory (``storage="memory"``) or in a numpy memory-mapped
    file (``storage="memmap"``, at ``path``): a file that matches the folder (same files, sizes and modification
    times; its name holds their hash) is reused by later runs, and loader workers map it instead of receiving a copy.

    Args:
        folder: a torchvision ``ImageFolder`` (its ``samples``, ``targets`` and ``classes`` are kept).
        storage: ``memory`` or ``memmap``.
        cache_dir: folder of the memory-mapped file (``memmap`` only).
    """

    def __init__(self, folder, storage: Literal["memory", "memmap"] = "memory", cache_dir: Path | None = None):
        import hashlib

        from PIL import Image

        if storage not in ("memory", "memmap"):
            raise ValueError(f"storage must be 'memory' or 'memmap', got {storage!r}")
        if storage == "memmap" and cache_dir is None:
            raise ValueError("storage='memmap' needs a cache_dir")
        self.samples, self.targets, self.classes = list(folder.samples), list(folder.targets), list(folder.classes)
        shapes = []
        digest = hashlib.sha256()
        for path, _ in self.samples:
            with Image.open(path) as image:  # the header only
                shapes.append((image.size[1], image.size[0]))
            stat = Path(path).stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        self.shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        sizes = self.shapes[:, 0] * self.shapes[:, 1] * 3
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = max(int(self.offsets[-1]), 1)
        self.path: Path | None = None
        if storage == "memory":
            self._pixels: np.ndarray | None = np.empty(total, dtype=np.uint8)
            self._decode_all(self._pixels)
            return
        self.path = Path(cache_dir) / f"decoded-{digest.hexdigest()[:16]}-{total}.u8"
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".partial-{os.getpid()}")
            pixels = np.memmap(partial, dtype=np.uint8, mode="w+", shape=(total,))
            self._decode_all(pixels)
            pixels.flush()
            del pixels
            os.replace(partial, self.path)  # complete files only: a reader never maps a half-written cache
        self._pixels = None  # mapped on first use, in each process

    def _decode_all(self, pixels: np.ndarray) -> None:
        for i, (path, _) in enumerate(self.samples):
            image = np.asarray(open_image(path).convert("RGB"))
            if image.shape[:2] != tuple(self.shapes[i]):
                raise ReprzooError(f"{path} decodes to {image.shape[:2]}, its header says {tuple(self.shapes[i])}")
            pixels[self.offsets[i] : self.offsets[i + 1]] = image.reshape(-1)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["_pixels"] = None  # workers map the file themselves
        return state

    def pixels(self, index: int) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 pixels of image ``index`` (a view of the buffer)."""
        if self._pixels is None:
            self._pixels = np.memmap(self.path, dtype=np.uint8, mode="r")
        h, w = self.shapes[index]
        return self._pixels[self.offsets[index] : self.offsets[index + 1]].reshape(h, w, 3)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image

        return Image.fromarray(self.pixels(index)), self.targets[index]


class ImageFolder(ImageDataModule):
    """Any folder laid out as ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg`` (ImageNet style).

    ``image_size`` ``None`` (the default) is inferred from the training images: the median shorter side of a
    sample of 64 files (:func:`sample_image_sides`), rounded to a multiple of 8, at most 224
    (:func:`infer_image_size`); one line on stderr says what was chosen. A given size that upscales the images more than 2x is warned about (memory and compute
    grow with its square: a folder of 32-px images trained at 224 px needs 49 times the memory).

    JPEG files are decoded at 1/2, 1/4 or 1/8 scale when every training crop still has ``image_size`` pixels
    (:func:`~reprzoo.datamodules.transforms.draft_for_views`). ``augment_on="device"`` decodes and crops in the
    loader (each view's random resized crop and flip, uint8) and does the rest of each view on the training device.

    Args:
        cache_images: ``memory`` or ``memmap`` decodes every image once (:class:`DecodedImages`), for folders that fit
            in memory or on disk as raw pixels; ``None`` (the default) decodes the files at every access.
        cache_dir: where ``memmap`` keeps its files (default ``<root>/.reprzoo_cache``).
    """

    def __init__(
        self,
        root: str,
        train_dir: str = "train",
        val_dir: str = "val",
        image_size: int | None = None,
        cache_images: Literal["memory", "memmap"] | None = None,
        cache_dir: str | None = None,
        **kwargs,
    ):
        if cache_images not in (None, "memory", "memmap"):
            raise ValueError(f"cache_images must be None, 'memory' or 'memmap', got {cache_images!r}")
        self.cache_images = cache_images
        base = Path(root).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else base / ".reprzoo_cache"
        for sub in (train_dir, val_dir):
            if not (base / sub).is_dir():
                raise ReprzooError(
                    f"dataset path {base / sub} does not exist; ImageFolder expects "
                    f"{base}/{train_dir}/<class>/<image> and {base}/{val_dir}/<class>/<image>"
                )
        image_size = self._image_size(base / train_dir, image_size)
        super().__init__(root=root, image_size=image_size, **kwargs)
        self.train_dir, self.val_dir = train_dir, val_dir
        self.num_classes = len([p for p in (self.root / train_dir).iterdir() if p.is_dir()])

    def _image_size(self, train: Path, image_size: int | None) -> int:
        """``image_size``, or the one inferred from the training images when it is ``None``; says which on stderr
        and warns when a given size upscales the images more than :data:`UPSCALE_WARNING` times."""
        import sys

        sides = sample_image_sides(train)
        if not sides:
            if image_size is None:
                print(
                    f"reprzoo: ImageFolder: no readable image under {train} to infer the image size from; using "
                    f"{self.default_image_size} px (set --data.image_size)",
                    file=sys.stderr,
                )
            return image_size or self.default_image_size
        median = float(np.median(sides))
        if image_size is None:
            image_size = infer_image_size(sides)
            print(
                f"reprzoo: ImageFolder: image_size {image_size} px, inferred from {len(sides)} training images "
                f"(median shorter side {median:g} px); set --data.image_size to change it",
                file=sys.stderr,
            )
        elif image_size > UPSCALE_WARNING * median:
            print(
                f"reprzoo: warning: ImageFolder: image_size {image_size} px upscales the training images "
                f"{image_size / median:.1f}x (median shorter side {median:g} px over {len(sides)} sampled): memory "
                f"and compute grow {(image_size / median) ** 2:.0f}-fold for no detail; --data.image_size "
                f"{infer_image_size(sides)} matches the images",
                file=sys.stderr,
            )
        return image_size

    def augments_crops_on_device(self) -> bool:
        return False  # images of many sizes: each view's crop is taken in the loader

    def _splits(self):
        from torchvision import datasets

        splits = [datasets.ImageFolder(self.root / d, loader=open_image) for d in (self.train_dir, self.val_dir)]
        if self.cache_images is not None:
            splits = [DecodedImages(split, self.cache_images, self.cache_dir) for split in splits]
        return tuple(splits)


__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DecodedImages",
    "Digits",
    "ImageDataModule",
    "ImageFolder",
    "STL10",
    "SyntheticImages",
    "TensorImageDataset",
    "as_tensor_images",
    "infer_image_size",
    "sample_image_sides",
]
