"""ST-DIM: "Unsupervised State Representation Learning in Atari" (Anand, Racah, Ozair, Bengio, Côté & Hjelm,
NeurIPS 2019, arXiv:1906.08226)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.stdim import stdim_loss
from reprzoo.training.optim import OptimizerName, SchedulerName


def _locations(feature_map: torch.Tensor) -> torch.Tensor:
    """``(n, c, h, w)`` -> ``(n, h * w, c)``: one feature vector per location."""
    return feature_map.flatten(2).transpose(1, 2)


@register_method(
    title="Unsupervised State Representation Learning in Atari", wing="vision-ssl", modality="image", arxiv="1906.08226"
)
class STDIM(EmbeddingModule):
    """Spatiotemporal Deep InfoMax on consecutive frames ``(x_t, x_{t+1})`` (the two views of a training batch).

    Global-local: the global feature of x_{t+1} scores each local feature of x_t, f(x_t, x_{t+1})_{m,n} =
    phi(x_{t+1})^T W_g phi_{m,n}(x_t); local-local: the local feature of x_{t+1} at (m, n) scores the one of x_t at
    the same place, phi_{m,n}(x_{t+1})^T W_l phi_{m,n}(x_t). Each is an InfoNCE over the batch at every location,
    averaged over locations; the loss is their sum (Sec. 3, Eqs. 4-5). The representation is the global feature.

    Defaults are the paper's (Appendix and its code): the NatureCNN-style ``atari_cnn`` (local features from the
    third convolution, 256-d global feature), Adam at lr 3e-4, batch 64, 100 epochs, no schedule.

    Args:
        kwargs: shared options of :class:`EmbeddingModule`. The backbone must expose ``forward_features`` (the
            local map ``(n, c, h, w)``) and ``forward_head`` (the global feature from that map), as ``atari_cnn`` does.
    """

    def __init__(
        self,
        backbone: str = "atari_cnn",
        optimizer: OptimizerName = "adamw",
        lr: float = 3e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.0,
        scheduler: SchedulerName = "constant",
        **kwargs: Any,
    ):
        super().__init__(
            backbone=backbone, optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay, scheduler=scheduler, **kwargs,
        )  # fmt: skip
        if not all(hasattr(self.backbone, a) for a in ("forward_features", "forward_head", "local_channels")):
            raise ValueError(f"ST-DIM needs a backbone with forward_features and forward_head (atari_cnn), got {backbone!r}")
        local_channels = self.backbone.local_channels
        self.global_local = nn.Linear(self.feature_dim, local_channels)  # W_g of the bilinear score
        self.local_local = nn.Linear(local_channels, local_channels)  # W_l

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x_t, x_next = views[:2]
        local_t, local_next = self.backbone.forward_features(x_t), self.backbone.forward_features(x_next)
        global_next = self.backbone.forward_head(local_next)
        keys = _locations(local_t)
        global_local, local_local = stdim_loss(self.global_local(global_next), self.local_local(_locations(local_next)), keys)
        if self._trainer is not None:
            self.log("train/global_local", global_local)
            self.log("train/local_local", local_local)
        # the probe learns frame t's label, so it reads frame t's global feature
        return TrainingOutput(global_local + local_local, features=self.backbone.forward_head(local_t), embeddings=global_next)
