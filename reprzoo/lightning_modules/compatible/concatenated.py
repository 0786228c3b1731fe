"""CAT-n: "Learning useful representations for shifting tasks and distributions" (Zhang & Bottou, ICML 2023,
arXiv:2212.07346)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.components.representation import Concatenation
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method


@register_method(
    title="Learning useful representations for shifting tasks and distributions",
    wing="compatible-representations",
    arxiv="2212.07346",
)
class CatN(EmbeddingModule):
    """CAT-n: n networks with the same architecture, data, algorithm and hyper-parameters but different random seeds,
    each trained on its own (here: cross-entropy with its own linear classifier, the paper's supervised setting);
    the representation is the concatenation of their features, evaluated by a linear probe (the online probe and the
    ``reprzoo finetune`` linear task see the whole concatenation).

    The members are trained side by side in one run: their losses are summed, and as no parameter is shared each
    member receives exactly the gradient of its own loss. They differ by their initialisation (seed ``seed + i``);
    the paper's runs also differ in data order, which one shared loader cannot give; with ``num_views`` >= n in the
    augmentation, member i trains on view i (its own augmentation draw). n hub models of different seeds can be
    concatenated after training with ``reprzoo.zoo.concatenated.load_concatenated``.

    Optimiser settings (SGD, lr 0.1, weight decay 5e-4, cosine) are ours: a standard supervised schedule for each
    member (the paper trains ResNet-50s on ImageNet with the torchvision recipe).

    Args:
        num_networks: n.
        seed: base seed of the members' initialisation.
        kwargs: options of :class:`EmbeddingModule` (backbone, ``num_classes``, optimiser, evaluation).
    """

    def __init__(self, num_networks: int = 2, seed: int = 0, lr: float = 0.1, weight_decay: float = 5e-4, **kwargs):
        if num_networks < 1:
            raise ValueError(f"num_networks must be >= 1, got {num_networks}")
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        hp = self.hparams
        if not hp.num_classes:
            raise ValueError("CatN trains each member with a classifier: it needs num_classes (the CLI links it)")
        members = []
        for i in range(num_networks):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                members.append(build_backbone(hp.backbone, **(hp.backbone_kwargs or {})))
        self.backbone = Concatenation(members)
        self.heads = nn.ModuleList(nn.Linear(m.num_features, hp.num_classes) for m in members)
        self.feature_dim = self.backbone.num_features
        self.resize_probe(self.feature_dim)

    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError("CatN trains supervised members: it needs the batch's labels")
        views = list(views) if isinstance(views, (list, tuple)) else [views]
        losses, features = [], []
        for i, (member, head) in enumerate(zip(self.backbone.members, self.heads)):
            f = member(views[i % len(views)])
            losses.append(F.cross_entropy(head(f), labels, ignore_index=-1))
            features.append(f)
        for i, member_loss in enumerate(losses):
            self.log(f"train/member{i}_loss", member_loss, sync_dist=True)
        return TrainingOutput(torch.stack(losses).sum(), features=torch.cat(features, dim=1))
