"""Fine-tuning a pretrained encoder on labelled data: a linear probe on frozen features, full fine-tuning, or kNN.

Not a paper method (it is not in the method catalogue): the evaluation protocols of the SSL papers, e.g. SimSiam's
linear evaluation on frozen features (arXiv:2011.10566, Sec. 4), as a LightningModule that ``reprzoo finetune``
drives through LightningCLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.metrics.evaluators import ClassifierEvaluator

Task = Literal["linear", "full", "knn"]
#: In a zoo repository's safetensors file, tensors outside the encoder (the old method's heads) carry this prefix.
HEADS_PREFIX = "method."


class FineTune(EmbeddingModule):
    """A backbone with a new linear classification head ``head`` for ``num_classes`` classes.

    ``task="linear"`` freezes the backbone (batch-norm statistics included) and trains the head; ``"full"`` trains
    both; ``"knn"`` trains nothing and is used with ``validate`` to measure kNN accuracy of the frozen encoder.
    The training batch's first view is the input, with the datamodule's augmentation.

    Args:
        task: ``linear``, ``full`` or ``knn``.
        base_weights: a LOCAL safetensors file holding the encoder's tensors under their own names (a zoo
            repository's ``model.safetensors``); tensors under ``method.`` (the old method's heads) are not loaded,
            and the module reports which heads it replaced.
        base_model: the name of the model the weights come from (lineage, for the card).
        base_revision: its revision.
        strict: fail when the encoder's tensors do not match the backbone exactly.
        kwargs: options of :class:`EmbeddingModule` (backbone, num_classes, optimiser, evaluation).
    """

    def __init__(
        self,
        task: Task = "linear",
        base_weights: str | None = None,
        base_model: str | None = None,
        base_revision: str | None = None,
        strict: bool = True,
        optimizer: str = "sgd",
        lr: float = 0.1,
        weight_decay: float = 0.0,
        online_probe: bool = False,
        **kwargs,
    ):
        if task not in ("linear", "full", "knn"):
            raise ValueError(f"task must be 'linear', 'full' or 'knn', got {task!r}")
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, online_probe=online_probe, **kwargs)
        num_classes = self.hparams.num_classes
        if task != "knn" and not num_classes:
            raise ValueError("fine-tuning needs num_classes (the CLI links it from the datamodule)")
        self.head = nn.Linear(self.feature_dim, num_classes) if task != "knn" else None
        if self.head is not None:
            self.train_top1 = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)
            self.eval_top1 = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)
        self.head_report = "no base weights loaded"
        if base_weights:
            self.head_report = self.load_base(base_weights, strict)
            rank_zero_info(f"FineTune ({task}): {self.head_report}")
        if task in ("linear", "knn"):
            self.backbone.requires_grad_(False)

    def load_base(self, path: str, strict: bool = True) -> str:
        """Load the encoder from a local safetensors file; returns a sentence naming the heads replaced or added."""
        from safetensors import safe_open

        if not Path(path).is_file():
            raise FileNotFoundError(f"base_weights {path} does not exist")
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            encoder = {k: f.get_tensor(k) for k in keys if not k.startswith(HEADS_PREFIX)}
            old_head = {k: f.get_tensor(k) for k in keys if k.startswith(HEADS_PREFIX + "head.")}
        own = self.backbone.state_dict()
        mismatched = [k for k, v in encoder.items() if k in own and own[k].shape != v.shape]
        result = self.backbone.load_state_dict({k: v for k, v in encoder.items() if k not in mismatched}, strict=False)
        missing = [k for k in result.missing_keys if k not in mismatched]
        if strict and (missing or result.unexpected_keys or mismatched):
            raise ValueError(
                f"base_weights {path} do not match backbone {self.hparams.backbone}: missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}, shape mismatches {mismatched[:5]}"
            )
        dropped = sorted({k[len(HEADS_PREFIX) :].split(".")[0] for k in keys if k.startswith(HEADS_PREFIX)} - {"head"})
        new = f"Linear({self.feature_dim}, {self.hparams.num_classes})" if self.head is not None else "no head (kNN)"
        parts = []
        if old_head:
            weight = old_head.get(HEADS_PREFIX + "head.weight")
            old = f"Linear({weight.shape[1]}, {weight.shape[0]})" if weight is not None else "the old head"
            parts.append(f"replaced head 'head' {old} with {new}")
        else:
            parts.append(f"added head 'head' {new}" if self.head is not None else "evaluating the encoder with kNN")
        if dropped:
            parts.append(f"not loaded from the base model: {', '.join(dropped)}")
        return "; ".join(parts)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.task in ("linear", "knn"):
            self.backbone.eval()  # frozen features: batch-norm statistics stay those of the base model
        return self

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.hparams.task in ("linear", "knn") and self.backbone.training:
            self.backbone.eval()  # Lightning restores recorded train modes around validation: re-freeze here

    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices=None) -> TrainingOutput:
        if self.head is None or labels is None:
            raise RuntimeError("FineTune trains a head on labels; task='knn' has nothing to train (use validate)")
        x = views[0] if isinstance(views, (list, tuple)) else views
        with torch.set_grad_enabled(self.hparams.task == "full" and torch.is_grad_enabled()):
            features = self.embed(x)
        logits = self.head(features)
        valid = labels >= 0
        if valid.any():
            self.train_top1.update(logits[valid], labels[valid])
        return TrainingOutput(F.cross_entropy(logits, labels, ignore_index=-1), features=features)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        views, labels, *_ = batch
        out = self.training_loss(views, labels)
        self.log("train/loss", out.loss, prog_bar=True, sync_dist=True)
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True)
        return out.loss

    def build_evaluators(self):
        """The base's evaluators plus the head's accuracy on the queries (``{stage}/top1``)."""
        evaluators = super().build_evaluators()
        if self.head is not None:
            evaluators.append(ClassifierEvaluator(self.eval_top1, self.head, name="top1"))
        return evaluators
