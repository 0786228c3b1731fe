"""word2vec: "Efficient Estimation of Word Representations in Vector Space" (Mikolov, Chen, Corrado & Dean, 2013,
arXiv:1301.3781) and "Distributed Representations of Words and Phrases and their Compositionality" (Mikolov,
Sutskever, Chen, Corrado & Dean, NeurIPS 2013, arXiv:1310.4546)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.word_window import WordWindowModule
from reprzoo.losses.word2vec import (
    full_softmax_loss,
    grouped_negative_sampling_loss,
    hierarchical_softmax_loss,
    huffman_tree,
    negative_sampling_loss,
)

Architecture = Literal["cbow", "skipgram"]
Objective = Literal["hierarchical_softmax", "negative_sampling", "softmax"]


@register_method(
    title="Efficient Estimation of Word Representations in Vector Space",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1301.3781",
)
class Word2Vec(WordWindowModule):
    """CBOW (the mean of the context words' vectors predicts the centre word) and continuous skip-gram (the centre
    word's vector predicts each context word), with the paper's hierarchical softmax over a Huffman tree of the
    vocabulary, the full softmax, or negative sampling (the 2013b objective, :class:`SkipGramNegativeSampling`).

    The input vectors (``syn0``) are the word representation; the output side is one vector per inner node of the
    Huffman tree (hierarchical softmax) or per word (softmax, negative sampling), initialised to zero as in
    ``word2vec.c``. Defaults are the authors' tool's: 100 dimensions, window 5 (in the datamodule, with dynamic
    windows), SGD from lr 0.025 (skip-gram; 0.05 for CBOW) decayed linearly to 1e-4 of it.

    Ours:
        - Mini-batches of centre words: per-example losses are summed (the authors' SGD takes one step per
          example, asynchronously on many threads; the summed gradient of a batch is their sequence of steps taken
          at once, so their learning rate carries over).
        - With hierarchical softmax, batches of 256 centre words (the recipe): the root and the nodes near it are on
          every prediction's path, and summed updates of 1,024 centres made their vectors diverge (NaN after two
          epochs); 256 trains (WordSim-353 0.38 after one epoch of WordNet).
        - Skip-gram's centre word predicts its context words, as the paper states (``word2vec.c`` swaps the roles,
          using the context word's vector to predict the centre: the same pairs, the same expected update).

    Args:
        architecture: ``skipgram`` or ``cbow``.
        objective: ``hierarchical_softmax`` (the paper's), ``softmax`` (the full softmax the paper compares
            against) or ``negative_sampling``.
        cbow_mean: CBOW averages the context vectors (``word2vec.c``'s default); False sums them.
        shared_negatives: with negative sampling, draw this many noise words per batch and share them among its
            predictions, each weighted ``negatives / shared_negatives`` (the same expected objective and gradient as
            ``negatives`` draws per prediction, computed as one matrix product: ``grouped_negative_sampling_loss``);
            0 draws ``negatives`` per prediction, as the paper does.
        kwargs: :class:`WordWindowModule` options (vocab_size, dim, negatives, sparse, optimiser).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        architecture: Architecture = "skipgram",
        objective: Objective = "hierarchical_softmax",
        cbow_mean: bool = True,
        shared_negatives: int = 0,
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if shared_negatives < 0:
            raise ValueError(f"shared_negatives must be >= 0, got {shared_negatives}")
        if architecture not in ("cbow", "skipgram"):
            raise ValueError(f"architecture must be 'cbow' or 'skipgram', got {architecture!r}")
        if objective not in ("hierarchical_softmax", "negative_sampling", "softmax"):
            raise ValueError(f"unknown objective {objective!r}")
        rows = vocab_size - 1 if objective == "hierarchical_softmax" else vocab_size
        self.output = nn.Embedding(rows, self.feature_dim, sparse=self.hparams.sparse)
        nn.init.zeros_(self.output.weight)  # word2vec.c's syn1 / syn1neg
        self.register_buffer("points", torch.zeros(vocab_size, 1, dtype=torch.long), persistent=False)
        self.register_buffer("codes", torch.zeros(vocab_size, 1, dtype=torch.long), persistent=False)
        self.register_buffer("path_lengths", torch.ones(vocab_size, dtype=torch.long), persistent=False)

    def vocabulary_ready(self, vocabulary) -> None:
        if self.hparams.objective == "hierarchical_softmax":
            points, codes, lengths = huffman_tree(vocabulary.counts)
            self.points, self.codes = torch.from_numpy(points).to(self.device), torch.from_numpy(codes).to(self.device)
            self.path_lengths = torch.from_numpy(lengths).to(self.device)

    def hidden_and_targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The input-side vector of each prediction and the word it predicts."""
        if self.hparams.architecture == "skipgram":
            centres, contexts = self.context_pairs(batch)
            return self.backbone(centres), contexts
        mask = batch["context_mask"]
        has_context = mask.any(1)
        vectors = self.backbone(batch["context"]) * mask.unsqueeze(-1)
        hidden = vectors.sum(1)
        if self.hparams.cbow_mean:
            hidden = hidden / mask.sum(1, keepdim=True).clamp(min=1)
        return hidden[has_context], batch["center"][has_context]

    def objective_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        objective = self.hparams.objective
        if objective == "negative_sampling":
            noise, keep = self.sample_negatives(targets)
            negatives = self.output(noise) * keep.unsqueeze(-1)  # a noise word equal to the target is skipped
            return negative_sampling_loss(hidden, self.output(targets), negatives)
        if objective == "softmax":
            return full_softmax_loss(hidden, self.output.weight, targets)
        length = self.path_lengths[targets]
        width = int(length.max())
        mask = torch.arange(width, device=hidden.device)[None, :] < length[:, None]
        return hierarchical_softmax_loss(hidden, self.output(self.points[targets, :width]), self.codes[targets, :width], mask)

    def grouped(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(hidden, true word ids, mask)`` with each input vector's predictions together: skip-gram's centre word
        and its context words; CBOW's context mean and its centre word."""
        if self.hparams.architecture == "skipgram":
            return self.backbone(batch["center"]), batch["context"], batch["context_mask"]
        hidden, targets = self.hidden_and_targets(batch)
        return hidden, targets.unsqueeze(1), torch.ones_like(targets, dtype=torch.bool).unsqueeze(1)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        batch = views[0]
        shared = self.hparams.shared_negatives
        if self.hparams.objective == "negative_sampling" and shared:
            hidden, targets, mask = self.grouped(batch)
            noise = torch.multinomial(self.noise, shared, replacement=True)
            weights = torch.full((shared,), self.hparams.negatives / shared, device=hidden.device)
            loss = grouped_negative_sampling_loss(hidden, self.output(targets), mask, self.output(noise), weights)
            return TrainingOutput(loss, features=hidden.detach())
        hidden, targets = self.hidden_and_targets(batch)
        return TrainingOutput(self.objective_loss(hidden, targets), features=hidden.detach())


@register_method(
    title="Distributed Representations of Words and Phrases and their Compositionality",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1310.4546",
)
class SkipGramNegativeSampling(Word2Vec):
    """Skip-gram with negative sampling (SGNS): ``-log s(v'_o . v_c) - sum_k log s(-v'_k . v_c)``, k noise words
    from the unigram distribution raised to 3/4, with frequent-word subsampling (``sample``, in the datamodule:
    ``WordWindows(sample=1e-3)``, the authors' tool's default; the paper writes 1e-5 for its 1B-word corpus) and
    phrases (``WordWindows(phrases=...)``: bigrams scored ``(count(ab) - delta) / (count(a) count(b))`` merged
    into one token, the paper's data-driven phrase detection).

    Defaults are the paper's: k = 5 negatives (5-20 for small data, 2-5 for large), 3/4 power, 300 dimensions
    in the paper's experiments (100, the tool's default, here).

    Ours:
        - Mini-batches with summed losses (see :class:`Word2Vec`).
        - ``shared_negatives=64``: each batch draws 64 noise words shared by all its predictions, each term weighted
          k/64, instead of k fresh draws per (centre, context) pair: the same objective in expectation (and the
          same expected gradient), as one matrix product instead of k gathers per pair; ``shared_negatives=0``
          is the paper's sampling. word2vec.c also skips a noise word equal to the target; shared draws do not.

    Args:
        negatives: noise words per positive pair (k).
        shared_negatives: noise words drawn per batch (0: k per pair, the paper's).
        kwargs: :class:`Word2Vec` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        architecture: Architecture = "skipgram",
        objective: Objective = "negative_sampling",
        negatives: int = 5,
        shared_negatives: int = 64,
        **kwargs,
    ):
        super().__init__(
            vocab_size=vocab_size,
            architecture=architecture,
            objective=objective,
            negatives=negatives,
            shared_negatives=shared_negatives,
            **kwargs,
        )


__all__ = ["SkipGramNegativeSampling", "Word2Vec"]
