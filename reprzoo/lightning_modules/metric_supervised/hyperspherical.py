"""Hyperspherical embedding: "Hyperspherical embedding for novel class classification" (Pereira, Joly, Valduriez &
Porto, 2021, arXiv:2102.03243), on the normalised softmax loss of Zhai & Wu ("Classification is a Strong Baseline
for Deep Metric Learning", BMVC 2019, arXiv:1811.12649)."""

from __future__ import annotations

from typing import Any

from torch import nn

from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.metric_supervised.baselines import CosineClassifier
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.metric_learning import normalized_softmax_loss


@register_method(
    title="Hyperspherical embedding for novel class classification",
    wing="metric-and-supervised",
    arxiv="2102.03243",
)
class HypersphericalEmbedding(SupervisedModule):
    """Metric learning without pairs: a classifier over the training classes whose scores are cosines, so that the
    latent space it shapes can classify classes it never saw by similarity. The constraint is on the
    representation: the latent vector is projected onto the unit hypersphere (L2 normalisation) before the
    classifier, whose class weights are unit vectors too, and the normalised softmax (cross-entropy over
    ``cos(theta) / temperature``) trains both; novel classes are then recognised by cosine similarity to labelled
    examples (kNN, prototypes) in that space, which is the exported representation.

    Ours:
        - The paper's full text was not available offline; this follows its abstract ("a constraint-based approach
          applied to the representations in the latent space under the normalized softmax loss"): the constraint
          implemented is unit norm of the latent representation and of the class weights, with the normalised
          softmax's temperature 0.05 (Zhai & Wu's default).
        - A 128-d linear embedding layer on a small ResNet (the paper's networks and sizes are not reproduced).
        - Novel classes are evaluated by the zoo's retrieval and kNN protocols on the unseen classes of a
          zero-shot class split, not by the paper's classification of unseen classes.

    Args:
        temperature: of the normalised softmax.
        embedding_dim: width of the latent layer (before normalisation).
        kwargs: :class:`SupervisedModule` options.
    """

    def __init__(self, temperature: float = 0.05, embedding_dim: int | None = 128, **kwargs: Any):
        if not kwargs.pop("normalize", True):
            raise ValueError("HypersphericalEmbedding's representation is on the unit hypersphere: normalize cannot be off")
        super().__init__(embedding_dim=embedding_dim, normalize=True, **kwargs)

    def build_classifier(self) -> nn.Module | None:
        return CosineClassifier(self.representation_dim, self.hparams.num_classes)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        rep = self.represent(views[0])
        loss = normalized_softmax_loss(rep, self.classifier.weight, labels, self.hparams.temperature)
        return TrainingOutput(loss, features=rep, embeddings=rep)


__all__ = ["HypersphericalEmbedding"]
