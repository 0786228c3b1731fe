"""Du-IN: "Du-IN: Discrete units-guided mask modeling for decoding speech from Intracranial Neural signals" (Zheng,
Wang, Zhang, Wu & Wang, NeurIPS 2024, arXiv:2405.11459), after the authors' code (github.com/liulab-repository/Du-IN).

Two self-supervised stages over multichannel (sEEG) signals cut into fixed-length temporal patches:

1. the Du-IN VQ-VAE: a region-fusion layer mixes the channels, a spatial encoder (strided 1-D convolutions with
   batch norm, per patch) turns each patch into a token, a transformer contextualises the tokens, a normalised EMA
   codebook quantises them (commitment loss, codes updated by EMA, k-means initialisation), and a transformer
   decoder with a transposed-convolution head reconstructs the *time signal* (MSE);
2. the Du-IN MAE: the same encoder architecture sees the patches with half of them replaced by a learned mask token
   and predicts the frozen VQ-VAE's code of every masked patch (cross-entropy over the codebook), with symmetric
   masking (a second pass hides the complement).

The representation (``encoder()``, what kNN and the probe measure and ``reprzoo.load(name).embed`` returns) is the
Du-IN encoder's token states averaged over patches. The paper then fine-tunes on 61-word classification; here the
datamodule's kNN and linear probe read the frozen features.

The data here are generated: the real sEEG word-reading recordings are not available offline, so the recipes use
:class:`~reprzoo.datamodules.SyntheticTimeSeries` (classes of multichannel periodic series) as a stand-in.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones import build_backbone
from reprzoo.backbones.registry import register_backbone
from reprzoo.distributed import gather
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.du_in import (
    commitment_loss,
    ema_codebook_update,
    masked_code_cross_entropy,
    nearest_codes,
    random_patch_mask,
    spherical_kmeans,
    symmetric_masked_code_cross_entropy,
)
from reprzoo.training.optim import OptimizerName, SchedulerName


def sincos_embedding(length: int, dim: int) -> torch.Tensor:
    """The fixed sine-cosine position embedding ``(length, dim)`` of the transformer's patch positions."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table


def transformer_blocks(dim: int, depth: int, heads: int, mlp_ratio: float, dropout: float) -> nn.ModuleList:
    """Post-norm transformer blocks with ReLU feed-forward (the authors' ``norm_first=False``)."""
    return nn.ModuleList(
        nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, batch_first=True, norm_first=False)
        for _ in range(depth)
    )


@register_backbone("duin_encoder")
class DuINEncoder(nn.Module):
    """The Du-IN encoder: region fusion, spatial encoder (per-patch convolutions), sine-cosine positions and a
    transformer. ``forward`` pools the token states (mean over patches) to ``(batch, num_features)``. As in the
    authors' ``PatchTokenizer``, the convolutions are followed by batch norm and no activation. Registered as the
    backbone ``duin_encoder`` (here, next to its method, so that the zoo rebuilds it by name).

    Args:
        in_chans: channels of the input ``(batch, in_chans, length)``.
        length: time steps of a series (a multiple of ``patch_len``).
        patch_len: time steps per patch (token).
        fusion_dim: channels after the region-fusion layer (a linear map of the channels at every time step).
        conv_filters / conv_kernels / conv_strides: the spatial encoder's convolutions; the token width is
            ``conv_filters[-1] * (patch_len // prod(conv_strides))``.
        depth / heads / mlp_ratio / dropout: the transformer.
    """

    def __init__(
        self,
        in_chans: int = 16,
        length: int = 4000,
        patch_len: int = 100,
        fusion_dim: int = 16,
        conv_filters: Sequence[int] = (128, 128, 16),
        conv_kernels: Sequence[int] = (19, 3, 3),
        conv_strides: Sequence[int] = (10, 1, 1),
        depth: int = 8,
        heads: int = 8,
        mlp_ratio: float = 2.0,
        dropout: float = 0.2,
    ):
        super().__init__()
        if length % patch_len:
            raise ValueError(f"length ({length}) must be a multiple of patch_len ({patch_len})")
        if not len(conv_filters) == len(conv_kernels) == len(conv_strides) > 0:
            raise ValueError("conv_filters, conv_kernels and conv_strides need one entry per convolution")
        self.patch_len, self.num_patches = patch_len, length // patch_len
        self.fusion = nn.Linear(in_chans, fusion_dim)
        layers: list[nn.Module] = []
        steps, width = patch_len, fusion_dim
        for filters, kernel, stride in zip(conv_filters, conv_kernels, conv_strides):
            layers += [nn.Conv1d(width, filters, kernel, stride, padding=(kernel - 1) // 2), nn.BatchNorm1d(filters)]
            steps, width = (steps + 2 * ((kernel - 1) // 2) - kernel) // stride + 1, filters
        self.spatial = nn.Sequential(*layers)
        self.num_features = width * steps
        self.register_buffer("positions", sincos_embedding(self.num_patches, self.num_features), persistent=False)
        self.blocks = transformer_blocks(self.num_features, depth, heads, mlp_ratio, dropout)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, N, D)``: region fusion, then the spatial encoder on each patch."""
        b, _, t = x.shape
        h = self.fusion(x.transpose(1, 2)).transpose(1, 2)  # (B, fusion_dim, T)
        n = t // self.patch_len
        patches = h.reshape(b, h.shape[1], n, self.patch_len).permute(0, 2, 1, 3).reshape(b * n, h.shape[1], self.patch_len)
        return self.spatial(patches).reshape(b, n, -1)

    def contextualise(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` tokens -> ``(B, N, D)`` token states (positions added, transformer blocks)."""
        h = tokens + self.positions[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.contextualise(self.tokens(x)).mean(dim=1)


class VectorQuantizer(nn.Module):
    """The normalised EMA codebook of the VQ-VAE (LaBraM's, as the authors use it): ``Linear-Tanh-Linear`` to the
    code width, L2 normalisation, nearest code, straight-through; then ``LayerNorm`` and a linear map back."""

    def __init__(self, dim: int, codebook_size: int, code_dim: int, decay: float, kmeans_init: bool):
        super().__init__()
        self.decay = decay
        self.pre = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, code_dim))
        self.post = nn.Sequential(nn.LayerNorm(code_dim), nn.Linear(code_dim, dim))
        self.register_buffer("codebook", F.normalize(torch.randn(codebook_size, code_dim), dim=1))
        self.register_buffer("initialised", torch.tensor(not kmeans_init))

    def codes(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised code-space vectors ``(B, N, code_dim)`` and their codes ``(B, N)``."""
        z = F.normalize(self.pre(states), dim=-1)
        return z, nearest_codes(z, self.codebook)

    def forward(self, states: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = F.normalize(self.pre(states), dim=-1)
        flat = z.detach().reshape(-1, z.shape[-1])
        if self.training and not bool(self.initialised):
            seeded = torch.Generator().manual_seed(0)  # the same draw on every rank
            self.codebook.copy_(spherical_kmeans(gather(flat), len(self.codebook), generator=seeded))
            self.initialised.fill_(True)
        codes = nearest_codes(z, self.codebook)
        z_q = self.codebook[codes]
        loss = commitment_loss(z, z_q, beta)
        if self.training:
            self.codebook.copy_(ema_codebook_update(self.codebook, gather(flat), gather(codes.reshape(-1)), self.decay))
        return self.post(z + (z_q - z).detach()), loss, codes


@register_method(
    title="Du-IN: Discrete units-guided mask modeling for decoding speech from Intracranial Neural signals",
    wing="text-and-retrieval",
    modality="sequence",
    arxiv="2405.11459",
)
class DuIN(EmbeddingModule):
    """Du-IN's VQ-VAE for the first ``tokenizer_epochs`` epochs, then its masked code modelling (MAE) stage.

    Stage 1 trains the backbone (the Du-IN encoder) as the VQ-VAE's encoder. At the first stage-2 step the
    tokenizer is frozen: the backbone's weights are copied into ``tokenizer_encoder`` (eval mode from then on; the
    codebook no longer moves), and the backbone starts the MAE stage from a fresh initialisation (``mae_init:
    random``, the authors' separate MAE model) or from the VQ-VAE encoder's weights (``mae_init: tokenizer``).
    Each stage-2 batch is tokenised by the frozen tokenizer; the MAE predicts those codes with a linear head.

    Defaults are the authors' sEEG setting (``params/duin_params.py``, 16 channels, 4 s at 1 kHz): patches of
    100 steps (40 tokens), region fusion to 16 channels, convolutions 128-128-16 with kernels 19-3-3 and strides
    10-1-1 (160-d tokens), 8 encoder blocks with 8 heads and a 2x feed-forward, dropout 0.2, a 4-block decoder, a
    2048-code codebook of 64-d codes (EMA decay 0.99, k-means initialisation, commitment weight 1), mask ratio 0.5
    with symmetric masking, AdamW (lr 3e-4 to 5e-5 by cosine after a 10% warm-up, weight decay 0.05).

    Ours:
        - Generated data (``SyntheticTimeSeries``) stand in for the sEEG recordings; one subject, so the authors'
          per-subject fusion layer is a single linear map of the channels.
        - Both stages in one run under one optimiser and one warm-up + cosine schedule (the authors: 400 VQ-VAE
          epochs then 400 MAE epochs, each with its own schedule); the optimiser state of the backbone is reset at
          the switch.
        - Attention heads split the token width (20 dims each at 160) instead of the authors' 64-d heads, with
          PyTorch's post-norm ``TransformerEncoderLayer`` (dropout on the attention and both residual branches).
        - The reconstruction head is one transposed convolution of stride ``patch_len``, GELU and a 3-tap
          convolution to the channels (the authors: five transposed convolutions for 100-step patches, then linear
          maps back to the channels).
        - One view per sample (``views[0]``; the recipes make it unaugmented), as Du-IN uses no augmentation.
        - The representation is the mean of the token states, read frozen by kNN and a linear probe; the paper
          fine-tunes the encoder with an MLP on the flattened token states for its 61-word task. During stage 1 the
          monitors read the VQ-VAE encoder (the backbone then).
        - One weight decay (0.05, the authors' MAE value; their VQ-VAE used 0.01). Each stage leaves some parameters
          without gradients (the decoder in stage 2, the code head in stage 1): DDP needs
          ``find_unused_parameters``.
        - The online probe reads the pooled states of the masked pass (stage 2) rather than a third, unmasked
          pass; kNN and the evaluation probe read unmasked inputs.

    Args:
        tokenizer_epochs: epochs of the VQ-VAE stage before the MAE stage.
        codebook_size / code_dim: the codebook.
        codebook_decay: EMA decay of the codes.
        kmeans_init: initialise the codebook by spherical k-means on the first batch.
        commitment_weight: weight of the commitment loss.
        decoder_depth / decoder_hidden: the VQ-VAE decoder's transformer blocks and the width of its head.
        mask_ratio: share of patches hidden in the MAE stage.
        symmetric_masking: also predict the visible patches from a pass that hides them (the authors' code).
        mae_init: ``random`` (the authors: the MAE is a new model) or ``tokenizer`` (start from the VQ-VAE encoder).
        kwargs: :class:`EmbeddingModule` options; ``backbone_kwargs`` configure :class:`DuINEncoder`.
    """

    def __init__(
        self,
        tokenizer_epochs: int = 400,
        codebook_size: int = 2048,
        code_dim: int = 64,
        codebook_decay: float = 0.99,
        kmeans_init: bool = True,
        commitment_weight: float = 1.0,
        decoder_depth: int = 4,
        decoder_hidden: int = 128,
        mask_ratio: float = 0.5,
        symmetric_masking: bool = True,
        mae_init: Literal["random", "tokenizer"] = "random",
        backbone: str = "duin_encoder",
        optimizer: OptimizerName = "adamw",
        lr: float = 3e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.05,
        scheduler: SchedulerName = "warmup_cosine",
        warmup_epochs: float = 40.0,
        min_lr_ratio: float = 5e-5 / 3e-4,
        **kwargs: Any,
    ):
        super().__init__(
            backbone=backbone, optimizer=optimizer, lr=lr, lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay, scheduler=scheduler, warmup_epochs=warmup_epochs, min_lr_ratio=min_lr_ratio,
            **kwargs,
        )  # fmt: skip
        if tokenizer_epochs < 0:
            raise ValueError(f"tokenizer_epochs must be non-negative, got {tokenizer_epochs}")
        if mae_init not in ("random", "tokenizer"):
            raise ValueError(f"mae_init must be 'random' or 'tokenizer', got {mae_init!r}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        enc = self.backbone
        dim, heads = enc.num_features, enc.blocks[0].self_attn.num_heads
        in_chans = enc.fusion.in_features
        # stage 1: the VQ-VAE around the backbone
        self.quantizer = VectorQuantizer(dim, codebook_size, code_dim, codebook_decay, kmeans_init)
        self.decoder = transformer_blocks(
            dim, decoder_depth, heads, enc.blocks[0].linear1.out_features / dim, enc.blocks[0].dropout.p
        )
        self.reconstruct = nn.Sequential(
            nn.ConvTranspose1d(dim, decoder_hidden, enc.patch_len, stride=enc.patch_len),
            nn.GELU(),
            nn.Conv1d(decoder_hidden, in_chans, 3, padding=1),
        )
        # the frozen tokenizer of stage 2: a copy of the stage-1 encoder, filled at the switch
        self.tokenizer_encoder = copy.deepcopy(enc).requires_grad_(False)
        self.register_buffer("tokenizer_frozen", torch.tensor(False))
        # stage 2: the mask token and the code-prediction head
        self.mask_token = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.code_head = nn.Linear(dim, codebook_size)

    def stage(self) -> int:
        """1 (VQ-VAE) for the first ``tokenizer_epochs`` epochs, then 2 (masked code modelling)."""
        return 1 if self._trainer is not None and self.current_epoch < self.hparams.tokenizer_epochs else 2

    # ----------------------------------------------------------------- stage 1
    def vqvae_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction MSE + commitment loss of a batch ``(B, C, T)``; also the pooled encoder states."""
        states = self.backbone.contextualise(self.backbone.tokens(x))
        quantised, vq_loss, codes = self.quantizer(states, self.hparams.commitment_weight)
        h = quantised + self.backbone.positions[: quantised.shape[1]]
        for block in self.decoder:
            h = block(h)
        x_hat = self.reconstruct(h.transpose(1, 2))
        rec_loss = F.mse_loss(x_hat, x)
        self.log_dict({"train/reconstruction_loss": rec_loss.detach(), "train/vq_loss": vq_loss.detach()})
        self.log("train/codes_used", float(codes.unique().numel()))
        return rec_loss + vq_loss, states.mean(dim=1)

    # ----------------------------------------------------------------- stage 2
    def freeze_tokenizer(self) -> None:
        """The switch to stage 2: the stage-1 encoder becomes the frozen tokenizer; the backbone restarts (``random``)
        or continues (``tokenizer``), with fresh optimiser state."""
        self.tokenizer_encoder.load_state_dict(self.backbone.state_dict())
        self.tokenizer_encoder.eval()
        self.quantizer.requires_grad_(False)
        if self.hparams.mae_init == "random":  # a new encoder of the same configuration
            name, kwargs = self.backbone_spec
            self.backbone.load_state_dict(build_backbone(name, **kwargs).to(self.device).state_dict())
        if self._trainer is not None:
            for optimizer in self.trainer.optimizers:
                for p in self.backbone.parameters():
                    optimizer.state.pop(p, None)
        self.tokenizer_frozen.fill_(True)

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen tokenizer's code of every patch, ``(B, N)``."""
        states = self.tokenizer_encoder.contextualise(self.tokenizer_encoder.tokens(x))
        return self.quantizer.codes(states)[1]

    def masked_pass(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Code logits ``(B, N, K)`` and states of the tokens with the ``hidden`` patches replaced by the mask token."""
        states = self.backbone.contextualise(torch.where(hidden[..., None], self.mask_token.to(tokens), tokens))
        return self.code_head(states), states

    def masked_code_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.tokenize(x)
        tokens = self.backbone.tokens(x)
        mask = random_patch_mask(len(x), tokens.shape[1], self.hparams.mask_ratio, device=x.device)
        logits, states = self.masked_pass(tokens, mask)
        if self.hparams.symmetric_masking:
            loss = symmetric_masked_code_cross_entropy(logits, self.masked_pass(tokens, ~mask)[0], codes, mask)
        else:
            loss = masked_code_cross_entropy(logits, codes, mask)
        accuracy = (logits.argmax(-1) == codes)[mask].float().mean()
        self.log_dict({"train/code_loss": loss.detach(), "train/masked_code_accuracy": accuracy})
        return loss, states.mean(dim=1)

    # ----------------------------------------------------------------- the objective
    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x = views[0]  # one (unaugmented) view: Du-IN uses no augmentation
        if self.stage() == 1:
            loss, features = self.vqvae_loss(x)
        else:
            if not bool(self.tokenizer_frozen):
                self.freeze_tokenizer()
            loss, features = self.masked_code_loss(x)
        return TrainingOutput(loss, features=features.detach(), embeddings=features)

    def train(self, mode: bool = True):
        super().train(mode)
        if bool(self.tokenizer_frozen):  # the tokenizer's batch norms and dropout stay in inference mode
            self.tokenizer_encoder.eval()
        return self


__all__ = ["DuIN", "DuINEncoder"]
