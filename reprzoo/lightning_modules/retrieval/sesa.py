"""SESA: "Supervised Explicit Semantic Analysis" (Bogdanova & Yazdani, 2017, arXiv:1708.03246).

Explicit Semantic Analysis represents a text by its relatedness to the concepts of a knowledge base, one dimension
per concept, so a similarity can be explained by the concepts two texts share. SESA learns that map: an encoder
embeds a text into the explicit concept space (the paper: LinkedIn skills, an RNN over a job's or a profile's
text), trained with the supervised ranking objective (job-profile relevance) and with the collaborative concept
data (the skills users list on their profiles) as supervision of the concept dimensions. Items are compared in
the concept space.
"""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.representation import Chain
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.dense_retrieval import concept_loss, concept_targets
from reprzoo.losses.text_contrastive import multiple_negatives_ranking_loss


@register_method(
    title="SESA: Supervised Explicit Semantic Analysis",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1708.03246",
)
class SESA(TextEncoderModule):
    """A text encoder and a head onto an explicit concept space, ``sigmoid(W h + b)``: dimension i is the text's
    degree of concept i (here the debtags of the shipped Debian packages,
    :class:`~reprzoo.datamodules.text.neighbours.TaggedPairs`; ``concepts()`` names the dimensions). Trained on
    (synopsis, description) pairs with the ranking loss in the concept space (in-batch negatives, scaled cosine)
    plus the concepts' multi-label cross-entropy against each package's tags (both texts of a tagged package).

    Representation: the concept vector ``(B, num_concepts)``, in ``(0, 1)``, interpretable per dimension; retrieval
    ranks by cosine.

    Ours:
        - The concepts are debtags (those of at least 5 training packages) instead of LinkedIn skills; the
          relevance pairs are a package's synopsis and long description instead of job-profile pairs.
        - A small BERT trained from scratch instead of the paper's RNN encoders; queries and documents share it.
        - The ranking loss is the in-batch softmax over scaled cosines of the concept vectors (the paper's own
          ranking loss over its labelled pairs is not reproduced from the abstract); untagged packages take part in
          the ranking loss only.

    Args:
        num_concepts: the concept space's size (the datamodule fills it).
        concept_weight: weight of the concept supervision.
        scale: inverse temperature of the ranking loss's cosines.
        kwargs: :class:`TextEncoderModule` options.
    """

    retrieval_similarity = "cosine"

    def __init__(
        self,
        vocab_size: int | None = None,
        num_concepts: int | None = None,
        concept_weight: float = 1.0,
        scale: float = 20.0,
        **kwargs,
    ):
        if not num_concepts:
            raise ValueError("SESA needs num_concepts (the datamodule's concept space fills it)")
        super().__init__(vocab_size=vocab_size, **kwargs)
        self.concept_head = nn.Linear(self.feature_dim, num_concepts)
        self.resize_probe(num_concepts)

    def encoder(self) -> nn.Module:
        return Chain(self.backbone, self.concept_head, nn.Sigmoid(), num_features=self.hparams.num_concepts)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        logits_q = self.concept_head(self.backbone(views[0]))
        logits_d = self.concept_head(self.backbone(views[1]))
        queries, documents = torch.sigmoid(logits_q), torch.sigmoid(logits_d)
        loss = multiple_negatives_ranking_loss(queries, documents, hp.scale)
        if len(views) > 2:  # the pairs' concepts (TaggedPairs)
            targets = concept_targets(views[2]["input_ids"], hp.num_concepts)
            supervision = (concept_loss(logits_q, targets) + concept_loss(logits_d, targets)) / 2
            self.log("train/concept_loss", supervision)
            loss = loss + hp.concept_weight * supervision
        return TrainingOutput(loss, features=queries.detach(), embeddings=documents.detach())


__all__ = ["SESA"]
