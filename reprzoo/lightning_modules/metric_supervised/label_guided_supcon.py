"""Label-guided cross-modal SupCon: "A Framework For Image Synthesis Using Supervised Contrastive Learning" (Yibin
Liu, Jianyu Zhang, Li Zhang, Shijian Li & Gang Pan, Zhejiang University, 2024, arXiv:2412.03957).

Text-to-image GANs first pre-train an image encoder and a text encoder on aligned image-caption pairs (AttnGAN's
DAMSM: an Inception image encoder and a bidirectional LSTM over the caption, projected to one space). The paper adds
the class label: "a framework leveraging both inter- and inner-modal correspondence by label guided supervised
contrastive learning", so that images and captions of one class cluster together in the shared space, which the
generator then reads. This module is the representation-learning half of that framework, the pre-training of the
two towers with the label-guided loss (:func:`reprzoo.losses.cross_modal_supcon.label_guided_supcon`): in a batch of
image and caption embeddings every item sharing the class label is a positive, within a modality and across
modalities. The GAN phase is out of scope.

Data: :class:`reprzoo.datamodules.emoji.Emoji` with ``captions=True`` (emoji images, captioned by their Unicode
names, labelled by subgroup).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.cross_modal_supcon import label_guided_supcon


class MissingCaptionsError(ReprzooError, ValueError):
    """A cross-modal method was given training batches without captions."""


@register_method(
    title="A Framework For Image Synthesis Using Supervised Contrastive Learning",
    wing="metric-and-supervised",
    modality="image-text",
    arxiv="2412.03957",
)
class LabelGuidedSupCon(SupervisedModule):
    """An image tower (the backbone) and a text tower (a registered text backbone over the caption's token ids), each
    projected by a linear layer to a shared ``projection_dim`` space, trained with the label-guided SupCon loss on
    ``[image views; captions]``.

    The exported representation is the image tower's: :meth:`encoder` is the backbone (then the optional embedding
    layer of :class:`SupervisedModule`), before the projection to the shared space, as SupCon exports its encoder and
    not its projection head. The text tower is not exported: a pushed model holds one encoder per method (the image
    encoder here); it stays in the checkpoint (``reprzoo.load_method`` restores it).

    Ours:
        - the pre-training phase only (the representation); no GAN, no generation-phase contrast branch.
        - one loss over the joint batch of images and captions (SupCon's L^sup_out on the concatenation: an anchor's
          positives are the other items of its class in both modalities, its negatives every other item), where the
          paper may weight its inner- and inter-modal terms separately (only its abstract was at hand).
        - towers: a CIFAR ResNet on 32x32 emoji instead of DAMSM's Inception-v3, and a bidirectional LSTM
          (``text_rnn``, cell ``lstm``, as DAMSM's text encoder) over a word-level tokenizer of the captions; both
          trained from scratch with AdamW.
        - every augmented view of an image is an item of its class; captions are Unicode emoji names, not sentences.
        - no classifier head (``val/classifier_top1`` is not logged); evaluation is the base's kNN and probe on the
          image representation.

    Args:
        vocab_size: token ids of the captions' tokenizer (the CLI takes it from the datamodule).
        text_backbone: a registered text backbone (``text_rnn``, ``text_cnn``, ``bert_tiny``,
            ``mean_pooled_embeddings``).
        text_backbone_kwargs: its options (``{"cell": "lstm"}`` for DAMSM's LSTM); ``vocab_size`` is added.
        projection_dim: width of the shared space (DAMSM's 256).
        temperature: of the loss (SupCon's 0.1).
        kwargs: options of :class:`SupervisedModule` (backbone, ``embedding_dim``, optimiser, ...).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        text_backbone: str = "text_rnn",
        text_backbone_kwargs: dict[str, Any] | None = None,
        projection_dim: int = 256,
        temperature: float = 0.1,
        **kwargs: Any,
    ):
        if vocab_size is None:
            raise MissingCaptionsError(
                "LabelGuidedSupCon needs vocab_size: train it on captioned data (Emoji(captions=True); the CLI fills it)"
            )
        super().__init__(**kwargs)
        self.text_backbone = build_backbone(text_backbone, **{**(text_backbone_kwargs or {}), "vocab_size": vocab_size})
        self.image_projection = nn.Linear(self.representation_dim, projection_dim)
        self.text_projection = nn.Linear(self.text_backbone.num_features, projection_dim)

    def build_classifier(self) -> nn.Module | None:
        return None

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Captions ``(batch, length)`` token ids (0 = padding) -> their vectors in the shared space."""
        return self.text_projection(self.text_backbone({"input_ids": input_ids, "attention_mask": input_ids.ne(0).long()}))

    def training_loss(self, views, labels: torch.Tensor | None = None, indices: torch.Tensor | None = None) -> TrainingOutput:
        if not isinstance(views, Mapping) or "input_ids" not in views:
            raise MissingCaptionsError(
                "LabelGuidedSupCon trains on image-caption batches ({'images': views, 'input_ids': ids}): use "
                "Emoji(captions=True) or a datamodule that yields them"
            )
        self.labelled(labels)
        images = views["images"]
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        representations = [self.represent(self._format(v)) for v in images]
        image = self.image_projection(torch.cat(representations))
        text = self.embed_text(views["input_ids"])
        loss = label_guided_supcon(image, text, labels.repeat(len(images)), labels, self.hparams.temperature)
        return TrainingOutput(loss, features=representations[0].detach(), embeddings=image)


__all__ = ["LabelGuidedSupCon", "MissingCaptionsError"]
