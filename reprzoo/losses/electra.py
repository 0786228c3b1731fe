"""The two objectives of ELECTRA: "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators"
(Clark, Luong, Le & Manning, 2020, arXiv:2003.10555).

``L = L_MLM(generator) + lambda * L_Disc(discriminator)``: the generator's masked-language-model cross-entropy,
averaged over the masked positions, and the discriminator's per-token replaced-token-detection binary
cross-entropy, averaged over every real (not padding) token, as the authors' ``run_pretraining.py`` weights them
(``masked_lm_weights`` and ``input_mask``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the original tokens at the masked positions, averaged over those positions.

    Args:
        logits: ``(batch, length, vocab)`` scores at every position, or ``(n, vocab)`` at the ``n`` masked positions
            only, in row-major order (``states[masked]``: what a generator that scores only the masked positions
            gives).
        targets: ``(batch, length)`` original token ids.
        masked: ``(batch, length)`` booleans, True where the input was masked.

    Returns:
        The mean cross-entropy over masked positions (0 when nothing was masked).
    """
    if targets.shape != masked.shape or targets.ndim != 2:
        raise ValueError(
            f"targets and masked must be (batch, length) alike, got {tuple(targets.shape)} and {tuple(masked.shape)}"
        )
    masked = masked.bool()
    if logits.ndim == 3:
        if logits.shape[:2] != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
        logits = logits[masked]
    elif logits.ndim != 2 or logits.shape[0] != int(masked.sum()):
        raise ValueError(
            f"logits must be (batch, length, vocab) or (masked positions={int(masked.sum())}, vocab), got {tuple(logits.shape)}"
        )
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets[masked])


def replaced_token_detection_loss(logits: torch.Tensor, replaced: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of "this token was replaced" per token, averaged over real tokens (padding ignored).

    Args:
        logits: ``(batch, length)`` discriminator scores (before the sigmoid).
        replaced: ``(batch, length)`` labels: True where the generator's sample differs from the original token
            (a sample equal to the original counts as original).
        attention_mask: ``(batch, length)``, 1 on real tokens, 0 on padding.
    """
    if logits.ndim != 2 or logits.shape != replaced.shape or logits.shape != attention_mask.shape:
        raise ValueError(
            "logits, replaced and attention_mask must all be (batch, length), got "
            f"{tuple(logits.shape)}, {tuple(replaced.shape)} and {tuple(attention_mask.shape)}"
        )
    weights = attention_mask.to(torch.float32)
    losses = F.binary_cross_entropy_with_logits(logits.float(), replaced.to(torch.float32), reduction="none")
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


__all__ = ["masked_lm_loss", "replaced_token_detection_loss"]
