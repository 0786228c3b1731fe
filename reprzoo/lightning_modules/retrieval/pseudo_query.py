"""Pseudo query embeddings: "Improving Document Representations by Generating Pseudo Query Embeddings for Dense
Retrieval" (Tang, Lu, Zhang, Wei, Wu, Yang, Xiong & Xie, ACL 2021, arXiv:2105.03599).

A bi-encoder compresses a document into one vector without knowing the query; here a document is instead
represented by several "pseudo queries": the centroids of a k-means clustering of its contextual token vectors,
each a facet of the document that some query may ask about. A query (its [CLS] vector) attends over a document's
centroids and is scored against their attention-weighted sum (the paper's Eqs.), which the training loss uses. For
retrieval with an approximate nearest-neighbour library the paper scores in two steps: the index returns the
documents of the centroids nearest the query by inner product (the maximum over a document's centroids), and the
attention score re-ranks those candidates.
"""

from __future__ import annotations

from torch import nn

from reprzoo.components.pooling import pool_tokens
from reprzoo.components.retrieval import DualEncoder
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.retrieval.dense import Tower, token_states
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.dense_retrieval import in_batch_ranking_loss, pseudo_query_scores, token_kmeans


def _centroids(parts: nn.ModuleDict, batch):
    states, mask = token_states(parts["backbone"], batch)
    config = parts["config"]
    return token_kmeans(states, mask, config.k, config.iterations)


def _query(parts: nn.ModuleDict, batch):
    states, mask = token_states(parts["backbone"], batch)
    return pool_tokens(states, mask, parts["config"].pooling)


class KMeansConfig(nn.Module):
    """The clustering's constants and the query's pooling, carried as a (parameter-free) module of the towers."""

    def __init__(self, k: int, iterations: int, pooling: str = "cls"):
        super().__init__()
        self.k, self.iterations, self.pooling = k, iterations, pooling


@register_method(
    title="Improving Document Representations by Generating Pseudo Query Embeddings for Dense Retrieval",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2105.03599",
)
class PseudoQueryEmbeddings(TextEncoderModule):
    """Documents as the k-means centroids of their token vectors, queries as their [CLS] vector, trained with the
    attention score and in-batch negatives.

    Representation: documents ``(B, k, H)`` centroids (``multi_vector``; a document with fewer than k tokens gets
    all-zero padding rows), queries ``(B, H)`` (the query tower of a :class:`DualEncoder`).
    ``retrieval_similarity="maxsim"``, which with one query vector is the maximum inner product over a document's
    centroids: the paper's first (index) step. Its second step, re-ranking the candidates by the attention score
    ``reprzoo.losses.dense_retrieval.pseudo_query_scores`` (what the model is trained on), is not part of the
    validation ranking (the zoo's similarities are ``dot``, ``cosine`` and ``maxsim``).

    Ours:
        - A small BERT trained from scratch, shared by queries and documents (the paper fine-tunes BERT-base).
        - k-means starts from k tokens evenly spaced over the document (deterministic, so a document always gets
          the same centroids) and runs a fixed number of Lloyd iterations; assignments carry no gradient, the
          centroids (means of their tokens) do.
        - In-batch negatives only (the paper adds BM25 hard negatives).
        - k = 4 clusters and 3 iterations by default, chosen here for a CPU and 128-token documents.

    Args:
        num_centroids: k, pseudo queries per document.
        kmeans_iterations: Lloyd iterations.
        temperature: divides the scores in the cross-entropy.
        query_pooling: the query vector: ``cls`` (the paper's [CLS] state) or ``mean`` of its token states (the
            Debian recipe: a from-scratch bert_tiny's [CLS] state collapses to one vector for every text).
        kwargs: :class:`TextEncoderModule` options.
    """

    representation_kind = "multi_vector"
    retrieval_similarity = "maxsim"

    def __init__(
        self,
        vocab_size: int | None = None,
        num_centroids: int = 4,
        kmeans_iterations: int = 3,
        temperature: float = 1.0,
        query_pooling: str = "cls",
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if num_centroids < 1 or kmeans_iterations < 0:
            raise ValueError(f"need num_centroids >= 1 and kmeans_iterations >= 0, got {num_centroids}, {kmeans_iterations}")

    def encoder(self) -> nn.Module:
        hp = self.hparams
        config = KMeansConfig(hp.num_centroids, hp.kmeans_iterations, hp.query_pooling)
        documents = Tower({"backbone": self.backbone, "config": config}, _centroids, self.feature_dim)
        return DualEncoder(documents, Tower({"backbone": self.backbone, "config": config}, _query, self.feature_dim))

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        towers = self.encoder()
        queries, centroids = towers.encode_query(views[0]), towers(views[1])
        loss = in_batch_ranking_loss(pseudo_query_scores(queries, centroids), self.hparams.temperature)
        return TrainingOutput(loss, features=queries.detach(), embeddings=queries.detach())


__all__ = ["PseudoQueryEmbeddings"]
