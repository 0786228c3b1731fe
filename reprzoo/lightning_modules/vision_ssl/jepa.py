"""The JEPA family: predict the representation of what is not seen from what is, in representation space.

- I-JEPA: "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture" (Assran et al.,
  CVPR 2023, arXiv:2301.08243).
- SparseJEPA: "SparseJEPA: Sparse Representation Learning of Joint Embedding Predictive Architectures" (Hartman &
  Varshney, 2025, arXiv:2504.16140).
- seq-JEPA: "seq-JEPA: Autoregressive Predictive Learning of Invariant-Equivariant World Models" (Ghaemi, Muller &
  Bakhtiari, 2025, arXiv:2505.03176).

I-JEPA and SparseJEPA run a timm ViT by hand on token subsets (``reprzoo.backbones.vit_tokens``): timm's
``forward`` takes whole images only.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones.vit_tokens import PATCH_TOKEN_VIT, freeze_sincos_positions, sincos_pos_embed, vit_patch_tokens
from reprzoo.components.ema import copy_as_target
from reprzoo.components.heads import BYOLPredictionHead
from reprzoo.components.representation import Represent
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses import group_lasso, jepa_loss, negative_cosine_similarity, oi_vae_loss
from reprzoo.training.optim import cosine_schedule

#: ViT options I-JEPA needs: patch tokens only, average pooling of the normalised tokens as the representation.
VIT_DEFAULTS = PATCH_TOKEN_VIT


# ---------------------------------------------------------------------------------------------------- masking
class MultiBlockMasks:
    """I-JEPA's multi-block masking on a ``(height, width)`` patch grid (arXiv:2301.08243, Sec. 3 and Fig. 4).

    Per batch, one target block size and one context block size are drawn (scale = fraction of the grid, aspect =
    height/width); per image, ``num_targets`` target blocks and one context block are placed uniformly, and the
    target patches are removed from the context. Context masks are cut to the shortest in the batch (taking
    patches in raster order, as the authors' collator does) so that they stack; a context with fewer than
    ``min_keep`` patches is redrawn.

    Returns ``(context, targets)``: patch indices of shape ``(batch, n_context)`` and ``(num_targets, batch,
    n_target)``.
    """

    def __init__(
        self,
        grid_size: tuple[int, int],
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        context_aspect: tuple[float, float] = (1.0, 1.0),
        min_keep: int = 10,
        max_tries: int = 100,
    ):
        if num_targets < 1:
            raise ValueError(f"num_targets must be at least 1, got {num_targets}")
        for name, (lo, hi) in {"target_scale": target_scale, "context_scale": context_scale}.items():
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got {(lo, hi)}")
        self.grid = tuple(int(g) for g in grid_size)
        self.num_targets, self.min_keep, self.max_tries = num_targets, min_keep, max_tries
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale, self.context_aspect = context_scale, context_aspect

    def block_size(self, scale: tuple[float, float], aspect: tuple[float, float]) -> tuple[int, int]:
        H, W = self.grid
        area = H * W * (scale[0] + (scale[1] - scale[0]) * torch.rand(()).item())
        ratio = aspect[0] + (aspect[1] - aspect[0]) * torch.rand(()).item()
        h, w = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        return max(1, min(h, H - 1)), max(1, min(w, W - 1))  # the authors keep blocks strictly inside the grid

    def blocks(self, shape: tuple[int, ...], h: int, w: int) -> torch.Tensor:
        """Boolean masks ``(*shape, H, W)`` of ``h x w`` blocks placed uniformly at random."""
        H, W = self.grid
        top = torch.randint(0, H - h + 1, (*shape, 1, 1))
        left = torch.randint(0, W - w + 1, (*shape, 1, 1))
        rows, cols = torch.arange(H).view(H, 1), torch.arange(W).view(1, W)
        return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)

    def __call__(self, batch_size: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        (th, tw), (ch, cw) = (
            self.block_size(self.target_scale, self.target_aspect),
            self.block_size(self.context_scale, self.context_aspect),
        )
        targets = self.blocks((batch_size, self.num_targets), th, tw)
        context = self.blocks((batch_size,), ch, cw) & ~targets.any(1)
        for attempt in range(self.max_tries + 1):  # redraw the images whose context is too small
            short = context.flatten(1).sum(1) < self.min_keep
            if not short.any():
                break
            if attempt == self.max_tries:
                raise RuntimeError(
                    f"multi-block masking left fewer than min_keep={self.min_keep} context patches in "
                    f"{self.max_tries} draws on a {self.grid} grid; lower min_keep or the target scale"
                )
            n = int(short.sum())
            targets[short] = self.blocks((n, self.num_targets), th, tw)
            context[short] = self.blocks((n,), ch, cw) & ~targets[short].any(1)
        keep = int(context.flatten(1).sum(1).min())
        # the first `keep` context patches in raster order: a stable sort puts the kept (False after ~) first
        context_idx = torch.sort((~context.flatten(1)).to(torch.uint8), dim=1, stable=True).indices[:, :keep]
        target_idx = targets.flatten(2).nonzero()[:, 2].view(batch_size, self.num_targets, th * tw).transpose(0, 1)
        return context_idx.to(device), target_idx.contiguous().to(device)


class JEPAPredictor(nn.Module):
    """I-JEPA's narrow ViT predictor: context tokens projected to ``pred_dim``, one learnable mask token plus the
    positional embedding per target patch, ``depth`` transformer blocks, projection back to the encoder width.
    Each target block is predicted separately from the whole context (the context is repeated per block)."""

    def __init__(self, grid_size: tuple[int, int], embed_dim: int, pred_dim: int = 384, depth: int = 6, num_heads: int = 12):
        super().__init__()
        from timm.layers import trunc_normal_
        from timm.models.vision_transformer import Block

        if pred_dim % num_heads or pred_dim % 4:
            raise ValueError(f"pred_dim={pred_dim} must be divisible by num_heads={num_heads} and by 4")
        self.embed = nn.Linear(embed_dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        self.register_buffer("pos_embed", sincos_pos_embed(grid_size, pred_dim), persistent=False)
        self.blocks = nn.Sequential(*[Block(pred_dim, num_heads, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(pred_dim)
        self.proj = nn.Linear(pred_dim, embed_dim)
        trunc_normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        """``context`` ``(B, Nc, D)`` at ``context_idx`` ``(B, Nc)`` -> predictions ``(T, B, Nt, D)`` for
        ``target_idx`` ``(T, B, Nt)``."""
        T, B, Nt = target_idx.shape
        x = (self.embed(context) + self.pos_embed[context_idx]).repeat(T, 1, 1)
        masks = self.mask_token + self.pos_embed[target_idx.reshape(T * B, Nt)]
        x = self.norm(self.blocks(torch.cat([x, masks], dim=1)))
        return self.proj(x[:, -Nt:]).view(T, B, Nt, -1)


# ---------------------------------------------------------------------------------------------------- I-JEPA
@register_method(
    title="Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture",
    wing="vision-ssl",
    arxiv="2301.08243",
)
class IJEPA(EmbeddingModule):
    """From a single context block, a predictor regresses the representations of several target blocks of the
    same image, made by a target encoder (the context encoder's EMA) that sees the whole image.

    ``backbone`` is the **target** encoder: the paper evaluates its average-pooled output (Sec. 5), so ``embed``,
    the kNN monitor and a zoo export all use it. The trained context encoder is ``context_encoder``.

    Paper defaults: 4 target blocks of scale (0.15, 0.2) and aspect (0.75, 1.5), a context block of scale
    (0.85, 1.0) minus the targets; predictor of width 384 (depth 6 here; the paper ablates depth and its ViT-H
    config uses 12); fixed sine-cosine positional embeddings; AdamW, lr 1e-3 after a linear warmup (15 epochs)
    then cosine to 1e-6, weight decay 0.04 -> 0.4 (cosine), EMA 0.996 -> 1; only random resized crops as
    augmentation (the recipes set it).

    Ours (deliberate differences from the authors' released code):
        - the loss is the paper's squared L2 (Sec. 3, ``reprzoo.losses.jepa_loss``); the authors' code trains with
          smooth L1 (``F.smooth_l1_loss``) on the layer-normalised targets;
        - the EMA decay rises from 0.996 to 1 on the base's cosine schedule (BYOL's); the authors' code raises it
          linearly over training.

    Args:
        pred_dim: predictor width.
        pred_depth: predictor blocks.
        pred_num_heads: predictor attention heads.
        num_targets: target blocks per image.
        target_scale: target block area, fraction of the patch grid.
        target_aspect: target block aspect ratio range.
        context_scale: context block area range.
        min_keep: least number of context patches.
        final_weight_decay: weight decay at the end of its cosine schedule from ``weight_decay``.
        tau_base: initial EMA decay of the target encoder.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        backbone: str = "vit_tiny_patch16_224",
        backbone_kwargs: dict[str, Any] | None = None,
        pred_dim: int = 384,
        pred_depth: int = 6,
        pred_num_heads: int = 12,
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        min_keep: int = 10,
        tau_base: float = 0.996,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.04,
        final_weight_decay: float = 0.4,
        warmup_epochs: float = 15.0,
        min_lr_ratio: float = 1e-3,
        **kwargs,
    ):
        from timm.models import is_model_in_modules

        if not is_model_in_modules(backbone, ["vision_transformer"]):
            raise ValueError(f"{type(self).__name__} needs a timm VisionTransformer backbone, got {backbone!r}")
        super().__init__(
            backbone=backbone,
            backbone_kwargs={**VIT_DEFAULTS, **(backbone_kwargs or {})},
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio,
            **kwargs,
        )
        self.tau_base = tau_base
        grid = tuple(self.backbone.patch_embed.grid_size)
        freeze_sincos_positions(self.backbone)  # I-JEPA's fixed sine-cosine positions
        self.context_encoder = copy_as_target(self.backbone)  # same weights; trainable below, the target is not
        for name, p in self.context_encoder.named_parameters():
            p.requires_grad_(name != "pos_embed")
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.masks = MultiBlockMasks(grid, num_targets, target_scale, target_aspect, context_scale, min_keep=min_keep)
        self.predictor = JEPAPredictor(grid, self.feature_dim, pred_dim, pred_depth, pred_num_heads)

    @property
    def momentum_pairs(self):
        return [(self.context_encoder, self.backbone)]

    def param_groups(self):
        params = list(self._named_trainable(exclude=("probe.",)))
        return [{"name": "online", "params": params, "cosine_weight_decay": True}]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """I-JEPA's cosine weight-decay schedule from ``weight_decay`` to ``final_weight_decay``."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        wd = cosine_schedule(self.trainer.global_step, total, self.hparams.weight_decay, self.hparams.final_weight_decay)
        for group in self.trainer.optimizers[0].param_groups:
            if group.get("cosine_weight_decay") and group["weight_decay"] > 0:
                group["weight_decay"] = wd

    @torch.no_grad()
    def target_representations(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target encoder's patch tokens ``(B, N, D)`` and its pooled representation ``(B, D)``."""
        tokens = self.backbone.forward_features(images)
        return tokens[:, self.backbone.num_prefix_tokens :], self.backbone.forward_head(tokens, pre_logits=True)

    def context_penalty(self, context: torch.Tensor) -> torch.Tensor | None:
        """An extra loss on the context encoder's patch tokens; none in I-JEPA."""
        return None

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        images = views[0]
        context_idx, target_idx = self.masks(images.shape[0], images.device)
        tokens, features = self.target_representations(images)
        dim = tokens.shape[-1]
        targets = torch.gather(
            tokens.unsqueeze(0).expand(len(target_idx), -1, -1, -1), 2, target_idx.unsqueeze(-1).expand(-1, -1, -1, dim)
        )  # (T, B, Nt, D)
        context = vit_patch_tokens(self.context_encoder, images, context_idx)
        predictions = self.predictor(context, context_idx, target_idx)
        loss = jepa_loss(predictions, targets)
        penalty = self.context_penalty(context)
        if penalty is not None:
            loss = loss + penalty
        return TrainingOutput(loss, features=features, embeddings=context.mean(1))


# ---------------------------------------------------------------------------------------------------- SparseJEPA
@register_method(
    title="SparseJEPA: Sparse Representation Learning of Joint Embedding Predictive Architectures",
    wing="vision-ssl",
    arxiv="2504.16140",
    note="the abstract gives no values: the oi-VAE weights (alpha 1e-4, beta, lambda), the groups G and latents K, "
    "and the (sub)gradient group lasso are reprzoo's own",
)
class SparseJEPA(IJEPA):
    """I-JEPA plus an oi-VAE on the context encoder's patch representations, whose group-lasso penalty makes
    semantically related feature groups share latent dimensions.

    The ``D`` features of a patch token ``s`` (layer-normalised) form ``G`` groups of ``D/G``. A Gaussian posterior
    ``q(z|s) = N(mu(s), diag sigma^2(s))`` over ``K`` latents feeds per-group linear generators
    ``s_hat^(g) = W^(g) z + b^(g)`` (oi-VAE, arXiv:1802.06765, with identity group nonlinearities). The loss is

        L = L_I-JEPA + alpha * (||s - s_hat||^2 + beta * KL(q(z|s) || N(0, I))) / D
              + lambda * sum_g sum_j ||W^(g)_{:, j}||_2

    The group lasso zeroes whole columns, so each latent dimension drives only the groups it explains together, and
    the reconstruction term pushes the encoder to produce features that such shared latents explain; the JEPA term
    keeps predictive performance. The abstract gives no values: ``alpha``, ``beta``, ``lambda``, ``G``, ``K`` are
    ours, and the group lasso is minimised by plain (sub)gradients rather than oi-VAE's proximal step. ``alpha``
    defaults to 1e-4: at initialisation the JEPA gradient reaching the encoder is about 1e-3 of the oi-VAE's (the
    predictor starts near zero), and with ``alpha`` >= 1e-3 the reconstruction term, which a collapsed token map
    satisfies, wins; on digits alpha 1e-3 ends below random init (kNN 0.34 vs 0.46), 1e-4 above I-JEPA (0.55 vs 0.52).

    Args:
        num_groups: feature groups G (must divide the encoder width).
        latent_dim: latent dimensions K.
        sparse_weight: alpha, weight of the oi-VAE negative ELBO.
        kl_weight: beta, weight of its KL term.
        group_lasso_weight: lambda.
        kwargs: options of :class:`IJEPA`.
    """

    def __init__(
        self,
        num_groups: int = 8,
        latent_dim: int = 32,
        sparse_weight: float = 1e-4,
        kl_weight: float = 1.0,
        group_lasso_weight: float = 1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        dim = self.feature_dim
        if dim % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide the encoder width {dim}")
        self.latent_encoder = nn.Linear(dim, 2 * latent_dim)  # mean and log-variance of q(z|s)
        self.group_weights = nn.Parameter(torch.randn(num_groups, dim // num_groups, latent_dim) / math.sqrt(latent_dim))
        self.group_bias = nn.Parameter(torch.zeros(dim))

    def sparse_code(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(reconstruction, mu, logvar)`` of patch tokens ``(..., D)``; z is sampled while training."""
        mu, logvar = self.latent_encoder(tokens).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        groups = torch.einsum("gdk,...k->...gd", self.group_weights, z)
        return groups.flatten(-2) + self.group_bias, mu, logvar

    def context_penalty(self, context: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        tokens = F.layer_norm(context, context.shape[-1:])
        reconstruction, mu, logvar = self.sparse_code(tokens)
        elbo = oi_vae_loss(tokens, reconstruction, mu, logvar, hp.kl_weight)
        lasso = group_lasso(self.group_weights)
        if self._trainer is not None:
            self.log("train/oi_vae", elbo)
            self.log("train/group_lasso", lasso)
        return hp.sparse_weight * elbo + hp.group_lasso_weight * lasso


# ---------------------------------------------------------------------------------------------------- seq-JEPA
@register_method(
    title="seq-JEPA: Autoregressive Predictive Learning of Invariant-Equivariant World Models",
    wing="vision-ssl",
    arxiv="2505.03176",
)
class SeqJEPA(EmbeddingModule):
    """M views of an image are encoded (equivariant per-view representations z_i); each z_i is concatenated with an
    embedding of the relative action a_i that produces the next view; a transformer encoder with a learnable [AGG]
    token aggregates the sequence into an invariant representation; a predictor, conditioned on the action a_M to
    the held-out view M+1, regresses that view's representation made by an EMA target encoder, with loss 1 - cos.

    Training batches carry ``{"views": [M + 1 views], "params": (batch, M + 1, P)}`` (the ``action_sequence``
    augmentation); a_i = params_{i+1} - params_i. As in the authors' code: the action embedding is a bias-free
    linear layer followed by a BatchNorm without affine parameters; the last context view's action slot is zero;
    the aggregator is a post-norm transformer (MLP ratio 4) with a final LayerNorm; the predictor is
    Linear-BN-ReLU-Linear; the EMA decay is constant (``tau_base``); AdamW, lr 4e-4 after 20 warmup epochs, weight
    decay 1e-3, 3 context views, action embedding 128, 3 layers of 4 heads, predictor hidden 1024.

    ``embed`` returns the [AGG] output for the single view (``representation="aggregate"``, the invariant one the
    paper classifies with) or the encoder output (``"encoder"``, the equivariant one); zoo exports hold the encoder.

    Args:
        action_dim: parameters per view (10 for ``action_sequence``).
        action_embed_dim: width of the action embedding.
        agg_layers: transformer layers of the aggregator.
        agg_heads: its attention heads (must divide encoder width + action_embed_dim).
        pred_hidden_dim: hidden width of the predictor MLP.
        representation: what ``embed`` returns, ``aggregate`` or ``encoder``.
        tau_base: EMA decay of the target encoder (constant).
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        action_dim: int = 10,
        action_embed_dim: int = 128,
        agg_layers: int = 3,
        agg_heads: int = 4,
        pred_hidden_dim: int = 1024,
        representation: Literal["aggregate", "encoder"] = "aggregate",
        tau_base: float = 0.996,
        optimizer: str = "adamw",
        lr: float = 4e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 1e-3,
        warmup_epochs: float = 20.0,
        **kwargs,
    ):
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            **kwargs,
        )
        if representation not in ("aggregate", "encoder"):
            raise ValueError(f"representation must be 'aggregate' or 'encoder', got {representation!r}")
        width = self.feature_dim + action_embed_dim
        if width % agg_heads:
            raise ValueError(f"agg_heads={agg_heads} must divide encoder width + action_embed_dim = {width}")
        self.tau_base = self.tau_final = tau_base
        self.action_embed = nn.Sequential(
            nn.Linear(action_dim, action_embed_dim, bias=False), nn.BatchNorm1d(action_embed_dim, affine=False)
        )
        self.agg_token = nn.Parameter(torch.zeros(1, 1, width))
        layer = nn.TransformerEncoderLayer(width, agg_heads, 4 * width, batch_first=True)
        self.aggregator = nn.TransformerEncoder(layer, agg_layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.predictor = BYOLPredictionHead(width + action_embed_dim, pred_hidden_dim, self.feature_dim)
        self.target_backbone = copy_as_target(self.backbone)
        if representation == "aggregate":  # the probe reads the aggregate
            self.resize_probe(width)

    @property
    def momentum_pairs(self):
        return [(self.backbone, self.target_backbone)]

    def param_groups(self):
        return [{"name": "online", "params": list(self._named_trainable(exclude=("probe.", "target_")))}]

    def embed_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Action embeddings ``(..., action_embed_dim)`` of relative actions ``(..., P)``."""
        return self.action_embed(actions.reshape(-1, actions.shape[-1])).view(*actions.shape[:-1], -1)

    def aggregate(self, z: torch.Tensor, action_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """The [AGG] output for encoded views ``z`` ``(B, M, D)`` concatenated with action embeddings ``(B, M, A)``
        (``None``: zeros, no action)."""
        if action_embeddings is None:
            action_embeddings = z.new_zeros(*z.shape[:2], self.agg_token.shape[-1] - z.shape[-1])
        tokens = torch.cat([z, action_embeddings], dim=-1)
        return self.aggregator(torch.cat([self.agg_token.expand(len(z), -1, -1), tokens], dim=1))[:, 0]

    def encoder(self) -> nn.Module:
        if self.hparams.representation != "aggregate":
            return self.backbone
        return Represent(self, SeqJEPA.embed_aggregate, self.agg_token.shape[-1])

    def embed_aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """The [AGG] output of a single view without action: the paper's aggregate representation."""
        return self.aggregate(self.backbone(self._format(x)).unsqueeze(1))

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if not isinstance(views, dict) or "params" not in views:
            raise ValueError("seq-JEPA needs views with their transformation parameters: use augmentation: action_sequence")
        images, params = views["views"], views["params"]
        M, B = len(images) - 1, len(images[0])
        if params.shape[-1] != self.action_embed[0].in_features:
            raise ValueError(f"views carry {params.shape[-1]} parameters, action_dim is {self.action_embed[0].in_features}")
        z = self.backbone(self._format(torch.cat(images[:M]))).view(M, B, -1).transpose(0, 1)  # (B, M, D)
        actions = self.embed_actions(params[:, 1:] - params[:, :-1])  # a_i takes view i to view i+1, (B, M, A)
        context_actions = torch.cat([actions[:, : M - 1], torch.zeros_like(actions[:, :1])], dim=1)
        agg = self.aggregate(z, context_actions)
        prediction = self.predictor(torch.cat([agg, actions[:, M - 1]], dim=-1))
        with torch.no_grad():
            target = self.target_backbone(self._format(images[M]))
        loss = 1 + negative_cosine_similarity(prediction, target)
        with torch.no_grad():  # the probe reads what embed() gives
            features = self.aggregate(z[:, :1]) if self.hparams.representation == "aggregate" else z[:, 0]
        return TrainingOutput(loss, features=features, embeddings=agg)
