"""MobileVOS's contrastive representation distillation: "MobileVOS: Real-Time Video Object Segmentation Contrastive
Learning meets Knowledge Distillation" (Miles et al., CVPR 2023, arXiv:2303.07815)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.components.feature_maps import stage_channels, stage_maps
from reprzoo.components.heads import ProjectionHead
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.distillation import contrastive_distillation


def load_teacher(name: str, kwargs: dict[str, Any] | None, weights: str | None) -> nn.Module:
    """A frozen backbone ``name``, with the state dict of the local safetensors file ``weights`` (strictly) if given."""
    teacher = build_backbone(name, **(kwargs or {}))
    if weights is not None:
        if weights.startswith("zoo:"):
            raise ValueError(
                f"teacher_weights={weights!r}: 'zoo:NAME' is resolved by the reprzoo CLI; from Python pass "
                "reprzoo.zoo.teacher_weights('NAME'), the path of that zoo model's backbone weights"
            )
        from safetensors.torch import load_file

        teacher.load_state_dict(load_file(weights), strict=True)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def sample_pixels(maps: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """The vectors of ``maps`` ``(n, c, h, w)`` at flat locations ``picks`` ``(n, p)``, as ``(n p, c)`` image-major."""
    index = picks[:, None].expand(-1, maps.shape[1], -1)
    return maps.flatten(2).gather(2, index).transpose(1, 2).flatten(0, 1)


@register_method(
    title="MobileVOS: Real-Time Video Object Segmentation Contrastive Learning meets Knowledge Distillation",
    wing="vision-ssl",
    arxiv="2303.07815",
)
class MobileVOS(EmbeddingModule):
    """Distils a frozen teacher backbone into the student backbone with MobileVOS's contrastive representation loss:
    each student embedding, projected to the teacher's width, is pulled towards the teacher's embedding of the same
    image (``level="embedding"``) or pixel (``level="pixel"``, ``pixels_per_image`` sampled locations of the last
    stage maps) against the rest of the batch, with every same-label teacher embedding as a further positive when
    labels are known (supervised-contrastive form). An optional task loss (cross-entropy of a linear classifier on
    the student features, ``task_weight``) is added, as the paper adds its segmentation loss. Only this loss is
    built: MobileVOS's space-time-memory VOS network and boundary-aware pixel sampling are outside this library.

    The teacher is ``teacher_backbone`` with ``teacher_weights``, a local safetensors file of its state dict (the
    method knows no hub). The CLI turns ``--model.init_args.teacher_weights zoo:NAME`` into the path of that zoo
    model's backbone weights before the model is built (``reprzoo.zoo.teacher_weights(NAME)`` does the same in
    Python). With ``teacher_weights: null`` the teacher keeps its random initialisation: the label-aware positives
    still teach the student (a random teacher's same-class embeddings become the targets), which is what the digits
    recipe, built without the CLI by the learning test, relies on; tests/test_teacher_student.py distils the shipped
    ``simsiam-tinyresnet-digits`` through the CLI.

    Defaults: temperature 0.1 (SupCon's), a 2-layer projection to the teacher's width, the base's optimiser.

    Args:
        teacher_backbone: backbone name of the teacher.
        teacher_backbone_kwargs: its constructor arguments.
        teacher_weights: local safetensors file of the teacher's state dict; ``None`` leaves it at random init.
        level: ``embedding`` (pooled features) or ``pixel`` (last-stage feature maps).
        proj_hidden_dim: hidden width of the student's projection.
        temperature: InfoNCE temperature.
        label_positives: use same-label teacher embeddings as positives when labels are given.
        pixels_per_image: sampled locations per image at ``level="pixel"``.
        distillation_weight: weight of the contrastive distillation loss.
        task_weight: weight of the cross-entropy task loss (0 leaves it out; needs ``num_classes``).
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        teacher_backbone: str = "resnet18_cifar",
        teacher_backbone_kwargs: dict[str, Any] | None = None,
        teacher_weights: str | None = None,
        level: Literal["embedding", "pixel"] = "embedding",
        proj_hidden_dim: int = 512,
        temperature: float = 0.1,
        label_positives: bool = True,
        pixels_per_image: int = 16,
        distillation_weight: float = 1.0,
        task_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if level not in ("embedding", "pixel"):
            raise ValueError(f"level must be 'embedding' or 'pixel', got {level!r}")
        if task_weight > 0 and not self.hparams.num_classes:
            raise ValueError("task_weight > 0 needs num_classes for the task classifier")
        self.teacher = load_teacher(teacher_backbone, teacher_backbone_kwargs, teacher_weights)
        if level == "embedding":
            t_dim = self.teacher.num_features
            self.projector = ProjectionHead(
                [
                    (self.feature_dim, proj_hidden_dim, nn.BatchNorm1d(proj_hidden_dim), nn.ReLU(inplace=True), False),
                    (proj_hidden_dim, t_dim, None, None, True),
                ]
            )
        else:
            (s_dim,), (t_dim,) = stage_channels(self.backbone, 1), stage_channels(self.teacher, 1)
            self.projector = nn.Sequential(
                nn.Conv2d(s_dim, proj_hidden_dim, 1, bias=False),
                nn.BatchNorm2d(proj_hidden_dim),
                nn.ReLU(inplace=True),
                nn.Conv2d(proj_hidden_dim, t_dim, 1),
            )
        self.task_head = nn.Linear(self.feature_dim, self.hparams.num_classes) if task_weight > 0 else None

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # frozen: batch-norm statistics stay the teacher's
        return self

    def distill_view(self, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(distillation loss, student features) of one view seen by both networks."""
        hp = self.hparams
        if hp.level == "embedding":
            features = self.backbone(x)
            with torch.no_grad():
                target = self.teacher(x)
            return contrastive_distillation(self.projector(features), target, labels, hp.temperature), features
        student_map = stage_maps(self.backbone, x, 1)[0]
        with torch.no_grad():
            teacher_map = stage_maps(self.teacher, x, 1)[0]
        projected = self.projector(student_map)
        if projected.shape[-2:] != teacher_map.shape[-2:]:
            projected = F.interpolate(projected, size=teacher_map.shape[-2:], mode="bilinear", align_corners=False)
        n, _, h, w = teacher_map.shape
        picks = torch.randint(0, h * w, (n, hp.pixels_per_image), device=x.device)
        pixel_labels = labels.repeat_interleave(hp.pixels_per_image) if labels is not None else None
        student, teacher = sample_pixels(projected, picks), sample_pixels(teacher_map, picks)
        loss = contrastive_distillation(student, teacher, pixel_labels, hp.temperature)
        return loss, student_map.mean(dim=(2, 3))

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        positives = labels if (hp.label_positives and labels is not None) else None
        losses, features = zip(*(self.distill_view(x, positives) for x in views))
        loss = hp.distillation_weight * torch.stack(losses).mean()
        if self.task_head is not None and labels is not None and (labels >= 0).any():
            known = labels >= 0
            task = torch.stack([F.cross_entropy(self.task_head(f[known]), labels[known]) for f in features]).mean()
            self.log("train/task_loss", task)
            loss = loss + hp.task_weight * task
        return TrainingOutput(loss, features=features[0], embeddings=features[0])
