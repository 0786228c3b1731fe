"""AMCL: "Adaptive Multi-head Contrastive Learning" (Wang, Koniusz, Gedeon & Zheng, ECCV 2024, arXiv:2310.05615)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.components.ema import copy_as_target
from reprzoo.components.heads import ProjectionHead
from reprzoo.components.memory import MemoryQueue
from reprzoo.distributed import gather
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.vision_ssl.redundancy import BarlowTwinsProjectionHead
from reprzoo.losses.amcl import amcl_barlow_twins, amcl_info_nce, amcl_nt_xent

Base = Literal["simclr", "moco", "barlow"]


def _contrastive_head(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool) -> ProjectionHead:
    norm = nn.BatchNorm1d(hidden_dim) if batch_norm else None
    return ProjectionHead([(in_dim, hidden_dim, norm, nn.ReLU(inplace=True), True), (hidden_dim, out_dim, None, None, True)])


def _temperature_net(in_dim: int, hidden_dim: int) -> nn.Module:
    """phi: "the shared MLP layer for learning the temperature parameters" (one for all heads)."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, hidden_dim))


@register_method(title="Adaptive Multi-head Contrastive Learning", wing="vision-ssl", arxiv="2310.05615")
class AMCL(EmbeddingModule):
    """Several projection heads on one backbone, each giving its own similarity of every positive and negative pair;
    each pair's similarity is divided by its own temperature sigma(phi(a)^T phi(b)) (a network shared by the
    heads), and the temperatures are regularised by beta * (d/2 log tau + 1/tau). The loss is the negative
    log-likelihood of the head-wise posterior of the positive (``reprzoo.losses.amcl``), summed over heads.

    ``base`` picks the framework wrapped: ``simclr`` (NT-Xent over the 2N views of the global batch), ``moco``
    (MoCo v2: a momentum key encoder, EMA of backbone and heads, and one queue of negatives per head; symmetrised
    over the two views) or ``barlow`` (each entry of each head's cross-correlation matrix gets a temperature from
    the two channel vectors, so the temperature network reads the global batch: ``barlow_global_batch``).

    Defaults are the paper's CIFAR setting as in the authors' code: 3 heads, beta 0.01 for SimCLR / MoCo and 1e-4
    for Barlow Twins, temperatures in (1e-5, 2); SimCLR-style heads 512 -> 128; SGD lr 0.06, momentum 0.9,
    weight decay 5e-4, cosine schedule; MoCo momentum 0.99 with 4096 negatives. The paper restricts negatives to the
    top-k most similar in practice (``topk``); ``None`` keeps the exact posterior over all negatives.

    Args:
        base: the contrastive framework the heads and loss wrap.
        num_heads: projection heads on the backbone.
        proj_hidden_dim: hidden width of each head.
        proj_output_dim: output width of each head.
        proj_layers: linear layers of each Barlow Twins head (SimCLR/MoCo heads have 2).
        temperature_hidden_dim: width of phi (``None``: the head's output width; 128 for Barlow Twins).
        beta: weight of the temperature regulariser (``None``: 0.01, or 1e-4 for Barlow Twins).
        tau_min: lower bound of the temperatures (eta).
        tau_max: upper bound of the temperatures (eta + iota).
        topk: negatives kept per anchor (SimCLR / MoCo); ``None`` keeps all.
        queue_size: negatives per head in the MoCo queue.
        key_momentum: EMA decay of the MoCo key encoder (constant).
        barlow_lambda: weight of Barlow Twins' off-diagonal term.
        barlow_global_batch: global batch size (the channel vectors' length) of the Barlow Twins temperature net.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        base: Base = "simclr",
        num_heads: int = 3,
        proj_hidden_dim: int = 512,
        proj_output_dim: int = 128,
        proj_layers: int = 3,
        temperature_hidden_dim: int | None = None,
        beta: float | None = None,
        tau_min: float = 1e-5,
        tau_max: float = 2.0,
        topk: int | None = None,
        queue_size: int = 4096,
        key_momentum: float = 0.99,
        barlow_lambda: float = 5e-3,
        barlow_global_batch: int = 512,
        optimizer: str = "sgd",
        lr: float = 0.06,
        lr_reference_batch: int | None = None,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        super().__init__(optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay, **kwargs)
        if base not in ("simclr", "moco", "barlow"):
            raise ValueError(f"base must be 'simclr', 'moco' or 'barlow', got {base!r}")
        if num_heads < 1:
            raise ValueError(f"num_heads must be at least 1, got {num_heads}")
        self.beta = beta if beta is not None else (1e-4 if base == "barlow" else 0.01)
        d, f = proj_output_dim, self.feature_dim
        if base == "barlow":
            heads = [BarlowTwinsProjectionHead(f, proj_hidden_dim, d, proj_layers) for _ in range(num_heads)]
            self.temperature = _temperature_net(barlow_global_batch, temperature_hidden_dim or 128)
        else:
            heads = [_contrastive_head(f, proj_hidden_dim, d, batch_norm=base == "simclr") for _ in range(num_heads)]
            self.temperature = _temperature_net(d, temperature_hidden_dim or d)
        self.heads = nn.ModuleList(heads)
        if base == "moco":
            self.tau_base = self.tau_final = key_momentum  # MoCo's constant momentum
            self.target_backbone = copy_as_target(self.backbone)
            self.target_heads = copy_as_target(self.heads)
            self.queues = nn.ModuleList(MemoryQueue(queue_size, d) for _ in range(num_heads))

    @property
    def momentum_pairs(self):
        if self.hparams.base != "moco":
            return []
        return [(self.backbone, self.target_backbone), (self.heads, self.target_heads)]

    def param_groups(self):
        return [{"name": "online", "params": list(self._named_trainable(exclude=("probe.", "target_")))}]

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        return self.temperature(F.normalize(z, dim=1))

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        x1, x2 = views[:2]
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1s, z2s = [head(f1) for head in self.heads], [head(f2) for head in self.heads]
        taus = dict(beta=self.beta, tau_min=hp.tau_min, tau_max=hp.tau_max)
        if hp.base == "simclr":
            loss = sum(amcl_nt_xent(z1, z2, self._phi(z1), self._phi(z2), topk=hp.topk, **taus) for z1, z2 in zip(z1s, z2s))
        elif hp.base == "moco":
            loss = self._moco_loss(x1, x2, z1s, z2s, taus)
        else:
            loss = sum(self._barlow_head_loss(z1, z2) for z1, z2 in zip(z1s, z2s))
        return TrainingOutput(loss, features=f1, embeddings=z1s[0])

    def _moco_loss(self, x1, x2, z1s, z2s, taus) -> torch.Tensor:
        with torch.no_grad():
            k1s = [head(self.target_backbone(x1)) for head in self.target_heads]
            k2s = [head(self.target_backbone(x2)) for head in self.target_heads]
        loss = 0.0
        for q1, q2, k1, k2, queue in zip(z1s, z2s, k1s, k2s, self.queues):
            negatives = queue.embeddings.clone()  # MoCo's queue, random unit vectors until filled
            t_neg = self._phi(negatives)
            loss = loss + 0.5 * (
                amcl_info_nce(q1, k2, negatives, self._phi(q1), self._phi(k2), t_neg, topk=self.hparams.topk, **taus)
                + amcl_info_nce(q2, k1, negatives, self._phi(q2), self._phi(k1), t_neg, topk=self.hparams.topk, **taus)
            )
            queue.enqueue(torch.cat([F.normalize(k1, dim=1), F.normalize(k2, dim=1)]))
        return loss

    def _barlow_head_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        g1, g2 = gather(z1), gather(z2)
        if g1.shape[0] != hp.barlow_global_batch:
            raise ValueError(
                f"AMCL on Barlow Twins reads channel vectors of the global batch: barlow_global_batch is "
                f"{hp.barlow_global_batch} but this step's global batch is {g1.shape[0]}"
            )
        t1, t2 = self.temperature(g1.T), self.temperature(g2.T)
        return amcl_barlow_twins(g1, g2, t1, t2, hp.barlow_lambda, self.beta, hp.tau_min, hp.tau_max, gather_distributed=False)
