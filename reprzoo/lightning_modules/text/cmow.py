"""CMOW and the hybrid CBOW-CMOW: "CBOW Is Not All You Need: Combining CBOW with the Compositional Matrix Space
Model" (Mai, Galke & Scherp, ICLR 2019, arXiv:1902.06423)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.sentence_words import SentenceWordsModule, compact_words
from reprzoo.losses.sentence_words import mean_negative_sampling_loss, ordered_matrix_product

MAX_LOG_NORM = 60.0  # a CMOW product above e^60 (a long document) keeps its direction, not its norm


class CMOWEncoder(nn.Module):
    """Word ids (``{"input_ids", "attention_mask"}`` or a ``(B, L)`` tensor with 0 as the neutral padding) -> the
    flattened ordered product of the words' ``m x m`` matrices, concatenated after the CBOW sum for the hybrid."""

    def __init__(self, cmow: nn.Embedding, cbow: nn.Embedding | None):
        super().__init__()
        self.cmow, self.cbow = cmow, cbow
        self.side = math.isqrt(cmow.embedding_dim)
        self.num_features = cmow.embedding_dim + (cbow.embedding_dim if cbow is not None else 0)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, max_log_norm: float | None) -> torch.Tensor:
        n, length = ids.shape
        matrices = self.cmow(ids).view(n, length, self.side, self.side)
        parts = [ordered_matrix_product(matrices, mask, max_log_norm).flatten(1)]
        if self.cbow is not None:  # the authors' HybridEncoder: [CBOW, CMOW]
            parts.insert(0, (self.cbow(ids) * mask.unsqueeze(-1).to(matrices.dtype)).sum(1))
        return torch.cat(parts, 1)

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = compact_words(x)
        return self.encode(ids, mask, MAX_LOG_NORM)


@register_method(
    title="CBOW Is Not All You Need: Combining CBOW with the Compositional Matrix Space Model",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1902.06423",
)
class CMOW(SentenceWordsModule):
    """Continual Multiplication Of Words: each word is an ``m x m`` matrix, a text the product of its words'
    matrices in order (flattened, ``m^2`` dimensions); the hybrid (``hybrid=True``, the paper's proposal) also
    sums CBOW vectors and concatenates the two, trained jointly.

    Training is the paper's CMSM objective (the authors' code, florianmai/word2mat, ``mode=random``): a window of
    ``2 * context_size + 1`` words around a middle word, one word at a uniformly random position of the window
    removed; the other ``2 * context_size`` words, in order (padding outside the text is the neutral element), are
    encoded and predict the removed word against ``negatives`` noise words from the unigram distribution to the
    3/4 (:func:`mean_negative_sampling_loss`: the authors' mean over noise words and examples). Word matrices start
    at ``I + N(0, 0.1)`` (the paper's initialisation), CBOW vectors at ``N(0, 0.1)``, output vectors at N(0, 1)
    (``nn.Embedding``'s default, the authors').

    Defaults are the authors': Adam lr 3e-4, 20 negatives, context size 5, 784 dimensions (28 x 28) for CMOW and
    400 + 400 (20 x 20 each) for the hybrid.

    Ours:
        - Every word of a text is a window's middle word once per epoch (the authors: min(length, 30) random middle
          words per text per pass; WordNet's texts are shorter than 30 words). A window whose removed position falls
          outside the text is dropped (the authors' code then predicts the padding word).
        - A long text's CMOW product (a Lee document, ~100 words) is accumulated rescaled: exact up to norm e^60,
          beyond it the same direction with norm e^60 (the plain float32 product can overflow).
        - ``matrix_side`` 16 in the recipe (256 + 256 dimensions) for CPU.

    Args:
        hybrid: concatenate CBOW and CMOW (the paper's hybrid); False: CMOW alone.
        matrix_side: m (each word matrix is m x m; CBOW vectors have m^2 dimensions too, as the authors').
        context_size: words on each side of the middle word.
        init_std: standard deviation of the initial noise on the identity (and of the CBOW vectors).
        kwargs: :class:`SentenceWordsModule` options (negatives, noise_power, sample, lr, optimiser).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        hybrid: bool = True,
        matrix_side: int = 20,
        context_size: int = 5,
        init_std: float = 0.1,
        negatives: int = 20,
        noise_power: float = 0.75,
        sample: float = 0.0,
        optimizer: str = "adamw",
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        sparse: bool = False,
        scheduler: str = "constant",
        **kwargs: Any,
    ):
        if matrix_side < 1 or context_size < 1:
            raise ValueError(f"need matrix_side >= 1 and context_size >= 1, got {matrix_side} and {context_size}")
        dim = matrix_side * matrix_side
        for derived in ("dim", "rows"):  # set from this method's own arguments (a rebuilt model's saved init args list them)
            kwargs.pop(derived, None)
        super().__init__(
            vocab_size=vocab_size,
            dim=dim,
            negatives=negatives,
            noise_power=noise_power,
            sample=sample,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            sparse=sparse,
            scheduler=scheduler,
            **kwargs,
        )
        with torch.no_grad():
            weight = self.backbone.embedding.weight
            weight.normal_(0.0, init_std).add_(torch.eye(matrix_side).flatten())
        self.cbow = nn.Embedding(vocab_size, dim) if hybrid else None
        if self.cbow is not None:
            nn.init.normal_(self.cbow.weight, 0.0, init_std)
        self.output = nn.Embedding(vocab_size, dim * (2 if hybrid else 1))  # N(0, 1), the authors' default

    def encoder(self) -> nn.Module:
        return CMOWEncoder(self.backbone.embedding, self.cbow)

    def windows(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(context ids, context mask, targets)`` of one window per word of the batch (see the class doc)."""
        c = self.hparams.context_size
        n, length = ids.shape
        padded_ids = nn.functional.pad(ids, (c, c))
        padded_mask = nn.functional.pad(mask, (c, c))
        b, j = mask.nonzero(as_tuple=True)  # middle words
        offset = torch.randint(0, 2 * c + 1, (len(b),), device=ids.device)  # the removed position in the window
        keep = padded_mask[b, j + offset]
        b, j, offset = b[keep], j[keep], offset[keep]
        slots = torch.arange(2 * c, device=ids.device)
        positions = j[:, None] + slots[None, :] + (slots[None, :] >= offset[:, None]).long()
        return padded_ids[b[:, None], positions], padded_mask[b[:, None], positions], padded_ids[b, j + offset]

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        ids, mask = compact_words(views[0])
        context, context_mask, targets = self.windows(ids, mask)
        hidden = self.encoder().encode(context, context_mask, None)  # short windows: the plain product
        noise, _ = self.sample_negatives(targets)  # the authors' draws may equal the target
        loss = mean_negative_sampling_loss(hidden, self.output(targets), self.output(noise))
        return TrainingOutput(loss, features=hidden.detach(), embeddings=hidden.detach())


__all__ = ["CMOW", "CMOWEncoder"]
