"""A small DDPM U-Net whose ``forward(x)`` is the diffusion representation of "Diffusion Models Beat GANs on Image
Classification" (Mukhopadhyay et al., 2023, arXiv:2307.08702): noise ``x`` to a fixed timestep, run the U-Net, and
average-pool the feature map of one block.

The network follows DDPM's U-Net ("Denoising Diffusion Probabilistic Models", Ho et al., 2020, arXiv:2006.11239) at
toy size: residual blocks with GroupNorm, SiLU and an additive sinusoidal time embedding, one block per resolution on
the way down and up with skip connections, a middle block, stride-2 convolutions down and nearest-neighbour
upsampling up (no attention). ``predict_noise(x_t, t)`` is the denoiser that DDPM training fits.

Blocks are named in execution order: ``down0`` .. ``down{L-1}``, ``mid``, then ``up0`` (lowest resolution) ..
``up{L-1}`` (full resolution). The representation's block, timestep and noise seed are constructor arguments, so
an exported encoder rebuilt from its ``backbone_kwargs`` computes the same features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.backbones.registry import register_backbone
from reprzoo.losses.diffusion import alphas_cumprod, linear_beta_schedule, q_sample


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal embedding of integer timesteps ``(batch,)`` -> ``(batch, dim)`` (DDPM Appendix B)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, plus the projected time embedding, GroupNorm-SiLU-dropout-conv, residual connection."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(in_ch, groups), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_ch))
        self.out_layers = nn.Sequential(
            _norm(out_ch, groups), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        )
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.time_proj(temb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class UNet(nn.Module):
    """DDPM U-Net with a diffusion-feature ``forward``.

    Args:
        in_chans: image channels (also the predicted noise's).
        base_width: channels of the first resolution.
        channel_mults: width multiplier per resolution; ``len`` resolutions, each but the last halving the side.
        dropout: dropout inside residual blocks (DDPM used 0.1 on CIFAR-10).
        groups: GroupNorm groups (reduced to a divisor of the channels).
        num_timesteps: T of the noise schedule.
        beta_start: first beta of the linear schedule.
        beta_end: last beta of the linear schedule.
        feature_block: the block whose feature map is the representation (``down{i}``, ``mid``, ``up{i}``).
        feature_t: the timestep (0-based index into the T steps) the input is noised to for the representation.
        noise_seed: seed of the fixed noise image used for the representation (evaluation is deterministic and
            independent of batch composition: every sample gets the same noise).
        standardize_features: standardise the pooled features with running statistics (a BatchNorm without
            affine parameters, as in front of MAE's linear probe): the raw maps of a trained denoiser share a large
            common offset that swamps cosine similarities.
    """

    def __init__(
        self,
        in_chans: int = 3,
        base_width: int = 32,
        channel_mults: tuple[int, ...] | list[int] = (1, 2, 2),
        dropout: float = 0.0,
        groups: int = 8,
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        feature_block: str = "up0",
        feature_t: int = 90,
        noise_seed: int = 0,
        standardize_features: bool = True,
    ):
        super().__init__()
        widths = [base_width * m for m in channel_mults]
        if not widths:
            raise ValueError("channel_mults needs at least one resolution")
        time_dim = 4 * base_width
        self.time_embed = nn.Sequential(nn.Linear(base_width, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(in_chans, base_width, 3, padding=1)
        levels = len(widths)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = base_width
        for i, w in enumerate(widths):
            self.down.append(ResBlock(prev, w, time_dim, groups, dropout))
            self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1) if i < levels - 1 else nn.Identity())
            prev = w
        self.mid = ResBlock(prev, prev, time_dim, groups, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels)):
            self.up.append(ResBlock(prev + widths[i], widths[i], time_dim, groups, dropout))
            self.upsample.append(nn.Conv2d(widths[i], widths[i], 3, padding=1) if i > 0 else nn.Identity())
            prev = widths[i]
        self.out = nn.Sequential(_norm(prev, groups), nn.SiLU(), nn.Conv2d(prev, in_chans, 3, padding=1))

        self.block_widths: dict[str, int] = {f"down{i}": w for i, w in enumerate(widths)}
        self.block_widths["mid"] = widths[-1]
        self.block_widths.update({f"up{j}": widths[levels - 1 - j] for j in range(levels)})
        if feature_block not in self.block_widths:
            raise ValueError(f"feature_block must be one of {list(self.block_widths)}, got {feature_block!r}")
        if not 0 <= feature_t < num_timesteps:
            raise ValueError(f"feature_t must lie in [0, {num_timesteps}), got {feature_t}")
        self.feature_block, self.feature_t, self.noise_seed = feature_block, feature_t, noise_seed
        self.num_timesteps = num_timesteps
        self.base_width = base_width
        # derived from the constructor arguments, so kept out of the state dict
        self.register_buffer(
            "alphas_cumprod", alphas_cumprod(linear_beta_schedule(num_timesteps, beta_start, beta_end)).float(), persistent=False
        )
        self.num_features = self.block_widths[feature_block]
        self.feature_norm = nn.BatchNorm1d(self.num_features, affine=False) if standardize_features else nn.Identity()

    def _run(self, x_t: torch.Tensor, t: torch.Tensor, stop_at: str | None = None):
        """The U-Net on ``x_t`` at timesteps ``t``: the noise prediction, or the map of block ``stop_at``."""
        temb = self.time_embed(timestep_embedding(t, self.base_width))
        h = self.stem(x_t)
        skips = []
        for i, (block, down) in enumerate(zip(self.down, self.downsample)):
            h = block(h, temb)
            if stop_at == f"down{i}":
                return h
            skips.append(h)
            h = down(h)
        h = self.mid(h, temb)
        if stop_at == "mid":
            return h
        for j, (block, up) in enumerate(zip(self.up, self.upsample)):
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if stop_at == f"up{j}":
                return h
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t), the denoiser of DDPM training; ``t`` holds one integer timestep per sample."""
        return self._run(x_t, t)

    def block_features(self, x: torch.Tensor, block: str | None = None, t: int | None = None) -> torch.Tensor:
        """The feature map ``(batch, C, h, w)`` of ``block`` (default ``feature_block``) for ``x`` noised to step
        ``t`` (default ``feature_t``) with the fixed seeded noise."""
        block = block or self.feature_block
        t = self.feature_t if t is None else t
        if block not in self.block_widths:
            raise ValueError(f"block must be one of {list(self.block_widths)}, got {block!r}")
        generator = torch.Generator().manual_seed(self.noise_seed)
        noise = torch.randn(tuple(x.shape[1:]), generator=generator).to(x)
        steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x_t = q_sample(x, steps, noise.expand_as(x), self.alphas_cumprod)
        return self._run(x_t, steps, stop_at=block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation: ``feature_block``'s map at ``feature_t``, average-pooled to ``(batch, num_features)``
        (and standardised)."""
        return self.feature_norm(self.block_features(x).mean(dim=(2, 3)))


@register_backbone("unet_tiny")  # DDPM U-Net; forward(x) is its diffusion representation
def unet_tiny(**kwargs) -> UNet:
    """32-64-64 channels over three resolutions: a DDPM U-Net small enough for CPU tests and digits."""
    return UNet(**kwargs)
