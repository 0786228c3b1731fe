"""Multi-Similarity loss: "Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning" (Wang, Han,
Huang, Dong & Scott, CVPR 2019, arXiv:1904.06627)."""

from __future__ import annotations

from typing import Any

from torch import nn

from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.metric_learning import multi_similarity_loss


@register_method(
    title="Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning",
    wing="metric-and-supervised",
    arxiv="1904.06627",
)
class MultiSimilarity(SupervisedModule):
    """MS loss: every pair of the batch is first mined by its similarity relative to the anchor's hardest pair of the
    other kind (a negative is kept when it is more similar than the least similar positive minus epsilon, a positive
    when it is less similar than the most similar negative plus epsilon), then weighted by its self-similarity and
    its relative similarities to the other pairs through the soft weighting of Eq. 12 (alpha for positives, beta
    for negatives, margin lambda). The representation is the L2-normalised embedding that the cosine similarities
    are computed on: retrieval ranks by it. Paper defaults: alpha 2, beta 50, lambda 0.5, epsilon 0.1.

    Ours:
        - A 128-d linear embedding layer on a small ResNet (the paper: 512-d on BN-Inception pretrained on
          ImageNet; 64-d to 1024-d in its ablation).
        - No classifier head (the loss needs none): ``val/classifier_top1`` is not logged; the online probe and kNN
          monitor read the embedding.
        - The loss averages over the batch's labelled anchors, an anchor with only mined positives (or only
          negatives) keeping that term, as Eq. 12 and PML's ``MultiSimilarityLoss`` do; the authors' released code
          skips such anchors.
        - Batches are the datamodule's shuffled ones; the paper samples M images of each of N classes per batch
          (e.g. 5 per class on CUB), which the small number of classes of digits makes unnecessary.

    Args:
        alpha: weight of the positive pairs.
        beta: weight of the negative pairs.
        base: lambda, the similarity margin.
        epsilon: the mining margin; ``None`` turns mining off.
        embedding_dim: width of the embedding layer.
        normalize: L2-normalise the representation.
        kwargs: :class:`SupervisedModule` options.
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float | None = 0.1,
        embedding_dim: int | None = 128,
        normalize: bool = True,
        **kwargs: Any,
    ):
        super().__init__(embedding_dim=embedding_dim, normalize=normalize, **kwargs)

    def build_classifier(self) -> nn.Module | None:
        return None

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        rep = self.represent(views[0])
        hp = self.hparams
        loss = multi_similarity_loss(rep, labels, hp.alpha, hp.beta, hp.base, hp.epsilon)
        return TrainingOutput(loss, features=rep, embeddings=rep)


__all__ = ["MultiSimilarity"]
