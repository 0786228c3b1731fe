"""ELR: "Early-Learning Regularization Prevents Memorization of Noisy Labels" (Liu, Niles-Weed, Razavian &
Fernandez-Granda, NeurIPS 2020, arXiv:2007.00151).

Early in training a network fits the clean labels before memorising the wrong ones. ELR keeps, for every training
sample, a temporal ensemble of the model's predictions ``t_i <- beta t_i + (1 - beta) p_i`` and adds
``lambda * mean log(1 - <p_i, t_i>)`` to the cross-entropy: the regulariser pulls each prediction towards its
early-learning target, which cancels the gradient of the noisy labels on the samples the model already got right.
"""

from __future__ import annotations

import torch

from reprzoo.distributed import is_distributed, world_size
from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.robust import elr_loss, elr_update_targets


@register_method(
    title="Early-Learning Regularization Prevents Memorization of Noisy Labels",
    wing="metric-and-supervised",
    arxiv="2007.00151",
)
class ELR(SupervisedModule):
    """Cross-entropy with early-learning regularisation, on a backbone and a linear classifier.

    Training batches carry each sample's index in the training split (``indices``); the targets are a buffer of
    ``(num_train, num_classes)`` rows, grown to the largest index seen (zeros before a sample's first visit, as the
    authors initialise them). The exported representation is the backbone's (``embedding_dim=None``).

    Ours:
        - The authors' CIFAR-10 defaults (``beta=0.7``, ``lam=3``, clamp 1e-4) are the defaults here; their CIFAR
          training (ResNet-34, SGD lr 0.02 at batch 128, weight decay 1e-3, 150 epochs of cosine annealing with warm
          restarts every 10 epochs) is scaled down in the digits recipe (one cosine, no restarts).
        - The target buffer is sized lazily from the indices (no datamodule API needed) and saved in the Lightning
          checkpoint, not in the weights; under DDP the predictions of every rank update it, so each rank's copy
          holds every sample's ensemble.
        - ELR+ (two networks, weight averaging, mixup) is not implemented: this is the paper's ELR.

    Args:
        beta: momentum of the temporal ensemble of predictions.
        lam: weight of the regulariser.
        clamp: probabilities are clamped to ``[clamp, 1 - clamp]``.
        kwargs: options of :class:`SupervisedModule` (``num_classes`` required).
    """

    def __init__(self, beta: float = 0.7, lam: float = 3.0, clamp: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.save_hyperparameters("beta", "lam", "clamp")
        # training state, not weights: kept out of the state dict (a pushed model does not carry a training-set-sized
        # table) and saved in the Lightning checkpoint instead, so that a resumed run keeps its ensemble
        self.register_buffer("targets", torch.zeros(0, self.hparams.num_classes), persistent=False)

    def _grow_targets(self, size: int) -> None:
        if size > len(self.targets):
            grown = self.targets.new_zeros(size, self.targets.shape[1])
            grown[: len(self.targets)] = self.targets
            self.targets = grown

    def _update_targets(self, logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Update the ensemble of the batch's samples (and of the other ranks' under DDP); return the batch's rows."""
        hp = self.hparams
        all_indices, all_logits = indices, logits.detach()
        if is_distributed() and world_size() > 1:
            all_indices = _all_gather(indices)
            all_logits = _all_gather(all_logits)
        self._grow_targets(int(all_indices.max()) + 1)
        self.targets[all_indices] = elr_update_targets(self.targets[all_indices], all_logits, hp.beta, hp.clamp)
        return self.targets[indices]

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        if indices is None:
            raise ValueError("ELR keys its targets by sample: training batches must carry their indices")
        representation = self.represent(views[0])
        logits = self.logits(representation)
        targets = self._update_targets(logits, indices)
        loss = elr_loss(logits, labels, targets, self.hparams.lam, self.hparams.clamp)
        return TrainingOutput(loss, features=representation, embeddings=representation)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["elr_targets"] = self.targets.detach().cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "elr_targets" in checkpoint:
            self.targets = checkpoint["elr_targets"].to(self.targets.device)


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)
