"""Text evaluators: word similarity (Spearman against human judgments, WordSim-353 and SimLex-999), analogies
(3CosAdd accuracy on the Google questions) and document similarity (Pearson against the Lee human judgments).

Each reads the features the module computed for the evaluation batches (embedded once, through its encoder) and
gathers them across ranks (torchmetrics states with ``cat`` reduction) before scoring. The scores follow gensim's
``KeyedVectors.evaluate_word_pairs`` and ``evaluate_word_analogies`` (pairs and questions with an unknown word are
left out and their share reported), and the tests compare the two on the same vectors.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torchmetrics import Metric

from reprzoo.metrics.evaluators import EvaluationBatch, EvaluationProtocol, Evaluator

VOCABULARY = "vocabulary"
DOCUMENT_SIMILARITY = "document_similarity"


class IndexedFeatures(Metric):
    """Collects ``(index, feature)`` rows on every rank; ``compute()`` returns the features ordered by index
    (``(n, dim)``, one row per distinct index; duplicates from padded distributed samplers dropped)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.add_state("features", default=[], dist_reduce_fx="cat")

    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        shape = tuple(features.shape[1:])  # (dim,), or (vectors, dim) of a multi-vector representation
        if getattr(self, "_row_shape", shape) != shape:
            raise ValueError(f"every batch's rows must have one shape, got {shape} after {self._row_shape}")
        self._row_shape = shape
        self.indices.append(indices.detach().reshape(-1).long())
        self.features.append(features.detach().float().reshape(len(indices), -1))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.cat(self.indices) if isinstance(self.indices, list) else self.indices
        features = torch.cat(self.features) if isinstance(self.features, list) else self.features
        order = torch.argsort(indices, stable=True)
        indices, features = indices[order], features[order]
        first = torch.ones_like(indices, dtype=torch.bool)
        first[1:] = indices[1:] != indices[:-1]
        shape = getattr(self, "_row_shape", None)
        features = features[first]
        return indices[first], features.reshape(len(features), *shape) if shape else features

    def reset(self) -> None:
        super().reset()
        self.__dict__.pop("_row_shape", None)


# ----------------------------------------------------------------------------------------------- scores
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def word_pair_spearman(
    vectors: np.ndarray, index: dict[str, int], pairs: Sequence[tuple[str, str, float]]
) -> tuple[float, float, float]:
    """``(spearman, pearson, oov_share)`` of cosine similarities against the human scores of ``pairs``; pairs with a
    word outside ``index`` are left out (gensim's ``evaluate_word_pairs`` with ``dummy4unknown=False``)."""
    from scipy import stats

    known = [(index[a], index[b], s) for a, b, s in pairs if a in index and b in index]
    oov = 1.0 - len(known) / max(len(pairs), 1)
    if len(known) < 3:
        return float("nan"), float("nan"), oov
    a, b, human = (np.array(c) for c in zip(*known))
    unit = _unit(vectors)
    model = (unit[a] * unit[b]).sum(-1)
    return float(stats.spearmanr(human, model).statistic), float(stats.pearsonr(human, model).statistic), oov


def analogy_accuracy(
    vectors: np.ndarray,
    index: dict[str, int],
    questions: Sequence[tuple[str, str, str, str]],
    restrict: int | None = 30000,
    chunk: int = 1024,
) -> tuple[float, float]:
    """``(accuracy, coverage)`` of 3CosAdd (``argmax_d cos(d, b - a + c)`` over unit vectors, excluding a, b, c) on
    ``(a, b, c, d)`` questions, among the ``restrict`` first words of ``index`` (the most frequent: gensim's
    ``restrict_vocab``); questions with a word outside them are left out, ``coverage`` is the share kept."""
    limit = len(vectors) if restrict is None else min(restrict, len(vectors))
    known = [[index[w] for w in q] for q in questions if all(w in index and index[w] < limit for w in q)]
    coverage = len(known) / max(len(questions), 1)
    if not known:
        return float("nan"), coverage
    unit = torch.from_numpy(_unit(vectors[:limit]).astype(np.float32))
    ids = torch.tensor(known)
    correct = 0
    for start in range(0, len(ids), chunk):
        q = ids[start : start + chunk]
        target = unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]]
        scores = _unit_t(target) @ unit.T
        scores.scatter_(1, q[:, :3], float("-inf"))
        correct += int((scores.argmax(1) == q[:, 3]).sum())
    return correct / len(known), coverage


def _unit_t(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def document_similarity_pearson(features: np.ndarray, human: np.ndarray) -> float:
    """Pearson correlation of the cosine similarities of the documents' features with the human similarity
    matrix, over the upper triangle (each pair once, no diagonal)."""
    from scipy import stats

    unit = _unit(features)
    model = unit @ unit.T
    upper = np.triu_indices(len(human), k=1)
    return float(stats.pearsonr(model[upper], human[upper]).statistic)


# ----------------------------------------------------------------------------------------------- protocols
class VocabularyProtocol(EvaluationProtocol):
    """Evaluation over the vocabulary: each batch is ``(word ids, -1)``; the method's features of the ids are its
    word vectors. Adds the word-similarity and analogy evaluators of the benchmarks named.

    Args:
        words: the vocabulary, in id order.
        similarity: word-similarity benchmarks (``reprzoo.datamodules.text.corpora.word_similarity`` names).
        analogies: evaluate the Google analogy questions.
        analogy_vocab: candidates (and question words) among this many most frequent words.
    """

    name = VOCABULARY

    def __init__(
        self,
        words: Sequence[str],
        similarity: Sequence[str] = ("wordsim353", "simlex999"),
        analogies: bool = True,
        analogy_vocab: int = 30000,
    ):
        self.words = list(words)
        self.similarity, self.analogies, self.analogy_vocab = tuple(similarity), analogies, analogy_vocab

    def read(self, batch: Any, dataloader_idx: int, num_loaders: int) -> EvaluationBatch:
        ids, labels = batch[0], batch[1]
        return EvaluationBatch(ids, labels, bank=False, with_bank=False, dataloader_idx=dataloader_idx, raw=batch)

    def evaluators(self) -> list[Evaluator]:
        from reprzoo.datamodules.text import corpora

        index = {w: i for i, w in enumerate(self.words)}
        pairs = {name: corpora.word_similarity(name) for name in self.similarity}
        questions = [q[1:] for q in corpora.analogies()] if self.analogies else None
        return [WordVectorEvaluator(index, pairs, questions, self.analogy_vocab)]


class WordVectorEvaluator(Evaluator):
    """Word similarity and analogies from the vectors of the whole vocabulary: ``{stage}/{benchmark}_spearman``
    and ``{stage}/{benchmark}_oov`` for each word-similarity benchmark, ``{stage}/analogy_acc`` and
    ``{stage}/analogy_coverage``."""

    protocols = (VOCABULARY,)

    def __init__(
        self,
        index: dict[str, int],
        pairs: dict[str, Sequence[tuple[str, str, float]]],
        questions: Sequence[tuple[str, str, str, str]] | None,
        analogy_vocab: int | None,
    ):
        self.index, self.pairs, self.questions, self.analogy_vocab = index, pairs, questions, analogy_vocab
        self.collected = IndexedFeatures()

    def metrics(self):
        return (self.collected,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        self.collected.update(batch.inputs, features)

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not self.collected.update_called:
            return
        ids, features = self.collected.compute()
        vectors = np.zeros((len(self.index), features.shape[1]), dtype=np.float32)
        vectors[ids.cpu().numpy()] = features.cpu().numpy()
        for name, pairs in self.pairs.items():
            spearman, _, oov = word_pair_spearman(vectors, self.index, pairs)
            log_fn(f"{stage}/{name}_spearman", spearman)
            log_fn(f"{stage}/{name}_oov", oov)
        if self.questions is not None:
            accuracy, coverage = analogy_accuracy(vectors, self.index, self.questions, self.analogy_vocab)
            log_fn(f"{stage}/analogy_acc", accuracy)
            log_fn(f"{stage}/analogy_coverage", coverage)


class DocumentSimilarityProtocol(EvaluationProtocol):
    """Evaluation on documents with a human similarity matrix (the Lee corpus): each batch is
    ``(inputs, document index)``; adds :class:`DocumentSimilarityEvaluator`."""

    name = DOCUMENT_SIMILARITY

    def __init__(self, human: np.ndarray, metric_name: str = "lee_pearson"):
        self.human, self.metric_name = np.asarray(human, dtype=np.float64), metric_name

    def read(self, batch: Any, dataloader_idx: int, num_loaders: int) -> EvaluationBatch:
        inputs, indices = batch[0], batch[1]
        return EvaluationBatch(inputs, indices, bank=False, with_bank=False, dataloader_idx=dataloader_idx, raw=batch)

    def evaluators(self) -> list[Evaluator]:
        return [DocumentSimilarityEvaluator(self.human, self.metric_name)]


class DocumentSimilarityEvaluator(Evaluator):
    """``{stage}/{metric_name}``: Pearson of the documents' cosine similarities with the human matrix."""

    protocols = (DOCUMENT_SIMILARITY,)

    def __init__(self, human: np.ndarray, metric_name: str = "lee_pearson"):
        self.human, self.metric_name = human, metric_name
        self.collected = IndexedFeatures()

    def metrics(self):
        return (self.collected,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        self.collected.update(labels, features)  # the protocol's "labels" are the documents' indices

    def compute_and_log(self, log_fn, stage, module) -> None:
        if not self.collected.update_called:
            return
        ids, features = self.collected.compute()
        if len(ids) != len(self.human):
            return  # a partial evaluation (limit_val_batches): the matrix needs every document
        log_fn(f"{stage}/{self.metric_name}", document_similarity_pearson(features.cpu().numpy(), self.human))


class HeldOutLossEvaluator(Evaluator):
    """``{stage}/{name}``: the mean of a module's own objective on the evaluation texts (a language model's
    next-token loss on held-out documents), for methods whose learning shows in what they model rather than in a
    similarity benchmark.

    Args:
        metric: a ``torchmetrics.MeanMetric`` registered on the module (its state syncs across ranks).
        loss: ``inputs -> scalar`` computed without gradients.
        name: the log name.
    """

    protocols = (DOCUMENT_SIMILARITY, "labelled_bank_and_queries")

    def __init__(self, metric, loss, name: str):
        self.metric, self.loss, self.name = metric, loss, name

    def metrics(self):
        return (self.metric,)

    def update(self, features, labels, *, bank, module, batch) -> None:
        if not bank:
            with torch.no_grad():
                if not torch.is_inference_mode_enabled() and any(
                    isinstance(t, torch.Tensor) and t.is_inference() for t in self.metric.metric_state.values()
                ):
                    # states reset in inference mode (the end of a ``trainer.validate``) cannot be updated in place
                    # outside it (validation during ``fit``): fresh states, before this epoch's first update
                    self.metric.reset()
                self.metric.update(self.loss(batch.inputs))

    def compute_and_log(self, log_fn, stage, module) -> None:
        if self.metric.update_called:
            log_fn(f"{stage}/{self.name}", self.metric.compute())


__all__ = [
    "DOCUMENT_SIMILARITY",
    "HeldOutLossEvaluator",
    "VOCABULARY",
    "DocumentSimilarityEvaluator",
    "DocumentSimilarityProtocol",
    "IndexedFeatures",
    "VocabularyProtocol",
    "WordVectorEvaluator",
    "analogy_accuracy",
    "document_similarity_pearson",
    "word_pair_spearman",
]
