"""The unified reverse dictionary: "A Unified Model for Reverse Dictionary and Definition Modelling" (Pinzhen Chen &
Zheng Zhao, 2022, AACL-IJCNLP, arXiv:2205.04602).

A dual-way neural dictionary: a word and a definition are each encoded, cast by one shared layer into the same
representation space, and from that space the model both retrieves words for a definition (reverse dictionary) and
generates the definition of a word (definition modelling), trained jointly with reconstruction objectives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.datamodules.text.tokenizers import PAD_ID
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.definitions import definition_modelling_loss
from reprzoo.losses.text_contrastive import multiple_negatives_ranking_loss


class SharedLayer(nn.Module):
    """The paper's shared layer: one linear map (with tanh) from either encoder into the common space."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x))


class DefinitionDecoder(nn.Module):
    """A small GRU language model conditioned on a shared-space vector (its initial state), generating a
    definition's tokens with teacher forcing."""

    def __init__(self, vocab_size: int, dim: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.init = nn.Linear(dim, hidden)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, condition: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` conditions and ``(n, L)`` input tokens -> ``(n, L, vocab)`` next-token logits."""
        state = torch.tanh(self.init(condition))[None]
        hidden, _ = self.gru(self.embed(input_ids), state.contiguous())
        return self.out(hidden)


@register_method(
    title="A Unified Model for Reverse Dictionary and Definition Modelling",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2205.04602",
)
class UnifiedDictionary(TextEncoderModule):
    """Reverse dictionary and definition modelling in one model, on WordNet 3.0 (definition, lemmas) pairs
    (:class:`~reprzoo.datamodules.text.TextPairs`, ``wordnet_definitions``).

    A definition ``d`` and a word ``w`` (the synset's lemmas) are encoded and mapped by the shared layer into
    ``s_d`` and ``s_w``. Losses (weighted sum):

    - reverse dictionary: ``s_d`` retrieves its word among the batch's words (scaled cosine softmax);
    - definition modelling: the decoder generates the definition from ``s_w``;
    - reconstruction: the decoder regenerates the definition from ``s_d``;
    - alignment: ``||s_d - s_w||^2``, the two forms cast to the same point of the shared space.

    Representation (``encoder()``): the text encoder followed by the shared layer, the space in which both
    definitions and words live; reverse-dictionary retrieval ranks words by cosine to a definition in it.

    Ours:
        - Words are embedded from their spelling by the same small BERT as definitions (no pretrained word
          vectors, which the paper takes as the word input and as the reverse-dictionary target); this is how
          unseen words get an embedding here, and why the words and definitions share one encoder.
        - The reverse-dictionary loss ranks the batch's words (in-batch negatives) instead of regressing the
          target word's pretrained embedding; the word side has no separate word decoder.
        - The definition decoder is a one-layer GRU (the paper: a transformer decoder); no beam search or
          generation metrics here, only its training loss.
        - Trained from scratch on WordNet glosses; loss weights default to 1.

    Args:
        scale: inverse temperature of the reverse-dictionary ranking.
        decoder_hidden: GRU size of the definition decoder.
        rd_weight, dm_weight, reconstruction_weight, alignment_weight: weights of the four losses.
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        scale: float = 20.0,
        decoder_hidden: int = 256,
        rd_weight: float = 1.0,
        dm_weight: float = 1.0,
        reconstruction_weight: float = 1.0,
        alignment_weight: float = 1.0,
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        self.shared = SharedLayer(self.feature_dim)
        self.decoder = DefinitionDecoder(vocab_size, self.feature_dim, decoder_hidden)

    def encoder(self) -> nn.Module:
        return nn.Sequential(self.backbone, self.shared)

    def generation_loss(self, condition: torch.Tensor, definition: dict) -> torch.Tensor:
        ids, mask = definition["input_ids"], definition["attention_mask"]
        logits = self.decoder(condition, ids[:, :-1])
        return definition_modelling_loss(logits, ids[:, 1:], mask[:, 1:])

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        definition, word = views[0], views[1]
        s_d, s_w = self.shared(self.backbone(definition)), self.shared(self.backbone(word))
        hp = self.hparams
        rd = multiple_negatives_ranking_loss(s_d, s_w, hp.scale)
        dm = self.generation_loss(s_w, definition)
        reconstruction = self.generation_loss(s_d, definition)
        alignment = F.mse_loss(s_d, s_w)
        loss = hp.rd_weight * rd + hp.dm_weight * dm + hp.reconstruction_weight * reconstruction + hp.alignment_weight * alignment
        if self._trainer is not None:
            for name, value in (("rd", rd), ("dm", dm), ("reconstruction", reconstruction), ("alignment", alignment)):
                self.log(f"train/{name}_loss", value.detach())
        return TrainingOutput(loss, features=s_d.detach(), embeddings=s_d.detach())


__all__ = ["DefinitionDecoder", "SharedLayer", "UnifiedDictionary"]
