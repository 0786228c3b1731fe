"""DINO: "Emerging Properties in Self-Supervised Vision Transformers" (Caron et al., ICCV 2021, arXiv:2104.14294)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from reprzoo.components.ema import copy_as_target
from reprzoo.components.heads import ProjectionHead
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.dino import dino_loss, teacher_temperature_at, update_center
from reprzoo.training.optim import cosine_schedule


def forward_by_size(network: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """``network`` applied to every view; consecutive views of one size go through it as one batch (DINO's
    MultiCropWrapper: one forward per resolution, so batch-norm statistics cover all crops of that size)."""
    outputs, start = [], 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        outputs += network(torch.cat(views[start:end])).chunk(end - start)
        start = end
    return outputs


class DINOHead(nn.Module):
    """DINO's head: "a 3-layer multi-layer perceptron (MLP) with hidden dimension 2048 followed by l2 normalization
    and a weight normalized fully connected layer with K dimensions" (arXiv:2104.14294, Sec. 3.1 and Appendix);
    GELU activations, a 256-d bottleneck, and the last layer's norm g fixed at 1 (``norm_last_layer``)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        out_dim: int = 65536,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        bn = (lambda: nn.BatchNorm1d(hidden_dim)) if use_bn else (lambda: None)
        self.mlp = ProjectionHead(
            [
                (in_dim, hidden_dim, bn(), nn.GELU(), True),
                (hidden_dim, hidden_dim, bn(), nn.GELU(), True),
                (hidden_dim, bottleneck_dim, None, None, True),
            ]
        )
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (n, K), bottleneck (n, bottleneck_dim))``."""
        z = self.mlp(x)
        return self.last_layer(F.normalize(z, dim=-1)), z


@register_method(title="Emerging Properties in Self-Supervised Vision Transformers", wing="vision-ssl", arxiv="2104.14294")
class DINO(EmbeddingModule):
    """Self-distillation with no labels: the student (backbone + DINO head) sees every multi-crop view and matches,
    by cross-entropy, the teacher's centred and sharpened output distribution of each other global view. The teacher
    is the student's EMA (tau 0.996 -> 1, cosine); its outputs are centred by a running mean (momentum 0.9,
    averaged over ranks) and sharpened by a temperature warmed up from 0.04 to 0.07 over 30 epochs.

    Defaults are the paper's (Sec. 3.1, Appendix): K = 65536, head 2048 hidden / 256 bottleneck, tau_s 0.1, AdamW
    with lr 5e-4 x batch/256, 10 warmup epochs, cosine to 1e-6 (``min_lr_ratio`` 0.002 of 5e-4), weight decay on a
    cosine from 0.04 to 0.4 (set here per step, not in the base), the last layer frozen in the first epoch. Gradient
    clipping at 3.0 is a Trainer option (``trainer.gradient_clip_val: 3.0`` in the recipes); Lightning clips the
    global norm where DINO clips each parameter's norm. Views are the ``multicrop`` augmentation, global crops first;
    same-size crops go through the backbone together, as DINO's MultiCropWrapper does. The representation
    (``encoder``: validation's kNN and probe, the exported model) is the teacher backbone, as in the paper's
    evaluation (its released k-NN and linear evaluations load the ``teacher`` weights).

    Args:
        hidden_dim, bottleneck_dim, out_dim: DINO head sizes (K = ``out_dim``).
        use_bn_in_head: batch norm in the head's hidden layers (off for ViTs in the paper).
        norm_last_layer: fix the last layer's weight-norm g at 1 (stabilises training).
        num_global_views: how many of the first views are global crops, seen by the teacher.
        student_temperature: tau_s.
        teacher_temperature: tau_t after warmup.
        warmup_teacher_temperature: tau_t at epoch 0.
        warmup_teacher_temperature_epochs: epochs of the linear tau_t warmup.
        center_momentum: momentum m of the centre.
        tau_base: initial EMA decay of the teacher.
        weight_decay, weight_decay_end: start and end of the cosine weight-decay schedule.
        freeze_last_layer_epochs: epochs during which the head's last layer gets no update.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        out_dim: int = 65536,
        use_bn_in_head: bool = False,
        norm_last_layer: bool = True,
        num_global_views: int = 2,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: int = 30,
        center_momentum: float = 0.9,
        tau_base: float = 0.996,
        optimizer: str = "adamw",
        lr: float = 5e-4,
        weight_decay: float = 0.04,
        weight_decay_end: float = 0.4,
        warmup_epochs: float = 10.0,
        min_lr_ratio: float = 0.002,
        freeze_last_layer_epochs: int = 1,
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio,
            **kwargs,
        )
        if num_global_views < 1:
            raise ValueError(f"num_global_views must be at least 1, got {num_global_views}")
        self.tau_base = tau_base
        self.head = DINOHead(self.feature_dim, hidden_dim, bottleneck_dim, out_dim, use_bn_in_head, norm_last_layer)
        self.teacher_backbone = copy_as_target(self.backbone)
        self.teacher_head = copy_as_target(self.head)
        self.register_buffer("center", torch.zeros(1, out_dim))

    @property
    def momentum_pairs(self):
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def param_groups(self):
        params = list(self._named_trainable(exclude=("probe.", "teacher_")))
        return [{"name": "student", "params": params, "cosine_weight_decay": True}]

    def teacher_temperature(self) -> float:
        hp = self.hparams
        return teacher_temperature_at(
            self.current_epoch,
            hp.warmup_teacher_temperature,
            hp.teacher_temperature,
            hp.warmup_teacher_temperature_epochs,
        )

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        num_global = self.hparams.num_global_views
        if len(views) <= num_global:
            raise ValueError(f"DINO needs more than num_global_views={num_global} views, got {len(views)}")
        features = forward_by_size(self.backbone, views)
        logits, bottleneck = self.head(torch.cat(features))
        with torch.no_grad():
            teacher_features = self.teacher_backbone(torch.cat(views[:num_global]))
            teacher_logits, _ = self.teacher_head(teacher_features)
        loss = dino_loss(
            logits.chunk(len(views)),
            teacher_logits.chunk(num_global),
            self.center,
            self.hparams.student_temperature,
            self.teacher_temperature(),
        )
        self.center.copy_(update_center(self.center, teacher_logits, self.hparams.center_momentum))
        # the probe reads what is evaluated and exported: the teacher's features of the first global view
        batch = features[0].shape[0]
        return TrainingOutput(loss, features=teacher_features[:batch], embeddings=bottleneck[:batch])

    def encoder(self) -> nn.Module:
        """The teacher backbone: the network the paper evaluates (k-NN and linear probes on the teacher)."""
        return self.teacher_backbone

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        hp = self.hparams
        total = self.trainer.estimated_stepping_batches
        wd = cosine_schedule(self.trainer.global_step, total, hp.weight_decay, hp.weight_decay_end)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                if group.get("cosine_weight_decay") and not group["name"].endswith("/no_decay"):
                    group["weight_decay"] = wd
        self.log("train/weight_decay", wd)
        self.log("train/teacher_temperature", self.teacher_temperature())

    def on_after_backward(self) -> None:
        if self.current_epoch < self.hparams.freeze_last_layer_epochs:
            for p in self.head.last_layer.parameters():
                p.grad = None
