"""OBoW: "OBoW: Online Bag-of-Visual-Words Generation for Self-Supervised Learning" (Gidaris et al., CVPR 2021,
arXiv:2012.11552)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.ema import copy_as_target
from reprzoo.components.feature_maps import stage_channels, stage_maps
from reprzoo.components.heads import ProjectionHead
from reprzoo.components.memory import MemoryQueue
from reprzoo.distributed import all_reduce_mean
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.vision_ssl.dino import forward_by_size
from reprzoo.losses.obow import bow_from_distances, bow_logits, bow_prediction_loss, squared_distances


class Vocabulary(nn.Module):
    """One level's visual words: a queue of K local teacher features (one per image and step, averaged over a 3x3
    neighbourhood at a random location), and the running mean of the minimum word distance that sets delta."""

    def __init__(self, num_words: int, dim: int, inv_delta: float = 15.0, pool: str = "max", decay: float = 0.99):
        super().__init__()
        self.queue = MemoryQueue(num_words, dim, normalize=False)
        self.queue.embeddings.clamp_(min=0)  # OBoW starts from rectified Gaussian words (features are post-ReLU)
        self.register_buffer("mean_min_distance", torch.tensor(0.5))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))
        self.inv_delta, self.pool, self.decay = inv_delta, pool, decay

    def words(self) -> torch.Tensor:
        return self.queue.embeddings.detach().clone()

    @torch.no_grad()
    def targets(self, features: torch.Tensor) -> torch.Tensor:
        """BoW targets ``(n, K)`` of teacher feature maps; in training, updates the mean distance and the queue."""
        if min(features.shape[-2:]) > 2:
            features = features[:, :, 1:-1, 1:-1]  # OBoW drops the border locations
        distances = squared_distances(features.float(), self.queue.embeddings.float())
        if self.training:
            batch_min = all_reduce_mean(distances.min(dim=1).values.mean())
            if self.num_batches == 0:  # start from the first batch (OBoW: from 0.5, forgotten over long training)
                self.mean_min_distance.copy_(batch_min)
            self.mean_min_distance.mul_(self.decay).add_(batch_min, alpha=1 - self.decay)
            self.num_batches += 1
            self.sample_words(features)
        return bow_from_distances(distances, self.inv_delta, self.mean_min_distance, self.pool)

    @torch.no_grad()
    def sample_words(self, features: torch.Tensor) -> None:
        kernel = min(3, *features.shape[-2:])
        local = F.avg_pool2d(features, kernel, stride=1).flatten(2)  # (n, c, locations)
        picked = torch.randint(0, local.shape[2], (local.shape[0],), device=local.device)
        self.queue.enqueue(local[torch.arange(local.shape[0], device=local.device), :, picked])


class WeightGenerator(ProjectionHead):
    """OBoW's dynamic weight generator: from each L2-normalised visual word, "a 2-layer perceptron" (linear without
    bias, batch norm, ReLU, linear) generates the weight vector of that word's classifier (arXiv:2012.11552, Sec. 3.3);
    hidden width twice the feature size."""

    def __init__(self, word_dim: int, hidden_dim: int, out_dim: int):
        super().__init__(
            [
                (word_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), False),
                (hidden_dim, out_dim, None, None, True),
            ]
        )

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        return super().forward(F.normalize(words, dim=1))


@register_method(
    title="OBoW: Online Bag-of-Visual-Words Generation for Self-Supervised Learning",
    wing="vision-ssl",
    arxiv="2012.11552",
)
class OBoW(EmbeddingModule):
    """The teacher (the student's EMA, alpha 0.99 -> 1 on a cosine) turns the first view into bag-of-visual-words
    targets: each local feature of its last ``bow_levels`` stage maps is soft-assigned to the level's vocabulary
    (softmax over negative squared distances, delta = running mean of the minimum distance / ``inv_delta``), the
    codes are max-pooled and L1-normalised. The vocabulary is a queue of local teacher features. The student sees the
    other (perturbed) views and predicts each level's BoW from its pooled features with a classifier whose weights a
    generator makes from the current vocabulary, scaled by kappa; the loss is the cross-entropy, averaged over levels
    and student views.

    Defaults are the paper's full ResNet-50 setting (official config ``ResNet50_OBoW_full``): two levels (conv4,
    conv5), K = 8192 words per level, inv_delta 15, kappa 8 (fixed), max pooling, SGD lr 0.03 x batch/256, weight
    decay 1e-4, 10 warmup epochs, cosine to 1e-3 of the peak. Views come from the ``multicrop`` augmentation: view 0
    is the teacher's image, the rest are the student's crops (OBoW: two 160x160 crops and five 96x96 patches); the
    official code sums the mean loss of its two crop sizes, this averages over all crops.

    Args:
        num_words: vocabulary size K of each level.
        bow_levels: how many of the backbone's last stages give BoW targets (1 or 2 in the paper).
        inv_delta: base inverse temperature of the soft assignment.
        kappa: scale of the BoW prediction scores.
        bow_pool: ``max`` (OBoW) or ``avg`` pooling of the assignment codes.
        normalize_features: L2-normalise the student features too, making the scores kappa x cosine similarity (the
            paper's cosine classifier); OBoW's code scales unnormalised pooled features, which on the digits recipe
            lets the student shrink its features towards uniform predictions.
        distance_momentum: momentum of the running mean of the minimum distance (0.99 in OBoW's code).
        tau_base: initial EMA decay of the teacher.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        num_words: int = 8192,
        bow_levels: int = 2,
        inv_delta: float = 15.0,
        kappa: float = 8.0,
        bow_pool: Literal["max", "avg"] = "max",
        normalize_features: bool = True,
        distance_momentum: float = 0.99,
        tau_base: float = 0.99,
        optimizer: str = "sgd",
        lr: float = 0.03,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 10.0,
        min_lr_ratio: float = 1e-3,
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio,
            **kwargs,
        )
        if bow_pool not in ("max", "avg"):
            raise ValueError(f"bow_pool must be 'max' or 'avg', got {bow_pool!r}")
        self.tau_base = tau_base
        channels = stage_channels(self.backbone, bow_levels)
        self.vocabularies = nn.ModuleList(Vocabulary(num_words, c, inv_delta, bow_pool, distance_momentum) for c in channels)
        self.generators = nn.ModuleList(WeightGenerator(c, 2 * self.feature_dim, self.feature_dim) for c in channels)
        self.teacher_backbone = copy_as_target(self.backbone)

    @property
    def momentum_pairs(self):
        return [(self.backbone, self.teacher_backbone)]

    def param_groups(self):
        return [{"name": "student", "params": list(self._named_trainable(exclude=("probe.", "teacher_")))}]

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        if len(views) < 2:
            raise ValueError(f"OBoW needs the teacher's view and at least one student view, got {len(views)} views")
        hp = self.hparams
        features = forward_by_size(self.backbone, views[1:])
        z = torch.cat(features)  # (crops x n, d), crop-major
        logits = [
            bow_logits(z, generator(vocabulary.words()), hp.kappa, hp.normalize_features)
            for generator, vocabulary in zip(self.generators, self.vocabularies)
        ]
        with torch.no_grad():  # targets after the predictions: the student used the vocabulary before this update
            maps = stage_maps(self.teacher_backbone, views[0], len(self.vocabularies))
            targets = [vocabulary.targets(m) for vocabulary, m in zip(self.vocabularies, maps)]
        loss = torch.stack([bow_prediction_loss(s, t) for s, t in zip(logits, targets)]).mean()
        return TrainingOutput(loss, features=features[0], embeddings=features[0])
