"""AriEL: "AriEL: volume coding for sentence generation" (Celotti, Brodeur & Rouat, 2020, arXiv:2003.13600).

Arithmetic coding and kd trEes for Language: a language model's next-token probabilities cut the unit cube
``[0, 1]^d`` into nested boxes. The ``t``-th token of a sentence splits the current box along axis ``t mod d`` (kd-tree
style, cycling through the axes) into one slab per vocabulary token, each as wide as the token's probability given the
prefix (arithmetic coding); the sentence's box is the slab of its last token, so its volume is the product of its
tokens' probabilities, and uniform sampling of the cube returns each sentence with the probability the language model
gives it. Only the language model is trained; encoding and decoding are deterministic functions of it.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from reprzoo.datamodules.text.tokenizers import PAD_ID, SPECIAL_TOKENS
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.metrics.text import HeldOutLossEvaluator

CLS_ID, SEP_ID, MASK_ID = (SPECIAL_TOKENS.index(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
#: tokens that never follow a prefix (padding, the start token, the masked-LM token): they get no slab
NEVER_NEXT = (PAD_ID, CLS_ID, MASK_ID)


class RecurrentLanguageModel(nn.Module):
    """Token embeddings -> a unidirectional GRU -> next-token scores; ``num_features = hidden``."""

    def __init__(self, vocab_size: int, dim: int = 128, hidden: int = 256, layers: int = 1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.rnn = nn.GRU(dim, hidden, num_layers=layers, batch_first=True)
        self.output = nn.Linear(hidden, vocab_size)
        self.num_features = hidden

    def step(self, ids: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, L)`` ids -> next-token log-probabilities ``(batch, L, vocab)`` after each position, and the
        state; the never-next tokens get probability 0."""
        out, state = self.rnn(self.embedding(ids), state)
        never = torch.tensor(NEVER_NEXT, device=ids.device)
        logits = self.output(out).float().index_fill(-1, never, float("-inf"))
        return logits.log_softmax(-1), state

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.step(batch["input_ids"])[0]


def volume_code(log_probs: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, dim: int):
    """The AriEL box of each sequence.

    Args:
        log_probs: ``(batch, T, vocab)`` the distribution each token is drawn from (given its prefix).
        tokens: ``(batch, T)`` the tokens coded.
        mask: ``(batch, T)`` 1 for coded tokens, 0 for padding after them.
        dim: the cube's dimensions; token ``t`` splits axis ``t mod dim``.

    Returns:
        ``(low, width)``: ``(batch, dim)`` float64 corner and side lengths of each sequence's box.
    """
    if log_probs.ndim != 3 or tokens.shape != log_probs.shape[:2] or mask.shape != tokens.shape:
        raise ValueError(f"need log_probs (B, T, V), tokens and mask (B, T); got {log_probs.shape}, {tokens.shape}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    probs = log_probs.double().exp()
    starts = probs.cumsum(-1) - probs  # each token's slab starts where the tokens before it end
    b = tokens.shape[0]
    low = torch.zeros(b, dim, dtype=torch.float64, device=tokens.device)
    width = torch.ones_like(low)
    rows = torch.arange(b, device=tokens.device)
    for t in range(tokens.shape[1]):
        axis, on = t % dim, mask[:, t].bool()
        start = starts[rows, t, tokens[:, t]]
        p = probs[rows, t, tokens[:, t]]
        low[:, axis] = torch.where(on, low[:, axis] + width[:, axis] * start, low[:, axis])
        width[:, axis] = torch.where(on, width[:, axis] * p, width[:, axis])
    return low, width


class AriELEncoder(nn.Module):
    """The exported representation: a tokenised batch ``[CLS] w_1 ... w_n [SEP]`` -> the centre of its box in
    ``[0, 1]^dim`` (float64: the code's precision), coding ``w_1 ... w_n [SEP]`` with the language model."""

    def __init__(self, language_model: RecurrentLanguageModel, dim: int):
        super().__init__()
        self.language_model, self.dim, self.num_features = language_model, dim, dim

    def volumes(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask", ids.ne(PAD_ID))
        log_probs = self.language_model.step(ids[:, :-1])[0]
        return volume_code(log_probs, ids[:, 1:], mask[:, 1:], self.dim)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        low, width = self.volumes(batch)
        return low + width / 2


@torch.no_grad()
def decode_points(language_model: RecurrentLanguageModel, points: torch.Tensor, max_tokens: int = 64) -> list[list[int]]:
    """The token ids (``w_1 ... w_n``, without ``[CLS]``/``[SEP]``) whose AriEL boxes contain ``points``
    (``(batch, dim)``): at each step the slab of the current box containing the point picks the next token."""
    b, dim = points.shape
    points = points.double()
    low = torch.zeros_like(points)
    width = torch.ones_like(points)
    ids = torch.full((b, 1), CLS_ID, dtype=torch.long, device=points.device)
    state, out, done = None, [[] for _ in range(b)], torch.zeros(b, dtype=torch.bool, device=points.device)
    rows = torch.arange(b, device=points.device)
    for t in range(max_tokens):
        log_probs, state = language_model.step(ids, state)
        probs = log_probs[:, -1].double().exp()
        starts = probs.cumsum(-1) - probs
        axis = t % dim
        bounds = low[:, axis : axis + 1] + width[:, axis : axis + 1] * starts  # (batch, vocab), non-decreasing
        token = (torch.searchsorted(bounds, points[:, axis : axis + 1].contiguous(), right=True) - 1).clamp(min=0).squeeze(1)
        token = torch.where(probs[rows, token] > 0, token, probs.argmax(-1))  # a point on an empty slab's edge
        low[:, axis] = bounds[rows, token]
        width[:, axis] = width[:, axis] * probs[rows, token]
        for i in (~done).nonzero().flatten().tolist():
            if token[i].item() != SEP_ID:
                out[i].append(int(token[i]))
        done |= token.eq(SEP_ID)
        if done.all():
            break
        ids = token.unsqueeze(1)
    return out


@register_method(
    title="AriEL: volume coding for sentence generation",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2003.13600",
)
class AriEL(EmbeddingModule):
    """A recurrent language model trained by next-token cross-entropy; its probabilities define AriEL's volume code:
    ``embed`` maps a sentence to the centre of its box in ``[0, 1]^dim`` (:class:`AriELEncoder`), :meth:`decode`
    maps any point back to the sentence whose box holds it, and :meth:`sample` decodes uniform points of the cube
    (the paper's generator). No loss shapes the space: volumes come from the construction.

    Ours:
        - The language model is a one-layer GRU (128-d embeddings, 256 hidden units) trained from scratch on the
          datamodule's tokens (WordNet glosses, word-level tokenizer); the paper's language model, sizes and data (a
          toy grammar, human dialogues) differ.
        - ``[PAD]``, ``[CLS]`` and ``[MASK]`` get no slab (they never follow a prefix); ``[SEP]`` ends a sentence and
          is coded, so sentences that are prefixes of others keep boxes of their own.
        - The tokens' order along an axis is the vocabulary's (the arithmetic-coding default).
        - Boxes are computed in float64; a long sentence's box shrinks below float64 resolution on some axis, after
          which its later tokens no longer move the centre (the paper meets the same limit of precision).
        - Evaluated on the Lee documents' similarity (the only sentence-level metric here); AriEL's space is built for
          retrieval by sampling, not for semantic similarity, so this metric is not its goal.

    Args:
        vocab_size: token ids of the datamodule's tokenizer (the command line fills it).
        dim: dimensions of the latent cube.
        embedding_dim, hidden, layers: the language model's sizes.
        kwargs: :class:`EmbeddingModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        dim: int = 16,
        embedding_dim: int = 128,
        hidden: int = 256,
        layers: int = 1,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.0,
        warmup_epochs: float = 0.1,
        **kwargs,
    ):
        if vocab_size is None:
            raise ValueError("AriEL needs vocab_size (the command line takes it from the datamodule)")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        kwargs.pop("backbone", None), kwargs.pop("backbone_kwargs", None)  # built from the arguments above
        sizes = dict(vocab_size=vocab_size, dim=embedding_dim, hidden=hidden, layers=layers)
        super().__init__(
            backbone=RecurrentLanguageModel(**sizes),
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            **kwargs,
        )
        self.backbone_spec = ("recurrent_language_model", sizes)  # what a pushed config records
        self.ariel = AriELEncoder(self.backbone, dim)
        self.resize_probe(dim)
        self.heldout_nll = MeanMetric()

    def build_evaluators(self):
        """The datamodule's evaluation plus the language model's next-token loss on the evaluation texts
        (``{stage}/lm_nll``, nats per token): the volumes of AriEL's code are its probabilities, so a lower held-out
        loss is a shorter code (fewer bits) for unseen sentences."""
        return [*super().build_evaluators(), HeldOutLossEvaluator(self.heldout_nll, self.language_model_loss, "lm_nll")]

    def encoder(self) -> nn.Module:
        return self.ariel

    def language_model_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-token cross-entropy over real tokens (``[CLS]`` predicts ``w_1``, ..., ``w_n`` predicts
        ``[SEP]``)."""
        ids = batch["input_ids"]
        mask = batch.get("attention_mask", ids.ne(PAD_ID))
        log_probs = self.backbone.step(ids[:, :-1])[0]
        targets = ids[:, 1:].masked_fill(~mask[:, 1:].bool(), -100)
        return F.nll_loss(log_probs.flatten(0, 1), targets.flatten(), ignore_index=-100)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        loss = self.language_model_loss(views[0])
        # the probe (labelled data only) reads the points; the language model's loss needs none of them
        points = self.ariel(views[0]).float().detach() if self.probe is not None else torch.empty(0)
        return TrainingOutput(loss, features=points)

    def decode(self, points: torch.Tensor, max_tokens: int = 64) -> list[list[int]]:
        """Token ids (``w_1 ... w_n``) of the sentences whose boxes hold ``points`` ``(batch, dim)``."""
        return decode_points(self.backbone, points, max_tokens)

    def sample(self, n: int, max_tokens: int = 64, generator: torch.Generator | None = None) -> list[list[int]]:
        """``n`` sentences generated by decoding uniform points of the cube."""
        points = torch.rand(n, self.hparams.dim, generator=generator, dtype=torch.float64)
        return self.decode(points.to(self.device), max_tokens)


__all__ = ["AriEL", "AriELEncoder", "RecurrentLanguageModel", "decode_points", "volume_code"]
