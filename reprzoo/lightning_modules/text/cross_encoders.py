"""Sentence-embedding methods built around a cross-encoder (``reprzoo.components.cross_encoder``):

- :class:`DSE`: "Scalable Attentive Sentence-Pair Modeling via Distilled Sentence Embedding" (Barkan, Razin,
  Malkiel, Katz, Caciularu & Koenigstein, AAAI 2020, arXiv:1908.05161): a Siamese student distils a cross-encoder.
- :class:`TransEncoder`: "Trans-Encoder: Unsupervised sentence-pair modelling through self- and
  mutual-distillations" (Liu, Jiao, Massiah, Yilmaz & Havrylov, ICLR 2022, arXiv:2109.13059): one transformer
  alternates between its bi- and cross-encoder forms, each labelling pairs for the other.

Both train on :class:`~reprzoo.datamodules.text.TextPairs` batches ``[queries, documents]`` and export the sentence
embedding (the backbone's pooled vector), which the retrieval evaluation (``val/mrr@10``) measures.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.components.cross_encoder import CrossEncoder, SiamesePairHead
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.distillation_text import cosine_regression_loss, dse_loss, soft_label_bce
from reprzoo.losses.text_contrastive import multiple_negatives_ranking_loss


def epochs_done(module: TextEncoderModule) -> float:
    """Training epochs completed so far, fractional (optimiser steps / steps of an epoch); 0 outside ``fit``."""
    trainer = module._trainer
    batches = getattr(trainer, "num_training_batches", None) if trainer is not None else None
    if not batches or math.isinf(batches):
        return 0.0
    steps = math.ceil(batches / max(1, trainer.accumulate_grad_batches))
    return module.global_step / steps


def rows(batch: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows ``index`` of a tokenised batch."""
    return {key: value[index] for key, value in batch.items()}


@torch.no_grad()
def frozen(module: nn.Module, *args) -> torch.Tensor:
    """``module(*args)`` in eval mode (no dropout) without gradients, the module's mode restored afterwards: how a
    teacher labels pairs."""
    was_training = module.training
    module.eval()
    try:
        return module(*args)
    finally:
        module.train(was_training)


@register_method(
    title="Scalable Attentive Sentence-Pair Modeling via Distilled Sentence Embedding",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1908.05161",
)
class DSE(TextEncoderModule):
    """Distilled Sentence Embedding: a cross-encoder teacher scores sentence pairs; a Siamese student (the sentence
    encoder, applied to each text, and a light head on ``[u, v, u * v, |u - v|]``) regresses the teacher's logits,
    ``(1 - a) * BCE(student, label) + a * (student - teacher)^2`` (:func:`~reprzoo.losses.distillation_text.dse_loss`,
    ``a = 0.5`` in the authors' code). The pairs: each pair of the batch (label 1) and ``negatives`` in-batch
    negatives per query (the documents of the next pairs, label 0).

    Training runs in two phases: for the first ``teacher_epochs`` the teacher (a cross-encoder on
    ``[CLS] q [SEP] d [SEP]``) learns the same pairs with BCE; then it is frozen and labels the student's pairs.
    The exported representation is the student's sentence embedding (the backbone).

    Ours:
        - The teacher is trained inside the method, first (``teacher_epochs``), on the training pairs and in-batch
          negatives; the paper fine-tunes BERT-large on each GLUE task first and stores its logits.
        - Teacher and student are small BERTs trained from scratch (the paper: pretrained BERT-large teacher,
          pretrained BERT-base student); one AdamW learning rate for both phases (authors: 2e-5).
        - The student's embedding is the backbone's pooling (mean over the last layer); the authors concatenate
          the means of BERT's top 4 layers (``concat_top_mean``) and skip ``[CLS]``.
        - Teacher logits are computed on the fly (the frozen teacher in eval mode), not stored once.
        - A WordPiece vocabulary fitted on the pairs (the recipe: 4,000 tokens, where BERT has 30,522): both networks
          learn their token embeddings from scratch in a few CPU epochs.

    Measured on the WordNet recipe (``bert_tiny`` from scratch, 20,000 pairs, seed 0, half an epoch of teacher):
    MRR@10 0.050 at init -> 0.111 after 2 epochs (123 s) and 0.161 after the recipe's 5 (327 s, one thread); with
    an 8,000-token vocabulary 0.033 -> 0.069 after 2. The authors' ``dot`` head (0.047 -> 0.078) and three
    negatives a query (0.050 -> 0.076) learned less in 2 epochs.

    Args:
        teacher_epochs: epochs of the teacher phase (fractions allowed); the student learns afterwards.
        negatives: in-batch negatives per query (each a cross-encoder pass, so kept small).
        distillation_weight: ``a`` of the loss (0.5 in the authors' code).
        head: ``concat`` (the paper's MLP on ``[u, v, u * v, |u - v|]``) or ``dot`` (the authors' ``u . v``).
        head_hidden: hidden widths of the ``concat`` MLP (authors: ``fc_dims = [512, 1]``).
        teacher_backbone: the teacher's transformer (``bert_*``); ``None``: the student's.
        teacher_backbone_kwargs: its options, over the student's ``backbone_kwargs``.
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        teacher_epochs: float = 1.0,
        negatives: int = 1,
        distillation_weight: float = 0.5,
        head: str = "concat",
        head_hidden: tuple[int, ...] = (512,),
        teacher_backbone: str | None = None,
        teacher_backbone_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if negatives < 1 or teacher_epochs < 0:
            raise ValueError(f"need negatives >= 1 and teacher_epochs >= 0, got {negatives} and {teacher_epochs}")
        name, options = self.backbone_spec
        teacher = build_backbone(teacher_backbone or name, **{**options, **(teacher_backbone_kwargs or {})})
        self.teacher = CrossEncoder(teacher)
        self.pair_head = SiamesePairHead(self.feature_dim, tuple(head_hidden), head)

    def pairs(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(query rows, document rows, labels): each pair, then the ``negatives`` shifted documents of each query."""
        queries = torch.arange(batch_size, device=self.device)
        shifts = range(0, min(self.hparams.negatives, batch_size - 1) + 1)
        documents = torch.cat([(queries + k) % batch_size for k in shifts])
        labels = torch.cat([torch.full((batch_size,), float(k == 0), device=self.device) for k in shifts])
        return queries.repeat(len(shifts)), documents, labels

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        queries, documents = views[0], views[1]
        q_rows, d_rows, targets = self.pairs(queries["input_ids"].shape[0])
        if epochs_done(self) < self.hparams.teacher_epochs:  # phase 1: the teacher learns the pairs
            logits = self.teacher(rows(queries, q_rows), rows(documents, d_rows))
            loss = soft_label_bce(logits, targets)
            with torch.no_grad():
                features = self.backbone(queries)
            return TrainingOutput(loss, features=features, embeddings=features)
        teacher = frozen(self.teacher, rows(queries, q_rows), rows(documents, d_rows))
        u, v = self.backbone(queries), self.backbone(documents)
        student = self.pair_head(u[q_rows], v[d_rows])
        loss = dse_loss(student, teacher, targets, self.hparams.distillation_weight)
        self.log("train/teacher_accuracy", ((teacher > 0).float() == targets).float().mean())
        return TrainingOutput(loss, features=u.detach(), embeddings=u.detach())


@register_method(
    title="Trans-Encoder: Unsupervised sentence-pair modelling through self- and mutual-distillations",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2109.13059",
)
class TransEncoder(TextEncoderModule):
    """Trans-Encoder (self-distillation): one transformer in two forms, the bi-encoder (each text pooled alone,
    pairs compared by cosine) and the cross-encoder (``[CLS] a [SEP] b [SEP]`` and a scalar head). The paper first
    makes the language model an unsupervised bi-encoder (it starts from SimCSE / Mirror-BERT checkpoints); here
    the first ``simcse_epochs`` do that with unsupervised SimCSE (each text against its own dropout copy, the
    batch's other texts as negatives, scale 20). Then training alternates, cycle after cycle:

    (a) ``cross_encoder_epochs``: the bi-encoder, frozen as it was when the phase began, scores the unlabelled
        pairs by cosine; the cross-encoder learns these scores with BCE on soft labels (on both orders of each pair,
        ``both_orders``);
    (b) ``bi_encoder_epochs``: the cross-encoder, frozen likewise, scores the pairs (``sigmoid`` of its logit); the
        bi-encoder learns them as the cosine of its two embeddings (MSE, sentence-transformers'
        ``CosineSimilarityLoss``).

    The unlabelled pairs are each batch's (query, document) pairs mixed with as many shuffled ones (each query with
    another pair's document); no label is used. The exported representation is the bi-encoder's embedding.

    Ours:
        - No pretrained language model: the transformer starts from random init and becomes a bi-encoder by
          SimCSE on the pairs' texts (``simcse_epochs``, most of the recipe's budget); the paper starts from
          unsupervised SimCSE / Mirror-BERT checkpoints of pretrained BERT / RoBERTa.
        - Weights carry over between the forms (``shared``), as in the paper's self-distillation; the authors' scripts
          (``--init_with_new_models``) instead restart each form from the pretrained checkpoint every cycle.
        - Cosine pseudo-labels are clipped to [0, 1] before the BCE (the authors feed raw cosines to
          ``BCEWithLogitsLoss``, whose targets must lie in [0, 1]).
        - Phases are measured in (fractional) epochs and repeat until ``max_epochs``; the paper runs 3 cycles of
          1 cross-encoder epoch and 10 bi-encoder epochs (the recipe: one cycle of a quarter epoch each). One AdamW
          learning rate for both forms (authors: 2e-5 cross, 5e-5 bi). The authors keep the cycle whose bi-encoder
          scores best on a development set; we export the last.
        - Mutual distillation (several models, averaged pseudo-labels) is not built: self-distillation only.

    Measured on the WordNet recipe (``bert_tiny`` from scratch, 20,000 pairs, seed 0): SimCSE lifts MRR@10 from
    0.032 to 0.094 in one epoch and 0.102 in two; a further cycle lowers it (half an epoch in each form: 0.094; one
    epoch in each: 0.033 -> 0.085 after 4 epochs). The recipe (2.5 SimCSE epochs, then a quarter epoch in each
    form): 0.030 -> 0.089 after 3 epochs (237 s, one thread); the former recipe (half an epoch of SimCSE, then six
    short cycles) reached 0.028 -> 0.049 after 2. A cross-encoder trained from scratch on the bi-encoder's cosines
    gives weaker pseudo-labels than those cosines, where the paper's pretrained cross-encoders give stronger ones;
    so the recipe spends most of its budget on the SimCSE start (the paper's SimCSE checkpoint).

    Args:
        simcse_epochs: epochs of unsupervised SimCSE before the first cycle (0: start from the encoder as it is).
        simcse_scale: inverse temperature of SimCSE (1 / 0.05).
        cross_encoder_epochs: epochs of step (a) in each cycle (paper: 1).
        bi_encoder_epochs: epochs of step (b) in each cycle (paper: 10).
        both_orders: train the cross-encoder on ``(a, b)`` and ``(b, a)`` (the authors' script does).
        shuffled_pairs: add, per batch, as many pairs of a query with another pair's document.
        shared: one transformer in both forms (the paper's self-distillation); ``False``: the cross-encoder has its
            own transformer and only pseudo-labels pass between the forms (the authors' released scripts restart
            each form from its checkpoint every cycle, ``--init_with_new_models``).
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        simcse_epochs: float = 1.0,
        simcse_scale: float = 20.0,
        cross_encoder_epochs: float = 1.0,
        bi_encoder_epochs: float = 10.0,
        both_orders: bool = True,
        shuffled_pairs: bool = True,
        shared: bool = True,
        **kwargs: Any,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if cross_encoder_epochs <= 0 or bi_encoder_epochs <= 0 or simcse_epochs < 0:
            raise ValueError(
                f"phases need positive lengths, got {cross_encoder_epochs} and {bi_encoder_epochs} (simcse {simcse_epochs})"
            )
        if shared:  # the same transformer, plus a scalar head
            self.cross_encoder = CrossEncoder(self.backbone)
        else:
            self.cross_encoder = CrossEncoder(build_backbone(self.backbone_spec[0], **self.backbone_spec[1]))
        self.__dict__["_labeller"] = None  # (phase, frozen copy) that labels the current phase; not saved

    def phase(self) -> str:
        """``simcse`` (the start), then ``cross`` (step a) or ``bi`` (step b) from the epochs done in the cycle."""
        done = epochs_done(self) - self.hparams.simcse_epochs
        if done < 0:
            return "simcse"
        cross, bi = self.hparams.cross_encoder_epochs, self.hparams.bi_encoder_epochs
        return "cross" if done % (cross + bi) < cross else "bi"

    def labeller(self, phase: str) -> nn.Module:
        """The other form as it was when ``phase`` began (refreshed at every change of phase): the bi-encoder
        labels the ``cross`` phase, the cross-encoder the ``bi`` phase."""
        held = self.__dict__["_labeller"]
        if held is None or held[0] != phase:
            other = self.backbone if phase == "cross" else self.cross_encoder
            held = (phase, copy.deepcopy(other).requires_grad_(False))
            self.__dict__["_labeller"] = held
        return held[1]

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        queries, documents = views[0], views[1]
        n = queries["input_ids"].shape[0]
        phase = self.phase()
        if phase == "simcse":  # an unsupervised bi-encoder first: each text against its dropout copy
            scale = self.hparams.simcse_scale
            u = self.backbone(queries)
            loss = multiple_negatives_ranking_loss(u, self.backbone(queries), scale)
            v = self.backbone(documents)
            loss = (loss + multiple_negatives_ranking_loss(v, self.backbone(documents), scale)) / 2
            return TrainingOutput(loss, features=u.detach(), embeddings=u.detach())
        first = torch.arange(n, device=self.device)
        second = first
        if self.hparams.shuffled_pairs and n > 1:
            shift = int(torch.randint(1, n, ()).item())
            first, second = torch.cat([first, first]), torch.cat([first, (first + shift) % n])
        a, b = rows(queries, first), rows(documents, second)
        teacher = self.labeller(phase)
        if phase == "cross":  # (a) bi-encoder cosines label the cross-encoder
            u, v = frozen(teacher, a), frozen(teacher, b)
            targets = torch.cosine_similarity(u, v, dim=-1).clamp(0.0, 1.0)
            loss = soft_label_bce(self.cross_encoder(a, b), targets)
            if self.hparams.both_orders:
                loss = (loss + soft_label_bce(self.cross_encoder(b, a), targets)) / 2
            features = frozen(self.backbone, queries)
        else:  # (b) cross-encoder scores label the bi-encoder
            targets = torch.sigmoid(frozen(teacher, a, b))
            u, v = self.backbone(a), self.backbone(b)
            loss = cosine_regression_loss(u, v, targets)
            features = u[:n].detach()
        self.log("train/pseudo_label_mean", targets.mean())
        return TrainingOutput(loss, features=features, embeddings=features)


__all__ = ["DSE", "TransEncoder", "epochs_done"]
