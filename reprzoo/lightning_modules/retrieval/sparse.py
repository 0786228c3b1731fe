"""What the learned sparse retrievers share (SPLADE, SPLADE v2, SPLADE++, uniCOIL, UHD): representations
``(B, vocabulary)`` compared by dot product, the FLOPS regulariser with its quadratic warmup, BM25-mined hard
negatives from the training documents, a cross-encoder teacher trained inside the method, and the towers:

- :class:`MLMHead`: BERT's masked-LM prediction head (dense, GELU, LayerNorm, then the output layer tied to the
  backbone's word embeddings plus a bias): the vocabulary logits SPLADE saturates and pools.
- :class:`SpladeEncoder`: ``saturated_pooling(MLMHead(token_states))``, the document (and query) tower.
- :class:`BinaryBag`: a parameter-free query tower, 1 on each vocabulary entry the query contains (SPLADE-doc,
  uniCOIL without query weights).
- :class:`SparseRetriever`: the base method.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.cross_encoder import CrossEncoder
from reprzoo.datamodules.text.sentences import pad_ids
from reprzoo.datamodules.text.tokenizers import SPECIAL_TOKENS
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.lightning_modules.text.cross_encoders import epochs_done, frozen, rows
from reprzoo.losses.distillation_text import soft_label_bce
from reprzoo.losses.sparse_retrieval import flops_regularizer, quadratic_lambda, saturated_pooling

#: ids of [PAD], [UNK], [CLS], [SEP], [MASK] (the datamodules' tokenizers put them first)
SPECIAL_IDS = tuple(range(len(SPECIAL_TOKENS)))


class MLMHead(nn.Module):
    """BERT's ``BertLMPredictionHead`` on a backbone's token states: ``LayerNorm(GELU(W h))`` then the transposed
    word-embedding matrix (tied: read from the backbone at each call, so no tensor is stored twice) plus a bias.

    Args:
        backbone: a :class:`~reprzoo.backbones.text.TransformerEncoder` (``bert_*``), whose embeddings are tied.
        bias_init: the output bias's initial value; negative makes a from-scratch head sparse at init (only a
            token's largest random logits pass the ReLU), as a pretrained MLM head is.
    """

    def __init__(self, backbone: nn.Module, bias_init: float = 0.0):
        super().__init__()
        config = backbone.config
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.full((config.vocab_size,), float(bias_init)))

    def forward(self, states: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, L, H)`` token states -> ``(B, L, V)`` logits."""
        return F.linear(self.norm(F.gelu(self.dense(states))), word_embeddings, self.bias)


def mlm_logits(backbone: nn.Module, head: MLMHead, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return head(backbone.token_states(batch), backbone.model.embeddings.word_embeddings.weight)


def _mask(backbone: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return backbone._inputs(batch)[1]


class SpladeEncoder(nn.Module):
    """SPLADE's tower: ``w_j = pool_i log(1 + ReLU(logit_ij))`` over a text's real tokens, ``(B, vocabulary)``."""

    def __init__(self, backbone: nn.Module, head: MLMHead, pooling: str = "max"):
        super().__init__()
        self.backbone, self.head, self.pooling = backbone, head, pooling
        self.num_features = backbone.config.vocab_size

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return saturated_pooling(mlm_logits(self.backbone, self.head, batch), _mask(self.backbone, batch), self.pooling)


class BinaryBag(nn.Module):
    """A query as the binary bag of its tokens over the vocabulary (special tokens left out): no parameters."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.num_features = vocab_size

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        keep = (ids >= len(SPECIAL_IDS)) & (ids.ne(0) if mask is None else mask.bool())
        bag = torch.zeros(ids.shape[0], self.num_features, device=ids.device)
        return bag.scatter_(1, ids * keep, keep.float())  # dropped tokens write 0 into column 0 ([PAD])


def mine_bm25_negatives(queries: list[list[int]], documents: list[list[int]], depth: int = 20) -> list[list[int]]:
    """For each training pair i, the indices of the ``depth`` training documents BM25 ranks highest for query i,
    its own document and exact copies of it left out (``bm25s`` over token ids as terms, special tokens dropped)."""
    import bm25s

    def terms(ids: list[int]) -> list[str]:
        return [str(t) for t in ids if t >= len(SPECIAL_IDS)] or ["[empty]"]

    retriever = bm25s.BM25()
    retriever.index([terms(d) for d in documents], show_progress=False)
    k = min(depth + 8, len(documents))
    found, _ = retriever.retrieve([terms(q) for q in queries], k=k, show_progress=False, n_threads=1)
    keys = [tuple(d) for d in documents]
    return [[int(j) for j in row if keys[j] != keys[i]][:depth] for i, row in enumerate(found.tolist())]


class SparseRetriever(TextEncoderModule):
    """Base of the learned sparse retrievers: a ``(B, vocabulary)`` representation, dot-product relevance, FLOPS on
    queries and documents, optional BM25 hard negatives and an optional cross-encoder teacher.

    Args:
        lambda_q, lambda_d: FLOPS weights of the query and document representations.
        lambda_warmup_steps: ``T`` of the quadratic warmup ``lambda * min(1, (step / T)^2)`` (0: none).
        hard_negatives: BM25-mined negatives per query (0 or 1), mined from the training documents at fit start.
        bm25_depth: a query's negative is drawn from its ``bm25_depth`` best BM25 documents.
        teacher_epochs: epochs in which a cross-encoder teacher learns the pairs first (``None``: no teacher).
        kwargs: :class:`TextEncoderModule` options.
    """

    representation_kind = "sparse"
    retrieval_similarity = "dot"

    def __init__(
        self,
        vocab_size: int | None = None,
        lambda_q: float = 3e-4,
        lambda_d: float = 1e-4,
        lambda_warmup_steps: int = 0,
        hard_negatives: int = 0,
        bm25_depth: int = 20,
        teacher_epochs: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if hard_negatives not in (0, 1) or bm25_depth < 1:
            raise ValueError(f"hard_negatives must be 0 or 1 and bm25_depth >= 1, got {hard_negatives}, {bm25_depth}")
        if min(lambda_q, lambda_d) < 0:
            raise ValueError(f"lambda_q and lambda_d must be >= 0, got {lambda_q}, {lambda_d}")
        self.vocab_size = vocab_size
        self.teacher = None
        if teacher_epochs is not None:
            name, options = self.backbone_spec
            from reprzoo.backbones import build_backbone

            self.teacher = CrossEncoder(build_backbone(name, **options))
        self.__dict__["_negatives"] = None  # (training pairs, BM25 negatives per pair): mined at fit start

    # ----------------------------------------------------------------- regularisation
    def flops(self, queries: torch.Tensor | None, documents: torch.Tensor) -> torch.Tensor:
        """``lambda_q(t) FLOPS(q) + lambda_d(t) FLOPS(d)`` with the quadratic warmup; logs each side's non-zeros."""
        hp, step = self.hparams, self.global_step
        loss = quadratic_lambda(hp.lambda_d, step, hp.lambda_warmup_steps) * flops_regularizer(documents)
        self.log("train/document_nonzeros", (documents > 0).float().sum(1).mean())
        if queries is not None:
            loss = loss + quadratic_lambda(hp.lambda_q, step, hp.lambda_warmup_steps) * flops_regularizer(queries)
            self.log("train/query_nonzeros", (queries > 0).float().sum(1).mean())
        return loss

    # ----------------------------------------------------------------- hard negatives
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.hparams.hard_negatives and self.__dict__["_negatives"] is None:
            pairs = self.trainer.datamodule._train.ids  # [query ids, document ids] per training sample
            negatives = mine_bm25_negatives(
                [q.tolist() for q, _ in pairs], [d.tolist() for _, d in pairs], self.hparams.bm25_depth
            )
            self.__dict__["_negatives"] = (pairs, negatives)

    def hard_negative_batch(self, indices: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
        """One BM25 negative document per query of the batch (``indices``: the pairs' training positions), padded."""
        mined = self.__dict__["_negatives"]
        if not self.hparams.hard_negatives or mined is None or indices is None:
            return None
        pairs, negatives = mined
        chosen = [random.choice(negatives[i] or [(i + 1) % len(pairs)]) for i in indices.tolist()]
        return {k: v.to(self.device) for k, v in pad_ids([pairs[j][1] for j in chosen]).items()}

    # ----------------------------------------------------------------- the teacher
    def teacher_phase(self) -> bool:
        return self.teacher is not None and epochs_done(self) < self.hparams.teacher_epochs

    def teacher_loss(self, queries, documents) -> torch.Tensor:
        """The cross-encoder learns each pair (label 1) against the next pair's document (label 0), BCE."""
        n = queries["input_ids"].shape[0]
        own = torch.arange(n, device=self.device)
        q_rows, d_rows = torch.cat([own, own]), torch.cat([own, (own + 1) % n])
        targets = torch.cat([torch.ones(n, device=self.device), torch.zeros(n, device=self.device)])
        return soft_label_bce(self.teacher(rows(queries, q_rows), rows(documents, d_rows)), targets)

    def teacher_scores(self, queries, documents) -> torch.Tensor:
        """The frozen teacher's logits of the pairs ``(queries[i], documents[i])``."""
        return frozen(self.teacher, queries, documents)


def stack_rows(*batches: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tokenised batches of one kind stacked into one (re-padded to the longest), for one forward pass."""
    width = max(b["input_ids"].shape[1] for b in batches)
    out: dict[str, list[torch.Tensor]] = {"input_ids": [], "attention_mask": []}
    for b in batches:
        pad = width - b["input_ids"].shape[1]
        out["input_ids"].append(F.pad(b["input_ids"], (0, pad)))
        out["attention_mask"].append(F.pad(b["attention_mask"], (0, pad)))
    return {k: torch.cat(v) for k, v in out.items()}


__all__ = [
    "BinaryBag",
    "MLMHead",
    "SPECIAL_IDS",
    "SparseRetriever",
    "SpladeEncoder",
    "mine_bm25_negatives",
    "mlm_logits",
    "stack_rows",
]
