"""SetCSE: "SetCSE: Set Operations using Contrastive Learning of Sentence Embeddings" (Kang Liu, 2024, ICLR,
arXiv:2404.17606).

A semantic is a *set* of sentences. The encoder is fine-tuned with an inter-set contrastive loss (sentences of one
set together, apart from the other sets' sentences); retrieval then ranks sentences by their similarity to sets:
``SIM(x, S)`` (the mean cosine similarity of x to S's sentences), the intersection ``A & B`` by
``SIM(x, A) + SIM(x, B)`` and the difference ``A - B`` by ``SIM(x, A) - SIM(x, B)``; an operation series chains them
(:func:`set_operation_scores`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.definitions import inter_set_contrastive_loss


def set_similarity(sentences: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """``SIM(x, S)``: the mean cosine similarity of each of ``sentences`` ``(n, d)`` to the set's ``members``
    ``(k, d)``; ``(n,)``."""
    if sentences.ndim != 2 or members.ndim != 2 or members.shape[0] == 0 or members.shape[1] != sentences.shape[1]:
        raise ValueError(
            f"need (n, d) sentences and a non-empty (k, d) set, got {tuple(sentences.shape)}, {tuple(members.shape)}"
        )
    return (F.normalize(sentences, dim=-1) @ F.normalize(members, dim=-1).T).mean(1)


def set_operation_scores(
    sentences: torch.Tensor, intersect: list[torch.Tensor], subtract: list[torch.Tensor] = ()
) -> torch.Tensor:
    """Scores of the SetCSE operation series ``(S_1 & ... & S_k) - T_1 - ... - T_m`` for each sentence (rank by
    them, highest first): ``sum_i SIM(x, S_i) - sum_j SIM(x, T_j)``.

    Args:
        sentences: ``(n, d)`` embeddings of the sentences to rank.
        intersect: the sets to intersect, each ``(k_i, d)`` embeddings (at least one).
        subtract: the sets to take away.
    """
    if not intersect:
        raise ValueError("a SetCSE operation needs at least one set to intersect")
    score = sum(set_similarity(sentences, s) for s in intersect)
    for t in subtract:
        score = score - set_similarity(sentences, t)
    return score


@register_method(
    title="SetCSE: Set Operations using Contrastive Learning of Sentence Embeddings",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2404.17606",
)
class SetCSE(TextEncoderModule):
    """A sentence encoder fine-tuned with SetCSE's inter-set contrastive loss on batches of semantic sets.

    Sets here: each WordNet 3.0 synset of a :class:`~reprzoo.datamodules.text.TextPairs` batch
    (``wordnet_definitions``) is one set of two sentences, its definition and its lemmas ("bank, depository
    financial institution"); the batch's other synsets are the other sets. The representation is the encoder's
    mean-pooled sentence embedding, measured by reverse-dictionary retrieval (definition -> lemmas).

    Ours:
        - Sets are WordNet synsets (definition + lemma line), not the paper's labelled sentence sets (AG News,
          financial phrase bank, ...). WordNet's lexicographer files or hypernym groups would give larger, topical
          sets, but the shipped WordNet fixture keeps neither (see the report); synsets are the semantic grouping
          it has.
        - The encoder is a small BERT trained from scratch (the paper fine-tunes pretrained BERT, SimCSE, ...).
        - The loss is written from the paper's description (sum over a sentence's set-mates against the sum over
          the other sets' sentences, cosine / temperature); the authors' code was not available to compare with.
          The sentence itself is not counted among its set-mates.
        - Set operations rank by the mean similarity to each set's sentences (:func:`set_operation_scores`); they
          are functions on embeddings, not part of training.

    Args:
        temperature: of the inter-set loss (SimCSE's 0.05, the paper's default).
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(self, vocab_size: int | None = None, temperature: float = 0.05, **kwargs):
        super().__init__(vocab_size=vocab_size, **kwargs)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        members = [self.backbone(v) for v in views]  # views[k][i]: the k-th sentence of set i
        n = members[0].shape[0]
        sets = torch.arange(n, device=members[0].device).repeat(len(members))
        embeddings = torch.cat(members)
        loss = inter_set_contrastive_loss(embeddings, sets, self.hparams.temperature)
        return TrainingOutput(loss, features=members[0].detach(), embeddings=members[0].detach())


__all__ = ["SetCSE", "set_operation_scores", "set_similarity"]
