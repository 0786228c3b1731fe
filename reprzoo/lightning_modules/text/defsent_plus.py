"""DefSent+: "DefSent+: Improving sentence embeddings of language models by projecting definition sentences into a
quasi-isotropic or isotropic vector space of unlimited dictionary entries" (Xiaodong Liu, 2024, arXiv:2405.16153).

DefSent trains a sentence encoder by classifying each dictionary definition into its entry word, with the language
model's frozen word embeddings as the entries: entries are single tokens, and the embeddings cannot be
post-processed (they are tied to the prediction layer), so the space stays anisotropic. DefSent+ instead builds the
entry embeddings progressively with the encoder itself, for entries of any length, and projects definitions into
a (quasi-)isotropic space of those entries.
"""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.definitions import entry_projection_loss, isotropy_statistics


class IsotropicProjection(nn.Module):
    """``(x - mean) @ transform``: the map into the entries' (quasi-)isotropic space (identity until set)."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("transform", torch.eye(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.transform


@register_method(
    title="DefSent+: Improving sentence embeddings of language models by projecting definition sentences into a "
    "quasi-isotropic or isotropic vector space of unlimited dictionary entries",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2405.16153",
)
class DefSentPlus(TextEncoderModule):
    """A sentence encoder trained to project WordNet definitions onto the embeddings of their dictionary entries.

    Data: :class:`~reprzoo.datamodules.text.TextPairs` (``wordnet_definitions``): each training pair is (a
    definition, its entry), the entry being the synset's lemmas ("bank, depository financial institution": a
    multi-word entry); a sample's position is its entry's row in the entry table.

    Training step: the batch's entries are embedded by the encoder without gradients and written into the entry
    table (the table is built progressively, an entry refreshed each time it is seen); the table's statistics give
    the (quasi-)isotropic map (whitening, or centering); each definition, mapped the same way, is classified into
    its entry among all the entries built so far (scaled cosine softmax, :func:`entry_projection_loss`).

    Representation (``encoder()``): the mean-pooled encoder followed by the isotropic map of the latest table
    (persistent buffers), so queries and entries are compared in the space the loss was computed in.

    Ours:
        - Entry embeddings are the encoder's embedding of the entry's text (its lemmas), refreshed each time the
          entry is drawn. The paper's Progressive Separate Training builds an entry's embedding as the mean of the
          embeddings of all its definitions (from the previous stage's model). That needs definitions grouped by
          word, which :class:`~reprzoo.datamodules.text.TextPairs` does not give (one pair per synset: averaging
          would be each definition's own embedding); it needs a datamodule keyed by lemma (see the report).
        - No pretrained language model: a small BERT trained from scratch with a fitted tokenizer; DefSent+ starts
          from BERT/RoBERTa (and optionally from SimCSE-style checkpoints, which we do not stack).
        - Progressive building is per batch (an entry's embedding is refreshed when its pair is drawn), not the
          paper's staged rebuilds; the isotropic map is recomputed from the whole table at every step.
        - "isotropic" is PCA whitening of the entry table, "quasi-isotropic" is centering (then cosine); the paper's
          exact post-processing was not available to compare with.
        - Entries compete by scaled cosine (``scale``) instead of a language-model prediction layer.

    Args:
        space: ``isotropic`` or ``quasi-isotropic``.
        scale: inverse temperature of the entry classification.
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(self, vocab_size: int | None = None, space: str = "isotropic", scale: float = 20.0, **kwargs):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if space not in ("isotropic", "quasi-isotropic"):
            raise ValueError(f"space must be 'isotropic' or 'quasi-isotropic', got {space!r}")
        self.projection = IsotropicProjection(self.feature_dim)
        self.register_buffer("entries", torch.zeros(0, self.feature_dim), persistent=False)
        self.register_buffer("built", torch.zeros(0, dtype=torch.bool), persistent=False)

    def encoder(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.projection)

    def _store_entries(self, rows: torch.Tensor, embeddings: torch.Tensor) -> None:
        needed = int(rows.max()) + 1
        if needed > len(self.entries):
            grow = max(needed, 2 * len(self.entries)) - len(self.entries)
            self.entries = torch.cat([self.entries, self.entries.new_zeros(grow, self.feature_dim)])
            self.built = torch.cat([self.built, self.built.new_zeros(grow)])
        self.entries[rows] = embeddings.to(self.entries.dtype)
        self.built[rows] = True

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if indices is None:
            raise ValueError("DefSentPlus needs each sample's position (its entry's row); use an EmbeddingDataModule")
        with torch.no_grad():
            self._store_entries(indices, self.backbone(views[1]))
            table = self.entries[self.built]
            if len(table) >= 2:
                mean, transform = isotropy_statistics(table.float(), self.hparams.space)
                self.projection.mean.copy_(mean)
                self.projection.transform.copy_(transform)
        definitions = self.backbone(views[0])
        projected = self.projection(definitions)
        entries = self.projection(self.entries)
        loss = entry_projection_loss(projected, entries, indices, self.hparams.scale, valid=self.built)
        return TrainingOutput(loss, features=definitions.detach(), embeddings=projected.detach())


__all__ = ["DefSentPlus", "IsotropicProjection"]
