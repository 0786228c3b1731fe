"""DupMAE: "RetroMAE v2: Duplex Masked Auto-Encoder For Pre-Training Retrieval-Oriented Language Models" (Xiao,
Liu, Shao & Cao, 2022, arXiv:2211.08769; the authors' code: github.com/staoxiao/RetroMAE, ``modeling_duplex.py``).

Pre-training for retrieval. RetroMAE (v1) masks the encoder's input moderately (30%) and makes its [CLS] embedding
reconstruct the input through a one-layer decoder with "enhanced decoding": every position's query is the [CLS]
embedding plus that position's embedding, attending to the [CLS] embedding and to a random half of the other
tokens (never itself), so each token must be predicted from the sentence embedding and a different context. v2 adds
the duplex task: the encoder's ordinary tokens (all but [CLS]), mapped to the vocabulary by the MLM head and
max-pooled, must predict the input's bag of words. The losses are added (encoder MLM + [CLS] reconstruction +
0.1 x BoW), and the representation for retrieval joins both: the [CLS] embedding and the ordinary tokens' pooled
vocabulary vector after dimension reduction, concatenated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.datamodules.text.tokenizers import SPECIAL_TOKENS
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.retrieval.dense import Tower
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.dense_retrieval import (
    bag_of_words_loss,
    bag_of_words_targets,
    in_batch_ranking_loss,
    max_pooled_logits,
)
from reprzoo.losses.electra import masked_lm_loss

CLS_ID, SEP_ID, MASK_ID = (SPECIAL_TOKENS.index(t) for t in ("[CLS]", "[SEP]", "[MASK]"))


def mask_tokens(
    ids: torch.Tensor, attention_mask: torch.Tensor, ratio: float, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of ``ratio`` of each text's ordinary tokens (80% ``[MASK]``, 10% a random token, 10% kept);
    returns ``(input ids, masked positions)``."""
    ordinary = attention_mask.bool() & (ids != CLS_ID) & (ids != SEP_ID)
    masked = ordinary & (torch.rand(ids.shape, device=ids.device) < ratio)
    roll = torch.rand(ids.shape, device=ids.device)
    out = ids.masked_fill(masked & (roll < 0.8), MASK_ID)
    random_ids = torch.randint(len(SPECIAL_TOKENS), vocab_size, ids.shape, device=ids.device)
    return torch.where(masked & (roll >= 0.8) & (roll < 0.9), random_ids, out), masked


def enhanced_decoding_mask(attention_mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """``(B, L, L)`` booleans, True where query position i may attend to key j: the [CLS] slot (j = 0) always, the
    other real positions unless drawn into row i's random ``ratio`` share, never j = i (RetroMAE's position-specific
    attention mask)."""
    b, length = attention_mask.shape
    real = attention_mask.bool()[:, None, :].expand(b, length, length)
    keep = torch.rand(b, length, length, device=attention_mask.device) >= ratio
    visible = real & keep & ~torch.eye(length, dtype=torch.bool, device=attention_mask.device)
    visible[:, :, 0] = True
    return visible


class EnhancedDecoder(nn.Module):
    """One transformer layer whose queries and keys/values are different streams (post-norm, like BERT's)."""

    def __init__(self, width: int, heads: int, intermediate: int, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, intermediate), nn.GELU(), nn.Linear(intermediate, width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, context: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        blocked = (~visible).repeat_interleave(self.heads, dim=0)  # (B * heads, L, L)
        h = self.norm1(query + self.dropout(self.attention(query, context, context, attn_mask=blocked)[0]))
        return self.norm2(h + self.dropout(self.ffn(h)))


class TiedLMHead(nn.Module):
    """BERT's MLM head: dense + GELU + layer norm, scored against the (shared) token embeddings plus a bias."""

    def __init__(self, word_embeddings: nn.Embedding):
        super().__init__()
        width = word_embeddings.embedding_dim
        self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.word_embeddings = word_embeddings
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.transform(states) @ self.word_embeddings.weight.T + self.bias


def _duplex_representation(parts: nn.ModuleDict, batch) -> torch.Tensor:
    """``[h_cls / |h_cls| ; b / |b|]`` with ``b = reduce(relu(max-pooled ordinary-token logits))``: the [CLS] state
    and the bag-of-words vector, the latter folded to ``reduce.dim`` buckets (vocabulary id mod dim) by max, each
    part L2-normalised (their inner product is the sum of the two parts' cosines)."""
    backbone, head = parts["backbone"], parts["lm_head"]
    states = backbone.token_states(batch)
    mask = batch["attention_mask"][:, : states.shape[1]]
    bow = F.relu(max_pooled_logits(head(states), mask))  # (B, V)
    dim = parts["reduce"].dim
    pad = (-bow.shape[1]) % dim
    folded = F.pad(bow, (0, pad)).reshape(bow.shape[0], -1, dim).amax(1)
    return torch.cat([F.normalize(states[:, 0], dim=-1), F.normalize(folded, dim=-1)], dim=-1)


class Fold(nn.Module):
    """The bag-of-words vector's reduced width (a parameter-free module of the representation)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim


@register_method(
    title="RetroMAE v2: Duplex Masked Auto-Encoder For Pre-Training Retrieval-Oriented Language Models",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2211.08769",
)
class RetroMAEv2(TextEncoderModule):
    """Duplex masked auto-encoding: encoder MLM (30% masked), [CLS] reconstruction of the whole input by the
    enhanced one-layer decoder (each row sees a random 50% of the other tokens), and the ordinary tokens' BoW loss.

    With ``pretrain_epochs`` set, the epochs from that one on fine-tune the pre-trained encoder as the paper does
    (its second stage): the [query, document] pairs' duplex representations, scored by inner product, with the
    other documents of the batch as negatives (softmax cross-entropy at ``temperature``, 1 in the authors'
    bi-encoder). ``pretrain_epochs=None`` pre-trains only (the validation then measures the pre-trained encoder
    zero-shot); ``0`` fine-tunes from random initialisation (the ablation of the pre-training).

    Representation: ``(B, H + bow_dim)``, the [CLS] state concatenated with the ordinary tokens' max-pooled,
    ReLU'd vocabulary logits folded to ``bow_dim`` dimensions, each part L2-normalised; ranked by inner product
    (``dot``).

    Ours:
        - A small BERT pre-trained from scratch on the datamodule's texts (both sides of each TextPairs pair, the
          pairing unused), not BERT-base on Wikipedia and BookCorpus; then (``pretrain_epochs``) a short
          fine-tuning on the same training pairs with in-batch negatives only (the paper fine-tunes on MS MARCO with
          mined hard negatives). Pre-training alone does not lift zero-shot retrieval at this scale: after 300
          steps (2 epochs, lr 3e-3) the encoder MLM loss stays near the unigram level (6.5 nats over 4,000
          tokens) and nDCG@10 of the pre-trained duplex representation (raw parts) is at chance (0.018; 0.019
          at init). Nor does it help the fine-tuning: the recipe (3 epochs of pre-training, then 3 of fine-tuning,
          one warmup-cosine schedule over both) reaches nDCG@10 0.076 -> 0.298, while fine-tuning from random
          initialisation (``pretrain_epochs=0``) reaches 0.079 -> 0.595 in 2 epochs; 1 + 2 epochs give 0.082 ->
          0.055 and 3 + 2 give 0.084 -> 0.147. The from-scratch pre-training leaves the vocabulary head near its
          unigram prior (every text's bag-of-words vector alike), which the fine-tuning has to unlearn.
        - Each part of the representation is L2-normalised before the concatenation (the paper concatenates the raw
          vectors), and the fine-tuning's temperature is 0.05 in the recipe (the authors' 1 scores raw inner
          products): with the raw parts the folded vocabulary vector of the pre-trained (or a random) head is
          nearly the same for every text (its frequent-token and bias entries), its inner products dwarf the
          [CLS] part's, and in-batch fine-tuning stays at chance (loss ln 32, nDCG@10 0.020 after 1 epoch).
        - Token-level masks (the authors mask whole words) for the encoder and for each decoder row.
        - The reduction of the |V|-wide bag-of-words vector is a fixed fold (max over the vocabulary ids that share
          ``id mod bow_dim``), parameter-free; the abstract does not fix the paper's reduction.
        - The decoder is one ``nn.MultiheadAttention`` layer with a feed-forward block and post-norm (the authors
          copy BERT's layer); its queries are the [CLS] state plus position embeddings through the encoder's
          embedding layer norm, its keys the [CLS] state and the original tokens' embeddings, as the authors'.

    Args:
        encoder_mask_ratio: the encoder's masking (0.3 in the authors' arguments).
        decoder_mask_ratio: the share of tokens each decoder row does not see (0.5).
        bow_weight: weight of the BoW loss (0.1).
        bow_dim: the folded width of the bag-of-words part of the representation.
        pretrain_epochs: epochs of pre-training before the fine-tuning stage (None: pre-training only).
        temperature: the fine-tuning's softmax temperature.
        kwargs: :class:`TextEncoderModule` options (a ``bert_*`` backbone).
    """

    retrieval_similarity = "dot"

    def __init__(
        self,
        vocab_size: int | None = None,
        encoder_mask_ratio: float = 0.3,
        decoder_mask_ratio: float = 0.5,
        bow_weight: float = 0.1,
        bow_dim: int = 768,
        pretrain_epochs: int | None = None,
        temperature: float = 1.0,
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        config = getattr(self.backbone, "config", None)
        if config is None:
            raise ValueError(f"RetroMAEv2 needs a transformer backbone (bert_tiny, ...), got {self.hparams.backbone!r}")
        if not (0 < encoder_mask_ratio < 1 and 0 < decoder_mask_ratio < 1) or bow_dim < 1:
            raise ValueError("mask ratios must be in (0, 1) and bow_dim >= 1")
        if (pretrain_epochs is not None and pretrain_epochs < 0) or temperature <= 0:
            raise ValueError(f"need pretrain_epochs >= 0 (or None) and temperature > 0, got {pretrain_epochs}, {temperature}")
        self.lm_head = TiedLMHead(self.backbone.model.embeddings.word_embeddings)
        self.decoder = EnhancedDecoder(config.hidden_size, config.num_attention_heads, config.intermediate_size)
        self.fold = Fold(bow_dim)

    def encoder(self) -> nn.Module:
        parts = {"backbone": self.backbone, "lm_head": self.lm_head, "reduce": self.fold}
        return Tower(parts, _duplex_representation, self.feature_dim + self.hparams.bow_dim)

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hp = self.hparams
        ids = batch["input_ids"][:, : self.backbone.max_length]
        mask = batch["attention_mask"][:, : ids.shape[1]]
        masked_ids, masked = mask_tokens(ids, mask, hp.encoder_mask_ratio, self.backbone.config.vocab_size)
        states = self.backbone.token_states({"input_ids": masked_ids, "attention_mask": mask})
        logits = self.lm_head(states)
        encoder_mlm = masked_lm_loss(logits, ids, masked)
        # duplex part: the ordinary tokens' pooled vocabulary vector predicts the input's bag of words
        targets = bag_of_words_targets(ids, mask, logits.shape[-1], special=(CLS_ID, SEP_ID))
        bow = bag_of_words_loss(max_pooled_logits(logits, mask), targets)
        # [CLS]-based enhanced decoding of every ordinary token
        cls = states[:, :1]
        embeddings = self.backbone.model.embeddings
        query = embeddings(inputs_embeds=cls.expand(-1, ids.shape[1], -1))  # [CLS] + position embeddings
        context = torch.cat([cls, embeddings(input_ids=ids)[:, 1:]], dim=1)
        decoded = self.decoder(query, context, enhanced_decoding_mask(mask, hp.decoder_mask_ratio))
        ordinary = mask.bool() & (ids != CLS_ID) & (ids != SEP_ID)
        reconstruction = masked_lm_loss(self.lm_head(decoded), ids, ordinary)
        return encoder_mlm, reconstruction, bow, cls[:, 0]

    def fine_tuning(self) -> bool:
        """Whether this epoch is of the fine-tuning stage (``pretrain_epochs`` done)."""
        return self.hparams.pretrain_epochs is not None and self.current_epoch >= self.hparams.pretrain_epochs

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if self.fine_tuning():
            if len(views) != 2:
                raise ValueError(f"RetroMAEv2's fine-tuning takes [query, document] pairs, got {len(views)} views")
            tower = self.encoder()
            queries, documents = tower(views[0]), tower(views[1])
            loss = in_batch_ranking_loss(queries @ documents.T, self.hparams.temperature)
            self.log("train/contrastive", loss)
            return TrainingOutput(loss, features=queries.detach(), embeddings=queries.detach())
        totals = [self._losses(v) for v in views]  # each text of the pair on its own: pre-training, no pairing
        encoder_mlm, reconstruction, bow = (sum(t[k] for t in totals) / len(totals) for k in range(3))
        self.log("train/encoder_mlm", encoder_mlm)
        self.log("train/reconstruction", reconstruction)
        self.log("train/bow", bow)
        loss = encoder_mlm + reconstruction + self.hparams.bow_weight * bow
        features = totals[0][3].detach()
        return TrainingOutput(loss, features=features, embeddings=features)


__all__ = ["RetroMAEv2", "enhanced_decoding_mask", "mask_tokens"]
