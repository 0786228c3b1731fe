"""FixMatch: "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence" (Sohn, Berthelot,
Li, Zhang, Carlini, Cubuk, Kurakin, Zhang & Raffel, NeurIPS 2020, arXiv:2001.07685). A baseline of the
metric-and-supervised wing, and the base of ShrinkMatch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.semi_supervised import align_distribution, fixmatch_loss


@dataclass
class SemiSupervisedForward:
    """One forward pass of a semi-supervised batch: the weak views of every sample, the strong views of the
    unlabelled ones (``unlabelled`` marks them in the batch)."""

    representation: torch.Tensor  # (N, dim): weak views
    logits_weak: torch.Tensor  # (N, classes)
    representation_strong: torch.Tensor  # (U, dim): strong views of the unlabelled samples
    logits_strong: torch.Tensor  # (U, classes)
    unlabelled: torch.Tensor  # (N,) bool
    probs_weak: torch.Tensor  # (U, classes): pseudo-label distribution of the unlabelled samples (no gradient)


@register_method(
    title="FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
    wing="metric-and-supervised",
    arxiv="2001.07685",
)
class FixMatch(SupervisedModule):
    """Cross-entropy on the weakly augmented labelled samples, plus ``lambda_u`` times the unlabelled loss (Eq. 2):
    the classifier's prediction on the weak view of an unlabelled sample, taken without gradient, is its hard
    pseudo-label when its confidence reaches ``threshold``, and the strong view is trained towards it
    (:func:`~reprzoo.losses.semi_supervised.fixmatch_loss`, averaged over all unlabelled samples of the batch).

    A batch holds labelled samples (label >= 0) and unlabelled ones (label -1) side by side, with the views
    ``[weak, strong]`` of the ``fixmatch`` augmentation; ``reprzoo.datamodules.semi_supervised`` composes batches of
    ``B`` labelled and ``mu B`` unlabelled samples (``mu = 7``). The weak views of all samples and the strong
    views of the unlabelled ones go through the network in one batch (batch norm sees all of them, as the
    authors' interleaving). The representation is the backbone's features; the classifier a linear layer.

    Defaults are the paper's (Sec. 4, Appendix B.1): threshold 0.95, ``lambda_u`` 1, SGD with momentum 0.9, lr 0.03
    at ``B`` = 64 labelled samples, weight decay 5e-4.

    Ours:
        - the unlabelled stream is the training samples without a label (the authors' holds every training image,
          the labelled ones included);
        - validation reads the trained weights, not an exponential moving average of them (the paper evaluates an
          EMA with decay 0.999);
        - plain momentum and the shared warmup + cosine schedule (to 0), not Nesterov momentum and ``cos(7 pi k /
          16 K)``;
        - RandAugment at one fixed magnitude (torchvision's), not a magnitude drawn per operation;
        - a batch without labelled samples contributes no supervised term instead of raising (possible only
          when the loader is not the semi-supervised batch sampler).

    Args:
        threshold: confidence ``tau`` above which a pseudo-label is used.
        lambda_u: weight of the unlabelled loss.
        distribution_alignment: divide the weak predictions by their running mean over unlabelled batches
            (momentum ``alignment_momentum``) and renormalise before thresholding (ReMixMatch's alignment; off in
            FixMatch, on in ShrinkMatch's runs, whose baseline is "FixMatch + DA").
        alignment_momentum: of that running mean.
        kwargs: options of :class:`~reprzoo.lightning_modules.metric_supervised.base.SupervisedModule`.
    """

    def __init__(
        self,
        threshold: float = 0.95,
        lambda_u: float = 1.0,
        distribution_alignment: bool = False,
        alignment_momentum: float = 0.999,
        optimizer: str = "sgd",
        lr: float = 0.03,
        lr_reference_batch: int | None = 64,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
        if lambda_u < 0:
            raise ValueError(f"lambda_u must be non-negative, got {lambda_u}")
        super().__init__(optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay, **kwargs)
        # running mean prediction on unlabelled samples (distribution alignment); all zeros until the first batch
        self.register_buffer("class_prior", torch.zeros(self.hparams.num_classes))

    @torch.no_grad()
    def pseudo_label_probs(self, logits_weak: torch.Tensor) -> torch.Tensor:
        """The weak views' predicted distribution the pseudo-labels come from (aligned when asked), no gradient."""
        probs = logits_weak.detach().float().softmax(dim=-1)
        if not self.hparams.distribution_alignment or len(probs) == 0:
            return probs
        mean = probs.mean(0)
        if self.training:
            m = self.hparams.alignment_momentum
            fresh = not bool(self.class_prior.any())
            self.class_prior.copy_(mean if fresh else m * self.class_prior + (1 - m) * mean)
        return align_distribution(probs, self.class_prior if self.class_prior.any() else mean)

    def forward_views(self, views: list[torch.Tensor], labels: torch.Tensor) -> SemiSupervisedForward:
        """Representations and logits of the weak views of every sample and the strong views of the unlabelled."""
        if len(views) < 2:
            raise ValueError(
                f"{type(self).__name__} needs the [weak, strong] views of the fixmatch augmentation, got {len(views)}"
            )
        weak, strong = views[:2]
        unlabelled = labels < 0
        rep = self.represent(torch.cat([weak, strong[unlabelled]]))
        logits = self.logits(rep)
        n = len(weak)
        probs = self.pseudo_label_probs(logits[:n][unlabelled])
        return SemiSupervisedForward(rep[:n], logits[:n], rep[n:], logits[n:], unlabelled, probs)

    def supervised_loss(self, out: SemiSupervisedForward, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the weak views of the labelled samples (0 when the batch has none)."""
        if bool(out.unlabelled.all()):
            return out.logits_weak.sum() * 0.0
        return self.cross_entropy(out.logits_weak, labels)

    def unlabelled_loss(self, out: SemiSupervisedForward) -> torch.Tensor:
        loss, mask = fixmatch_loss(out.probs_weak, out.logits_strong, self.hparams.threshold)
        if mask.numel() and self._trainer is not None:
            self.log("train/confident_ratio", mask.mean())
        return loss

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs labels (-1 for the unlabelled samples)")
        out = self.forward_views(views, labels)
        loss = self.supervised_loss(out, labels) + self.hparams.lambda_u * self.unlabelled_loss(out)
        return TrainingOutput(loss, features=out.representation, embeddings=out.representation)
