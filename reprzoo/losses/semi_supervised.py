"""Losses of semi-supervised consistency: FixMatch's confidence-masked pseudo-labels and ShrinkMatch's shrunk class
space for the samples below the threshold.

- "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence" (Sohn et al., NeurIPS 2020,
  arXiv:2001.07685), Eq. 2.
- "Shrinking Class Space for Enhanced Certainty in Semi-Supervised Learning" (Yang, Zhao, Qi, Qiao, Shi & Zhao,
  ICCV 2023, arXiv:2308.06777), Sec. 3.2-3.3, as the authors' ``shrink_loss`` (github.com/LiheYoung/ShrinkMatch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(probs_weak: torch.Tensor, logits_strong: torch.Tensor, threshold: float) -> None:
    if probs_weak.ndim != 2 or probs_weak.shape != logits_strong.shape:
        raise ValueError(
            f"weak probabilities and strong logits must both be (batch, classes), got {tuple(probs_weak.shape)} and "
            f"{tuple(logits_strong.shape)}"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")


def align_distribution(probs: torch.Tensor, class_prior: torch.Tensor) -> torch.Tensor:
    """Distribution alignment (ReMixMatch, arXiv:1911.09785, Sec. 3.2, as ShrinkMatch's code applies it): each row
    of ``probs`` divided by the running mean prediction ``class_prior`` (``(classes,)``), renormalised."""
    if class_prior.shape != probs.shape[-1:]:
        raise ValueError(f"class_prior must be ({probs.shape[-1]},), got {tuple(class_prior.shape)}")
    aligned = probs / class_prior.clamp_min(1e-12)
    return aligned / aligned.sum(dim=-1, keepdim=True)


def fixmatch_loss(
    probs_weak: torch.Tensor, logits_strong: torch.Tensor, threshold: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's unlabelled loss: ``mean_b 1[max p_b >= threshold] * CE(logits_strong_b, argmax p_b)`` with
    ``p = probs_weak`` taken without gradient (the pseudo-label is a fixed target).

    Args:
        probs_weak: ``(batch, classes)`` predicted probabilities of the weakly augmented unlabelled samples
            (``softmax`` of the classifier's scores; detached here).
        logits_strong: ``(batch, classes)`` scores of their strongly augmented views.
        threshold: confidence ``tau`` above which a pseudo-label is used (0.95 in the paper).

    Returns:
        The loss (a scalar; averaged over the whole unlabelled batch, masked samples count as 0) and the mask
        ``(batch,)`` of confident samples (float).
    """
    _check_pair(probs_weak, logits_strong, threshold)
    if len(probs_weak) == 0:
        return logits_strong.sum() * 0.0, logits_strong.new_zeros(0)
    confidence, pseudo_labels = probs_weak.detach().max(dim=-1)
    mask = (confidence >= threshold).float()
    loss = (F.cross_entropy(logits_strong, pseudo_labels, reduction="none") * mask).mean()
    return loss, mask


def shrunk_class_space(probs: torch.Tensor, threshold: float = 0.95) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ShrinkMatch's shrunk class space of each sample: its top-1 class and the classes ranked ``c`` and below, with
    the smallest ``c >= 2`` whose renormalised top-1 confidence ``p_(1) / (p_(1) + sum_{j >= c} p_(j))`` reaches
    ``threshold`` (ranks from 0, by decreasing probability: the removed classes ``1 .. c-1`` are the ones most
    confused with the top-1). When no ``c`` reaches it, the space is the top-1 and the last class (``c = C-1``)
    and the sample is marked as not passing, as in the authors' loop.

    Args:
        probs: ``(batch, classes)`` probabilities of the weak views (needs at least 3 classes).
        threshold: the confidence threshold.

    Returns:
        ``keep``: boolean ``(batch, classes)`` mask of the classes in each sample's shrunk space (in class order);
        ``confidence``: ``(batch,)`` renormalised top-1 confidence in it; ``passed``: boolean ``(batch,)``,
        whether it reaches ``threshold``.
    """
    if probs.ndim != 2 or probs.shape[1] < 3:
        raise ValueError(f"probs must be (batch, classes) with at least 3 classes, got {tuple(probs.shape)}")
    batch, classes = probs.shape
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # tails[:, c] = sum of the probabilities ranked c and below, for c = 2 .. C-1
    tails = sorted_probs.flip(-1).cumsum(-1).flip(-1)[:, 2:]
    candidates = sorted_probs[:, :1] / (sorted_probs[:, :1] + tails)  # (batch, C-2), non-decreasing in c
    reaches = candidates >= threshold
    first = torch.where(reaches.any(-1), reaches.float().argmax(-1), torch.full_like(order[:, 0], classes - 3))
    cut = first + 2  # the first kept rank after the top-1
    confidence = candidates.gather(1, first[:, None])[:, 0]
    ranks = torch.arange(classes, device=probs.device).expand(batch, -1)
    keep_sorted = (ranks == 0) | (ranks >= cut[:, None])
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return keep, confidence, confidence >= threshold


def shrink_loss(
    probs_weak: torch.Tensor, logits_strong: torch.Tensor, threshold: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """ShrinkMatch's loss on the uncertain samples (``max p_b < threshold``, ``p = probs_weak`` without
    gradient): cross-entropy of ``logits_strong`` restricted to the shrunk class space (:func:`shrunk_class_space`)
    towards the top-1 class, weighted by the original top-1 confidence ``max p_b`` (reweighting principle 1) and
    by whether the shrunk confidence reaches the threshold; summed and divided by the whole batch size.

    The second reweighting (by the moving ratio of certain samples) is the caller's, which keeps that state.

    Args:
        probs_weak: ``(batch, classes)`` predicted probabilities of the weak unlabelled views (detached here).
        logits_strong: ``(batch, classes)`` scores of the strong views (the authors' auxiliary head).
        threshold: the confidence threshold (0.95).

    Returns:
        The loss (scalar) and the number of classes removed for each uncertain sample (``(n_uncertain,)``, for
        logging: ``c - 1`` in the authors' indexing).
    """
    _check_pair(probs_weak, logits_strong, threshold)
    probs = probs_weak.detach()
    confidence, top1 = probs.max(dim=-1)
    uncertain = confidence < threshold
    if not bool(uncertain.any()):
        return logits_strong.sum() * 0.0, logits_strong.new_zeros(0)
    keep, _, passed = shrunk_class_space(probs[uncertain], threshold)
    logits = logits_strong[uncertain].masked_fill(~keep, float("-inf"))
    losses = F.cross_entropy(logits, top1[uncertain], reduction="none")
    weights = confidence[uncertain] * passed.float()
    removed = (~keep).sum(-1).float()
    return (losses * weights).sum() / len(probs_weak), removed


__all__ = ["align_distribution", "fixmatch_loss", "shrink_loss", "shrunk_class_space"]
