"""Datamodules shared by every method: they yield views and labels and know no method."""

from reprzoo.datamodules.base import BANK, QUERY, EmbeddingDataModule, TransformedDataset
from reprzoo.datamodules.batch_augment import BatchAugmentation, BatchMultiView
from reprzoo.datamodules.emoji import Emoji
from reprzoo.datamodules.images import (
    CIFAR10,
    CIFAR100,
    STL10,
    Digits,
    ImageDataModule,
    ImageFolder,
    SyntheticImages,
    TensorImageDataset,
)
from reprzoo.datamodules.incremental import ClassIncremental
from reprzoo.datamodules.random_fields import RandomFieldTransform, RandomFieldViewsTransform  # registers "random_field"
from reprzoo.datamodules.sequences import GeneratedFrames, SyntheticTimeSeries, TimeSeriesTransform
from reprzoo.datamodules.text import (
    CodePairs,
    GraphNeighbours,
    PolaritySentences,
    Sentences,
    TaggedPairs,
    TextDataModule,
    TextPairs,
    TopicSentences,
    Vocabulary,
    WordWindows,
)
from reprzoo.datamodules.textures import Textures
from reprzoo.datamodules.transforms import (
    BYOLTransform,
    MultiCropTransform,
    MultiViewTransform,
    SimCLRTransform,
    SimSiamTransform,
    augmentation_view,
    build_augmentation,
    eval_transform,
)

__all__ = [
    "Emoji",
    "Textures",
    "CodePairs",
    "GraphNeighbours",
    "PolaritySentences",
    "Sentences",
    "TaggedPairs",
    "TextDataModule",
    "TextPairs",
    "TopicSentences",
    "Vocabulary",
    "WordWindows",
    "BatchAugmentation",
    "BatchMultiView",
    "GeneratedFrames",
    "SyntheticTimeSeries",
    "TimeSeriesTransform",
    "BANK",
    "QUERY",
    "BYOLTransform",
    "CIFAR10",
    "CIFAR100",
    "ClassIncremental",
    "Digits",
    "EmbeddingDataModule",
    "ImageDataModule",
    "ImageFolder",
    "MultiCropTransform",
    "MultiViewTransform",
    "RandomFieldTransform",
    "RandomFieldViewsTransform",
    "STL10",
    "SimCLRTransform",
    "SimSiamTransform",
    "SyntheticImages",
    "TensorImageDataset",
    "TransformedDataset",
    "augmentation_view",
    "build_augmentation",
    "eval_transform",
]
