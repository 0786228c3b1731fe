"""SIE: "Self-supervised learning of Split Invariant Equivariant representations" (Garrido, Najman & LeCun,
ICML 2023, arXiv:2302.10283)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.vision_ssl.redundancy import VICRegProjectionHead
from reprzoo.losses.equivariant import sie_loss


class HyperNetworkPredictor(nn.Module):
    """pred_g(z) = W(g) z: a hypernetwork H maps the transformation parameters g to the weights of a linear map
    of the equivariant embedding (SIE, Sec. 3.2: "the predictor's weights are the output of a hypernetwork that
    takes the transformation as input", so the predictor cannot ignore g and collapse to invariance).

    Args:
        dim: width of the equivariant embedding.
        param_dim: entries of g.
        hypernetwork: ``linear`` (W(g) = sum_k g_k A_k, the paper's default) or ``deep`` (a 3-layer MLP).
        bias: give the hypernetwork's layers a bias (off in the paper's default).
    """

    def __init__(self, dim: int, param_dim: int, hypernetwork: Literal["linear", "deep"] = "linear", bias: bool = False):
        super().__init__()
        if hypernetwork not in ("linear", "deep"):
            raise ValueError(f"hypernetwork must be 'linear' or 'deep', got {hypernetwork!r}")
        self.dim, self.param_dim = dim, param_dim
        out = dim * dim
        if hypernetwork == "linear":
            self.hypernet = nn.Linear(param_dim, out, bias=bias)
        else:
            self.hypernet = nn.Sequential(
                nn.Linear(param_dim, param_dim, bias=bias), nn.ReLU(),
                nn.Linear(param_dim, param_dim, bias=bias), nn.ReLU(),
                nn.Linear(param_dim, out, bias=bias),
            )  # fmt: skip
        # W(g) starts as a norm-preserving random map (entries of variance 1/dim for unit-norm g); PyTorch's default
        # uniform(+-1/sqrt(param_dim)) init of the official code makes ||W(g) z|| ~ sqrt(dim / 3) ||z|| at the start,
        # an equivariance error that swamps the other terms of a short schedule.
        last = self.hypernet if hypernetwork == "linear" else self.hypernet[-1]
        fan = last.weight.shape[1] / (param_dim if hypernetwork == "linear" else 1)
        nn.init.normal_(last.weight, std=(dim * fan) ** -0.5)

    def weights(self, g: torch.Tensor) -> torch.Tensor:
        """The predictor's matrices W(g), shape ``(batch, dim, dim)`` (output x input, as ``nn.Linear``)."""
        if g.ndim != 2 or g.shape[1] != self.param_dim:
            raise ValueError(f"transformation parameters must be (batch, {self.param_dim}), got {tuple(g.shape)}")
        return self.hypernet(g).view(-1, self.dim, self.dim)

    def forward(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.weights(g), z.unsqueeze(-1)).squeeze(-1)


@register_method(
    title="Self-supervised learning of Split Invariant Equivariant representations",
    wing="vision-ssl",
    arxiv="2302.10283",
)
class SIE(EmbeddingModule):
    """VICReg with the representation split in two: the first part is projected to z_inv and made invariant
    between views; the second is projected to z_eq, and a hypernetwork predictor maps z_eq(x) and the known
    relative transformation g to z_eq(g.x). Variance and covariance regularise [z_inv, z_eq] of each view and the
    predictor output.

    Training batches must carry g: a transform returning ``{"views": [x1, x2], "params": g}`` (``rotation_pairs``:
    g = (cos, sin) of the relative in-plane rotation, plus colour differences with ``color_params``).

    Defaults are the paper's (official code): half of the representation equivariant (256 of ResNet-18's 512),
    expander 2048-2048-2048 split between the parts in proportion (1024-1024-1024 each), linear hypernetwork
    without biases, sim 10, std 10, cov 1, equivariance factor 0.45, variance on the predictor output; Adam
    lr 1e-3 (constant, not scaled by batch), weight decay 1e-6. The paper's g is a 4-d quaternion of a 3-D rotation
    (3DIEBench); on images ``param_dim`` is 2 (in-plane rotation). AdamW stands in for Adam with L2 (equal at
    this weight decay). The hypernetwork starts norm-preserving (weights N(0, 1/dim)) instead of PyTorch's default
    init: an adaptation that lets short schedules learn (see :class:`HyperNetworkPredictor`).

    Args:
        equi_dim: representation entries in the equivariant part (the last ones); ``None`` uses half.
        proj_hidden_dim: hidden width of the full expander, split between the parts.
        proj_output_dim: output width of the full expander, split between the parts.
        proj_layers: linear layers of each expander.
        param_dim: entries of the transformation parameters g.
        hypernetwork: ``linear`` or ``deep`` hypernetwork.
        sim_coeff: weight of the invariance term.
        std_coeff: weight of the variance terms.
        cov_coeff: weight of the covariance term.
        equi_factor: weight of the equivariance term relative to ``sim_coeff``.
        pred_std: variance hinge on the predictor output (SIE; off is the paper's "SIE no var" ablation).
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        equi_dim: int | None = None,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        proj_layers: int = 3,
        param_dim: int = 2,
        hypernetwork: Literal["linear", "deep"] = "linear",
        sim_coeff: float = 10.0,
        std_coeff: float = 10.0,
        cov_coeff: float = 1.0,
        equi_factor: float = 0.45,
        pred_std: bool = True,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 1e-6,
        scheduler: str = "constant",
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch, weight_decay=weight_decay,
            scheduler=scheduler, **kwargs,
        )  # fmt: skip
        d = self.feature_dim
        self.equi_dim = d // 2 if equi_dim is None else equi_dim
        if not 0 < self.equi_dim < d:
            raise ValueError(f"equi_dim must lie in (0, {d}) for a {d}-d representation, got {self.equi_dim}")
        inv_ratio, eq_ratio = (d - self.equi_dim) / d, self.equi_dim / d
        self.projector_inv = VICRegProjectionHead(
            d - self.equi_dim, round(proj_hidden_dim * inv_ratio), round(proj_output_dim * inv_ratio), proj_layers
        )
        self.projector_eq = VICRegProjectionHead(
            self.equi_dim, round(proj_hidden_dim * eq_ratio), round(proj_output_dim * eq_ratio), proj_layers
        )
        self.predictor = HyperNetworkPredictor(self.projector_eq.out_dim, param_dim, hypernetwork)

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_inv, z_eq) embeddings of backbone features."""
        cut = features.shape[1] - self.equi_dim
        return self.projector_inv(features[:, :cut]), self.projector_eq(features[:, cut:])

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if not isinstance(views, dict) or "params" not in views:
            raise ValueError(
                "SIE needs the relative transformation of each pair: train with a transform that returns "
                "{'views': [x1, x2], 'params': g}, e.g. data augmentation 'rotation_pairs'"
            )
        hp = self.hparams
        x1, x2 = (self._format(x) for x in views["views"][:2])
        g = views["params"].to(x1.dtype)
        f1, f2 = self.backbone(x1), self.backbone(x2)
        (inv1, eq1), (inv2, eq2) = self.split(f1), self.split(f2)
        eq2_pred = self.predictor(eq1, g)
        loss = sie_loss(inv1, inv2, eq1, eq2, eq2_pred, hp.sim_coeff, hp.std_coeff, hp.cov_coeff, hp.equi_factor, hp.pred_std)
        return TrainingOutput(loss, features=f1, embeddings=torch.cat([inv1, eq1], dim=1))
