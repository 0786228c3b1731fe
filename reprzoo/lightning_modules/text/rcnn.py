"""The recurrent convolutional neural network document encoder of "Word and Document Embeddings based on Neural
Network Approaches" (Siwei Lai, PhD thesis, 2016, arXiv:1611.05962), first published as "Recurrent Convolutional
Neural Networks for Text Classification" (Lai, Xu, Liu & Zhao, AAAI 2015)."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reprzoo.components.pooling import pool_tokens
from reprzoo.errors import ReprzooError
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method


class RCNNEncoder(nn.Module):
    """Each word is represented with its left context ``c_l(w_i) = tanh(W_l c_l(w_{i-1}) + W_sl e(w_{i-1}))``, its
    embedding and its right context ``c_r(w_i) = tanh(W_r c_r(w_{i+1}) + W_sr e(w_{i+1}))``; ``y_i = tanh(W_2 [c_l;
    e; c_r] + b_2)``, max-pooled over the words into the document vector (``hidden`` values)."""

    def __init__(self, vocab_size: int, dim: int = 50, context: int = 50, hidden: int = 100):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.contexts = nn.RNN(dim, context, batch_first=True, bidirectional=True)  # tanh recurrences, both sides
        self.projection = nn.Linear(2 * context + dim, hidden)
        self.context = context
        self.num_features = hidden

    def token_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask", ids.ne(0))
        e = self.embedding(ids)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)  # right context: no padding
        states = pad_packed_sequence(self.contexts(packed)[0], batch_first=True, total_length=ids.shape[1])[0]
        forward, backward = states[..., : self.context], states[..., self.context :]
        left = F.pad(forward, (0, 0, 1, 0))[:, :-1]  # c_l(w_i) is the recurrence up to w_{i-1}; c_l(w_1) = 0
        right = F.pad(backward, (0, 0, 0, 1))[:, 1:]  # c_r(w_i) from w_{i+1} on; zero past the last word
        return torch.tanh(self.projection(torch.cat([left, e, right], -1)))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = batch.get("attention_mask", batch["input_ids"].ne(0))
        return pool_tokens(self.token_states(batch), mask, "max")


@register_method(
    title="Word and Document Embeddings based on Neural Network Approaches",
    wing="text-and-retrieval",
    modality="text",
    arxiv="1611.05962",
)
class RCNN(EmbeddingModule):
    """The thesis's document model: a recurrent structure captures each word's left and right contexts (a
    bidirectional recurrence), a tanh layer combines them with the word's embedding, and max-pooling over time (the
    "convolutional" part) keeps the most important latent semantic factors; a softmax layer over the document
    classes trains it, and the max-pooled vector is the document representation. The thesis's word-embedding
    baselines are reprzoo's :class:`~reprzoo.lightning_modules.SkipGramNegativeSampling` (and GloVe's relation to
    it); its defaults here: 50-d word embeddings, 50-d contexts, 100 hidden units, SGD lr 0.01.

    Ours:
        - Labelled documents are needed (documents of labels -1 are skipped; a batch without any label is an
          error): the recipe trains on the mini 20-newsgroups' labelled split (``TopicSentences``).
        - Word embeddings are learned from scratch on the training documents' WordPiece tokens (the thesis
          initialises them with skip-gram vectors trained on Wikipedia, and uses whole words).
        - The joint Chinese character-word embeddings of the thesis are left out (no Chinese corpus here).
        - The recipe trains with AdamW (lr 3e-3, batches of 16) instead of the thesis's SGD, so that the 140
          training posts fit in a few epochs; SGD lr 0.01 stays the class default.

    Args:
        vocab_size: token ids of the datamodule's tokenizer (the command line fills it).
        num_classes: document classes (the command line links it from the datamodule).
        dim, context, hidden: word embedding, context and hidden (pooled) sizes.
        kwargs: :class:`EmbeddingModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        num_classes: int | None = None,
        dim: int = 50,
        context: int = 50,
        hidden: int = 100,
        optimizer: str = "sgd",
        lr: float = 0.01,
        lr_reference_batch: int | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        if vocab_size is None or not num_classes:
            raise ValueError("RCNN needs vocab_size and num_classes (the command line takes them from the datamodule)")
        kwargs.pop("backbone", None), kwargs.pop("backbone_kwargs", None)  # built from the arguments above
        sizes = dict(vocab_size=vocab_size, dim=dim, context=context, hidden=hidden)
        super().__init__(
            backbone=RCNNEncoder(**sizes),
            num_classes=num_classes,
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            momentum=momentum,
            weight_decay=weight_decay,
            **kwargs,
        )
        self.backbone_spec = ("rcnn_encoder", sizes)  # what a pushed config records (rebuilt from init args)
        self.classifier = nn.Linear(hidden, num_classes)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        features = self.backbone(views[0])
        known = labels >= 0 if labels is not None else None
        if known is None or not known.any():
            raise ReprzooError("RCNN is trained as a document classifier: its batches need labels (see TopicSentences)")
        loss = F.cross_entropy(self.classifier(features[known]), labels[known])
        return TrainingOutput(loss, features=features.detach(), embeddings=features.detach())


__all__ = ["RCNN", "RCNNEncoder"]
