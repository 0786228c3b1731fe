"""ELECTRA: "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators" (Clark, Luong, Le &
Manning, ICLR 2020, arXiv:2003.10555)."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.pooling import pool_tokens
from reprzoo.datamodules.text.tokenizers import SPECIAL_TOKENS
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.electra import masked_lm_loss, replaced_token_detection_loss

CLS_ID, SEP_ID, MASK_ID = (SPECIAL_TOKENS.index(t) for t in ("[CLS]", "[SEP]", "[MASK]"))


def mask_inputs(
    ids: torch.Tensor, attention_mask: torch.Tensor, mask_prob: float = 0.15, mask_token_prob: float = 0.85
) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' dynamic masking (``pretrain_helpers.mask``): in each text, ``max(1, round(mask_prob x real
    tokens))`` positions drawn uniformly among the real tokens other than ``[CLS]``/``[SEP]``/``[MASK]``; of those,
    ``mask_token_prob`` become ``[MASK]`` and the rest keep their token (no random-token replacement).

    Returns ``(masked ids, masked positions)``, both ``(batch, length)``.
    """
    candidates = attention_mask.bool() & (ids != CLS_ID) & (ids != SEP_ID) & (ids != MASK_ID)
    count = torch.round(attention_mask.sum(1).float() * mask_prob).clamp(min=1)
    count = torch.minimum(count, candidates.sum(1).float())
    scores = torch.rand(ids.shape, device=ids.device).masked_fill(~candidates, 2.0)
    ranks = scores.argsort(1).argsort(1)  # a uniformly random order of the candidates, first
    masked = ranks < count.unsqueeze(1)
    to_mask_token = masked & (torch.rand(ids.shape, device=ids.device) < mask_token_prob)
    return ids.masked_fill(to_mask_token, MASK_ID), masked


def corrupt(ids: torch.Tensor, masked: torch.Tensor, sampled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's input and labels (the authors' ``_get_fake_data``): the generator's ``sampled`` tokens
    (one per masked position, row-major) put in the masked positions; a position is "replaced" only where the
    sample differs from the original token."""
    corrupted = ids.masked_scatter(masked, sampled)
    return corrupted, corrupted != ids


class SharedEmbeddings(nn.Module):
    """The discriminator's embedding layer (token, position and segment embeddings, layer norm) followed by the
    generator's own linear ``embeddings_project`` to its smaller width: the authors' sharing of the embeddings
    between a small generator and the discriminator. It takes ``BertEmbeddings``' place in the generator's
    ``BertModel`` (same call signature)."""

    def __init__(self, embeddings: nn.Module, width: int, generator_width: int):
        super().__init__()
        self.shared = embeddings
        self.project = nn.Linear(width, generator_width)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None, **kwargs):
        return self.project(self.shared(input_ids, token_type_ids, position_ids, inputs_embeds, **kwargs))


@register_method(
    title="ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2003.10555",
)
class ELECTRA(TextEncoderModule):
    """Replaced-token detection. A small masked language model (the generator) fills the masked positions (15% of
    the tokens) with tokens sampled from its output distribution; the discriminator (the backbone: the encoder kept
    and exported, pooled) predicts for every token whether it was replaced. ``loss = L_MLM + 50 L_Disc``; the
    samples are not back-propagated through, and a sample equal to the original token counts as original.

    The generator is a BERT with the discriminator's depth and ``generator_size`` (1/4) of its width (intermediate
    4x, one head per 64 dimensions), reading the discriminator's embedding layer through its own projection; its
    MLM head is dense + GELU + layer norm back to the embedding width, scored against the shared token
    embeddings (plus a bias). The discriminator head is dense + GELU + a linear score, as the authors'
    ``run_pretraining.py``.

    Ours:
        - Masked positions are drawn without replacement (the authors draw ``max_predictions_per_seq`` with
          replacement and merge duplicates), with no cap other than the text's candidates.
        - The embedding width is the discriminator's hidden size (ELECTRA-Small factorises 128-d embeddings
          under a 256-d transformer); the generator's width and head count are rounded up to at least 1 head.
        - A small BERT trained from scratch on the datamodule's corpus and tokenizer (the paper: BookCorpus and
          Wikipedia, or OpenWebText, 1M steps of batch 128); AdamW with warmup and cosine decay (the authors:
          linear decay).
        - The representation is the discriminator's pooled token states (``pooling`` of the backbone, mean in
          the recipe); the paper fine-tunes the discriminator on each task.

    Args:
        generator_size: generator width as a fraction of the discriminator's (the paper's best: 1/4 to 1/2).
        generator_layers: generator depth as a fraction of the discriminator's.
        mask_prob: fraction of each text's tokens masked.
        mask_token_prob: fraction of the masked positions shown as ``[MASK]`` (the rest keep their token).
        disc_weight: lambda, the weight of the discriminator's loss.
        gen_weight: the weight of the generator's MLM loss.
        temperature: temperature of the generator's sampling distribution.
        kwargs: :class:`TextEncoderModule` options (``backbone`` must be a ``bert_*`` transformer).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        generator_size: float = 0.25,
        generator_layers: float = 1.0,
        mask_prob: float = 0.15,
        mask_token_prob: float = 0.85,
        disc_weight: float = 50.0,
        gen_weight: float = 1.0,
        temperature: float = 1.0,
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        from transformers import BertConfig, BertModel

        disc = getattr(self.backbone, "config", None)
        if not isinstance(disc, BertConfig):
            raise ValueError(f"ELECTRA needs a transformer backbone (bert_tiny, bert_mini, ...), got {self.hparams.backbone!r}")
        width = max(1, round(disc.hidden_size * generator_size))
        heads = max(1, width // 64)
        config = BertConfig(
            **{**disc.to_dict(), "hidden_size": width, "num_attention_heads": heads, "intermediate_size": 4 * width}
        )
        config.num_hidden_layers = max(1, round(disc.num_hidden_layers * generator_layers))
        self.generator = BertModel(config, add_pooling_layer=False)
        self.generator.embeddings = SharedEmbeddings(self.backbone.model.embeddings, disc.hidden_size, width)
        self.generator_head = nn.Sequential(nn.Linear(width, disc.hidden_size), nn.GELU(), nn.LayerNorm(disc.hidden_size))
        self.generator_bias = nn.Parameter(torch.zeros(disc.vocab_size))
        self.discriminator_head = nn.Sequential(
            nn.Linear(disc.hidden_size, disc.hidden_size), nn.GELU(), nn.Linear(disc.hidden_size, 1)
        )

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        hp, batch = self.hparams, views[0]
        ids = batch["input_ids"][:, : self.backbone.max_length]
        mask = batch.get("attention_mask", ids.ne(0).long())[:, : ids.shape[1]]
        masked_ids, masked = mask_inputs(ids, mask, hp.mask_prob, hp.mask_token_prob)

        states = self.generator(input_ids=masked_ids, attention_mask=mask).last_hidden_state[masked]
        token_table = self.backbone.model.embeddings.word_embeddings.weight
        logits = self.generator_head(states) @ token_table.T + self.generator_bias  # only the masked positions
        mlm = masked_lm_loss(logits, ids, masked)

        with torch.no_grad():  # the samples are inputs of the discriminator, not back-propagated through
            sampled = torch.multinomial(torch.softmax(logits.float() / hp.temperature, -1), 1).squeeze(1)
        corrupted, replaced = corrupt(ids, masked, sampled)
        tokens = self.backbone.token_states({"input_ids": corrupted, "attention_mask": mask})
        disc = replaced_token_detection_loss(self.discriminator_head(tokens).squeeze(-1), replaced, mask)

        self.log("train/mlm_loss", mlm)
        self.log("train/disc_loss", disc)
        self.log("train/replaced_fraction", replaced.sum() / masked.sum().clamp(min=1))
        pooling = self.backbone.pooling if self.backbone.pooling in ("cls", "mean", "max") else "mean"
        features = pool_tokens(tokens, mask, pooling).detach()  # of the corrupted text: for the monitors only
        return TrainingOutput(hp.gen_weight * mlm + hp.disc_weight * disc, features=features, embeddings=features)


__all__ = ["ELECTRA", "SharedEmbeddings", "corrupt", "mask_inputs"]
