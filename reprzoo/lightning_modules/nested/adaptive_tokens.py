"""Variable-length representations: image tokenizers whose number of tokens is the representation's capacity.

- ALIT: "Adaptive Length Image Tokenization via Recurrent Allocation" (Duggal, Isola, Torralba & Freeman, 2024,
  arXiv:2411.02393).
- KARL: "Single-pass Adaptive Image Tokenization for Minimum Program Search" (Duggal, Byun, Freeman, Torralba &
  Isola, 2025, arXiv:2507.07995).
- Nugget: "Nugget: Neural Agglomerative Embeddings of Text" (Qin & Van Durme, ICML 2023, arXiv:2310.01732), on image
  patch tokens; its selector (:class:`NuggetSelector`) works on any token sequence, so a text encoder can reuse it.

All three share one tokenizer: a timm ``VisionTransformer`` (``backbone``) run by hand on patch tokens plus extra
tokens (timm's ``forward`` takes whole images only), and :class:`PixelDecoder`, a small transformer that reconstructs
the image's patches from a variable set of tokens. The papers reconstruct the codes of a pretrained VQGAN/VAE and
finish with perceptual and GAN losses; here the target is the (normalised) pixels of each patch, with a mean squared
error, and latent tokens stay continuous (the papers' continuous variant, without their vector quantiser).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones.vit_tokens import (
    PATCH_TOKEN_VIT,
    freeze_sincos_positions,
    run_blocks,
    sincos_pos_embed,
    vit_patch_embeddings,
    vit_patch_positions,
)
from reprzoo.components.representation import Represent
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.adaptive_tokens import (
    ALIT_VAE_HALTING_THRESHOLD,
    Nuggets,
    alit_rollout_weights,
    budget_reconstruction_loss,
    discretize_loss,
    halting_loss,
    nugget_attention_bias,
    patchify,
    per_sample_l1,
    reconstructed_tokens,
    select_nuggets,
)

#: ViT options the tokenizers need: patch tokens only (no class token); pooling is done here.
VIT_DEFAULTS = PATCH_TOKEN_VIT

#: KARL's bins of the reconstruction-quality command (L1 error of images in [0, 1], the authors' code).
KARL_LOSS_BINS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.09, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.24, 0.28, 0.32, 0.38)


# ---------------------------------------------------------------------------------------------------- shared parts
def masked_mean(tokens: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean over the tokens ``(batch, n, dim)`` where ``keep`` ``(batch, n)`` is True (all where ``None``)."""
    if keep is None:
        return tokens.mean(1)
    weights = keep.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class PixelDecoder(nn.Module):
    """Reconstructs every patch of an image from a set of memory tokens (the representation).

    One mask token plus a fixed sine-cosine position per patch is appended to the projected memory tokens, and
    ``depth`` ViT blocks attend over the whole sequence (the decoder of ALIT and KARL); a linear head maps each
    patch token to its pixels. ``memory_bias`` ``(batch, memory)`` is added to every attention logit towards a
    memory token: -inf removes a token (KARL's halted tokens), a score routes gradient into a selector (Nugget).

    Args:
        grid_size: the patch grid ``(rows, columns)``.
        patch_dim: pixels per patch (``patch_size**2 * channels``).
        memory_dim: width of the memory tokens.
        width: decoder width.
        depth: transformer blocks.
        num_heads: attention heads.
        max_memory: when positive, a learned embedding of each memory token's index (KARL orders its tokens).
    """

    def __init__(
        self,
        grid_size: tuple[int, int],
        patch_dim: int,
        memory_dim: int,
        width: int = 192,
        depth: int = 4,
        num_heads: int = 3,
        max_memory: int = 0,
    ):
        super().__init__()
        from timm.layers import trunc_normal_
        from timm.models.vision_transformer import Block

        self.memory_embed = nn.Linear(memory_dim, width)
        self.memory_pos = nn.Parameter(torch.zeros(1, max_memory, width)) if max_memory > 0 else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", sincos_pos_embed(grid_size, width)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(width, num_heads, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_dim)
        for p in (self.mask_token, self.memory_pos):
            if p is not None:
                trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # MAE's decoder initialisation
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, memory: torch.Tensor, memory_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``memory`` ``(B, M, memory_dim)`` -> patch reconstructions ``(B, patches, patch_dim)``."""
        B, M, _ = memory.shape
        m = self.memory_embed(memory)
        if self.memory_pos is not None:
            if M > self.memory_pos.shape[1]:
                raise ValueError(f"got {M} memory tokens, the decoder was built for at most {self.memory_pos.shape[1]}")
            m = m + self.memory_pos[:, :M]
        queries = (self.mask_token + self.pos_embed).expand(B, -1, -1)
        x = torch.cat([m, queries], dim=1)
        attn_mask = None
        if memory_bias is not None:
            bias = torch.cat([memory_bias.to(x.dtype), x.new_zeros(B, queries.shape[1])], dim=1)
            attn_mask = bias[:, None, None, :]  # the same bias for every head and query
        x = run_blocks(self.blocks, x, attn_mask)
        return self.head(self.norm(x[:, M:]))


class AdaptiveTokenizer(EmbeddingModule):
    """The part the three methods share: a timm ViT tokenizer (``backbone``), the pixel targets and a decoder.

    Args:
        decoder_width: width of :class:`PixelDecoder`.
        decoder_depth: its blocks.
        decoder_num_heads: its attention heads.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        backbone: str = "vit_tiny_patch16_224",
        backbone_kwargs: dict[str, Any] | None = None,
        decoder_width: int = 192,
        decoder_depth: int = 4,
        decoder_num_heads: int = 3,
        optimizer: str = "adamw",
        lr: float = 1e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.05,
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
            **kwargs,
        )
        if self.backbone.num_prefix_tokens:
            raise ValueError(f"{type(self).__name__} needs a ViT without class or register tokens")
        embed = self.backbone.patch_embed
        self.patch_size = int(embed.patch_size[0])
        self.grid_size = tuple(int(g) for g in embed.grid_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.patch_dim = self.patch_size**2 * embed.proj.in_channels
        freeze_sincos_positions(self.backbone)  # fixed sine-cosine positions, as the decoder's (MAE's choice)

    def build_decoder(self, memory_dim: int, max_memory: int = 0) -> PixelDecoder:
        hp = self.hparams
        return PixelDecoder(
            self.grid_size, self.patch_dim, memory_dim, hp.decoder_width, hp.decoder_depth, hp.decoder_num_heads, max_memory
        )

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        return patchify(images, self.patch_size)

    def patch_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return vit_patch_embeddings(self.backbone, self._format(images))


# ---------------------------------------------------------------------------------------------------- ALIT
@register_method(
    title="Adaptive Length Image Tokenization via Recurrent Allocation",
    wing="nested-embeddings",
    arxiv="2411.02393",
)
class ALIT(AdaptiveTokenizer):
    """An encoder-decoder tokenizer that distils 2D patch tokens into a growing set of 1D latent tokens by
    recurrent rollouts: each rollout runs the same encoder over [patch tokens, latent tokens so far, new latent
    tokens], so it refines the patch tokens, updates the old latent tokens and adds ``tokens_per_rollout`` new ones;
    the decoder reconstructs the image from all latent tokens after every rollout, and the loss sums the
    reconstruction errors of all rollouts (weighted 2.5, 2.0, 1.5, 1.25, 1, ...). Adaptive memory ("dynamic
    halting"): patches already reconstructed to within ``halting_threshold`` (mean absolute error) are replaced by a
    mask token before the next rollout, so new tokens attend to what is not yet explained.

    The representation is the mean of the latent tokens after ``num_rollouts`` rollouts (``embed`` takes fewer:
    ``k`` rollouts = ``k * tokens_per_rollout`` tokens).

    Paper defaults (ImageNet, 256 px, 16 px patches over VQGAN codes): 32 new tokens per rollout, 8 rollouts (32-256
    tokens), 12-d factorised latent tokens, AdamW. The released code halts in one of two ways: the VQGAN
    tokenizer (the paper's main model) masks each patch with probability p, the decoder's probability of its
    ground-truth code, wherever p >= 0.55 (Bernoulli sampling, :func:`~reprzoo.losses.adaptive_tokens.sampled_halting`);
    the continuous VAE tokenizer masks a patch deterministically where the mean absolute error of its decoded code
    is below 0.025 (:func:`~reprzoo.losses.adaptive_tokens.reconstructed_tokens`). Ours: the pixel target and
    continuous latent tokens, so there is no code probability to sample on and we use the continuous variant's
    deterministic rule with its default 0.025, applied to normalised pixels rather than VAE codes (a recipe may
    rescale it); the released VAE code's mask assignment (``drop_mask[mask][:] = 1.``) writes into a copy and never
    masks, we mask as the rule states; in the recipes the token counts are scaled with the number of patches.

    Args:
        tokens_per_rollout: latent tokens added by each rollout.
        num_rollouts: rollouts in training (and by default in ``embed``).
        token_dim: width of the factorised latent tokens the decoder reads.
        dynamic_halting: mask reconstructed patches between rollouts.
        halting_threshold: mean absolute patch error under which a patch counts as reconstructed (the authors'
            continuous-tokenizer default 0.025).
        rollout_weights: loss weight per rollout; ``None``: the paper's.
        kwargs: options of :class:`AdaptiveTokenizer`.
    """

    def __init__(
        self,
        tokens_per_rollout: int = 32,
        num_rollouts: int = 8,
        token_dim: int = 12,
        dynamic_halting: bool = True,
        halting_threshold: float = ALIT_VAE_HALTING_THRESHOLD,
        rollout_weights: list[float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if tokens_per_rollout < 1 or num_rollouts < 1:
            raise ValueError(f"tokens_per_rollout and num_rollouts must be positive, got {tokens_per_rollout}, {num_rollouts}")
        self.rollout_weights = list(rollout_weights) if rollout_weights is not None else alit_rollout_weights(num_rollouts)
        if len(self.rollout_weights) != num_rollouts:
            raise ValueError(f"got {len(self.rollout_weights)} rollout_weights for {num_rollouts} rollouts")
        width = self.feature_dim
        scale = width**-0.5
        self.latent_tokens = nn.Parameter(scale * torch.randn(tokens_per_rollout, width))
        self.latent_pos = nn.Parameter(scale * torch.randn(tokens_per_rollout, width))
        self.rollout_embed = nn.Parameter(scale * torch.randn(num_rollouts, tokens_per_rollout, width))
        self.encoder_mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.pre_norm = nn.LayerNorm(width)
        self.recursive_norm = nn.LayerNorm(width)
        self.to_token = nn.Linear(width, token_dim)
        self.decoder = self.build_decoder(token_dim)

    def rollouts(self, images: torch.Tensor, num_rollouts: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(latent tokens (B, r * tokens_per_rollout, width), reconstruction (B, patches, patch_dim))`` after
        each rollout r."""
        hp = self.hparams
        num_rollouts = num_rollouts or hp.num_rollouts
        if not 1 <= num_rollouts <= hp.num_rollouts:
            raise ValueError(f"num_rollouts must lie in [1, {hp.num_rollouts}], got {num_rollouts}")
        vit = self.backbone
        patches = self.patch_embeddings(images)
        B, N, _ = patches.shape
        target = self.targets(images)
        new_tokens = (self.latent_tokens + self.latent_pos).expand(B, -1, -1)
        x = self.pre_norm(torch.cat([patches, new_tokens + self.rollout_embed[0]], dim=1))
        outputs = []
        for r in range(num_rollouts):
            x = run_blocks(vit.blocks, x)
            latents = vit.norm(x[:, N:])
            reconstruction = self.decoder(self.to_token(latents))
            outputs.append((latents, reconstruction))
            if r == num_rollouts - 1:
                break
            image_tokens = x[:, :N]
            if hp.dynamic_halting:
                done = reconstructed_tokens(reconstruction, target, hp.halting_threshold).unsqueeze(-1)
                image_tokens = torch.where(done, self.encoder_mask_token + vit_patch_positions(vit), image_tokens)
            x = torch.cat([image_tokens, x[:, N:], new_tokens + self.rollout_embed[r + 1]], dim=1)
            x = self.recursive_norm(x)
        return outputs

    def encoder(self) -> nn.Module:
        return Represent(self, ALIT.pooled_tokens, self.feature_dim)

    def pooled_tokens(self, x: torch.Tensor, num_rollouts: int | None = None) -> torch.Tensor:
        """Mean of the latent tokens after ``num_rollouts`` rollouts (default: all), ``(batch, width)``."""
        return self.rollouts(x, num_rollouts)[-1][0].mean(1)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        images = views[0]
        outputs = self.rollouts(images)
        loss, per_rollout = budget_reconstruction_loss([rec for _, rec in outputs], self.targets(images), self.rollout_weights)
        self.log("train/reconstruction_first", per_rollout[0])
        self.log("train/reconstruction_last", per_rollout[-1])
        pooled = outputs[-1][0].mean(1)
        return TrainingOutput(loss, features=pooled, embeddings=pooled)


# ---------------------------------------------------------------------------------------------------- KARL
@register_method(
    title="Single-pass Adaptive Image Tokenization for Minimum Program Search",
    wing="nested-embeddings",
    arxiv="2507.07995",
)
class KARL(AdaptiveTokenizer):
    """KARL predicts, in one forward pass, how many latent tokens an image needs for a requested reconstruction
    quality: the token count approximates the image's Kolmogorov complexity.

    The encoder reads [quality command, patch tokens, T learned latent tokens]; a halting head gives each latent
    token a halting probability, and the decoder reconstructs from the tokens not halted (probability <=
    ``halting_threshold``). Training follows upside-down RL, two passes per batch:

    1. *Estimate complexity*: a budget T is drawn from ``token_counts``, the command is the strictest quality
       (the first bin), every token must stay active; the loss is the reconstruction error plus the halting
       cross-entropy towards "active". The reached per-image L1 error eps_T is recorded (no gradient).
    2. *Learn to halt*: with the full budget ``max_tokens`` and eps_T (discretised up to a bin) as the command, the
       first T tokens must stay active and the last ``max_tokens - T`` must halt; the loss is the reconstruction
       from the tokens predicted active plus the halting cross-entropy. In hindsight, "reach eps_T" is answered with
       "use T tokens".

    At inference, ``token_count(images, quality)`` is the predicted count for a requested quality; the
    representation (``embed``) is the mean of the active latent tokens under the strictest command.

    Paper defaults (256 px, VQGAN codes): budgets 16-368 in steps of 16, full budget 256, halting threshold 0.75,
    halting MLP of 512 hidden units with tanh, 12-d latent tokens, quality bins from 0.005 to 0.38. Ours: pixel
    targets (the bins are therefore a recipe value, for the L1 error of normalised pixels), continuous tokens, and
    the strictest command in pass 1 (the authors draw it from the bins up to 0.04 with probabilities decayed as
    training reaches them).

    Args:
        max_tokens: the full budget.
        token_counts: budgets drawn in pass 1; ``None``: multiples of ``max_tokens // 16`` up to ``max_tokens``.
        token_dim: width of the factorised latent tokens the decoder reads.
        loss_bins: increasing quality bins (per-image mean absolute error).
        halting_threshold: halting probability above which a token is dropped.
        halting_hidden: hidden units of the halting head.
        kwargs: options of :class:`AdaptiveTokenizer`.
    """

    def __init__(
        self,
        max_tokens: int = 256,
        token_counts: list[int] | None = None,
        token_dim: int = 12,
        loss_bins: list[float] | None = None,
        halting_threshold: float = 0.75,
        halting_hidden: int = 512,
        **kwargs,
    ):
        super().__init__(**kwargs)
        step = max(1, max_tokens // 16)
        self.token_counts = list(token_counts) if token_counts is not None else list(range(step, max_tokens + 1, step))
        if not self.token_counts or min(self.token_counts) < 1 or max(self.token_counts) > max_tokens:
            raise ValueError(f"token_counts must lie in [1, max_tokens={max_tokens}], got {self.token_counts}")
        bins = torch.tensor(loss_bins if loss_bins is not None else KARL_LOSS_BINS, dtype=torch.float32)
        discretize_loss(torch.zeros(1), bins)  # validates the bins
        width = self.feature_dim
        scale = width**-0.5
        self.latent_tokens = nn.Parameter(scale * torch.randn(max_tokens, width))
        self.register_buffer("loss_bins", bins, persistent=False)
        self.quality_embed = nn.Parameter(bins[:, None].repeat(1, width))  # the authors start each bin at its value
        self.pre_norm = nn.LayerNorm(width)
        self.halting_head = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, halting_hidden), nn.Tanh(), nn.Linear(halting_hidden, 1)
        )
        self.to_token = nn.Linear(width, token_dim)
        self.decoder = self.build_decoder(token_dim, max_memory=max_tokens)

    def encode(self, images: torch.Tensor, num_tokens: int, quality_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent tokens ``(B, num_tokens, width)`` and halting logits ``(B, num_tokens)`` under the quality
        command ``quality_index`` ``(B,)`` (bin indices)."""
        patches = self.patch_embeddings(images)
        B, N, _ = patches.shape
        command = self.quality_embed[quality_index].unsqueeze(1)
        x = torch.cat([command, patches, self.latent_tokens[:num_tokens].expand(B, -1, -1)], dim=1)
        x = run_blocks(self.backbone.blocks, self.pre_norm(x))[:, 1 + N :]
        return self.backbone.norm(x), self.halting_head(x).squeeze(-1)

    def halted(self, halt_logits: torch.Tensor) -> torch.Tensor:
        return halt_logits.detach().sigmoid() > self.hparams.halting_threshold

    def decode(self, latents: torch.Tensor, halted: torch.Tensor | None = None) -> torch.Tensor:
        bias = None if halted is None else latents.new_zeros(halted.shape).masked_fill(halted, float("-inf"))
        return self.decoder(self.to_token(latents), bias)

    def quality_index(self, quality: float | torch.Tensor, batch_size: int) -> torch.Tensor:
        quality = torch.as_tensor(quality, dtype=self.loss_bins.dtype, device=self.loss_bins.device)
        return discretize_loss(quality.expand(batch_size), self.loss_bins)

    @torch.no_grad()
    def token_count(self, images: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
        """The number of latent tokens KARL keeps for each image ``(B,)`` when asked for reconstruction error
        ``quality``: its estimate of the image's complexity."""
        _, logits = self.encode(images, self.hparams.max_tokens, self.quality_index(quality, images.shape[0]))
        return (~self.halted(logits)).sum(1)

    def encoder(self) -> nn.Module:
        return Represent(self, KARL.pooled_tokens, self.feature_dim)

    def pooled_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the tokens kept under the strictest quality command, ``(batch, width)``."""
        latents, logits = self.encode(x, self.hparams.max_tokens, self.quality_index(0.0, x.shape[0]))
        return masked_mean(latents, ~self.halted(logits))

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        images = views[0]
        B, max_tokens = images.shape[0], self.hparams.max_tokens
        target = self.targets(images)
        budget = self.token_counts[int(torch.randint(len(self.token_counts), ()))]
        active = torch.full((B,), budget, device=images.device)
        # pass 1: estimate complexity with `budget` tokens, all active
        latents, logits = self.encode(images, budget, self.quality_index(0.0, B))
        reconstruction = self.decode(latents)
        loss = F.mse_loss(reconstruction, target) + halting_loss(logits, active)
        reached = discretize_loss(per_sample_l1(reconstruction, target), self.loss_bins)
        # pass 2: the full budget, commanded to reach what pass 1 reached: halt every token past `budget`
        latents_full, logits_full = self.encode(images, max_tokens, reached)
        halted = self.halted(logits_full)
        reconstruction_full = self.decode(latents_full, halted)
        loss = loss + F.mse_loss(reconstruction_full, target) + halting_loss(logits_full, active)
        self.log("train/kept_tokens", (~halted).sum(1).float().mean())
        pooled = masked_mean(latents_full.detach(), ~halted)
        return TrainingOutput(loss, features=pooled, embeddings=latents.mean(1))


# ---------------------------------------------------------------------------------------------------- Nugget
class NuggetSelector(nn.Module):
    """Nugget's selector, for any token sequence: a scorer FFN on the hidden states of one encoder layer picks the
    top ceil(ratio * length) tokens (:func:`~reprzoo.losses.adaptive_tokens.select_nuggets`), and a learned type
    embedding is added to the selected tokens so the encoder's later layers know which tokens are nuggets (the
    paper's "nugget feedback").

    Use: run the encoder to the scorer layer, ``nuggets, hidden = selector(hidden, padding_mask)``, run the other
    layers on ``hidden``, ``nuggets = selector.gather(final_hidden, nuggets)``, and give the decoder
    :func:`~reprzoo.losses.adaptive_tokens.nugget_attention_bias` as the bias of its attention to the nuggets.

    Args:
        dim: token width.
        ratio: nuggets per token.
        stop_gradient: the scorer reads the hidden states with stopped gradient, so the residual trick trains the
            scorer and not the layers below it (our reading of the paper's figure 2, where one path carries no
            gradient).
    """

    def __init__(self, dim: int, ratio: float = 0.1, stop_gradient: bool = True):
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
        self.ratio, self.stop_gradient = ratio, stop_gradient
        self.scorer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.type_embedding = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor | None = None) -> tuple[Nuggets, torch.Tensor]:
        scores = self.scorer(hidden.detach() if self.stop_gradient else hidden).squeeze(-1)
        nuggets = select_nuggets(hidden, scores, self.ratio, padding_mask)
        selected = torch.zeros_like(scores).scatter(1, nuggets.index, nuggets.mask.to(scores.dtype))
        return nuggets, hidden + selected.unsqueeze(-1) * self.type_embedding

    @staticmethod
    def gather(hidden: torch.Tensor, nuggets: Nuggets) -> Nuggets:
        """The same nuggets with their encodings read from ``hidden`` ``(batch, tokens, dim)`` (the last layer)."""
        encodings = hidden.gather(1, nuggets.index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return Nuggets(encodings, nuggets.scores, nuggets.index, nuggets.mask)


@register_method(title="Nugget: Neural Agglomerative Embeddings of Text", wing="nested-embeddings", arxiv="2310.01732")
class Nugget(AdaptiveTokenizer):
    """Nugget on image patches: the encoder's representation is a subset of its own token encodings (the nuggets,
    ceil(``ratio`` * patches) of them) chosen by a scorer, and a decoder must reconstruct the input from the nuggets
    alone (the paper's autoencoding objective). Selection is top-k and not differentiable; the scorer learns through
    the residual connection: each nugget's score s_j is added to the decoder's attention logits towards it
    (a_ij = q_i^T k_j + s_j), so that tokens whose attention the decoder needs get higher scores.

    The representation is the mean of the nuggets' encodings. The selector (:class:`NuggetSelector`) and the losses
    work on token sequences, so the text wing can reuse them with a text encoder and padding masks.

    Paper defaults (BART-base, text): scorer on the hidden states of encoder layer 3 of 6 (FFN with ReLU), ratio 0.1
    in the authors' example (the paper compares several), residual connection in every decoder layer; the authors'
    later package defaults to the straight-through form s_j - stopgrad(s_j) (``residual="straight_through"``). Ours:
    the pixel decoder and the image setting.

    Args:
        ratio: nuggets per patch token.
        scorer_layer: encoder blocks before the scorer; ``None``: half the depth.
        residual: ``residual`` (the paper) or ``straight_through``.
        scorer_stop_gradient: see :class:`NuggetSelector`.
        kwargs: options of :class:`AdaptiveTokenizer`.
    """

    def __init__(
        self,
        ratio: float = 0.1,
        scorer_layer: int | None = None,
        residual: Literal["residual", "straight_through"] = "residual",
        scorer_stop_gradient: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if residual not in ("residual", "straight_through"):
            raise ValueError(f"residual must be 'residual' or 'straight_through', got {residual!r}")
        depth = len(self.backbone.blocks)
        self.scorer_layer = depth // 2 if scorer_layer is None else scorer_layer
        if not 0 <= self.scorer_layer <= depth:
            raise ValueError(f"scorer_layer must lie in [0, {depth}], got {scorer_layer}")
        self.selector = NuggetSelector(self.feature_dim, ratio, scorer_stop_gradient)
        self.decoder = self.build_decoder(self.feature_dim)

    def nuggets(self, images: torch.Tensor) -> Nuggets:
        """The image's nuggets: encodings ``(B, k, width)``, scores, patch indices and mask."""
        blocks = self.backbone.blocks
        x = run_blocks(blocks[: self.scorer_layer], self.patch_embeddings(images))
        nuggets, x = self.selector(x)
        x = self.backbone.norm(run_blocks(blocks[self.scorer_layer :], x))
        return self.selector.gather(x, nuggets)

    def encoder(self) -> nn.Module:
        return Represent(self, Nugget.pooled_nuggets, self.feature_dim)

    def pooled_nuggets(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the selected nuggets' encodings, ``(batch, width)``."""
        nuggets = self.nuggets(x)
        return masked_mean(nuggets.encodings, nuggets.mask)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        images = views[0]
        nuggets = self.nuggets(images)
        reconstruction = self.decoder(nuggets.encodings, nugget_attention_bias(nuggets, self.hparams.residual))
        loss = F.mse_loss(reconstruction, self.targets(images))
        pooled = masked_mean(nuggets.encodings, nuggets.mask)
        return TrainingOutput(loss, features=pooled, embeddings=pooled)
