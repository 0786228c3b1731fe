"""Running a timm ``VisionTransformer`` by hand on token subsets and extra tokens.

timm's ``forward`` takes whole images only; I-JEPA encodes a context block, and the adaptive tokenizers (ALIT, KARL,
Nugget) append latent tokens. These helpers use the ViT's own modules, in timm's order.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

#: ViT options for methods that work on patch tokens: no class token, average pooling, no pooled-feature norm.
PATCH_TOKEN_VIT = {"class_token": False, "global_pool": "avg", "fc_norm": False}


def vit_patch_embeddings(vit: nn.Module, images: torch.Tensor, patch_drop: bool = False) -> torch.Tensor:
    """Patch embeddings plus positions (and prefix tokens, if any) ``(batch, tokens, dim)``, before any block.

    ``patch_drop``: also apply the ViT's ``patch_drop`` (timm's random token dropout, identity unless the ViT was
    built with ``patch_drop_rate``), as timm's ``forward_features`` does; methods that choose tokens themselves
    leave it off.
    """
    x = vit._pos_embed(vit.patch_embed(images))
    return vit.norm_pre(vit.patch_drop(x) if patch_drop else x)


def vit_patch_positions(vit: nn.Module) -> torch.Tensor:
    """The ViT's position embeddings of its patch tokens ``(1, H * W, dim)`` (without those of prefix tokens)."""
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    return vit.pos_embed[:, prefix:]


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    for block in blocks:
        x = block(x, attn_mask=attn_mask)
    return x


def vit_patch_tokens(vit: nn.Module, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The normalised output patch tokens ``(batch, n, dim)``, encoding only the patches ``keep`` (``(batch, n)``
    indices into the patch grid; ``None``: all). Prefix tokens are encoded too and dropped from the output."""
    x = vit_patch_embeddings(vit, images)
    prefix = vit.num_prefix_tokens
    if keep is not None:
        patches = torch.gather(x[:, prefix:], 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :prefix], patches], dim=1)
    return vit.norm(run_blocks(vit.blocks, x))[:, prefix:]


def sincos_pos_embed(grid_size: Sequence[int], dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional embeddings ``(H * W, dim)``, raster order (MAE's, used by I-JEPA)."""
    from timm.layers import build_sincos2d_pos_embed

    return build_sincos2d_pos_embed(list(grid_size), dim)


def freeze_sincos_positions(vit: nn.Module) -> None:
    """Set the patch positions of a ViT with learned ``pos_embed`` to fixed sine-cosine values, not trained."""
    if vit.pos_embed is None:
        return
    vit_patch_positions(vit).data.copy_(sincos_pos_embed(vit.patch_embed.grid_size, vit.pos_embed.shape[-1]))
    vit.pos_embed.requires_grad_(False)
