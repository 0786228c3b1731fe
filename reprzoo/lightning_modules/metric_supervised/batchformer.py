"""BatchFormer: "BatchFormer: Learning to Explore Sample Relationships for Robust Representation Learning" (Hou, Yu &
Tao, CVPR 2022, arXiv:2203.06345).

A transformer encoder layer applied across the batch dimension (the mini-batch is the sequence) lets every sample's
features attend to the others' while training, so that rare classes borrow from related samples. A classifier shared
by the features before and after the layer (the two-stream training: the batch duplicated, labels repeated) makes the
classifier work without the layer, which is removed at test time: the model deployed is the backbone and the shared
classifier, and no test prediction depends on the rest of the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method


class BatchFormerLayer(nn.Module):
    """The authors' module: ``nn.TransformerEncoderLayer(dim, num_heads, dim_feedforward=dim, dropout)`` on the
    features seen as a sequence of length ``batch`` (one sequence), returning ``(batch, dim)``."""

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"BatchFormer's feature size {dim} must be divisible by num_heads={num_heads}")
        self.layer = nn.TransformerEncoderLayer(dim, num_heads, dim_feedforward=dim, dropout=dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer(features.unsqueeze(1)).squeeze(1)  # (seq=batch, 1, dim): attention across the batch


@register_method(
    title="BatchFormer: Learning to Explore Sample Relationships for Robust Representation Learning",
    wing="metric-and-supervised",
    arxiv="2203.06345",
)
class BatchFormer(SupervisedModule):
    """Cross-entropy with a BatchFormer layer between the representation and a shared linear classifier.

    Training: ``logits = classifier([z; BatchFormer(z)])`` against ``[y; y]``. Evaluation and export: the
    representation ``z`` (the backbone's features, or the embedding layer's with ``embedding_dim``) and the classifier
    on it; the layer is never used outside ``training_loss``.

    Ours:
        - The layer reads the exported representation (the backbone's pooled features), as the authors insert it
          before the classifier of their image classifiers.

    Args:
        num_heads: attention heads of the layer (4 in the authors' code).
        dropout: dropout of the layer (0.5 in the authors' code), also its feed-forward width is the feature size.
        kwargs: options of :class:`SupervisedModule` (``num_classes`` required).
    """

    def __init__(self, num_heads: int = 4, dropout: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters("num_heads", "dropout")
        self.batchformer = BatchFormerLayer(self.representation_dim, num_heads, dropout)

    def two_stream(self, representation: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([z; BatchFormer(z)], [y; y])``: the features of both streams and their labels."""
        return torch.cat([representation, self.batchformer(representation)]), torch.cat([labels, labels])

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        representation = self.represent(views[0])
        features, targets = self.two_stream(representation, labels)
        loss = self.cross_entropy(self.logits(features), targets)
        return TrainingOutput(loss, features=representation, embeddings=representation)
