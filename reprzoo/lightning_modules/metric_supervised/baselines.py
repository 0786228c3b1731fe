"""The supervised baselines users expect next to the metric-learning methods, each short on
:class:`~reprzoo.lightning_modules.metric_supervised.base.SupervisedModule`:

- :class:`SupervisedCE`: cross-entropy on a linear classifier ("Deep Residual Learning for Image Recognition", He,
  Zhang, Ren & Sun, CVPR 2016, arXiv:1512.03385: the supervised training that representation papers compare with).
- :class:`SupCon`: "Supervised Contrastive Learning" (Khosla et al., NeurIPS 2020, arXiv:2004.11362).
- :class:`ArcFace`: "ArcFace: Additive Angular Margin Loss for Deep Face Recognition" (Deng, Guo, Xue & Zafeiriou,
  CVPR 2019, arXiv:1801.07698).
- :class:`CosFace`: "CosFace: Large Margin Cosine Loss for Deep Face Recognition" (Wang et al., CVPR 2018,
  arXiv:1801.09414).
- :class:`PairContrastive` and :class:`Triplet`: the contrastive and triplet losses as "A Metric Learning Reality
  Check" (Musgrave, Belongie & Lim, ECCV 2020, arXiv:2003.08505) runs them: the pair-based baselines that
  Multi-Similarity is measured against.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reprzoo.components.heads import ProjectionHead
from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.contrastive import supervised_contrastive
from reprzoo.losses.metric_learning import contrastive_pair_loss, cosine_logits, margin_softmax_loss, triplet_margin_loss

WING = "metric-and-supervised"


class CosineClassifier(nn.Module):
    """Class weights ``(classes, dim)`` compared by cosine: ``forward`` gives ``cos(theta)`` ``(batch, classes)``,
    which margins and scales turn into logits (ArcFace, CosFace, normalised softmax)."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        # unit-variance entries (PML's init): rows of norm ~sqrt(dim). Only their directions count, and the gradient
        # of a direction scales with 1/norm: tiny rows would train with a huge effective learning rate.
        nn.init.normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cosine_logits(x, self.weight)


@register_method(title="Deep Residual Learning for Image Recognition", wing=WING, arxiv="1512.03385")
class SupervisedCE(SupervisedModule):
    """Supervised cross-entropy: a linear classifier on the backbone's features (or on an embedding layer), trained
    with the labels of one augmented view. The representation is the backbone's output.

    Ours:
        - Not a catalogue row: the baseline that the wing's methods are measured against (ELR, BatchFormer and the
          metric-learning losses). He et al. is cited for the standard supervised recipe (cross-entropy, SGD with
          momentum, weight decay), not for its architecture: any registered backbone trains this way.

    Args:
        kwargs: :class:`SupervisedModule` options (``embedding_dim``, ``normalize``, ``label_smoothing``, the
            optimiser's).
    """

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        labelled = self.labelled(labels)
        rep = self.represent(views[0])
        loss = self.cross_entropy(self.logits(rep[labelled]), labels[labelled])
        return TrainingOutput(loss, features=rep, embeddings=rep)


class SupConProjectionHead(ProjectionHead):
    """SupCon's projection network: "a multi-layer perceptron with a single hidden layer of size 2048 and output
    vector of size 128"; its output is L2-normalised in the loss, and the network is discarded after training."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128):
        super().__init__([(in_dim, hidden_dim, None, nn.ReLU(inplace=True), True), (hidden_dim, out_dim, None, None, True)])


@register_method(title="Supervised Contrastive Learning", wing=WING, arxiv="2004.11362")
class SupCon(SupervisedModule):
    """SupCon: two augmented views of each image; every other view with the anchor's label is a positive of the
    anchor (``L^sup_out``, Eq. 2 of the paper), on the L2-normalised output of a projection MLP with temperature
    0.1. The representation is the encoder's output (the projection is thrown away); the paper then trains a
    linear classifier on it, frozen, which is what the online probe measures here (no classifier head).

    Ours:
        - Projection 512 -> 128 in the digits recipe (paper: hidden 2048, out 128, on ResNet-50 features of 2048).
        - SGD with cosine decay instead of LARS at batch 6144 with warmup (tiny batches on the CPU).

    Args:
        proj_hidden_dim: hidden width of the projection MLP.
        proj_output_dim: width of its output.
        temperature: the loss's temperature tau.
        kwargs: :class:`SupervisedModule` options.
    """

    def __init__(self, proj_hidden_dim: int = 2048, proj_output_dim: int = 128, temperature: float = 0.1, **kwargs: Any):
        super().__init__(**kwargs)
        self.projector = SupConProjectionHead(self.representation_dim, proj_hidden_dim, proj_output_dim)

    def build_classifier(self) -> nn.Module | None:
        return None

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        if len(views) < 2:
            raise ValueError(f"SupCon trains on two views of each image, got {len(views)} (use augmentation num_views: 2)")
        reps = [self.represent(v) for v in views]
        z = torch.cat([self.projector(r) for r in reps])
        loss = supervised_contrastive(z, labels.repeat(len(views)), temperature=self.hparams.temperature)
        return TrainingOutput(loss, features=reps[0], embeddings=z)


class _MarginSoftmax(SupervisedModule):
    """A cosine classifier trained with an additive margin on the target class (ArcFace, CosFace)."""

    kind: str = ""

    def build_classifier(self) -> nn.Module | None:
        return CosineClassifier(self.representation_dim, self.hparams.num_classes)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        rep = self.represent(views[0])
        hp = self.hparams
        loss = margin_softmax_loss(rep, self.classifier.weight, labels, self.kind, hp.margin, hp.scale)
        return TrainingOutput(loss, features=rep, embeddings=rep)


@register_method(title="ArcFace: Additive Angular Margin Loss for Deep Face Recognition", wing=WING, arxiv="1801.07698")
class ArcFace(_MarginSoftmax):
    """ArcFace: embeddings and class weights on the unit hypersphere, logits ``s cos(theta_y + m)`` for the target
    class and ``s cos theta_j`` for the others (m = 0.5 rad, s = 64). The representation is the L2-normalised
    embedding (faces are verified by cosine).

    Ours:
        - A linear embedding layer after the backbone (``embedding_dim``, 128 in the digits recipe) instead of the
          paper's BN-Dropout-FC-BN output block with a 512-d embedding.

    Args:
        margin: m, the additive angular margin in radians.
        scale: s, the radius of the hypersphere of the logits.
        embedding_dim: width of the embedding layer.
        normalize: L2-normalise the exported embedding.
        kwargs: :class:`SupervisedModule` options.
    """

    kind = "arcface"

    def __init__(
        self, margin: float = 0.5, scale: float = 64.0, embedding_dim: int | None = 512, normalize: bool = True, **kwargs
    ):
        super().__init__(embedding_dim=embedding_dim, normalize=normalize, **kwargs)


@register_method(title="CosFace: Large Margin Cosine Loss for Deep Face Recognition", wing=WING, arxiv="1801.09414")
class CosFace(_MarginSoftmax):
    """CosFace (large margin cosine loss): logits ``s (cos theta_y - m)`` for the target class and ``s cos theta_j``
    for the others, embeddings and class weights L2-normalised (m = 0.35, s = 64). The representation is the
    normalised embedding.

    Ours:
        - A linear embedding layer after the backbone (``embedding_dim``, 128 in the digits recipe; the paper's
          face CNN ends in a 512-d fully connected layer).

    Args:
        margin: m, the additive cosine margin.
        scale: s, the scale of the logits.
        embedding_dim: width of the embedding layer.
        normalize: L2-normalise the exported embedding.
        kwargs: :class:`SupervisedModule` options.
    """

    kind = "cosface"

    def __init__(
        self, margin: float = 0.35, scale: float = 64.0, embedding_dim: int | None = 512, normalize: bool = True, **kwargs
    ):
        super().__init__(embedding_dim=embedding_dim, normalize=normalize, **kwargs)


class _PairBased(SupervisedModule):
    """A pair-based metric-learning loss on the L2-normalised embedding of one view (no classifier head); a subclass
    defines ``pair_loss(rep, labels)``."""

    def build_classifier(self) -> nn.Module | None:
        return None

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        rep = self.represent(views[0])
        return TrainingOutput(self.pair_loss(rep, labels), features=rep, embeddings=rep)


@register_method(title="Dimensionality Reduction by Learning an Invariant Mapping", wing=WING)
class PairContrastive(_PairBased):
    """The contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006): positive pairs pulled together, negative pairs
    pushed beyond a margin, ``[d_ap - m_pos]_+ + [m_neg - d_an]_+`` on the Euclidean distance of L2-normalised
    embeddings (:func:`~reprzoo.losses.metric_learning.contrastive_pair_loss`). The representation is the
    normalised embedding.

    Ours:
        - Not a catalogue row: the pair-based baseline of the Multi-Similarity comparison.
        - Every pair of the batch, each kind averaged over its active pairs, with a positive margin (0 by default)
          and normalised embeddings, as in "A Metric Learning Reality Check"; the 2006 paper uses sampled pairs,
          unnormalised outputs and ``0.5 d^2`` for positives.
        - A 128-d linear embedding layer on the backbone (the Reality Check's size).

    Args:
        pos_margin: distance below which a positive pair stops contributing.
        neg_margin: distance beyond which a negative pair stops contributing (the paper's m).
        embedding_dim: width of the embedding layer.
        normalize: L2-normalise the representation.
        kwargs: :class:`SupervisedModule` options.
    """

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        embedding_dim: int | None = 128,
        normalize: bool = True,
        **kwargs: Any,
    ):
        super().__init__(embedding_dim=embedding_dim, normalize=normalize, **kwargs)

    def pair_loss(self, rep, labels):
        return contrastive_pair_loss(rep, labels, self.hparams.pos_margin, self.hparams.neg_margin)


@register_method(title="FaceNet: A Unified Embedding for Face Recognition and Clustering", wing=WING, arxiv="1503.03832")
class Triplet(_PairBased):
    """The triplet loss (FaceNet): an anchor closer to each positive than to each negative by a margin,
    ``[d_ap - d_an + alpha]_+`` on L2-normalised embeddings, over every valid triplet of the batch
    (:func:`~reprzoo.losses.metric_learning.triplet_margin_loss`). The representation is the normalised embedding.

    Ours:
        - Not a catalogue row: the triplet baseline of the Multi-Similarity comparison.
        - All triplets of the batch averaged over the active ones ("batch all", the Reality Check's setting),
          instead of FaceNet's semi-hard negatives from large batches.
        - Euclidean (not squared) distances with margin 0.1 (FaceNet: alpha = 0.2 on squared distances; the
          Reality Check's tuned margin is about 0.1).

    Args:
        margin: alpha.
        embedding_dim: width of the embedding layer.
        normalize: L2-normalise the representation.
        kwargs: :class:`SupervisedModule` options.
    """

    def __init__(self, margin: float = 0.1, embedding_dim: int | None = 128, normalize: bool = True, **kwargs: Any):
        super().__init__(embedding_dim=embedding_dim, normalize=normalize, **kwargs)

    def pair_loss(self, rep, labels):
        return triplet_margin_loss(rep, labels, self.hparams.margin)


__all__ = [
    "ArcFace",
    "CosFace",
    "CosineClassifier",
    "PairContrastive",
    "SupCon",
    "SupConProjectionHead",
    "SupervisedCE",
    "Triplet",
]
