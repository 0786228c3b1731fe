"""Class-incremental learners on a frozen old model: PODNet (distil pooled outputs, local similarity classifier) and
DER (a frozen extractor per past task plus a new one, features concatenated).

Both train one task of a :class:`~reprzoo.datamodules.ClassIncremental` protocol per ``fit``; the previous task's
model is the old model (``old_model:`` a run or checkpoint, or ``set_old_model``). The first task has no old model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.backbones.cifar_resnet import TinyResNet
from reprzoo.components.feature_maps import stage_channels, stage_maps
from reprzoo.components.representation import Concatenation
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.compatible.base import CompatibleModule
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.continual import der_auxiliary_loss, local_similarity, nca_loss, pod_flat, pod_spatial, pod_weight


def features_and_maps(backbone: nn.Module, x: torch.Tensor, num_levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The pooled features ``backbone(x)`` and the last ``num_levels`` stage maps, in one forward pass."""
    if isinstance(backbone, TinyResNet):
        maps = stage_maps(backbone, x, len(backbone.stages))
        return backbone.pool(maps[-1]), maps[-num_levels:]
    final, maps = backbone.forward_intermediates(x, indices=num_levels)
    return backbone.forward_head(final, pre_logits=True), list(maps)


class LocalSimilarityClassifier(nn.Module):
    """PODNet's LSC: K learned proxies per class, the class score a softmax-weighted mean of the proxies'
    similarities ``2 cos - 2`` (the authors' negative squared distance of unit vectors;
    ``reprzoo.losses.continual.local_similarity``), and the NCA loss's learned scale eta (starts at 1, as the
    authors' ``learned_scaling`` post-processor)."""

    def __init__(self, in_dim: int, num_classes: int, proxies_per_class: int = 10):
        super().__init__()
        self.proxies = nn.Parameter(torch.empty(num_classes, proxies_per_class, in_dim))
        nn.init.kaiming_normal_(self.proxies.view(-1, in_dim), nonlinearity="linear")
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return local_similarity(features, self.proxies)


@register_method(
    title="PODNet: Pooled Outputs Distillation for Small-Tasks Incremental Learning",
    wing="compatible-representations",
    arxiv="2004.13513",
)
class PODNet(CompatibleModule):
    """PODNet (Douillard, Cord, Ollion, Robert & Valle, ECCV 2020): the model of task t starts from the model of
    task t-1 and is trained with

        L_LSC-NCA + lambda_s sqrt(N/T) L_POD-spatial + lambda_f sqrt(N/T) L_POD-flat

    for N seen and T new classes: POD-spatial compares width- and height-pooled stage outputs of the old and new
    backbones at every stage, POD-flat the final embeddings; the classifier is the local similarity classifier with
    K proxies per class under the NCA loss with margin delta and learned scale eta.

    Defaults are the authors' CIFAR-100 configuration (``options/podnet/podnet_cnn_cifar100.yaml``): K = 10,
    delta = 0.6, eta learned from 1, lambda_s = 3, lambda_f = 1, SGD lr 0.1, weight decay 5e-4, cosine schedule.
    The LSC and the NCA loss follow the authors' code, which differs from the paper's formulas (see
    ``local_similarity`` and ``nca_loss``): proxy similarities are ``-||x - w||^2 = 2 cos - 2`` of unit vectors
    rather than cosines; delta is subtracted from every class and cancels, so the margin has no effect; the true
    class's slot in the denominator holds exp(0) after the max-shift; no hinge. Ours / left out: the proxies of new
    classes start at random rather than imprinted from k-means of their features; the old classes' proxies keep
    training (the authors freeze them, ``groupwise_factors: old_weights: 0``); there is no class-balanced
    classifier fine-tuning after each task (authors: 20 epochs at lr 0.05); ResNet-32 is replaced by the recipe's
    backbone.

    Args:
        proxies_per_class: K.
        margin: delta of the NCA loss.
        pod_spatial_weight: lambda_s.
        pod_flat_weight: lambda_f.
        pod_levels: the stages POD-spatial distils (the last ``pod_levels``); ``None``: every stage.
        init_from_old: start from the old model's backbone and classifier (PODNet continues training it).
        kwargs: options of :class:`CompatibleModule` (``old_model``) and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        proxies_per_class: int = 10,
        margin: float = 0.6,
        pod_spatial_weight: float = 3.0,
        pod_flat_weight: float = 1.0,
        pod_levels: int | None = None,
        init_from_old: bool = True,
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        if proxies_per_class < 1:
            raise ValueError(f"proxies_per_class must be >= 1, got {proxies_per_class}")
        if min(pod_spatial_weight, pod_flat_weight) < 0:
            raise ValueError("the POD weights must be >= 0")
        self._proxies_per_class = proxies_per_class
        super().__init__(init_from_old=init_from_old, lr=lr, weight_decay=weight_decay, **kwargs)
        self.pod_levels = pod_levels or len(stage_channels_all(self.backbone))
        stage_channels(self.backbone, self.pod_levels)  # checks the backbone has that many stages

    def build_classifier(self) -> nn.Module:
        return LocalSimilarityClassifier(self.feature_dim, self.hparams.num_classes, self._proxies_per_class)

    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError("PODNet is supervised: it needs the batch's labels")
        x = views[0] if isinstance(views, (list, tuple)) else views
        features, maps = features_and_maps(self.backbone, x, self.pod_levels)
        hp = self.hparams
        loss = nca_loss(self.classify(features), labels, hp.margin, self.classifier.scale)
        if self.old is not None:
            with torch.no_grad():
                self.old.eval()
                old_features, old_maps = features_and_maps(self.old.backbone, x, self.pod_levels)
            seen, new = int(self.num_seen_classes), int(self.num_seen_classes) - self.num_old_classes
            spatial, flat = pod_spatial(old_maps, maps), pod_flat(old_features, features)
            self.log_dict({"train/pod_spatial": spatial, "train/pod_flat": flat}, sync_dist=True)
            loss = (
                loss + pod_weight(hp.pod_spatial_weight, seen, new) * spatial + pod_weight(hp.pod_flat_weight, seen, new) * flat
            )
        return TrainingOutput(loss, features=features)


def stage_channels_all(backbone: nn.Module) -> list[int]:
    """Channels of every stage output the backbone exposes."""
    if isinstance(backbone, TinyResNet):
        return stage_channels(backbone, len(backbone.stages))
    return stage_channels(backbone, len(getattr(backbone, "feature_info", [])))


@register_method(
    title="DER: Dynamically Expandable Representation for Class Incremental Learning",
    wing="compatible-representations",
    arxiv="2103.16788",
)
class DER(CompatibleModule):
    """DER (Yan, Xie & He, CVPR 2021): at task t the extractors of tasks 0..t-1 are frozen (batch-norm statistics
    included) and a new extractor is added; the representation is the concatenation ``[F_0(x), ..., F_t(x)]``
    (``embed``), classified over all seen classes, plus an auxiliary classifier on the NEW extractor's features alone
    over ``|new classes| + 1`` outputs (the old classes merged into one "other" class) that pushes the new extractor
    towards features the old ones lack:

        L = CE(H_t([F_0(x); ...; F_t(x)]), y) + lambda_a CE(H_a(F_t(x)), y_a).

    As in the authors' code, the new extractor starts from the previous one and the classifier keeps the old
    weights on the old features. lambda_a = 1 (paper); SGD lr 0.1, weight decay 5e-4 and the cosine schedule are ours
    (the paper uses step decay). Left out: the channel-level masks with their sparsity loss that prune each new
    extractor (the paper's optional "DER w/ P"), and the class-balanced classifier re-training of its second stage.

    Args:
        aux_weight: lambda_a.
        num_old_extractors: frozen extractors this model holds; set from the old model (``set_old_model``) and
            saved with the checkpoint so that a trained model can be rebuilt.
        init_from_old: start the new extractor from the old model's newest one.
        kwargs: options of :class:`CompatibleModule` (``old_model``) and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        aux_weight: float = 1.0,
        num_old_extractors: int = 0,
        init_from_old: bool = True,
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        if aux_weight < 0 or num_old_extractors < 0:
            raise ValueError("aux_weight and num_old_extractors must be >= 0")
        super().__init__(init_from_old=init_from_old, lr=lr, weight_decay=weight_decay, **kwargs)
        if "old_extractors" not in self._modules:  # not already built from an old model during super().__init__
            hp = self.hparams
            extractors = [build_backbone(hp.backbone, **(hp.backbone_kwargs or {})) for _ in range(num_old_extractors)]
            self._install_extractors(extractors)

    def _install_extractors(self, extractors: list[nn.Module]) -> None:
        hp = self.hparams
        self.old_extractors = nn.ModuleList(extractors).requires_grad_(False).eval()
        hp.num_old_extractors = len(extractors)
        width = self.backbone.num_features * (len(extractors) + 1)
        self.feature_dim = width
        self.classifier = nn.Linear(width, hp.num_classes)
        self.aux_classifier = nn.Linear(self.backbone.num_features, hp.num_classes + 1)  # sliced to |new| + 1
        self.resize_probe(width)

    def build_classifier(self) -> nn.Module:
        return nn.Linear(self.backbone.num_features * (self.hparams.num_old_extractors + 1), self.hparams.num_classes)

    def on_old_model_set(self, old: EmbeddingModule) -> None:
        if not isinstance(old, DER):
            raise TypeError(f"DER's old model must be a DER model, got {type(old).__name__}")
        device = self.num_seen_classes.device
        self._install_extractors([copy.deepcopy(e) for e in old.old_extractors] + [copy.deepcopy(old.backbone)])
        old_width = old.classifier.in_features
        with torch.no_grad():  # the old classes keep their weights on the old features
            self.classifier.weight[:, :old_width] = old.classifier.weight
            self.classifier.bias.copy_(old.classifier.bias)
        if self.hparams.init_from_old:
            self.backbone.load_state_dict(old.backbone.state_dict())
        self.to(device)

    def train(self, mode: bool = True):
        super().train(mode)
        if "old_extractors" in self._modules:
            self.old_extractors.eval()  # frozen: batch-norm statistics included
        return self

    @property
    def compatible_dim(self) -> int:
        """The old extractors' part: the old model's own representation, frozen."""
        old = self.backbone.num_features * len(self.old_extractors)
        return old or self.embedding_dim

    def encoder(self) -> nn.Module:
        """The concatenation of every past task's frozen extractor and the new backbone."""
        return Concatenation([*self.old_extractors, self.backbone])

    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError("DER is supervised: it needs the batch's labels")
        x = views[0] if isinstance(views, (list, tuple)) else views
        new_features = self.backbone(x)
        with torch.no_grad():
            old_features = [e(x) for e in self.old_extractors]
        features = torch.cat(old_features + [new_features], dim=1)
        loss = self.classification_loss(features, labels)
        if len(self.old_extractors) and self.old is not None:
            num_old = self.num_old_classes
            num_new = int(self.num_seen_classes) - num_old
            aux = der_auxiliary_loss(self.aux_classifier(new_features)[:, : num_new + 1], labels, num_old)
            self.log("train/aux_loss", aux, sync_dist=True)
            loss = loss + self.hparams.aux_weight * aux
        return TrainingOutput(loss, features=features)
