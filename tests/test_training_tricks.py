"""The training-trick callbacks: gradient noise against its variance formula, once per optimiser step; EfficientTrain's
low-frequency crop against a numpy re-derivation and its band schedule."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from reprzoo.training.tricks import EfficientTrain, GradientNoise, band_width, low_frequency_crop, noise_variance


class _Module(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n))
        self.probe = nn.Linear(3, 2)
        self.logged: dict = {}

    def log(self, name, value):
        self.logged[name] = value


def _noisy_gradient(callback: GradientNoise, step: int, n: int = 200_000) -> tuple[torch.Tensor, torch.Tensor]:
    module = _Module(n)
    module.weight.grad = torch.zeros(n)
    module.probe.weight.grad = torch.zeros(2, 3)
    callback.on_before_optimizer_step(SimpleNamespace(global_step=step), module, None)
    return module.weight.grad.clone(), module.probe.weight.grad.clone()


@pytest.mark.parametrize("eta,step", [(0.3, 0), (0.3, 10), (1.0, 999), (0.01, 5)])
def test_gradient_noise_variance_follows_the_annealing_formula(eta, step):
    noise, probe = _noisy_gradient(GradientNoise(eta=eta, gamma=0.55, seed=1), step)
    expected = eta / (1 + step) ** 0.55
    assert noise_variance(step, eta, 0.55) == pytest.approx(expected)
    assert noise.var().item() == pytest.approx(expected, rel=0.02)  # 200k draws: relative s.e. ~0.3%
    assert abs(noise.mean().item()) < 5 * (expected / 200_000) ** 0.5
    assert probe.abs().sum() == 0  # the online probe is excluded


def test_gradient_noise_is_seeded_by_step():
    callback = GradientNoise(eta=0.3, seed=2)
    a, _ = _noisy_gradient(callback, 3, n=100)
    b, _ = _noisy_gradient(GradientNoise(eta=0.3, seed=2), 3, n=100)
    c, _ = _noisy_gradient(callback, 4, n=100)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


class _Regression(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return ((self.layer(x) - y) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _RecordingNoise(GradientNoise):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps: list[int] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps.append(trainer.global_step)
        super().on_before_optimizer_step(trainer, pl_module, optimizer)


def test_gradient_noise_runs_once_per_optimiser_step_with_accumulation(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    callback = _RecordingNoise(eta=0.3)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        accumulate_grad_batches=2,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(_Regression(), torch.utils.data.DataLoader(data, batch_size=4))  # 8 batches -> 4 steps
    assert callback.steps == [0, 1, 2, 3]


def _numpy_low_frequency_crop(image: np.ndarray, band: int) -> np.ndarray:
    h, w = image.shape
    spectrum = np.fft.fftshift(np.fft.fft2(image))
    top, left = h // 2 - band // 2, w // 2 - band // 2
    kept = spectrum[top : top + band, left : left + band] * (band * band) / (h * w)
    return np.fft.ifft2(np.fft.ifftshift(kept)).real


def test_low_frequency_crop_against_numpy():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 3, 32, 32))
    got = low_frequency_crop(torch.tensor(images), 22)
    assert got.shape == (2, 3, 22, 22)
    for i in range(2):
        for c in range(3):
            np.testing.assert_allclose(got[i, c].numpy(), _numpy_low_frequency_crop(images[i, c], 22), atol=1e-6)
    np.testing.assert_allclose(got.mean(dim=(-2, -1)).numpy(), images.mean(axis=(-2, -1)), atol=1e-6)


def test_a_band_limited_image_keeps_its_low_frequencies_exactly():
    # an image with only frequencies |k| < 8 on each axis: its 16-band crop is the same signal sampled every 2 pixels
    rng = np.random.default_rng(1)
    grid = np.arange(32)
    image = np.zeros((32, 32))
    for ky in range(-7, 8):
        for kx in range(-7, 8):
            phase = rng.uniform(0, 2 * np.pi)
            image += rng.normal() * np.cos(2 * np.pi * (ky * grid[:, None] + kx * grid[None, :]) / 32 + phase)
    crop = low_frequency_crop(torch.tensor(image)[None], 16)[0].numpy()
    np.testing.assert_allclose(crop, image[::2, ::2], atol=1e-9)
    # the kept Fourier coefficients are the original's, scaled by the size ratio
    np.testing.assert_allclose(np.fft.fftshift(np.fft.fft2(crop)), np.fft.fftshift(np.fft.fft2(image))[8:24, 8:24] / 4, atol=1e-8)


def test_low_frequency_crop_checks_and_full_band():
    x = torch.randn(1, 3, 8, 8)
    assert low_frequency_crop(x, 8) is x
    with pytest.raises(ValueError, match="even"):
        low_frequency_crop(x, 5)


def test_efficienttrain_schedule_matches_the_paper():
    # 300 epochs at 224 px: B = 160 for epochs 1-180, 192 for 181-240, 224 for 241-300 (0-based here)
    assert [band_width(e, 300, 224) for e in (0, 179, 180, 239, 240, 299)] == [160, 160, 192, 192, 224, 224]
    assert [band_width(e, 10, 32) for e in range(10)] == [22] * 6 + [28] * 2 + [32] * 2


def test_efficienttrain_callback_crops_every_view_of_the_batch():
    callback = EfficientTrain()
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    batch = (views, torch.zeros(4), torch.arange(4))
    callback.on_train_batch_start(SimpleNamespace(current_epoch=0, max_epochs=10), None, batch, 0)
    assert [tuple(v.shape) for v in batch[0]] == [(4, 3, 22, 22)] * 2
    callback.on_train_batch_start(SimpleNamespace(current_epoch=9, max_epochs=10), None, batch, 0)
    assert batch[0][0].shape[-1] == 22  # already cropped views stay as they are at the full band
    with pytest.raises(TypeError, match="list"):
        callback.on_train_batch_start(SimpleNamespace(current_epoch=0, max_epochs=10), None, ({"ids": 1}, None), 0)


def test_efficienttrain_reaches_the_training_step_of_a_real_fit(tiny_trainer_kwargs):
    from reprzoo.datamodules import Digits
    from reprzoo.lightning_modules import BatchFormer

    seen: list[tuple[int, ...]] = []

    class Recording(BatchFormer):
        def training_loss(self, views, labels=None, indices=None):
            seen.append(tuple(views[0].shape))
            return super().training_loss(views, labels, indices)

    data = Digits(batch_size=16, augment_on="device", augmentation_kwargs={"num_views": 1, "blur_prob": 0.0})
    model = Recording(backbone="resnet_tiny_cifar", num_classes=10)
    trainer = L.Trainer(**{**tiny_trainer_kwargs, "limit_val_batches": 0, "callbacks": [EfficientTrain()]})
    trainer.fit(model, datamodule=data)
    assert seen == [(16, 3, 22, 22)] * 2  # epoch 0 of 1: the first stage's band, 160/224 of 32 px
