"""MRL: "Multivariate Representation Learning for Information Retrieval" (Zamani & Bendersky, SIGIR 2023,
arXiv:2304.14522).

Each query and document is a multivariate normal distribution with a diagonal covariance, ``N(mu, diag var)``, both
vectors produced by the encoder, and a document's relevance to a query is the negative KL divergence
``-KL(N_q || N_d)``. For a fixed query the KL is an inner product of two expanded vectors, one a function of the
query's distribution and one of the document's (the paper's rewrite, section 3.3), so an ordinary inner-product
(approximate) nearest-neighbour index serves the multivariate model: the expanded vectors are the exported
representation, and ranking them by ``dot`` ranks exactly by ``-KL`` (the same numbers, not only the same order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.pooling import pool_tokens
from reprzoo.components.retrieval import DualEncoder
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.retrieval.dense import Tower, token_states
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.dense_retrieval import in_batch_ranking_loss, kl_document_vector, kl_query_vector, negative_kl


class GaussianHeads(nn.Module):
    """Mean from the pooled token states (``pooling``: ``cls`` or ``mean``) and variance from the mean-pooled token
    states, each through a linear head; the variance is ``softplus(.) + min_variance`` (positive, bounded away
    from 0)."""

    def __init__(self, width: int, dim: int, min_variance: float, pooling: str = "cls"):
        super().__init__()
        self.mean, self.variance = nn.Linear(width, dim), nn.Linear(width, dim)
        self.min_variance, self.pooling = min_variance, pooling

    def forward(self, backbone: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
        states, mask = token_states(backbone, batch)
        mu = self.mean(pool_tokens(states, mask, self.pooling))
        var = F.softplus(self.variance(pool_tokens(states, mask, "mean"))) + self.min_variance
        return mu, var


def _query_vector(parts: nn.ModuleDict, batch) -> torch.Tensor:
    return kl_query_vector(*parts["heads"](parts["backbone"], batch))


def _document_vector(parts: nn.ModuleDict, batch) -> torch.Tensor:
    return kl_document_vector(*parts["heads"](parts["backbone"], batch))


@register_method(
    title="Multivariate Representation Learning for Information Retrieval",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2304.14522",
)
class MultivariateRetriever(TextEncoderModule):
    """Gaussian queries and documents scored by negative KL divergence, trained with in-batch negatives.

    Representation: ``2 dim + 2`` expanded vectors, documents ``[1, -1/2 sum(log var + mu^2/var), -1/(2 var),
    mu/var]`` and queries ``[1/2 sum log var + dim/2, 1, var + mu^2, mu]`` (the query tower of a
    :class:`DualEncoder`); ``retrieval_similarity="dot"``: their inner product is ``-KL(query || document)``.

    Ours:
        - A small BERT trained from scratch, shared by queries and documents; the mean reads the [CLS] state (or,
          ``mean_pooling="mean"`` as the Debian recipe, the mean token state: a from-scratch bert_tiny's [CLS]
          state collapses to one vector) and the variance the mean-pooled token states (softplus), each through
          its own linear head: the abstract does not fix the heads.
        - In-batch negatives only (the paper trains with hard negatives and knowledge distillation).
        - The expanded vectors carry the query's own constant (``1/2 sum log var_q + dim/2``) in one extra
          coordinate, so the inner product equals the KL score exactly rather than up to a per-query constant
          (the ranking is the same either way).

    Args:
        dim: k, the dimension of the distributions.
        mean_pooling: what the mean head reads: ``cls`` or ``mean`` (of the token states).
        min_variance: floor of the variances.
        temperature: divides the -KL scores in the cross-entropy.
        kwargs: :class:`TextEncoderModule` options.
    """

    retrieval_similarity = "dot"

    def __init__(
        self,
        vocab_size: int | None = None,
        dim: int = 64,
        min_variance: float = 1e-2,
        temperature: float = 1.0,
        mean_pooling: str = "cls",
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        if min_variance <= 0:
            raise ValueError(f"min_variance must be > 0, got {min_variance}")
        self.heads = GaussianHeads(self.feature_dim, dim, min_variance, mean_pooling)
        self.resize_probe(dim)

    def distribution(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, var)``, each ``(B, dim)``, of a tokenised batch."""
        return self.heads(self.backbone, batch)

    def encoder(self) -> nn.Module:
        parts = {"backbone": self.backbone, "heads": self.heads}
        width = 2 * self.hparams.dim + 2
        return DualEncoder(Tower(parts, _document_vector, width), Tower(parts, _query_vector, width))

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        mu_q, var_q = self.distribution(views[0])
        mu_d, var_d = self.distribution(views[1])
        scores = negative_kl(mu_q, var_q, mu_d, var_d)
        loss = in_batch_ranking_loss(scores, self.hparams.temperature)
        self.log("train/mean_variance", var_d.detach().mean())
        return TrainingOutput(loss, features=mu_q.detach(), embeddings=mu_q.detach())


__all__ = ["GaussianHeads", "MultivariateRetriever"]
