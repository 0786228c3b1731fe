"""DefSent+: "DefSent+: Improving sentence embeddings of language models by projecting definition sentences into a
quasi-isotropic or isotropic vector space of unlimited dictionary entries" (Xiaodong Liu, 2024, arXiv:2405.16153).

DefSent trains a sentence encoder by classifying each dictionary definition into its entry word, with the language
model's frozen word embeddings as the entries: entries are single tokens, and the embeddings cannot be
post-processed (they are tied to the prediction layer), so the space stays anisotropic. DefSent+ instead builds the
entry embeddings progressively with the encoder itself, for entries of any length, and projects definitions into
a (quasi-)isotropic space of those entries.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.lightning_modules.text.cross_encoders import epochs_done, frozen
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

    Progressive training, stage after stage (``stage_epochs`` each), as the authors' scripts run it
    (``GenerateEntryEmbeddings.py``, ``ICA-transform.py``, then ``TrainEncoder.py``, repeated): at the start of a
    stage the current encoder (eval mode, no gradients) embeds every entry of the training set into the entry table,
    and the table's statistics give the (quasi-)isotropic map (whitening, or centering); during the stage the table is
    fixed, and each definition, mapped the same way, is classified into its entry among all the entries (scaled
    cosine softmax, :func:`entry_projection_loss`).

    Representation (``encoder()``): the mean-pooled encoder followed by the isotropic map of the latest table
    (persistent buffers), so queries and entries are compared in the space the loss was computed in.

    Ours:
        - An entry's embedding is the encoder's embedding of the entry's text (its lemmas). The authors embed an
          entry as the mean of the embeddings of all its definitions (``GenerateEntryEmbeddings.py``). With one
          definition per synset (:class:`~reprzoo.datamodules.text.TextPairs`) that mean is the definition's own
          embedding, and the evaluation retrieves the entries' texts, which that table never encodes.
        - No pretrained language model: a small BERT trained from scratch with a fitted tokenizer; DefSent+ starts
          from BERT/RoBERTa (and optionally from SimCSE-style checkpoints, which we do not stack).
        - Stages are ``stage_epochs`` long inside one run (the authors: one epoch per stage, a new run each, linear
          learning-rate decay per run); without a trainer (a bare ``training_loss`` call) the table is filled with
          the batch's own entries.
        - "isotropic" is PCA whitening of the entry table and "quasi-isotropic" centering, applied to definitions and
          entries alike, compared by scaled cosine (``scale``). The authors map the entries only (ICA with
          unit-variance whitening, times 100) and classify the encoder's ``tanh``-pooled output by dot product
          against them (a frozen prediction layer); under cosine, ICA's extra rotation of the whitened space changes
          nothing.

    Measured on the WordNet recipe (``bert_tiny`` from scratch, 20,000 pairs, seed 0, stages of half an epoch):
    MRR@10 0.029 at init -> 0.228 after 2 epochs (one thread, 96 s). An entry table refreshed entry by entry, each
    time its pair is drawn (entries up to an epoch stale, the map fitted on a mix of encoders), learned only to
    0.052: the loss stayed above ``ln N``.

    Args:
        space: ``isotropic`` or ``quasi-isotropic``.
        scale: inverse temperature of the entry classification.
        stage_epochs: epochs of a stage (fractions allowed): how often the entry table and its map are rebuilt.
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        space: str = "isotropic",
        scale: float = 20.0,
        stage_epochs: float = 1.0,
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if space not in ("isotropic", "quasi-isotropic"):
            raise ValueError(f"space must be 'isotropic' or 'quasi-isotropic', got {space!r}")
        if stage_epochs <= 0:
            raise ValueError(f"stage_epochs must be > 0, got {stage_epochs}")
        self.projection = IsotropicProjection(self.feature_dim)
        self.register_buffer("entries", torch.zeros(0, self.feature_dim), persistent=False)
        self.register_buffer("built", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.stage = -1  # the stage the table was built for

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

    def _training_entries(self) -> Iterable[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """(entry batch, rows) of every training pair: the training loader's dataset read in order, in this process
        (the training loader itself drops its last partial batch, and its sampler keeps the epoch's position)."""
        loader = self.trainer.train_dataloader
        for views, _, rows in DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn):
            yield {k: v.to(self.device) for k, v in views[1].items()}, rows.to(self.device)

    @torch.no_grad()
    def build_entries(self, batches: Iterable[tuple[dict[str, torch.Tensor], torch.Tensor]]) -> None:
        """Embed the entries of ``batches`` with the current encoder (eval mode) into the table, then refit the
        (quasi-)isotropic map on the whole table."""
        for entries, rows in batches:
            self._store_entries(rows, frozen(self.backbone, entries))
        table = self.entries[self.built]
        if len(table) >= 2:
            mean, transform = isotropy_statistics(table.float(), self.hparams.space)
            self.projection.mean.copy_(mean)
            self.projection.transform.copy_(transform)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if indices is None:
            raise ValueError("DefSentPlus needs each sample's position (its entry's row); use an EmbeddingDataModule")
        stage = int(epochs_done(self) // self.hparams.stage_epochs)
        if self._trainer is not None and stage != self.stage:  # a new stage: the whole table, from the encoder now
            self.build_entries(self._training_entries())
            self.stage = stage
        elif len(self.built) <= int(indices.max()) or not bool(self.built[indices].all()):
            self.build_entries([(views[1], indices)])  # no trainer: the batch's own entries
        definitions = self.backbone(views[0])
        projected = self.projection(definitions)
        entries = self.projection(self.entries)
        loss = entry_projection_loss(projected, entries, indices, self.hparams.scale, valid=self.built)
        return TrainingOutput(loss, features=definitions.detach(), embeddings=projected.detach())


__all__ = ["DefSentPlus", "IsotropicProjection"]
