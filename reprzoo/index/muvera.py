"""Fixed Dimensional Encodings (FDEs) of multi-vector sets: "MUVERA: Multi-Vector Retrieval via Fixed Dimensional
Encodings" (Jayaram, Dhulipala, Hadian, Lee, Mirrokni, NeurIPS 2024, arXiv:2405.19504).

A set of token vectors becomes one vector whose inner product approximates the Chamfer (MaxSim) similarity
``sum_q max_d <q, d>``, so a single-vector MIPS index retrieves candidates that MaxSim then re-ranks. Per repetition:
``k_sim`` random Gaussian hyperplanes (SimHash) split the space into ``2^k_sim`` buckets; each vector is projected
to ``d_proj`` dimensions (an AMS sketch: one random output coordinate with a random sign per input coordinate) and
added to its bucket. Queries sum their bucket, documents average it (so a query vector meets the centroid of the
document vectors sharing its bucket, a stand-in for its nearest one); a document's empty bucket takes the projected
vector whose SimHash pattern is nearest (Hamming) to the bucket's. The ``R_reps`` repetitions are concatenated,
then optionally count-sketched to ``final_dim``. The FDE dot product is ``R_reps`` times the per-repetition estimate.

Ours:
    - buckets are numbered by the sign pattern in plain binary (the authors' C++ numbers them in a Gray-code order);
      a fixed permutation of coordinates, so every inner product is the same;
    - torch and batched over a padded ``(n, m, dim)`` tensor, all-zero rows are padding (the zoo's multi-vector
      contract); the random matrices come from one ``torch.Generator`` seeded with ``seed`` (bit streams differ from
      the authors' C++, the distributions are theirs);
    - :func:`fde_search` (FDE candidates re-ranked by exact MaxSim) is a plain exact MIPS over the FDEs; the paper
      serves FDEs from DiskANN and adds ball carving / PQ, left to the index.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reprzoo.metrics.retrieval import maxsim_scores


@dataclass(frozen=True)
class FDEConfig:
    """The paper's FDE parameters (defaults: its main setting, R_reps 20 x 2^5 buckets x d_proj 16 = 10,240 dims).

    Attributes:
        dim: dimension of the input vectors.
        repetitions: ``R_reps``, independent partitions concatenated.
        simhash_projections: ``k_sim``, hyperplanes per repetition (``2^k_sim`` buckets; 0 = one bucket).
        projection_dim: ``d_proj`` of the inner AMS-sketch projection; None = identity (``d_proj = dim``).
        fill_empty: fill a document's empty buckets from its Hamming-nearest vector.
        final_dim: output size of the final count-sketch projection; None = no final projection.
        seed: seeds every random matrix.
    """

    dim: int
    repetitions: int = 20
    simhash_projections: int = 5
    projection_dim: int | None = 16
    fill_empty: bool = True
    final_dim: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.dim < 1 or self.repetitions < 1:
            raise ValueError(f"dim and repetitions must be >= 1, got {self.dim} and {self.repetitions}")
        if not 0 <= self.simhash_projections <= 16:
            raise ValueError(f"simhash_projections must be in [0, 16], got {self.simhash_projections}")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1 or None, got {self.projection_dim}")
        if self.final_dim is not None and self.final_dim < 1:
            raise ValueError(f"final_dim must be >= 1 or None, got {self.final_dim}")

    @property
    def buckets(self) -> int:
        return 2**self.simhash_projections

    @property
    def block_dim(self) -> int:
        return self.dim if self.projection_dim is None else self.projection_dim

    @property
    def output_dim(self) -> int:
        return self.final_dim if self.final_dim is not None else self.repetitions * self.buckets * self.block_dim


class FixedDimensionalEncoder:
    """Seeded FDE maps: :meth:`encode_queries` and :meth:`encode_documents` of ``(n, m, dim)`` padded sets (or one
    ``(m, dim)`` set) into ``(n, config.output_dim)`` (or ``(output_dim,)``), on the input's device. Document
    encoding holds an ``(n, m, 2^k_sim, k_sim)`` comparison for the empty-bucket fill: encode large corpora in
    chunks."""

    def __init__(self, config: FDEConfig) -> None:
        self.config = config
        c = config
        g = torch.Generator().manual_seed(c.seed)
        self.hyperplanes = torch.randn(c.repetitions, c.dim, c.simhash_projections, generator=g)
        if c.projection_dim is None:
            self.projections = None
        else:  # AMS sketch: input coordinate i -> output coordinate h(i) with sign s(i)
            target = torch.randint(0, c.projection_dim, (c.repetitions, c.dim), generator=g)
            sign = torch.randint(0, 2, (c.repetitions, c.dim), generator=g).float() * 2 - 1
            self.projections = torch.zeros(c.repetitions, c.dim, c.projection_dim)
            self.projections.scatter_(2, target[..., None], sign[..., None])
        self.bucket_bits = (torch.arange(c.buckets)[:, None] >> torch.arange(c.simhash_projections - 1, -1, -1)) & 1
        if c.final_dim is None:
            self.final_target = self.final_sign = None
        else:
            full = c.repetitions * c.buckets * c.block_dim
            self.final_target = torch.randint(0, c.final_dim, (full,), generator=g)
            self.final_sign = torch.randint(0, 2, (full,), generator=g).float() * 2 - 1

    def encode_queries(self, vectors: torch.Tensor) -> torch.Tensor:
        """Query FDEs: per bucket the SUM of the projected vectors (linear in the set)."""
        return self._encode(vectors, document=False)

    def encode_documents(self, vectors: torch.Tensor) -> torch.Tensor:
        """Document FDEs: per bucket the MEAN of the projected vectors, empty buckets filled when configured."""
        return self._encode(vectors, document=True)

    def _encode(self, vectors: torch.Tensor, document: bool) -> torch.Tensor:
        single = vectors.ndim == 2
        x = vectors[None] if single else vectors
        if x.ndim != 3 or x.shape[-1] != self.config.dim:
            raise ValueError(f"expected (n, m, {self.config.dim}) or (m, {self.config.dim}), got {tuple(vectors.shape)}")
        c, x = self.config, x.float()
        n, m, _ = x.shape
        dev = x.device
        real = x.abs().sum(-1) != 0  # (n, m)
        blocks = []
        for r in range(c.repetitions):
            bits = (x @ self.hyperplanes[r].to(dev) > 0).long()  # (n, m, k_sim)
            bucket = (
                (bits << torch.arange(c.simhash_projections - 1, -1, -1, device=dev)).sum(-1)
                if c.simhash_projections
                else bits.new_zeros(n, m)
            )
            projected = x if self.projections is None else x @ self.projections[r].to(dev)  # (n, m, d_proj)
            projected = projected * real[..., None]
            flat = (bucket + torch.arange(n, device=dev)[:, None] * c.buckets).reshape(-1)
            sums = torch.zeros(n * c.buckets, c.block_dim, device=dev).index_add_(0, flat, projected.reshape(-1, c.block_dim))
            sums = sums.view(n, c.buckets, c.block_dim)
            if document:
                counts = torch.zeros(n * c.buckets, device=dev).index_add_(0, flat, real.reshape(-1).float()).view(n, c.buckets)
                sums = sums / counts.clamp(min=1)[..., None]
                if c.fill_empty and c.simhash_projections:
                    hamming = (bits[:, :, None, :] != self.bucket_bits[None, None].to(dev)).sum(-1)  # (n, m, buckets)
                    hamming = hamming.masked_fill(~real[..., None], c.simhash_projections + 1)
                    nearest = hamming.argmin(1)  # (n, buckets): first token at the smallest distance
                    fill = torch.gather(projected, 1, nearest[..., None].expand(-1, -1, c.block_dim))
                    empty = (counts == 0) & real.any(1, keepdim=True)
                    sums = torch.where(empty[..., None], fill, sums)
            blocks.append(sums.reshape(n, -1))
        out = torch.cat(blocks, dim=1)
        if self.final_target is not None:
            target, sign = self.final_target.to(dev), self.final_sign.to(dev)
            out = torch.zeros(n, c.final_dim, device=dev).index_add_(1, target, out * sign)
        return out[0] if single else out


def fde_search(
    encoder: FixedDimensionalEncoder,
    queries: torch.Tensor,
    documents: torch.Tensor,
    k: int,
    candidates: int,
    document_fdes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MUVERA's retrieval: the top ``candidates`` documents by FDE inner product, re-ranked by exact MaxSim.

    Args:
        queries: ``(q, m, dim)`` padded query sets; documents: ``(n, m', dim)`` padded document sets.
        document_fdes: ``(n, output_dim)`` precomputed :meth:`~FixedDimensionalEncoder.encode_documents` (else computed).

    Returns:
        ``(scores, ids)``, each ``(q, min(k, candidates, n))``: MaxSim scores and document indices, best first.
    """
    if k < 1 or candidates < 1:
        raise ValueError(f"k and candidates must be >= 1, got {k} and {candidates}")
    fdes = encoder.encode_documents(documents) if document_fdes is None else document_fdes
    if fdes.shape[0] != documents.shape[0]:
        raise ValueError(f"{fdes.shape[0]} document FDEs for {documents.shape[0]} documents")
    candidates = min(candidates, documents.shape[0])
    k = min(k, candidates)
    shortlist = (encoder.encode_queries(queries) @ fdes.T).topk(candidates, dim=1).indices  # (q, candidates)
    scores = torch.stack([maxsim_scores(queries[i : i + 1], documents[shortlist[i]])[0] for i in range(len(queries))])
    best, order = scores.topk(k, dim=1)
    return best, torch.gather(shortlist, 1, order)
