"""MNRL sentence embeddings: "Contrastive Learning and Mixture of Experts Enables Precise Vector Embeddings"
(Hallee, Kapur, Patil, Gleghorn & Khomtchouk, 2024, arXiv:2401.15713)."""

from __future__ import annotations

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.text_contrastive import multiple_negatives_ranking_loss


@register_method(
    title="Contrastive Learning and Mixture of Experts Enables Precise Vector Embeddings",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2401.15713",
)
class MNRL(TextEncoderModule):
    """A sentence encoder fine-tuned with the multiple negatives ranking loss on related pairs (the paper: papers
    that co-cite; here any :class:`~reprzoo.datamodules.text.TextPairs` source): each pair's two texts are pulled
    together against the other pairs' second texts, with scaled cosine similarities (scale 20, mean pooling, as
    the paper's sentence-transformers setup).

    Ours:
        - The mixture-of-experts extension (one copy of the feed-forward layers per scientific domain, routed by
          the pair's domain) is left out: the dense encoder the paper compares it with.
        - The encoder is trained from scratch (a small BERT and a tokenizer fitted on the training corpus); the
          paper fine-tunes pretrained BERT models.
        - Negatives of every rank are gathered (sentence-transformers' ``gather_across_devices``).

    Args:
        scale: inverse temperature of the cosine similarities.
        symmetric: also rank the queries for each document (sentence-transformers' symmetric variant; the
            paper uses the one-directional loss).
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(self, vocab_size: int | None = None, scale: float = 20.0, symmetric: bool = False, **kwargs):
        super().__init__(vocab_size=vocab_size, **kwargs)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        queries, documents = self.backbone(views[0]), self.backbone(views[1])
        loss = multiple_negatives_ranking_loss(queries, documents, self.hparams.scale)
        if self.hparams.symmetric:
            loss = (loss + multiple_negatives_ranking_loss(documents, queries, self.hparams.scale)) / 2
        return TrainingOutput(loss, features=queries.detach(), embeddings=queries.detach())


__all__ = ["MNRL"]
