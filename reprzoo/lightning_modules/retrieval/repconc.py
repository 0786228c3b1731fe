"""RepCONC: "Learning Discrete Representations via Constrained Clustering for Effective and Efficient Dense
Retrieval" (Zhan, Mao, Liu, Guo, Zhang & Ma, WSDM 2022, arXiv:2110.05789; the authors' code:
github.com/jingtaozhan/RepCONC).

A dual encoder trained jointly with product quantisation (PQ) of its document embeddings: each embedding is split
into M sub-vectors, each replaced by one of K centroids of its sub-space, so a document is stored as M codes. The
ranking loss is computed on the quantised documents, and its gradient updates the centroids and (straight through
the quantiser) the encoder; a small clustering loss (the squared quantisation error) keeps embeddings near their
centroids. Quantisation is constrained clustering: during training the batch's sub-vectors are assigned to the
centroids in equal shares (an optimal-transport problem solved by Sinkhorn-Knopp), which the paper shows is what
keeps the codes discriminative (without it most documents collapse onto a few centroids).
"""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.retrieval import DualEncoder
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.retrieval.dense import Tower
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.dense_retrieval import pq_assign, pq_decode, repconc_loss


class Codebook(nn.Module):
    """M sub-spaces of K centroids each, ``(M, K, dim / M)``; ``initialized`` records the warm start."""

    def __init__(self, subvectors: int, centroids: int, dim: int):
        super().__init__()
        if dim % subvectors:
            raise ValueError(f"the embedding width {dim} must split into {subvectors} sub-vectors")
        self.centroids = nn.Parameter(torch.randn(subvectors, centroids, dim // subvectors))
        self.register_buffer("initialized", torch.tensor(False))

    def codes(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(n, M)`` codes of continuous embeddings: nearest centroids (the index's encoding)."""
        return pq_assign(embeddings, self.centroids)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return pq_decode(self.codes(embeddings), self.centroids)


def _documents(parts: nn.ModuleDict, batch) -> torch.Tensor:
    return parts["codebook"](parts["backbone"](batch))


@register_method(
    title="Learning Discrete Representations via Constrained Clustering for Effective and Efficient Dense Retrieval",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2110.05789",
)
class RepCONC(TextEncoderModule):
    """Dual encoder + jointly trained product quantisation with the uniform-clustering constraint.

    Representation (what ``embed`` exports and validation ranks, by inner product): documents are their
    *reconstructed* (quantised) vectors ``(B, dim)``, the concatenation of their M chosen centroids, which is the
    score an IVF-PQ index computes from the codes; queries are continuous ``(B, dim)`` vectors (the query tower of
    a :class:`DualEncoder`). The codes themselves are ``model.codebook.codes(model.backbone(batch))`` (``(B, M)``
    integers in ``[0, K)``; M * log2(K) bits a document).

    Ours:
        - A small BERT trained from scratch, one encoder for queries and documents (the paper starts both from a
          trained dense retriever, STAR or ANCE); the representation is the backbone's pooled vector (the recipe:
          mean pooling; the paper's [CLS] state collapses to one vector in a from-scratch bert_tiny).
        - Centroids are warm-started from the first training batch's document sub-vectors (with noise); the paper
          warms up with OPQ over the whole corpus (and keeps its rotation). No OPQ rotation here.
        - In-batch negatives only; the paper adds mined hard negatives and a dynamic top-k of them.
        - Index time assigns each document to its nearest centroids (the equal-share constraint is a training-batch
          device: a single document has no batch to share with); the paper's IVF layer is the index's concern.
        - The centroids get AdamW's weight decay like the other weights (the authors use none).

    Args:
        subvectors: M, sub-spaces of the product quantiser.
        centroids: K, centroids per sub-space (256 in the paper: a byte per code).
        mse_weight: weight of the clustering (quantisation error) loss (1e-4 in the authors' scripts).
        centroid_lr_scale: the centroids' learning rate over the encoder's (the authors: 5e-4 vs 2e-5, 25x).
        constrained: equal-share assignment during training (False: nearest centroids, the paper's ablation).
        sinkhorn_epsilon, sinkhorn_iterations: the constrained assignment's solver (0.003 and 100 as the authors).
        temperature: divides the scores of the ranking loss (1 in the authors' scripts).
        kwargs: :class:`TextEncoderModule` options.
    """

    retrieval_similarity = "dot"

    def __init__(
        self,
        vocab_size: int | None = None,
        subvectors: int = 48,
        centroids: int = 256,
        mse_weight: float = 1e-4,
        centroid_lr_scale: float = 25.0,
        constrained: bool = True,
        sinkhorn_epsilon: float = 0.003,
        sinkhorn_iterations: int = 100,
        temperature: float = 1.0,
        **kwargs,
    ):
        super().__init__(vocab_size=vocab_size, **kwargs)
        self.codebook = Codebook(subvectors, centroids, self.feature_dim)

    def encoder(self) -> nn.Module:
        documents = Tower({"backbone": self.backbone, "codebook": self.codebook}, _documents, self.feature_dim)
        return DualEncoder(documents, self.backbone)

    def param_groups(self):
        rest = [(n, p) for n, p in self._named_trainable(exclude=("probe.", "codebook."))]
        centroids = [("codebook.centroids", self.codebook.centroids)]
        return [
            {"name": "model", "params": rest},
            {"name": "centroids", "params": centroids, "lr": self.effective_lr() * self.hparams.centroid_lr_scale},
        ]

    @torch.no_grad()
    def _warm_start(self, documents: torch.Tensor) -> None:
        m, k, d = self.codebook.centroids.shape
        sub = documents.reshape(-1, m, d)
        picks = torch.randint(len(sub), (m, k), device=sub.device)
        start = sub[picks, torch.arange(m, device=sub.device)[:, None]]  # (M, K, d)
        self.codebook.centroids.copy_(start + 0.1 * start.std() * torch.randn_like(start))
        self.codebook.initialized.fill_(True)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        queries, documents = self.backbone(views[0]), self.backbone(views[1])
        if not bool(self.codebook.initialized):
            self._warm_start(documents.detach())
        codes = pq_assign(
            documents.detach(), self.codebook.centroids, hp.constrained, hp.sinkhorn_epsilon, hp.sinkhorn_iterations
        )
        quantized = pq_decode(codes, self.codebook.centroids)
        loss = repconc_loss(queries, documents, quantized, hp.mse_weight, hp.temperature)
        used = torch.zeros(self.codebook.centroids.shape[:2], device=codes.device).scatter_(1, codes.T, 1.0)
        self.log("train/centroids_used", used.sum(1).mean())  # per sub-space, in this batch
        return TrainingOutput(loss, features=queries.detach(), embeddings=documents.detach())


__all__ = ["Codebook", "RepCONC"]
