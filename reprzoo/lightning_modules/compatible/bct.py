"""BCT: "Towards Backward-Compatible Representation Learning" (Shen, Xiong, Xia & Soatto, CVPR 2020,
arXiv:2003.11942)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.lightning_modules.base import BANK, TrainingOutput
from reprzoo.lightning_modules.compatible.base import CompatibleModule
from reprzoo.lightning_modules.registry import register_method


@register_method(
    title="Towards Backward-Compatible Representation Learning", wing="compatible-representations", arxiv="2003.11942"
)
class BCT(CompatibleModule):
    """Backward-compatible training: the new model's classification loss plus an "influence loss" that sends the new
    features through the OLD model's frozen classifier,

        L(w_new, phi_new; T_new) + lambda * L(w_old, phi_new; T_old),

    so that new features stay where the old classifier (and so the old gallery) expects their classes. Both terms
    are cross-entropy; the influence term covers the samples of classes the old model was trained on (here the
    replay memory of ``ClassIncremental``, or every sample when the new training set contains the old one, as in the
    paper's main experiments). Without an old model (the first model) BCT is plain cross-entropy training.

    New classes (``extend_old_classifier``): the paper extends the old classifier to classes the old model never
    saw, with the mean old-model feature of each new class as its weight vector, so the influence loss covers every
    sample. The means are computed once at the start of fit over the datamodule's bank (the un-augmented training
    split of the seen classes); we rescale them to the mean norm of the old classifier's rows and give them the
    mean old bias, so that synthesised and learned logits share a scale (ours).

    The paper weighs the two terms equally (lambda = 1). The new model is trained from scratch as in the paper
    (``init_from_old`` starts it from the old weights instead). The influence loss constrains features only along
    the old classifier's rows: with few classes and wide features (digits: 10 rows, 128-d) a successor trained from
    scratch reaches cross-model top-1 of about 0.35 only; starting from the old weights keeps the remaining
    directions close (our digits acceptance test, tests/test_compatible.py, does so). The optimiser settings here are ours (SGD, lr 0.1,
    weight decay 5e-4, cosine: a standard CIFAR classification schedule); the paper trains ResNet-50/101 on
    ImageNet-1k and landmark datasets.

    Args:
        influence_weight: lambda, the weight of the influence loss.
        extend_old_classifier: synthesise old-classifier weights for new classes (above).
        kwargs: options of :class:`CompatibleModule` (``old_model``) and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        influence_weight: float = 1.0,
        extend_old_classifier: bool = True,
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        if influence_weight < 0:
            raise ValueError(f"influence_weight must be >= 0, got {influence_weight}")
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        self.synthesised_weight: torch.Tensor | None = None  # (new classes, old dim), set at the start of fit
        self.synthesised_bias: torch.Tensor | None = None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.synthesised_weight = self.synthesised_bias = None
        if self.old is None or not self.hparams.extend_old_classifier or getattr(self.old, "classifier", None) is None:
            return
        first, seen = self.num_old_classes, int(self.num_seen_classes)
        if seen <= first:
            return
        loaders = self.trainer.datamodule.val_dataloader()
        bank = loaders[BANK] if isinstance(loaders, (list, tuple)) else loaders
        sums, counts = None, torch.zeros(seen - first, device=self.device)
        for x, labels in bank:
            x, labels = x.to(self.device), labels.to(self.device)
            keep = (labels >= first) & (labels < seen)
            if not keep.any():
                continue
            features = self.old_features(x[keep])
            if sums is None:
                sums = torch.zeros(seen - first, features.shape[1], device=self.device)
            sums.index_add_(0, labels[keep] - first, features)
            counts.index_add_(0, labels[keep] - first, torch.ones_like(labels[keep], dtype=counts.dtype))
        if sums is None or (counts == 0).any():
            raise RuntimeError(f"BCT: the bank lacks samples of some new classes ({counts.tolist()}) to synthesise")
        self.synthesised_weight, self.synthesised_bias = synthesised_classifier(
            sums / counts[:, None], self.old.classifier, first
        )

    def influence_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` through the old classifier, extended by the synthesised rows of new classes when set."""
        logits = self.old_logits(features)
        if self.synthesised_weight is not None:
            logits = torch.cat([logits, features @ self.synthesised_weight.T + self.synthesised_bias], dim=1)
        return logits

    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError("BCT is supervised: it needs the batch's labels")
        x = views[0] if isinstance(views, (list, tuple)) else views
        features = self.backbone(x)
        loss = self.classification_loss(features, labels)
        if self.old is not None:
            known = self.num_old_classes + (len(self.synthesised_weight) if self.synthesised_weight is not None else 0)
            old_class = (labels >= 0) & (labels < known)
            if old_class.any():
                influence = F.cross_entropy(self.influence_logits(features[old_class]), labels[old_class])
            else:  # no old-class sample in this batch: a zero that keeps the graph the same on every rank
                influence = features.sum() * 0.0
            self.log("train/influence_loss", influence, sync_dist=True)
            loss = loss + self.hparams.influence_weight * influence
        return TrainingOutput(loss, features=features)


def synthesised_classifier(class_means: torch.Tensor, old_classifier: torch.nn.Module, num_old: int):
    """Old-classifier rows for new classes from their mean old features: ``(weight, bias)`` of shapes ``(k, d)`` and
    ``(k,)``, the means rescaled to the mean norm of the old rows, the bias the mean old bias (ours)."""
    old_weight = old_classifier.weight[:num_old].detach()
    norm = old_weight.norm(dim=1).mean()
    weight = F.normalize(class_means, dim=1) * norm
    old_bias = getattr(old_classifier, "bias", None)
    bias = (old_bias[:num_old].detach().mean() if old_bias is not None else weight.new_zeros(())).expand(len(weight))
    return weight, bias.clone()
