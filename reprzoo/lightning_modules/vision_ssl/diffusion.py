"""DDPM features: "Diffusion Models Beat GANs on Image Classification" (Mukhopadhyay, Gwilliam, Agarwal, Padmanabhan,
Swaminathan, Hegde, Zhou, Shrivastava, 2023, arXiv:2307.08702)."""

from __future__ import annotations

from typing import Any

import torch

from reprzoo.backbones.unet import UNet
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.diffusion import ddpm_loss, q_sample


@register_method(title="Diffusion Models Beat GANs on Image Classification", wing="vision-ssl", arxiv="2307.08702")
class DDPMFeatures(EmbeddingModule):
    """A diffusion model as a representation learner: train a DDPM U-Net to predict the noise added to an image
    (L_simple of Ho et al., 2020), then read the representation off the U-Net itself, "the feature map of a chosen
    block at a chosen noise timestep", average-pooled.

    The paper uses a pretrained guided-diffusion ImageNet U-Net and finds the best linear-probe features at a
    small noise level in the decoder: block 24 (of the output blocks' stack) at t=90 of T=1000, followed by
    pooling. Here the U-Net is trained in-house (``unet_tiny``), and the representation's block and timestep are
    arguments of the backbone, ``backbone_kwargs: {feature_block: up0, feature_t: 90}``, so that an exported
    encoder computes the same features (``up0``, the first decoder block, is the mid/low-resolution decoder
    block this small net has; the paper's attention-pooling probe is left to downstream evaluation).
    The noise of the representation is one fixed seeded image shared by all samples, so evaluation is
    deterministic.

    Defaults are DDPM's (arXiv:2006.11239): linear betas 1e-4 to 0.02 over T=1000, epsilon prediction with MSE,
    Adam at lr 2e-4 without weight decay, linear warmup (5000 steps there; ``warmup_epochs`` here) then a constant
    LR (``min_lr_ratio=1``), horizontal flips as the only augmentation (the recipes select it).

    Args:
        backbone: a :class:`~reprzoo.backbones.unet.UNet` name (``unet_tiny``).
        backbone_kwargs: U-Net arguments, among them ``feature_block``, ``feature_t`` and ``noise_seed``.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        backbone: str = "unet_tiny",
        backbone_kwargs: dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float = 2e-4,
        lr_reference_batch: int | None = None,
        weight_decay: float = 0.0,
        scheduler: str = "warmup_cosine",
        min_lr_ratio: float = 1.0,
        **kwargs,
    ):
        super().__init__(
            backbone=backbone,
            backbone_kwargs=backbone_kwargs,
            optimizer=optimizer,
            lr=lr,
            lr_reference_batch=lr_reference_batch,
            weight_decay=weight_decay,
            scheduler=scheduler,
            min_lr_ratio=min_lr_ratio,
            **kwargs,
        )
        if not isinstance(self.backbone, UNet):
            raise ValueError(f"DDPMFeatures needs a U-Net backbone (e.g. unet_tiny), got {backbone!r}")

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        x0 = views[0]  # one lightly augmented view: DDPM needs no positive pairs
        unet: UNet = self.backbone
        t = torch.randint(0, unet.num_timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        loss = ddpm_loss(unet.predict_noise(q_sample(x0, t, noise, unet.alphas_cumprod), t), noise)
        with torch.no_grad():  # the representation, for the online probe only
            features = unet(x0)
        return TrainingOutput(loss, features=features)
