"""KaLM-Embedding-V2's training techniques: "KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A
Versatile Embedding Model" (Zhao, Hu, Shan, Huang, Zhou, Zhang, Sun, Liu, Li, Wei, Pan, Xiang, Zhang, Wang, Yu, Hu
& Zhang, 2025, arXiv:2506.20923)."""

from __future__ import annotations

from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.text_misc import focal_info_nce_loss, mix_hard_negatives


@register_method(
    title="KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A Versatile Embedding Model",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2506.20923",
)
class KaLMEmbedding(TextEncoderModule):
    """A bidirectional transformer with mean pooling trained on (query, document) pairs with InfoNCE over
    in-batch negatives, made to concentrate on hard pairs by a focal-style weight ``(1 - p_i)^gamma`` of each
    query's loss (``p_i``: the probability of its positive), with online hard-negative mixing: each query's
    hardest in-batch negatives are mixed with each other and with the query into extra synthetic negatives
    (``reprzoo.losses.text_misc``), enriching hard negatives without offline mining.

    Ours:
        - Only the training techniques are ported: the encoder is a small BERT trained from scratch (the paper
          fine-tunes Qwen2-0.5B with its causal mask removed) on one data source, without the paper's
          multi-stage pipeline (weakly supervised pre-training, fine-tuning, contrastive distillation), its
          task instructions, its offline-mined hard negatives or the model soup.
        - The temperature, ``gamma`` and the mixing counts are our choices (the paper's values could not be
          read offline): temperature 0.05, gamma 1, 8 hardest, 4 + 4 synthetic negatives per query.
        - Synthetic negatives are built from the current batch's embeddings and carry no gradient (MoCHi's).

    Args:
        temperature: softmax temperature of the cosine similarities.
        gamma: focal exponent (0: plain InfoNCE).
        num_hardest: hardest in-batch negatives mixed per query.
        num_pair_mixes: synthetic negatives mixing two hard negatives, per query (0 with ``num_query_mixes``
            0: no mixing).
        num_query_mixes: synthetic negatives mixing the query and a hard negative, per query.
        kwargs: :class:`TextEncoderModule` options.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        temperature: float = 0.05,
        gamma: float = 1.0,
        num_hardest: int = 8,
        num_pair_mixes: int = 4,
        num_query_mixes: int = 4,
        **kwargs,
    ):
        kwargs.setdefault("backbone_kwargs", {"pooling": "mean"})
        super().__init__(vocab_size=vocab_size, **kwargs)
        if temperature <= 0 or gamma < 0:
            raise ValueError(f"need temperature > 0 and gamma >= 0, got {temperature}, {gamma}")

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        queries, documents = self.backbone(views[0]), self.backbone(views[1])
        h = self.hparams
        extra = None
        if h.num_pair_mixes + h.num_query_mixes > 0 and queries.shape[0] > 1:
            extra = mix_hard_negatives(queries, documents, h.num_hardest, h.num_pair_mixes, h.num_query_mixes)
        loss = focal_info_nce_loss(queries, documents, h.temperature, h.gamma, extra)
        return TrainingOutput(loss, features=queries.detach(), embeddings=queries.detach())


__all__ = ["KaLMEmbedding"]
