"""Objectives of variable-length (adaptive token count) representations, as pure tensor functions.

- ALIT: "Adaptive Length Image Tokenization via Recurrent Allocation" (Duggal et al., 2024, arXiv:2411.02393):
  a reconstruction loss at every recurrent rollout (each rollout adds latent tokens), weighted per rollout, and
  dynamic halting of the image patches that are already reconstructed.
- KARL: "Single-pass Adaptive Image Tokenization for Minimum Program Search" (Duggal et al., 2025,
  arXiv:2507.07995): a halting head trained, in the manner of upside-down RL, to halt every latent token beyond the
  count that reached a desired reconstruction quality; the quality command is a discretised reconstruction error.
- Nugget: "Nugget: Neural Agglomerative Embeddings of Text" (Qin & Van Durme, ICML 2023, arXiv:2209.02219): top-k
  selection of token encodings by a scorer (k a fraction of the length), and the residual connection that adds the
  scores to the decoder's attention logits so that the scorer is trained through the decoder.

Sequences are ``(batch, tokens, dim)``; nothing here knows images except :func:`patchify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

#: ALIT's per-rollout loss weights (the authors' code; rollouts past the fourth weigh 1): early rollouts, with few
#: tokens, are weighted up.
ALIT_ROLLOUT_WEIGHTS = (2.5, 2.0, 1.5, 1.25)

#: ALIT's halting thresholds in the released code (``adaptive_tokenizers/configs``): the continuous (VAE) tokenizer
#: masks a patch whose decoded code is within this mean absolute error of the ground truth ...
ALIT_VAE_HALTING_THRESHOLD = 0.025
#: ... and the VQGAN tokenizer samples the masking of a patch with the probability its decoded logits give the
#: ground-truth code, wherever that probability is at least this.
ALIT_VQGAN_HALTING_THRESHOLD = 0.55


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Images ``(batch, channels, H, W)`` as non-overlapping patches ``(batch, H/p * W/p, p * p * channels)`` in
    raster order, each patch flattened as ``(row, column, channel)``: the reconstruction targets of a pixel decoder."""
    if images.ndim != 4:
        raise ValueError(f"images must be (batch, channels, height, width), got shape {tuple(images.shape)}")
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {(H, W)} is not divisible by patch_size={p}")
    x = images.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


def alit_rollout_weights(num_rollouts: int) -> list[float]:
    """ALIT's loss weight of each rollout: 2.5, 2.0, 1.5, 1.25, then 1.0."""
    if num_rollouts < 1:
        raise ValueError(f"num_rollouts must be at least 1, got {num_rollouts}")
    return [ALIT_ROLLOUT_WEIGHTS[i] if i < len(ALIT_ROLLOUT_WEIGHTS) else 1.0 for i in range(num_rollouts)]


def budget_reconstruction_loss(
    reconstructions: Sequence[torch.Tensor], target: torch.Tensor, weights: Sequence[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sum over token budgets (ALIT's rollouts) of weighted mean squared reconstruction errors.

    ALIT (arXiv:2411.02393, Sec. 3) decodes the image from the latent tokens after every rollout and sums the
    reconstruction losses of all rollouts, so that every prefix of the growing token set reconstructs the image.

    Args:
        reconstructions: one prediction per budget, each shaped like ``target`` (e.g. ``(batch, patches, dim)``).
        target: what is reconstructed; no gradient flows into it.
        weights: loss weight per budget (default 1 each).

    Returns:
        ``(total, per_budget)``: the weighted sum, and the unweighted mean squared error of each budget ``(budgets,)``.
    """
    if len(reconstructions) == 0:
        raise ValueError("reconstructions must hold at least one prediction")
    weights = [1.0] * len(reconstructions) if weights is None else list(weights)
    if len(weights) != len(reconstructions):
        raise ValueError(f"got {len(weights)} weights for {len(reconstructions)} reconstructions")
    target = target.detach()
    for r in reconstructions:
        if r.shape != target.shape:
            raise ValueError(f"reconstruction shape {tuple(r.shape)} differs from target shape {tuple(target.shape)}")
    per_budget = torch.stack([F.mse_loss(r, target) for r in reconstructions])
    return (per_budget * per_budget.new_tensor(weights)).sum(), per_budget


def reconstructed_tokens(
    reconstruction: torch.Tensor, target: torch.Tensor, threshold: float = ALIT_VAE_HALTING_THRESHOLD
) -> torch.Tensor:
    """ALIT's dynamic halting for continuous targets (the released ``AdaptiveVAE.perform_dynamic_halting``): the
    tokens whose mean absolute reconstruction error is below ``threshold`` (the authors' 0.025 on VAE codes).

    Those image tokens are replaced by a mask token in later rollouts, so that new latent tokens attend to what is
    not yet explained (arXiv:2411.02393, Sec. 3, "adaptive memory"). Returns a boolean ``(batch, tokens)``. (The
    released VAE code writes the mask through ``drop_mask[mask][:] = 1.``, which fills a copy, so there it never
    masks; this is the rule it states.)
    """
    if reconstruction.shape != target.shape or reconstruction.ndim != 3:
        raise ValueError(
            f"reconstruction and target must both be (batch, tokens, dim), got {tuple(reconstruction.shape)} and "
            f"{tuple(target.shape)}"
        )
    return (reconstruction.detach() - target.detach()).abs().mean(-1) < threshold


def sampled_halting(
    gt_probability: torch.Tensor, threshold: float = ALIT_VQGAN_HALTING_THRESHOLD, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ALIT's dynamic halting for discrete targets (the released ``AdaptiveVQGAN.perform_dynamic_halting``): each
    image token is masked with probability p, the probability the decoder gives its ground-truth code
    (``torch.bernoulli(p)``), and never where p < ``threshold`` (0.55). Returns a boolean mask shaped like ``p``."""
    if bool((gt_probability < 0).any()) or bool((gt_probability > 1).any()):
        raise ValueError("gt_probability must lie in [0, 1]")
    p = gt_probability.detach()
    return torch.bernoulli(p, generator=generator).bool() & (p >= threshold)


def per_sample_l1(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per sample ``(batch,)``: KARL's measure of reconstruction quality, without gradient."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(reconstruction.shape)} and {tuple(target.shape)}")
    return (reconstruction.detach() - target.detach()).abs().flatten(1).mean(1)


def discretize_loss(losses: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """KARL's discretised quality command: the index of the smallest bin value at or above each loss (the last bin
    where none is). ``bins`` must be increasing; returns indices shaped like ``losses``."""
    if bins.ndim != 1 or bins.numel() == 0 or (bins.numel() > 1 and not bool((bins[1:] > bins[:-1]).all())):
        raise ValueError("bins must be a non-empty increasing 1-D tensor")
    index = torch.searchsorted(bins.to(losses.device, losses.dtype), losses.detach().contiguous(), right=False)
    return index.clamp(max=bins.numel() - 1)


def halting_targets(num_tokens: int, num_active: torch.Tensor) -> torch.Tensor:
    """KARL's halting labels ``(batch, num_tokens)``: 0 (continue) for the first ``num_active[b]`` latent tokens,
    1 (halt) for the rest."""
    num_active = torch.as_tensor(num_active)
    if num_active.ndim != 1:
        raise ValueError(f"num_active must be (batch,), got shape {tuple(num_active.shape)}")
    if bool((num_active < 0).any()) or bool((num_active > num_tokens).any()):
        raise ValueError(f"num_active must lie in [0, {num_tokens}]")
    positions = torch.arange(num_tokens, device=num_active.device)
    return (positions[None, :] >= num_active[:, None]).float()


def halting_loss(halt_logits: torch.Tensor, num_active: torch.Tensor) -> torch.Tensor:
    """KARL's halting objective: binary cross-entropy of the per-token halting logits against
    :func:`halting_targets`, averaged separately over the active and over the halted tokens and summed (as the
    authors' code does, so that a few halted tokens weigh as much as many active ones).

    In the first ("estimate complexity") pass every token of the budget is active; in the second pass, given the
    budget of the first plus ``delta`` tokens and conditioned on the quality the first pass reached, the last
    ``delta`` tokens must halt: the encoder learns to use no more tokens than that quality needs.

    Args:
        halt_logits: ``(batch, tokens)``.
        num_active: ``(batch,)`` count of leading tokens that must stay active.
    """
    if halt_logits.ndim != 2:
        raise ValueError(f"halt_logits must be (batch, tokens), got shape {tuple(halt_logits.shape)}")
    targets = halting_targets(halt_logits.shape[1], num_active.to(halt_logits.device))
    if targets.shape[0] != halt_logits.shape[0]:
        raise ValueError(f"num_active has {targets.shape[0]} entries for a batch of {halt_logits.shape[0]}")
    bce = F.binary_cross_entropy_with_logits(halt_logits, targets, reduction="none")
    loss = halt_logits.new_zeros(())
    for label in (0.0, 1.0):
        selected = targets == label
        if selected.any():
            loss = loss + bce[selected].mean()
    return loss


# ---------------------------------------------------------------------------------------------------- Nugget
@dataclass
class Nuggets:
    """Selected token encodings.

    Attributes:
        encodings: ``(batch, k, dim)``, in input order; rows past a sequence's own count are padding.
        scores: the scorer's logits of the selected tokens ``(batch, k)`` (carrying gradient).
        index: positions of the selected tokens in the input ``(batch, k)``.
        mask: ``(batch, k)``, True for real nuggets.
    """

    encodings: torch.Tensor
    scores: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor


def nugget_counts(lengths: torch.Tensor, ratio: float) -> torch.Tensor:
    """Nuggets per sequence: ceil(ratio * length), at least 1 and at most the length."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
    counts = torch.ceil(lengths.to(torch.float64) * ratio).to(torch.int64)
    return torch.minimum(counts.clamp(min=1), lengths.to(torch.int64))


def select_nuggets(
    encodings: torch.Tensor, scores: torch.Tensor, ratio: float, padding_mask: torch.Tensor | None = None
) -> Nuggets:
    """Nugget's selection: the top ceil(ratio * length) tokens of each sequence by score, kept in input order.

    The selection itself is not differentiable; the scores of the selected tokens are returned so that
    :func:`nugget_attention_bias` can route the decoder's gradient into the scorer.

    Args:
        encodings: token encodings ``(batch, tokens, dim)``.
        scores: scorer logits ``(batch, tokens)``.
        ratio: nuggets per token.
        padding_mask: ``(batch, tokens)``, True for real tokens (text batches); ``None``: all real.
    """
    if encodings.ndim != 3 or scores.shape != encodings.shape[:2]:
        raise ValueError(
            f"encodings must be (batch, tokens, dim) and scores (batch, tokens), got {tuple(encodings.shape)} and "
            f"{tuple(scores.shape)}"
        )
    if padding_mask is None:
        padding_mask = torch.ones_like(scores, dtype=torch.bool)
    counts = nugget_counts(padding_mask.sum(1), ratio)
    k = int(counts.max())
    ranking = scores.detach().masked_fill(~padding_mask, float("-inf"))
    top = ranking.topk(k, dim=1).indices  # (batch, k), best first
    mask = torch.arange(k, device=scores.device)[None, :] < counts[:, None]
    # back to input order; padding rows sort last
    order_key = top.masked_fill(~mask, encodings.shape[1])
    index = top.gather(1, order_key.argsort(dim=1))
    mask = mask.gather(1, order_key.argsort(dim=1))
    selected = encodings.gather(1, index.unsqueeze(-1).expand(-1, -1, encodings.shape[-1]))
    return Nuggets(selected, scores.gather(1, index), index, mask)


def nugget_attention_bias(nuggets: Nuggets, residual: Literal["residual", "straight_through"] = "residual") -> torch.Tensor:
    """The additive attention bias ``(batch, k)`` on the decoder's attention logits to each nugget.

    Nugget's residual connection (Qin & Van Durme, 2023, Sec. 3): a_ij = q_i^T k_j + s_j, so that the decoder's
    loss reaches the scorer through the attention weights. ``straight_through`` adds s_j - stopgrad(s_j) instead
    (the authors' later package default): zero in the forward pass, the same gradient. Padding nuggets get -inf.
    """
    if residual == "residual":
        bias = nuggets.scores
    elif residual == "straight_through":
        bias = nuggets.scores - nuggets.scores.detach()
    else:
        raise ValueError(f"residual must be 'residual' or 'straight_through', got {residual!r}")
    return bias.masked_fill(~nuggets.mask, float("-inf"))
