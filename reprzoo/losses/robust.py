"""Losses of robust supervised training: early-learning regularisation (ELR), MixUp and AdaMixUp.

- "Early-Learning Regularization Prevents Memorization of Noisy Labels" (Liu, Niles-Weed, Razavian & Fernandez-Granda,
  NeurIPS 2020, arXiv:2007.00151): :func:`elr_update_targets`, :func:`elr_loss`.
- "mixup: Beyond Empirical Risk Minimization" (Zhang, Cisse, Dauphin & Lopez-Paz, ICLR 2018, arXiv:1710.09412):
  :func:`mixup`, :func:`mixup_cross_entropy`.
- "MixUp as Locally Linear Out-Of-Manifold Regularization" (Guo, Mao & Zhang, AAAI 2019, arXiv:1809.02499):
  :func:`adamixup_ratios`, :func:`intrusion_loss`, :func:`soft_cross_entropy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "adamixup_ratios",
    "elr_loss",
    "elr_update_targets",
    "intrusion_loss",
    "mixup",
    "mixup_cross_entropy",
    "soft_cross_entropy",
]


def _check_probabilities(logits: torch.Tensor, name: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"{name} must be (batch, classes), got shape {tuple(logits.shape)}")


def elr_update_targets(targets: torch.Tensor, logits: torch.Tensor, beta: float = 0.7, clamp: float = 1e-4) -> torch.Tensor:
    """ELR's temporal ensemble of the predictions: ``t <- beta t + (1 - beta) p``.

    ``p`` is the softmax of ``logits`` clamped to ``[clamp, 1 - clamp]`` and renormalised (the authors' code), without
    gradient.

    Args:
        targets: ``(batch, classes)`` current targets of the batch's samples (zeros before their first visit).
        logits: ``(batch, classes)`` the model's scores of the same samples.
        beta: momentum of the ensemble (0.7 for CIFAR-10, 0.9 for CIFAR-100).
        clamp: bound of the probabilities away from 0 and 1.

    Returns:
        The new ``(batch, classes)`` targets.
    """
    _check_probabilities(logits, "logits")
    if targets.shape != logits.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and logits {tuple(logits.shape)} differ in shape")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    p = logits.detach().softmax(dim=1).clamp(clamp, 1.0 - clamp)
    return beta * targets + (1.0 - beta) * p / p.sum(dim=1, keepdim=True)


def elr_loss(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, lam: float = 3.0, clamp: float = 1e-4
) -> torch.Tensor:
    """Cross-entropy plus ELR's regulariser: ``CE(logits, labels) + lam * mean_i log(1 - <p_i, t_i>)``.

    The regulariser pushes each prediction towards its (fixed, detached) target; its gradient vanishes where the
    model already agrees with the ensemble and counteracts the noisy labels' pull elsewhere.

    Args:
        logits: ``(batch, classes)`` scores.
        labels: ``(batch,)`` given (possibly noisy) labels; -1 is ignored by the cross-entropy.
        targets: ``(batch, classes)`` the ensemble targets of the samples (:func:`elr_update_targets`), detached.
        lam: weight of the regulariser (3 for CIFAR-10, 7 for CIFAR-100).
        clamp: bound of the probabilities away from 0 and 1 (keeps ``log(1 - <p, t>)`` finite).
    """
    _check_probabilities(logits, "logits")
    if targets.shape != logits.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and logits {tuple(logits.shape)} differ in shape")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be ({logits.shape[0]},), got shape {tuple(labels.shape)}")
    p = logits.softmax(dim=1).clamp(clamp, 1.0 - clamp)
    regulariser = torch.log(1.0 - (targets.detach() * p).sum(dim=1)).mean()
    return F.cross_entropy(logits, labels, ignore_index=-1) + lam * regulariser


def mixup(x: torch.Tensor, lam: torch.Tensor | float, permutation: torch.Tensor) -> torch.Tensor:
    """Convex combinations of a batch with a permutation of itself: ``lam * x + (1 - lam) * x[permutation]``.

    Args:
        x: ``(batch, ...)`` inputs.
        lam: a scalar ratio, or ``(batch,)`` ratios of each pair (AdaMixUp's policy).
        permutation: ``(batch,)`` the partner of each sample.
    """
    if permutation.shape != x.shape[:1]:
        raise ValueError(f"permutation must be ({x.shape[0]},), got shape {tuple(permutation.shape)}")
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if lam.ndim == 1:
        if lam.shape[0] != x.shape[0]:
            raise ValueError(f"per-pair ratios must be ({x.shape[0]},), got shape {tuple(lam.shape)}")
        lam = lam.view(-1, *([1] * (x.ndim - 1)))
    elif lam.ndim != 0:
        raise ValueError(f"lam must be a scalar or (batch,), got shape {tuple(lam.shape)}")
    return lam * x + (1 - lam) * x[permutation]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c targets_c log softmax(logits)_c`` (targets: ``(batch, classes)`` rows of
    probabilities, e.g. mixed one-hot labels)."""
    _check_probabilities(logits, "logits")
    if targets.shape != logits.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and logits {tuple(logits.shape)} differ in shape")
    return -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()


def mixup_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, permutation: torch.Tensor, lam: torch.Tensor | float
) -> torch.Tensor:
    """MixUp's loss: cross-entropy against the mixed one-hot labels ``lam * y_i + (1 - lam) * y_perm(i)``
    (equal to ``lam * CE(y_i) + (1 - lam) * CE(y_perm(i))``).

    Args:
        logits: ``(batch, classes)`` scores of the mixed inputs.
        labels: ``(batch,)`` labels of the unmixed batch (all labelled).
        permutation: ``(batch,)`` the partner of each sample, as given to :func:`mixup`.
        lam: a scalar ratio or ``(batch,)`` ratios.
    """
    _check_probabilities(logits, "logits")
    if bool((labels < 0).any()):
        raise ValueError("mixup_cross_entropy needs every sample labelled (got labels of -1)")
    one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return soft_cross_entropy(logits, mixup(one_hot, lam, permutation))


def adamixup_ratios(policy_logits: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AdaMixUp's mixing ratios from its policy region generator.

    A softmax over three outputs gives ``(alpha, delta, rest)``, summing to one, so the region ``[alpha, alpha +
    delta]`` lies in ``[0, 1]`` (``rest`` is discarded); the ratio is drawn uniformly in the region with the
    reparameterisation ``lam = alpha + u * delta``, ``u ~ U(0, 1)``, so that the generator gets gradients.

    Args:
        policy_logits: ``(batch, 3)`` the generator's outputs for each pair.
        noise: ``(batch,)`` uniform draws ``u``.

    Returns:
        ``(lam, alpha, delta)``, each ``(batch,)``.
    """
    if policy_logits.ndim != 2 or policy_logits.shape[1] != 3:
        raise ValueError(f"policy_logits must be (batch, 3), got shape {tuple(policy_logits.shape)}")
    if noise.shape != policy_logits.shape[:1]:
        raise ValueError(f"noise must be ({policy_logits.shape[0]},), got shape {tuple(noise.shape)}")
    alpha, delta, _ = policy_logits.softmax(dim=1).unbind(dim=1)
    return alpha + noise * delta, alpha, delta


def intrusion_loss(original_logits: torch.Tensor, mixed_logits: torch.Tensor) -> torch.Tensor:
    """The intrusion discriminator's loss: binary cross-entropy with the original samples as class 1
    and the mixed ones as class 0, averaged over the union (the authors' code shuffles both into one batch).

    Args:
        original_logits: ``(n, 2)`` scores of original samples.
        mixed_logits: ``(m, 2)`` scores of mixed samples.
    """
    for name, value in (("original_logits", original_logits), ("mixed_logits", mixed_logits)):
        if value.ndim != 2 or value.shape[1] != 2:
            raise ValueError(f"{name} must be (n, 2), got shape {tuple(value.shape)}")
    logits = torch.cat([original_logits, mixed_logits])
    targets = torch.cat(
        [
            original_logits.new_ones(len(original_logits), dtype=torch.long),
            mixed_logits.new_zeros(len(mixed_logits), dtype=torch.long),
        ]
    )
    return F.cross_entropy(logits, targets)
