"""Objectives of code representation learning (CodeSage, Zhang et al., ICLR 2024, arXiv:2402.01935).

- :func:`code_denoising_mask`: stage I's token-level denoising. Each sequence is either *identifier deobfuscation*
  (every token of the identifiers a function defines is masked, all their occurrences, so the names must be
  inferred from what the code does) or *random masking* (a rate of the ordinary tokens), and masked tokens are always
  replaced by ``[MASK]`` ("full mask": none of BERT's 10% random / 10% kept tokens, which CodeSage found to hurt
  code).
- :func:`hard_negative_contrastive`: stage II's bimodal contrastive loss with in-batch negatives reweighted towards
  the hardest ones (the importance weights of Robinson et al., 2021): ``w_ij ∝ exp(beta * s_ij)``, normalised to mean
  one over the negatives (``beta = 0`` is InfoNCE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def code_denoising_mask(
    ids: torch.Tensor,
    maskable: torch.Tensor,
    identifiers: torch.Tensor,
    rate: float = 0.15,
    dobf_probability: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which tokens stage I masks: ``(n, length)`` booleans.

    Args:
        ids: ``(n, length)`` token ids (only the shape and device are read).
        maskable: ``(n, length)`` booleans: real, non-special tokens.
        identifiers: ``(n, length)`` booleans: tokens of the function's own identifiers (deobfuscation targets).
        rate: share of the maskable tokens that random masking hides.
        dobf_probability: chance that a sequence with identifiers is deobfuscated instead of randomly masked.
        generator: random source.
    """
    if ids.shape != maskable.shape or ids.shape != identifiers.shape:
        raise ValueError(f"ids {tuple(ids.shape)}, maskable {tuple(maskable.shape)}, identifiers {tuple(identifiers.shape)}")
    if not 0 < rate <= 1 or not 0 <= dobf_probability <= 1:
        raise ValueError(f"need 0 < rate <= 1 and 0 <= dobf_probability <= 1, got {rate}, {dobf_probability}")
    identifiers = identifiers & maskable
    draw = torch.rand(ids.shape[0], generator=generator, device="cpu").to(ids.device)
    dobf = (draw < dobf_probability) & identifiers.any(dim=1)
    random = (torch.rand(ids.shape, generator=generator, device="cpu").to(ids.device) < rate) & maskable
    return torch.where(dobf[:, None], identifiers, random)


def hard_negative_contrastive(
    queries: torch.Tensor, documents: torch.Tensor, temperature: float = 0.05, beta: float = 1.0
) -> torch.Tensor:
    """Contrastive loss of ``n`` (query, document) pairs with the other documents as reweighted negatives.

    ``loss_i = -s_ii + log(exp(s_ii) + sum_{j != i} w_ij exp(s_ij))``, ``s = cos(q, d) / temperature``,
    ``w_ij = (n - 1) softmax_{j != i}(beta * s_ij)`` (no gradient through the weights).

    Args:
        queries: ``(n, dim)`` embeddings.
        documents: ``(n, dim)`` embeddings; row i is query i's positive.
        temperature: of the cosine similarities.
        beta: hardness concentration; 0 gives InfoNCE.
    """
    if queries.ndim != 2 or queries.shape != documents.shape:
        raise ValueError(f"expected two (n, dim) batches, got {tuple(queries.shape)} and {tuple(documents.shape)}")
    if queries.shape[0] < 2:
        raise ValueError("need at least two pairs: the other documents are the negatives")
    if temperature <= 0 or beta < 0:
        raise ValueError(f"need temperature > 0 and beta >= 0, got {temperature}, {beta}")
    n = queries.shape[0]
    s = F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=s.device)
    weights = torch.softmax((beta * s.detach()).masked_fill(eye, float("-inf")), dim=1) * (n - 1)
    log_weights = torch.where(eye, torch.zeros_like(s), weights.clamp_min(1e-30).log())
    return F.cross_entropy(s + log_weights, torch.arange(n, device=s.device))


__all__ = ["code_denoising_mask", "hard_negative_contrastive"]
