"""MoCo v2: "Improved Baselines with Momentum Contrastive Learning" (Chen, Fan, Girshick & He, 2020, arXiv:2003.04297)
and MoCo v3: "An Empirical Study of Training Self-Supervised Vision Transformers" (Chen, Xie & He, ICCV 2021,
arXiv:2104.02057)."""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.components.ema import copy_as_target
from reprzoo.components.heads import Layer, ProjectionHead
from reprzoo.components.memory import MemoryQueue
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses import info_nce


class MoCoV2ProjectionHead(ProjectionHead):
    """MoCo v2's head: "we replace the fc head in MoCo with a 2-layer MLP head (hidden layer 2048-d, with ReLU)"
    (arXiv:2003.04297, Sec. 3), 128-d output, no batch norm."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128):
        super().__init__([(in_dim, hidden_dim, None, nn.ReLU(inplace=True), True), (hidden_dim, out_dim, None, None, True)])


class MoCoV3Head(ProjectionHead):
    """MoCo v3's MLPs: "The projection head is a 3-layer MLP, and the prediction head is a 2-layer MLP. The hidden
    layers of both MLPs are 4096-d and are with ReLU; the output layers of both MLPs are 256-d, without ReLU. In
    MoCo v3, all layers in both MLPs have BN" (arXiv:2104.02057, Sec. 4, footnote). Linear layers have no bias;
    the output BN has no affine parameters, as in the authors' code."""

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 256, num_layers: int = 3, last_bn: bool = True):
        if num_layers < 2:
            raise ValueError(f"MoCo v3's heads have at least 2 layers, got num_layers={num_layers}")
        layers: list[Layer] = []
        for i in range(num_layers - 1):
            layers.append(
                (in_dim if i == 0 else hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), False)
            )
        layers.append((hidden_dim, out_dim, nn.BatchNorm1d(out_dim, affine=False) if last_bn else None, None, False))
        super().__init__(layers)


class _MomentumEncoder(EmbeddingModule):
    """A query encoder (backbone + projector) with a key encoder that is its EMA copy."""

    def build_key_encoder(self) -> None:
        self.key_backbone = copy_as_target(self.backbone)
        self.key_projector = copy_as_target(self.projector)

    @property
    def momentum_pairs(self):
        return [(self.backbone, self.key_backbone), (self.projector, self.key_projector)]

    def param_groups(self):
        return [{"name": "encoder", "params": list(self._named_trainable(exclude=("probe.", "key_")))}]

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_projector(self.key_backbone(x))


@register_method(title="Improved Baselines with Momentum Contrastive Learning", wing="vision-ssl", arxiv="2003.04297")
class MoCoV2(_MomentumEncoder):
    """MoCo with SimCLR's two improvements: a query q = g(f(x1)) is matched to its key k = g_m(f_m(x2)) from the
    momentum encoder (an EMA with m = 0.999) against a queue of 65536 keys of earlier batches, by InfoNCE with
    temperature 0.2; g is a 2-layer MLP head and the augmentation adds blur (the ``simsiam`` augmentation is MoCo
    v2's). Keys of the global batch are enqueued after each step.

    Defaults are the paper's ImageNet setting: SGD, lr 0.03 x batch/256, weight decay 1e-4, momentum 0.9, cosine
    schedule. ``symmetric=True`` adds the loss with the views swapped (as in the authors' CIFAR demo); the paper's
    loss is one-sided. Shuffle-BN is not implemented: multi-device recipes use synchronised BN, whose statistics
    over the global batch (as in MoCo v3, which drops Shuffle-BN) do not single out the per-device sub-batch that a
    query shares with its key, the leak Shuffle-BN was designed against.

    Args:
        proj_hidden_dim: hidden width of the MLP head.
        proj_output_dim: width of queries and keys.
        queue_size: number of negative keys (a multiple of the global batch).
        temperature: the InfoNCE temperature.
        key_momentum: the EMA decay m of the key encoder, constant through training.
        symmetric: also contrast the second view's query with the first view's key.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        queue_size: int = 65536,
        temperature: float = 0.2,
        key_momentum: float = 0.999,
        symmetric: bool = False,
        lr: float = 0.03,
        weight_decay: float = 1e-4,
        **kwargs,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 <= key_momentum <= 1.0:
            raise ValueError(f"key_momentum must be in [0, 1], got {key_momentum}")
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        self.tau_base = self.tau_final = key_momentum  # MoCo's m is constant
        self.projector = MoCoV2ProjectionHead(self.feature_dim, proj_hidden_dim, proj_output_dim)
        self.build_key_encoder()
        self.queue = MemoryQueue(queue_size, proj_output_dim)

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # the queue starts as random unit vectors, used as negatives from the first step (as in the paper's code)
        return info_nce(q, k, self.queue.embeddings.clone(), self.hparams.temperature)

    def intra_image(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """MoCo's loss (enqueueing the keys): returns (loss, features f(x1), query q1, key k2)."""
        x1, x2 = views[:2]
        f1 = self.backbone(x1)
        q1, k2 = self.projector(f1), self.keys(x2)
        loss = self.contrast(q1, k2)
        keys = [k2]
        if self.hparams.symmetric:
            q2, k1 = self.projector(self.backbone(x2)), self.keys(x1)
            loss = (loss + self.contrast(q2, k1)) / 2
            keys.append(k1)
        for k in keys:
            self.queue.enqueue(k)
        return loss, f1, q1, k2

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        loss, f1, q1, _ = self.intra_image(views)
        return TrainingOutput(loss, features=f1, embeddings=q1)


@register_method(
    title="An Empirical Study of Training Self-Supervised Vision Transformers", wing="vision-ssl", arxiv="2104.02057"
)
class MoCoV3(_MomentumEncoder):
    """MoCo without a queue: the query q = h(g(f(x1))) (backbone, 3-layer projector, 2-layer predictor) is matched
    to the momentum encoder's key k = g_m(f_m(x2)) against the keys of the other images of the global batch;
    the loss is symmetrised, ctr(q1, k2) + ctr(q2, k1), each InfoNCE scaled by 2T. The momentum m rises from 0.99
    to 1 on a cosine schedule.

    Defaults are the paper's ResNet-50 setting: LARS, lr 0.3 x batch/256, weight decay 1.5e-6, T = 1.0,
    10 warmup epochs; ViT recipes set ``optimizer=adamw``, lr 1.5e-4, weight decay 0.1, T = 0.2, 40 warmup epochs.
    The authors' ResNet code builds a 2-layer projector and a predictor without output BN
    (``proj_layers=2``, ``pred_last_bn=False``).

    Args:
        proj_hidden_dim: hidden width of projector and predictor.
        proj_output_dim: output width of projector and predictor.
        proj_layers: layers of the projector.
        pred_last_bn: batch-normalise the predictor's output.
        temperature: the InfoNCE temperature T.
        tau_base: initial momentum of the key encoder.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        proj_layers: int = 3,
        pred_last_bn: bool = True,
        temperature: float = 1.0,
        tau_base: float = 0.99,
        optimizer: str = "lars",
        lr: float = 0.3,
        weight_decay: float = 1.5e-6,
        warmup_epochs: float = 10.0,
        **kwargs,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        self.tau_base = tau_base
        self.projector = MoCoV3Head(self.feature_dim, proj_hidden_dim, proj_output_dim, proj_layers)
        self.predictor = MoCoV3Head(proj_output_dim, proj_hidden_dim, proj_output_dim, 2, last_bn=pred_last_bn)
        self.build_key_encoder()

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        t = self.hparams.temperature
        return info_nce(q, k, None, t) * 2 * t

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        q1, q2 = self.predictor(z1), self.predictor(z2)
        k1, k2 = self.keys(x1), self.keys(x2)
        return TrainingOutput(self.contrast(q1, k2) + self.contrast(q2, k1), features=f1, embeddings=z1)
