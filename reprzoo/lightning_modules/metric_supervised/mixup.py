"""MixUp and AdaMixUp.

- MixUp: "mixup: Beyond Empirical Risk Minimization" (Zhang, Cisse, Dauphin & Lopez-Paz, ICLR 2018,
  arXiv:1710.09412): train on ``lam x_i + (1 - lam) x_j`` with the label ``lam y_i + (1 - lam) y_j``,
  ``lam ~ Beta(alpha, alpha)``. A baseline here, not a catalogue row.
- AdaMixUp: "MixUp as Locally Linear Out-Of-Manifold Regularization" (Guo, Mao & Zhang, AAAI 2019,
  arXiv:1809.02499). MixUp fails by "manifold intrusion": a mixed sample that lands on the data manifold gets a label
  that conflicts with the real samples there. AdaMixUp learns the mixing policy instead of fixing ``alpha``: a policy
  region generator maps each pair to a region ``[alpha, alpha + delta]`` of ratios, and an intrusion discriminator,
  which shares the classifier's network, learns to tell the mixed samples from original ones; the generator is
  trained through both losses, so it keeps its mixed samples off the manifold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.robust import adamixup_ratios, intrusion_loss, mixup, mixup_cross_entropy, soft_cross_entropy


@register_method(
    title="mixup: Beyond Empirical Risk Minimization",
    wing="metric-and-supervised",
    arxiv="1710.09412",
)
class MixUp(SupervisedModule):
    """Cross-entropy on mixed pairs of the batch (a baseline of the robust-supervised rows).

    Ours:
        - One ratio per batch and a random permutation of the batch as partners, as the authors' CIFAR code does;
          the online probe and the exported representation see the unmixed view (the backbone's features).

    Args:
        alpha: the ratio is drawn from ``Beta(alpha, alpha)`` (1 for CIFAR-10 in the paper).
        kwargs: options of :class:`SupervisedModule` (``num_classes`` required).
    """

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.save_hyperparameters("alpha")

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        keep = self.labelled(labels)
        x, y = views[0][keep], labels[keep]
        alpha = self.hparams.alpha
        lam = torch.distributions.Beta(alpha, alpha).sample().to(x.device)
        permutation = torch.randperm(len(x), device=x.device)
        logits = self.logits(self.represent(mixup(x, lam, permutation)))
        loss = mixup_cross_entropy(logits, y, permutation, lam)
        with torch.no_grad():  # the probe trains on the representation of the real images
            features = self.represent(views[0])
        return TrainingOutput(loss, features=features, embeddings=features)


class PolicyRegionGenerator(nn.Module):
    """AdaMixUp's policy region generator: a network of the classifier's architecture (its own weights) with two
    linear layers (100 units, then 3) whose softmax gives ``(alpha, delta, discarded)`` for each pair.

    Its input is the authors' code's: the average of the two images, each multiplied elementwise by truncated
    standard-normal noise."""

    def __init__(self, backbone: str | nn.Module, backbone_kwargs: dict | None = None, hidden_dim: int = 100):
        super().__init__()
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        self.head = nn.Sequential(nn.Linear(self.backbone.num_features, hidden_dim), nn.Linear(hidden_dim, 3))
        for layer in self.head:  # the authors initialise both layers with N(0, 1e-3): the first ratios are ~1/3
            nn.init.normal_(layer.weight, std=1e-3)
            nn.init.zeros_(layer.bias)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        m1 = nn.init.trunc_normal_(torch.empty_like(x1), a=-2.0, b=2.0)
        m2 = nn.init.trunc_normal_(torch.empty_like(x2), a=-2.0, b=2.0)
        return self.head(self.backbone((m1 * x1 + m2 * x2) / 2))


@register_method(
    title="MixUp as Locally Linear Out-Of-Manifold Regularization",
    wing="metric-and-supervised",
    arxiv="1809.02499",
)
class AdaMixUp(SupervisedModule):
    """AdaMixUp (2-fold mixing) on a backbone and a linear classifier.

    Each training batch is split in halves, as in the authors' code: the first half ``x`` is paired with a shuffled
    copy ``x'`` of the whole batch and mixed with the generator's ratios ``lam = alpha + u delta``; the second half
    is held out, unseen by the classifier. The three inputs and their losses:

    - the classifier is trained on the mixed samples (mixed one-hot labels) and on the originals ``x`` (their labels);
    - the intrusion discriminator (two linear layers on the shared representation) is trained on originals
      (``x`` and the held-out half, class 1) against the mixed samples (class 0);
    - the total ``L_D + L_D' + L_intr`` is minimised over the classifier, the discriminator and the generator.

    Ours:
        - One forward pass of the shared network over ``[mixed, x, held-out]`` serves the classifier and the
          discriminator (the authors run the network twice; batch-norm statistics are pooled once here).
        - The classifier's and the discriminator's heads read the exported representation (the backbone's
          features); the generator's network is built from the same backbone name with its own weights.

    Args:
        intrusion_weight: weight of the intrusion loss (1 in the paper).
        kwargs: options of :class:`SupervisedModule` (``num_classes`` required).
    """

    def __init__(self, intrusion_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters("intrusion_weight")
        self.policy = PolicyRegionGenerator(self.hparams.backbone, self.hparams.backbone_kwargs)
        c = self.hparams.num_classes
        self.discriminator = nn.Sequential(nn.Linear(self.representation_dim, c), nn.Linear(c, 2))

    def adamixup_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The classification, intrusion and total losses of a labelled batch (at least 4 samples), the mean ratios, and
        the shared representation of ``[mixed, x, held-out]``."""
        if len(x) < 4:
            raise ValueError(f"AdaMixUp splits each batch in halves and needs at least 4 labelled samples, got {len(x)}")
        half = len(x) // 2
        partners = torch.randperm(len(x), device=x.device)[:half]  # the authors pair with a shuffle of the batch
        x1, y1 = x[:half], y[:half]
        x2, y2 = x[partners], y[partners]
        held_out = x[half : 2 * half]
        lam, alpha, delta = adamixup_ratios(self.policy(x1, x2), torch.rand(half, device=x.device))
        mixed = _interpolate(x1, x2, lam)
        one_hot = F.one_hot(torch.cat([y1, y2]), self.hparams.num_classes).to(x.dtype)
        mixed_labels = _interpolate(one_hot[:half], one_hot[half:], lam)

        representation = self.represent(torch.cat([mixed, x1, held_out]))
        logits = self.logits(representation[: 2 * half])
        targets = torch.cat([mixed_labels, F.one_hot(y1, self.hparams.num_classes).to(x.dtype)])
        classification = soft_cross_entropy(logits, targets)
        scores = self.discriminator(representation)
        intrusion = intrusion_loss(scores[half:], scores[:half])
        total = classification + self.hparams.intrusion_weight * intrusion
        return {
            "total": total,
            "classification": classification,
            "intrusion": intrusion,
            "lam": lam.detach().mean(),
            "alpha": alpha.detach().mean(),
            "delta": delta.detach().mean(),
            "representation": representation,
        }

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        keep = self.labelled(labels)
        losses = self.adamixup_losses(views[0][keep], labels[keep])
        for name in ("classification", "intrusion", "lam", "delta"):
            self.log(f"train/{name}", losses[name])
        if bool(keep.all()) and len(keep) % 2 == 0:  # the originals [x, held-out] are the whole batch, in order
            features = losses["representation"][len(keep) // 2 :]
        else:
            with torch.no_grad():
                features = self.represent(views[0])
        return TrainingOutput(losses["total"], features=features, embeddings=features)


def _interpolate(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam_i a_i + (1 - lam_i) b_i`` with one ratio per row."""
    lam = lam.view(-1, *([1] * (a.ndim - 1)))
    return lam * a + (1 - lam) * b
