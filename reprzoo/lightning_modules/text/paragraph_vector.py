"""Binary Paragraph Vector, from "Vector representations of text data in deep learning" (Grzegorczyk, PhD
dissertation, 2019, arXiv:1901.01695), first published as "Binary Paragraph Vectors" (Grzegorczyk & Kurdziel,
Rep4NLP 2017, arXiv:1611.01116)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.sentence_words import SentenceWordsModule, compact_words
from reprzoo.losses.sentence_words import document_code_gradient, document_softmax_loss, straight_through_round


class InferredCodes(nn.Module):
    """Documents -> binary codes inferred as PV infers new paragraphs: a fresh pre-sigmoid vector per document
    (starting at zero, so the result depends on nothing but the document and the weights), ``steps`` gradient
    steps of the training objective on the relaxed code ``sigmoid(e)`` with the word vectors frozen, then
    ``round(sigmoid(e))``: a 0/1 vector. Closed-form gradients: it runs inside evaluation's ``inference_mode``."""

    def __init__(self, output: nn.Embedding, steps: int, lr: float):
        super().__init__()
        self.output, self.steps, self.lr = output, steps, lr
        self.num_features = output.embedding_dim

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        words, mask = compact_words(x)
        weight = self.output.weight.detach()
        e = torch.zeros(words.shape[0], weight.shape[1], dtype=weight.dtype, device=weight.device)
        for _ in range(self.steps):  # plain gradient descent on each document's mean word loss
            codes = torch.sigmoid(e)  # the relaxed code: a smooth objective, rounded once at the end
            e = e - self.lr * document_code_gradient(e, codes, weight, words, mask)
        return torch.round(torch.sigmoid(e))


@register_method(
    title="Vector representations of text data in deep learning",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1901.01695",
)
class BinaryParagraphVector(SentenceWordsModule):
    """Binary PV-DBOW: every training document has a vector ``e_d`` whose binary code ``round(sigmoid(e_d))``
    predicts each of the document's words through a softmax over the vocabulary; rounding passes gradients
    straight through (of the binarisation schemes the dissertation weighs, the one without added noise). The codes are hashes for
    fast document retrieval (Hamming distance); the dissertation uses 32 to 128 bits.

    A new document's code is inferred as in PV (the dissertation infers the test documents' codes this way): a
    fresh vector, ``infer_steps`` gradient steps of the same objective with the word vectors frozen, rounded
    (:class:`InferredCodes`, the exported encoder, deterministic). Validation embeds its documents the same way, so the metrics
    measure exactly what ``reprzoo.load(name).encode(texts)`` returns.

    Ours:
        - The full softmax over the vocabulary (the dissertation: hierarchical softmax, a cheaper approximation of
          the same model; with a word-level vocabulary of a few thousand the full softmax is cheap, and exact).
        - The simultaneously trained skip-gram word vectors (an option in the dissertation) and the Real-Binary and
          Binary PV-DM variants are left out.
        - Adam (lr 0.01, decayed linearly) on the summed per-word losses: plain SGD at word2vec's rates diverges
          here (a batch's full-softmax gradients on the output words add up), and at rates that do not diverge the
          document vectors, each seen once an epoch, barely leave their start in a short run.
        - Inference: full-batch gradient descent (``infer_lr`` on each document's mean word loss) from a zero start
          (deterministic: a document's code depends on nothing else) on the relaxed code ``sigmoid(e)``, rounded once
          at the end (the rounded code's straight-through gradient makes the descent oscillate).
        - The output word vectors start uniform in ``[-0.5/d, 0.5/d]`` (word2vec's are zero: inference from a zero
          start would then give every document the same code at random init).
        - The codes are returned as a dense 0/1 float vector (``representation_kind`` ``dense``): the evaluations
          compare them by cosine, and Hamming distance is a function of their dot products and bit counts.

    Args:
        code_bits: bits of the binary code (the document vectors' width).
        num_documents: rows of the training documents' table: recorded when training starts (a pushed model's init
            args carry it); leave it unset.
        infer_steps, infer_lr: gradient steps and their size when inferring a new document's code.
        kwargs: :class:`SentenceWordsModule` options (sample, lr, sparse).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        code_bits: int = 128,
        num_documents: int | None = None,
        infer_steps: int = 100,
        infer_lr: float = 3.0,
        sample: float = 0.0,
        optimizer: str = "adamw",
        lr: float = 0.01,
        weight_decay: float = 0.0,
        sparse: bool = False,
        **kwargs: Any,
    ):
        if code_bits < 1 or infer_steps < 0 or infer_lr <= 0:
            raise ValueError(f"need code_bits >= 1, infer_steps >= 0, infer_lr > 0; got {code_bits}, {infer_steps}, {infer_lr}")
        for derived in (
            "dim",
            "negatives",
            "rows",
        ):  # set from this method's own arguments (a rebuilt model's saved init args list them)
            kwargs.pop(derived, None)
        super().__init__(
            vocab_size=vocab_size,
            dim=code_bits,
            negatives=0,
            sample=sample,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            sparse=sparse,
            **kwargs,
        )
        nn.init.uniform_(self.backbone.embedding.weight, -0.5 / code_bits, 0.5 / code_bits)  # the output words
        self.documents = nn.Embedding(num_documents or 1, code_bits, sparse=self.hparams.sparse)
        nn.init.uniform_(self.documents.weight, -0.5 / code_bits, 0.5 / code_bits)  # word2vec.c's syn0 rule

    def setup(self, stage: str) -> None:
        if stage == "fit":
            n = len(self.trainer.datamodule._train)
            if self.documents.num_embeddings != n:  # a fresh module: one row per training document
                code_bits = self.hparams.code_bits
                self.documents = nn.Embedding(n, code_bits, sparse=self.hparams.sparse).to(self.device)
                nn.init.uniform_(self.documents.weight, -0.5 / code_bits, 0.5 / code_bits)
            self.hparams.num_documents = n  # recorded with the checkpoint: a rebuilt module sizes its table with it
        super().setup(stage)

    def encoder(self) -> nn.Module:
        return InferredCodes(self.backbone.embedding, self.hparams.infer_steps, self.hparams.infer_lr)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if indices is None:
            raise ReprzooError("BinaryParagraphVector needs the training documents' indices (EmbeddingDataModule gives them)")
        words, mask = compact_words(views[0])
        mask = self.subsample(words, mask)
        codes = straight_through_round(torch.sigmoid(self.documents(indices)))
        loss = document_softmax_loss(codes, self.backbone.embedding.weight, words, mask)
        return TrainingOutput(loss, features=codes.detach(), embeddings=codes.detach())


__all__ = ["BinaryParagraphVector", "InferredCodes"]
