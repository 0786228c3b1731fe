"""CodeSage: "Code Representation Learning At Scale" (Zhang, Ahmad, Tan, Ding, Nallapati, Roth, Ma & Xiang, ICLR
2024, arXiv:2402.01935).

A bidirectional encoder for code and text, pretrained in two stages:

- stage I, token-level denoising of code: each function is either *identifier deobfuscation* (DOBF: all occurrences
  of the identifiers it defines are masked and predicted) or *random masking* (15% of its tokens), always with the
  ``[MASK]`` token (no 80-10-10, which CodeSage found to hurt code); cross-entropy of a masked-LM head;
- stage II, bimodal contrastive learning: a docstring and its function are a positive pair, with *hard positives*
  (the docstring's summary against the function without its signature, so names cannot be matched) and *hard
  negatives* (the batch's other functions, reweighted towards the most similar ones).

One encoder embeds docstrings and code (mean-pooled token states); retrieval is by cosine.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from reprzoo.datamodules.text.tokenizers import SPECIAL_TOKENS
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.retrieval.sparse import MLMHead, mlm_logits
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.code import code_denoising_mask, hard_negative_contrastive

MASK_ID = SPECIAL_TOKENS.index("[MASK]")
NUM_SPECIAL = len(SPECIAL_TOKENS)


@register_method(title="Code Representation Learning At Scale", wing="text-and-retrieval", modality="text", arxiv="2402.01935")
class CodeSage(TextEncoderModule):
    """CodeSage's two stages in one run: ``mlm_epochs`` epochs of stage I, then stage II. Training samples are
    ``[docstring, code, identifier flags]`` (:class:`~reprzoo.datamodules.text.code.CodePairs`); the exported
    representation is the backbone's mean-pooled output (the same tower for text and code).

    Ours:
        - A small BERT from scratch (``bert_tiny``) on 3,904 Python functions of eight installed packages with a
          WordPiece vocabulary fitted on them, instead of 130M-1.3B encoders on The Stack (nine languages) with a
          byte-level BPE. Stage I runs on the functions of the contrastive data (the paper: all of The Stack).
        - DOBF as masked prediction: every token of the function's own identifiers (name, parameters, local
          bindings; found with ``ast``/``tokenize``) is replaced by ``[MASK]`` and predicted; a function is
          deobfuscated with probability ``dobf_probability`` (0.5, our choice), else randomly masked.
        - Hard negatives by importance weights ``w_ij ∝ exp(beta s_ij)`` over the in-batch negatives, beta 1 (our
          setting) and temperature 0.05; the loss is symmetric (docstring -> code and code -> docstring).
        - Hard positives: the fixture's docstrings are already their first paragraph (summary); the training code
          drops its signature (``CodePairs(hard_positives=True)``). Evaluation uses the full function.
        - The stages are epochs of one run (``mlm_epochs``), AdamW with warmup and cosine decay throughout.
        - The CPU recipe (``code/codesage``) turns stage I off (``mlm_epochs: 0``): at this scale, one epoch of it
          from scratch collapses the mean-pooled embeddings and stage II then fails to recover (MRR@10 0.021 after
          3 + 5 epochs, against 0.48 after 3 epochs of stage II alone); the paper runs stage I on all of The Stack.

    Args:
        mlm_epochs: epochs of stage I before stage II.
        mask_rate: random-masking rate of stage I.
        dobf_probability: chance that a function with identifiers is deobfuscated instead of randomly masked.
        temperature: of the stage II contrastive loss.
        beta: hardness of the negative weights (0: InfoNCE).
        kwargs: :class:`~reprzoo.lightning_modules.text.base.TextEncoderModule` options (``vocab_size``, backbone).
    """

    def __init__(
        self,
        mlm_epochs: int = 1,
        mask_rate: float = 0.15,
        dobf_probability: float = 0.5,
        temperature: float = 0.05,
        beta: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.mlm_head = MLMHead(self.backbone)

    def stage(self) -> int:
        """1 (denoising) for the first ``mlm_epochs`` epochs, then 2 (contrastive)."""
        return 1 if self._trainer is not None and self.current_epoch < self.hparams.mlm_epochs else 2

    def denoising_loss(self, code: dict[str, torch.Tensor], identifiers: torch.Tensor) -> torch.Tensor:
        """Stage I on a code batch: mask (DOBF or random, :func:`code_denoising_mask`) and predict the tokens."""
        ids, mask = self.backbone._inputs(code)  # truncated to the backbone's max_length
        identifiers = identifiers[:, : ids.shape[1]].bool()
        maskable = mask.bool() & ids.ge(NUM_SPECIAL)
        hp = self.hparams
        masked = code_denoising_mask(ids, maskable, identifiers, hp.mask_rate, hp.dobf_probability)
        if not bool(masked.any()):  # nothing drawn (a tiny batch): the first maskable token of each row
            masked = maskable & (maskable.long().cumsum(1) == 1)
        corrupted = {"input_ids": ids.masked_fill(masked, MASK_ID), "attention_mask": mask}
        logits = mlm_logits(self.backbone, self.mlm_head, corrupted)
        return F.cross_entropy(logits[masked], ids[masked])

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if len(views) < 3:
            raise ValueError("CodeSage trains on [docstring, code, identifier flags] samples (CodePairs)")
        text, code, flags = views[0], views[1], views[2]["input_ids"]
        if self.stage() == 1:
            loss = self.denoising_loss(code, flags)
            self.log("train/denoising_loss", loss.detach())
            with torch.no_grad():
                features = self.backbone(text)
            return TrainingOutput(loss, features=features)
        q, d = self.backbone(text), self.backbone(code)
        hp = self.hparams
        loss = 0.5 * (
            hard_negative_contrastive(q, d, hp.temperature, hp.beta) + hard_negative_contrastive(d, q, hp.temperature, hp.beta)
        )
        self.log("train/contrastive_loss", loss.detach())
        return TrainingOutput(loss, features=q.detach(), embeddings=q)


__all__ = ["CodeSage"]
