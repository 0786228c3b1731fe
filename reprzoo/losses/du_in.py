"""Du-IN: "Du-IN: Discrete units-guided mask modeling for decoding speech from Intracranial Neural signals" (Zheng,
Wang, Zhang, Wu & Wang, NeurIPS 2024, arXiv:2405.11459).

Pure functions of its two stages:

- the vector quantizer of the Du-IN VQ-VAE (the LaBraM-style normalised EMA codebook of the authors' code):
  nearest codes on the unit sphere, the commitment loss, the EMA update of the codebook towards the normalised mean
  of the vectors assigned to each code, and the spherical k-means that initialises the codebook;
- the masked code modelling of the Du-IN MAE: random patch masks of a fixed ratio and the cross-entropy of the
  predicted codebook indices (BEiT-style), on the masked patches or, with the authors' symmetric masking, on the
  masked patches of a mask and of its complement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------- vector quantizer
def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of the codebook row nearest to each vector (squared Euclidean distance).

    Args:
        z: ``(..., d)`` vectors (Du-IN: L2-normalised, so the nearest code is the most cosine-similar one).
        codebook: ``(K, d)`` codes.
    Returns:
        ``(...)`` long indices in ``[0, K)``.
    """
    if codebook.ndim != 2 or z.shape[-1] != codebook.shape[1]:
        raise ValueError(f"z (..., d) and codebook (K, d) disagree: {tuple(z.shape)} and {tuple(codebook.shape)}")
    flat = z.reshape(-1, z.shape[-1])
    distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None]
    return distances.argmin(dim=1).reshape(z.shape[:-1])


def commitment_loss(z_e: torch.Tensor, z_q: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """``beta * mean((z_e - sg[z_q])^2)``: the encoder's commitment to its codes (the codebook itself learns by EMA,
    so there is no codebook term).

    Args:
        z_e: ``(..., d)`` encoder outputs.
        z_q: ``(..., d)`` their codes.
        beta: weight (1 in the authors' code).
    """
    if z_e.shape != z_q.shape:
        raise ValueError(f"z_e and z_q must have the same shape, got {tuple(z_e.shape)} and {tuple(z_q.shape)}")
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    return beta * F.mse_loss(z_e, z_q.detach())


def ema_codebook_update(codebook: torch.Tensor, z: torch.Tensor, codes: torch.Tensor, decay: float = 0.99) -> torch.Tensor:
    """The normalised EMA step of the codebook: each code used in the batch moves to
    ``l2norm(decay * e_k + (1 - decay) * l2norm(mean of the z assigned to k))``; unused codes keep their value (and
    are re-normalised).

    Args:
        codebook: ``(K, d)`` L2-normalised codes.
        z: ``(n, d)`` the batch's (normalised) encoder outputs.
        codes: ``(n,)`` their nearest codes.
        decay: EMA decay (0.99).
    Returns:
        the new ``(K, d)`` codebook (no gradient).
    """
    if z.ndim != 2 or codes.shape != z.shape[:1] or codebook.ndim != 2 or codebook.shape[1] != z.shape[1]:
        raise ValueError(
            f"need codebook (K, d), z (n, d), codes (n,); got {tuple(codebook.shape)}, {tuple(z.shape)}, {tuple(codes.shape)}"
        )
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    with torch.no_grad():
        one_hot = F.one_hot(codes, codebook.shape[0]).to(z.dtype)  # (n, K)
        counts = one_hot.sum(0)
        sums = one_hot.t() @ z
        means = F.normalize(sums / counts.clamp(min=1)[:, None], dim=1)
        target = torch.where(counts[:, None] > 0, means, codebook)
        return F.normalize(decay * codebook + (1 - decay) * target, dim=1)


def spherical_kmeans(
    samples: torch.Tensor,
    k: int,
    iterations: int = 10,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """K-means by cosine similarity (Lloyd's steps on the unit sphere): the k-means initialisation of the codebook.

    Args:
        samples: ``(n, d)`` vectors (normalised inside).
        k: clusters.
        iterations: Lloyd steps (10 in the authors' code).
        init: ``(k, d)`` starting centroids; ``None`` draws ``k`` samples (without replacement when ``n >= k``).
        generator: random generator of that draw.
    Returns:
        ``(k, d)`` L2-normalised centroids; a cluster left empty keeps its previous centroid.
    """
    if samples.ndim != 2 or len(samples) == 0:
        raise ValueError(f"samples must be a non-empty (n, d) tensor, got {tuple(samples.shape)}")
    if k < 1 or iterations < 0:
        raise ValueError(f"need k >= 1 and iterations >= 0, got k={k}, iterations={iterations}")
    samples = F.normalize(samples.detach(), dim=1)
    n = len(samples)
    if init is None:
        pick = torch.randperm(n, generator=generator)[:k] if n >= k else torch.randint(0, n, (k,), generator=generator)
        init = samples[pick.to(samples.device)]
    if init.shape != (k, samples.shape[1]):
        raise ValueError(f"init must be ({k}, {samples.shape[1]}), got {tuple(init.shape)}")
    centroids = F.normalize(init.detach().to(samples), dim=1)
    for _ in range(iterations):
        assigned = (samples @ centroids.t()).argmax(dim=1)
        one_hot = F.one_hot(assigned, k).to(samples.dtype)
        counts = one_hot.sum(0)
        sums = one_hot.t() @ samples
        centroids = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), centroids)
    return centroids


# ----------------------------------------------------------------------------------------------- masked code modelling
def random_patch_mask(
    batch: int, num_patches: int, mask_ratio: float, device=None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random mask per sample with exactly ``num_patches - int(num_patches * (1 - mask_ratio))`` masked patches
    (the authors' ``gen_mask``).

    Returns:
        ``(batch, num_patches)`` bool, True where a patch is masked.
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    if num_patches < 2:
        raise ValueError(f"masking needs at least 2 patches, got {num_patches}")
    keep = min(max(int(num_patches * (1 - mask_ratio)), 1), num_patches - 1)  # at least one of each
    ranks = torch.rand(batch, num_patches, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks >= keep).to(device)


def masked_code_cross_entropy(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of the predicted codebook indices over the masked patches.

    Args:
        logits: ``(B, N, K)`` predictions over the K codes.
        codes: ``(B, N)`` the frozen tokenizer's codes.
        mask: ``(B, N)`` bool, the patches that count.
    """
    if logits.ndim != 3 or codes.shape != logits.shape[:2] or mask.shape != codes.shape:
        raise ValueError(
            f"need logits (B, N, K), codes and mask (B, N); got {tuple(logits.shape)}, {tuple(codes.shape)}, {tuple(mask.shape)}"
        )
    if not bool(mask.any()):
        raise ValueError("the mask selects no patch")
    return F.cross_entropy(logits[mask], codes[mask])


def symmetric_masked_code_cross_entropy(
    logits_masked: torch.Tensor, logits_complement: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Symmetric masking (the authors' code, after LaBraM): one pass masks ``mask``, a second masks its complement;
    each patch is predicted by the pass in which it was hidden, and the cross-entropy is averaged over all patches.

    Args:
        logits_masked: ``(B, N, K)`` predictions of the pass with ``mask`` hidden.
        logits_complement: ``(B, N, K)`` predictions of the pass with ``~mask`` hidden.
        codes: ``(B, N)`` targets.
        mask: ``(B, N)`` bool.
    """
    if logits_masked.shape != logits_complement.shape:
        raise ValueError(f"the two passes disagree: {tuple(logits_masked.shape)} and {tuple(logits_complement.shape)}")
    combined = torch.where(mask[..., None], logits_masked, logits_complement)
    return masked_code_cross_entropy(combined, codes, torch.ones_like(mask, dtype=torch.bool))


__all__ = [
    "commitment_loss",
    "ema_codebook_update",
    "masked_code_cross_entropy",
    "nearest_codes",
    "random_patch_mask",
    "spherical_kmeans",
    "symmetric_masked_code_cross_entropy",
]
