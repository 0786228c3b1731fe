"""ShrinkMatch: "Shrinking Class Space for Enhanced Certainty in Semi-Supervised Learning" (Yang, Zhao, Qi, Qiao, Shi
& Zhao, ICCV 2023, arXiv:2308.06777), on the FixMatch base; following the authors' code
(github.com/LiheYoung/ShrinkMatch, ``CIFAR/shrinkmatch.py`` and ``network/shrinkmatch.py``)."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.heads import ProjectionHead
from reprzoo.lightning_modules.metric_supervised.fixmatch import FixMatch, SemiSupervisedForward
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.semi_supervised import shrink_loss


class ShrinkMatchAuxiliaryHead(ProjectionHead):
    """The auxiliary classifier of the shrunk-space loss (the authors' ``head_aux``): three linear layers, the two
    hidden ones a quarter of the feature width with batch norm and LeakyReLU (slope 0.1)."""

    def __init__(self, in_dim: int, num_classes: int):
        hidden = max(1, in_dim // 4)
        super().__init__(
            [
                (in_dim, hidden, nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1, inplace=True), True),
                (hidden, hidden, nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1, inplace=True), True),
                (hidden, num_classes, None, None, True),
            ]
        )


@register_method(
    title="Shrinking Class Space for Enhanced Certainty in Semi-Supervised Learning",
    wing="metric-and-supervised",
    arxiv="2308.06777",
)
class ShrinkMatch(FixMatch):
    """FixMatch, plus a loss on the uncertain unlabelled samples, those FixMatch discards (confidence below
    ``threshold``): for each, the classes most confused with its top-1 (ranked 2nd, 3rd, ...) are removed until
    the top-1's renormalised confidence in the remaining, shrunk class space reaches the threshold; the strong
    view is then trained towards the top-1 by cross-entropy over the shrunk space only
    (:func:`~reprzoo.losses.semi_supervised.shrink_loss`), through an auxiliary head on the strong features.

    Two reweightings (Sec. 3.3): each sample's shrunk loss is multiplied by its original top-1 confidence (less
    reliable samples count less), and the whole term by a moving average (momentum 0.999) of the ratio of
    certain samples in the batch (the term grows as the model improves). The loss is
    ``L_x + lambda_u (L_fixmatch + certain_ratio * L_shrink)`` (the authors' STL-10 code; their CIFAR script has
    ``lambda_u`` = 1).

    Defaults are the authors': threshold 0.95, ``lambda_u`` 1, distribution alignment on (their FixMatch + DA
    base), hard pseudo-labels, SGD lr 0.03 at 64 labelled samples, weight decay 5e-4 (CIFAR-10, STL-10).

    Ours:
        - the FixMatch base's differences (no EMA model for evaluation, plain momentum, shared cosine schedule,
          unlabelled stream without the labelled samples, fixed RandAugment magnitude);
        - distribution alignment by a running mean of momentum 0.999 (the STL-10 code; their CIFAR code divides by
          the mean of the last 32 batches), kept per rank under DDP (the authors average the batch means over
          ranks);
        - the certain-ratio average runs through training (the authors' CIFAR script restarts it at each of its
          1024-step epochs);
        - the shrunk space is found in one vectorised pass instead of the authors' per-sample loop (same result,
          checked against that loop in the tests).

    Args:
        certain_ratio_momentum: momentum of the moving ratio of certain samples (reweighting principle 2).
        kwargs: options of :class:`~reprzoo.lightning_modules.metric_supervised.fixmatch.FixMatch`.
    """

    def __init__(self, certain_ratio_momentum: float = 0.999, distribution_alignment: bool = True, **kwargs):
        if not 0.0 <= certain_ratio_momentum < 1.0:
            raise ValueError(f"certain_ratio_momentum must be in [0, 1), got {certain_ratio_momentum}")
        super().__init__(distribution_alignment=distribution_alignment, **kwargs)
        if self.hparams.num_classes < 3:
            raise ValueError(f"ShrinkMatch removes classes from at least 3, got num_classes={self.hparams.num_classes}")
        self.aux_head = ShrinkMatchAuxiliaryHead(self.representation_dim, self.hparams.num_classes)
        # moving ratio of certain unlabelled samples; -1 until the first batch sets it
        self.register_buffer("certain_ratio", torch.tensor(-1.0))

    def unlabelled_loss(self, out: SemiSupervisedForward) -> torch.Tensor:
        certain = super().unlabelled_loss(out)
        if len(out.probs_weak) < 2:  # batch norm of the auxiliary head needs two samples
            return certain
        ratio = (out.probs_weak.max(dim=-1).values >= self.hparams.threshold).float().mean()
        with torch.no_grad():
            m = self.hparams.certain_ratio_momentum
            self.certain_ratio.copy_(ratio if self.certain_ratio < 0 else m * self.certain_ratio + (1 - m) * ratio)
        shrunk, removed = shrink_loss(out.probs_weak, self.aux_head(out.representation_strong), self.hparams.threshold)
        if self._trainer is not None:
            self.log("train/shrink_loss", shrunk.detach())
            self.log("train/certain_ratio_ema", self.certain_ratio)
            if removed.numel():
                self.log("train/removed_classes", removed.mean())
        return certain + self.certain_ratio * shrunk
