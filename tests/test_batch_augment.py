"""The batched device augmentation (reprzoo.datamodules.batch_augment) against the per-sample torchvision v2
pipeline of ``augmentation_view``: each operation exactly for given parameters, each random parameter's
distribution statistically on a few thousand samples, and the datamodule path ``augment_on="device"``."""

from __future__ import annotations

import colorsys
import inspect
import math
import types

import lightning as L
import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from reprzoo.datamodules import Digits, ImageFolder, augmentation_view, build_augmentation
from reprzoo.datamodules import batch_augment as ba
from reprzoo.datamodules import transforms as transforms_module
from reprzoo.datamodules.batch_augment import BatchAugmentation, BatchMultiView
from reprzoo.datamodules.images import TensorImageDataset, as_tensor_images
from reprzoo.errors import ReprzooError

IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # outputs stay in [0, 1]
ONLY_CROP = dict(hflip_prob=0.0, jitter_prob=0.0, gray_prob=0.0, blur_prob=0.0, solarize_prob=0.0, **IDENTITY)
N = 2000  # samples per pipeline in the statistical comparisons


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def both_pipelines(image: torch.Tensor, n: int = N, size: int | None = None, **kwargs):
    """``n`` views of one uint8 image ``(C, H, W)`` from the per-sample CPU pipeline and from the batched one."""
    size = size or image.shape[-1]
    torch.manual_seed(0)
    view = augmentation_view(size, **kwargs)
    cpu = torch.stack([view(image) for _ in range(n)])
    device = BatchAugmentation(size, **kwargs)(image.expand(n, *image.shape).contiguous(), generator(1))
    return cpu, device


def assert_same_distribution(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    p = stats.ks_2samp(a.double().numpy(), b.double().numpy()).pvalue
    means = f"means {a.mean():.4f} vs {b.mean():.4f}"
    assert p > 1e-3, f"{what}: CPU and batched distributions differ (KS p={p:.2g}; {means})"


def assert_same_rate(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    pa, pb = a.float().mean().item(), b.float().mean().item()
    pooled = (pa + pb) / 2
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / len(a) + 1 / len(b)))
    assert abs(pa - pb) < 4 * se + 1e-9, f"{what}: rate {pa:.3f} on the CPU, {pb:.3f} batched"


# ----------------------------------------------------------------------------- same options, same kernels
def test_takes_exactly_the_options_of_augmentation_view():
    cpu = inspect.signature(augmentation_view).parameters
    batched = dict(inspect.signature(BatchAugmentation.__init__).parameters)
    batched.pop("self")
    assert list(batched) == list(cpu), "BatchAugmentation must take augmentation_view's keyword arguments"
    assert {k: p.default for k, p in batched.items()} == {k: p.default for k, p in cpu.items()}


@pytest.mark.parametrize("size", [16, 32, 64, 96, 224])
def test_blur_kernel_size_matches_cpu_pipeline(size):
    view = augmentation_view(size, blur_prob=1.0)
    applied = [t.transforms[0] for t in view.transforms if isinstance(t, v2.RandomApply)]
    blur = next(t for t in applied if isinstance(t, v2.GaussianBlur))
    assert list(blur.kernel_size) == [ba.blur_kernel_size(size)] * 2


def test_argument_checks():
    with pytest.raises(ValueError, match="crop_scale"):
        BatchAugmentation(32, crop_scale=(0.9, 0.2))
    with pytest.raises(ValueError, match="gray_prob must be in"):
        BatchAugmentation(32, gray_prob=1.5)
    with pytest.raises(ValueError, match="jitter must be"):
        BatchAugmentation(32, jitter=(0.4, 0.4, 0.4, 0.7))
    with pytest.raises(ValueError, match="blur_sigma"):
        BatchAugmentation(32, blur_sigma=(0.0, 1.0))
    with pytest.raises(ValueError, match="channels"):
        BatchAugmentation(32)(torch.zeros(2, 4, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 or floating"):
        BatchAugmentation(32)(torch.zeros(2, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        BatchAugmentation(32)(torch.zeros(3, 32, 32, dtype=torch.uint8))


# ----------------------------------------------------------------------------- each op, given its parameters
def test_resized_crops_equal_torchvision_resized_crop_and_flip():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 20, 28)
    boxes = ba.sample_crop_boxes(64, 20, 28, (0.08, 1.0), generator=generator())
    flip = torch.rand(64) < 0.5
    ref = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), size=[20, 28], antialias=True) for i in range(64)])
    ref = torch.where(flip.view(-1, 1, 1, 1), ref.flip(-1), ref)
    out = ba.resized_crops(x, boxes, (20, 28), flip)
    assert out.shape == (64, 3, 20, 28)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # crops larger than the output: bilinear without antialiasing
    small = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), size=[8, 8], antialias=False) for i in range(64)])
    torch.testing.assert_close(ba.resized_crops(x, boxes, 8), small, atol=1e-5, rtol=0)


def test_colour_ops_equal_torchvision_per_image():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 12, 12)
    x[:, :, :3] = 0.5  # gray pixels (no hue)
    x[:, 1, 3:6] = x[:, 0, 3:6]  # red and green tied for the maximum
    factor, shift = torch.rand(32) * 1.6 + 0.2, torch.rand(32) - 0.5
    cases = [
        (ba.adjust_brightness, TF.adjust_brightness, factor),
        (ba.adjust_contrast, TF.adjust_contrast, factor),
        (ba.adjust_saturation, TF.adjust_saturation, factor),
        (ba.adjust_hue, TF.adjust_hue, shift),
    ]
    for ours, theirs, values in cases:
        ref = torch.stack([theirs(x[i], values[i].item()) for i in range(32)])
        torch.testing.assert_close(ours(x, values), ref, atol=1e-5, rtol=0, msg=ours.__name__)
    torch.testing.assert_close(ba.grayscale(x).expand_as(x), TF.rgb_to_grayscale(x, num_output_channels=3))
    u8 = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    solarized = (ba.solarize(u8.float() / 255) * 255).round().to(torch.uint8)
    assert torch.equal(solarized, TF.solarize(u8, threshold=128))


@pytest.mark.parametrize("kernel_size", [3, 9, 23])
def test_gaussian_blur_equals_torchvision_per_image(kernel_size):
    torch.manual_seed(0)
    x, sigma = torch.rand(8, 3, 40, 40), torch.rand(8) * 1.9 + 0.1
    ref = torch.stack([TF.gaussian_blur(x[i], [kernel_size] * 2, [sigma[i].item()] * 2) for i in range(8)])
    torch.testing.assert_close(ba.gaussian_blur(x, sigma, kernel_size), ref, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- random parameters
def torchvision_boxes(n: int, height: int, width: int, scale) -> torch.Tensor:
    crop = v2.RandomResizedCrop(8, scale=scale)
    image = torch.zeros(1, height, width)
    torch.manual_seed(0)
    params = [crop.make_params([image]) for _ in range(n)]
    return torch.tensor([[p["top"], p["left"], p["height"], p["width"]] for p in params])


@pytest.mark.parametrize(
    "height,width,scale",
    [(32, 32, (0.08, 1.0)), (32, 32, (0.4, 1.0)), (96, 64, (0.2, 1.0)), (8, 64, (0.5, 1.0))],  # the last: fallbacks
)
def test_crop_boxes_distributed_as_torchvision(height, width, scale):
    ours = ba.sample_crop_boxes(4 * N, height, width, scale, generator=generator())
    theirs = torchvision_boxes(4 * N, height, width, scale)
    for boxes in (ours, theirs):
        top, left, h, w = boxes.unbind(1)
        assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
        assert (top + h <= height).all() and (left + w <= width).all()
    area = lambda b: (b[:, 2] * b[:, 3]).float() / (height * width)  # noqa: E731
    aspect = lambda b: (b[:, 3].float() / b[:, 2]).log()  # noqa: E731
    assert_same_distribution(area(theirs), area(ours), "crop area fraction")
    assert_same_distribution(aspect(theirs), aspect(ours), "crop log aspect ratio")
    assert_same_distribution(theirs[:, 0].float() / height, ours[:, 0].float() / height, "crop top")
    assert_same_distribution(theirs[:, 1].float() / width, ours[:, 1].float() / width, "crop left")
    centred = lambda b: (b[:, 0] == (height - b[:, 2]) // 2) & (b[:, 1] == (width - b[:, 3]) // 2)  # noqa: E731
    assert_same_rate(centred(theirs), centred(ours), "centred boxes (incl. the fallback)")


def ramp_image(size: int = 16) -> torch.Tensor:
    """Red = column, green = row (0..255): a crop's box can be read off its first and last pixels."""
    ramp = torch.linspace(0, 255, size)
    channels = [ramp.expand(size, size), ramp[:, None].expand(size, size), torch.full((size, size), 128.0)]
    return torch.stack(channels).round().to(torch.uint8)


def test_crop_and_flip_statistics_match_cpu_pipeline():
    size = 16
    cpu, device = both_pipelines(ramp_image(size), crop_scale=(0.08, 1.0), **{**ONLY_CROP, "hflip_prob": 0.5})

    def read(views):  # crops are never larger than the image here: first/last pixels sit on the box edges
        red, green = views[:, 0] * (size - 1), views[:, 1] * (size - 1)
        dx = red[:, :, -1].mean(1) - red[:, :, 0].mean(1)
        w = dx.abs().round() + 1
        h = (green[:, -1, :].mean(1) - green[:, 0, :].mean(1)).round() + 1
        return w * h / size**2, (w / h).log(), dx < 0

    (area_c, aspect_c, flip_c), (area_d, aspect_d, flip_d) = read(cpu), read(device)
    assert_same_distribution(area_c, area_d, "crop area fraction")
    assert_same_distribution(aspect_c, aspect_d, "crop log aspect ratio")
    assert_same_rate(flip_c, flip_d, "flip rate")
    assert 0.45 < flip_d.float().mean() < 0.55


def constant_image(rgb=(150, 80, 50), size: int = 16) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, size, size).contiguous()


def hue_of(rgb: torch.Tensor) -> torch.Tensor:
    """HSV hue in turns of ``(n, 3)`` colours in [0, 1]."""
    return torch.tensor([colorsys.rgb_to_hsv(*c)[0] for c in rgb.tolist()])


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue"])
def test_colour_jitter_statistics_match_cpu_pipeline(op):
    strengths = {
        "brightness": (0.4, 0, 0, 0), "contrast": (0, 0.4, 0, 0), "saturation": (0, 0, 0.4, 0), "hue": (0, 0, 0, 0.1)
    }  # fmt: skip
    image = constant_image() if op != "contrast" else ramp_image()
    options = {**ONLY_CROP, "crop_scale": (1.0, 1.0), "jitter": strengths[op], "jitter_prob": 0.8}
    cpu, device = both_pipelines(image, **options)
    before = image.float().div(255).unsqueeze(0)

    def measure(views):
        if op == "brightness":
            return views.mean((1, 2, 3)) / before.mean()
        if op == "contrast":
            return views.std((1, 2, 3)) / before.std()
        colour = views.mean((2, 3))
        if op == "saturation":
            spread = lambda c: c.amax(1) - c.amin(1)  # noqa: E731
            return spread(colour) / spread(before.mean((2, 3)))
        shift = hue_of(colour) - hue_of(before.mean((2, 3)))
        return (shift + 0.5) % 1 - 0.5

    a, b = measure(cpu), measure(device)
    identity, tol = (0.0, 0.005) if op == "hue" else (1.0, 2.5 / 255 / before.mean().item())  # uint8 rounding
    assert_same_rate((a - identity).abs() < tol, (b - identity).abs() < tol, f"{op} unchanged")
    assert_same_distribution(a, b, f"{op} factor")
    assert abs(a.mean() - b.mean()) < 0.01 and abs(a.std() - b.std()) < 0.01


def test_full_simsiam_view_statistics_match_cpu_pipeline():
    """All ops together (one jitter order per batch on the device path): per-channel means and spreads agree."""
    torch.manual_seed(0)
    image = (torch.rand(3, 32, 32) * torch.tensor([1.0, 0.6, 0.3]).view(3, 1, 1) * 255).to(torch.uint8)
    cpu, device = both_pipelines(image, n=1000, crop_scale=(0.2, 1.0), blur_prob=0.5, solarize_prob=0.2, **IDENTITY)
    for c in range(3):
        assert_same_distribution(cpu[:, c].mean((1, 2)), device[:, c].mean((1, 2)), f"channel {c} mean")
        assert_same_distribution(cpu[:, c].std((1, 2)), device[:, c].std((1, 2)), f"channel {c} spread")


def test_grayscale_and_solarize_rates_match_cpu_pipeline():
    image = constant_image((200, 160, 140))
    options = {**ONLY_CROP, "gray_prob": 0.2, "solarize_prob": 0.3}
    cpu, device = both_pipelines(image, **options)
    gray = lambda v: (v.amax(1) - v.amin(1)).amax((1, 2)) < 2 / 255  # noqa: E731
    solarized = lambda v: v.mean((1, 2, 3)) < 0.5  # noqa: E731
    assert_same_rate(gray(cpu), gray(device), "grayscale rate")
    assert_same_rate(solarized(cpu), solarized(device), "solarize rate")
    assert abs(gray(device).float().mean() - 0.2) < 0.04 and abs(solarized(device).float().mean() - 0.3) < 0.04


def test_blur_statistics_match_cpu_pipeline():
    size = 32
    checker = ((torch.arange(size)[:, None] + torch.arange(size)[None]) % 2 * 200 + 20).to(torch.uint8)
    image = checker.expand(3, size, size).contiguous()
    cpu, device = both_pipelines(image, **{**ONLY_CROP, "crop_scale": (1.0, 1.0), "blur_prob": 0.5})
    contrast = lambda v: (v.std((1, 2, 3)) / (checker.float() / 255).std()).round(decimals=3)  # noqa: E731
    a, b = contrast(cpu), contrast((device * 255).round() / 255)  # the CPU pipeline rounds its blur to uint8
    assert_same_rate(a < 0.99, b < 0.99, "blur rate")
    assert_same_distribution(a, b, "contrast left after blur")


# ----------------------------------------------------------------------------- shapes, dtypes, devices, seeds
def test_shapes_dtypes_and_uint8_equals_float_input():
    aug = BatchAugmentation(24, blur_prob=0.5, solarize_prob=0.2)
    u8 = torch.randint(0, 256, (10, 3, 40, 30), dtype=torch.uint8)
    out = aug(u8, generator(3))
    assert out.shape == (10, 3, 24, 24) and out.dtype == torch.float32 and out.device == u8.device
    torch.testing.assert_close(aug(u8.float() / 255, generator(3)), out, atol=1e-5, rtol=0)
    one_channel = BatchAugmentation(16, mean=(0.5,), std=(0.5,))(torch.rand(4, 1, 20, 20), generator())
    assert one_channel.shape == (4, 1, 16, 16)


def test_cpu_chunks_equal_one_pass(monkeypatch):
    aug = BatchAugmentation(32, blur_prob=0.5, solarize_prob=0.2)
    u8 = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    params = aug.sample_params(20, 32, 32, generator())
    whole = aug.apply(u8, params)
    monkeypatch.setattr(ba, "CPU_CHUNK_ELEMENTS", 3 * 32 * 32 * 3)  # chunks of 3 images
    torch.testing.assert_close(aug.apply(u8, params), whole)


def test_seeded_generator_is_deterministic():
    views = BatchMultiView.from_augmentation("byol", 32, (0.5,) * 3, (0.5,) * 3)
    u8 = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a, b, c = views(u8, generator(7)), views(u8, generator(7)), views(u8, generator(8))
    assert len(a) == 2 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_a_cuda_generator():
    views = BatchMultiView.from_augmentation("simsiam", 32, (0.5,) * 3, (0.5,) * 3)
    u8 = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, device="cuda")
    out = views(u8, torch.Generator("cuda").manual_seed(0))
    assert all(v.device.type == "cuda" and v.shape == (16, 3, 32, 32) for v in out)
    cpu_params = views(u8.cpu(), generator())  # a CPU generator drives a CUDA batch too
    torch.testing.assert_close(views(u8, generator())[0].cpu(), cpu_params[0], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- multi-view and the registry
def test_multi_view_settings_follow_the_cpu_transforms():
    byol = BatchMultiView.from_augmentation("byol", 32, (0.5,) * 3, (0.5,) * 3, blur_probs=(1.0, 0.1))
    assert [v.blur_prob for v in byol.views] == [1.0, 0.1] and [v.solarize_prob for v in byol.views] == [0.0, 0.2]
    assert byol.views[0].jitter == (0.4, 0.4, 0.2, 0.1) and byol.views[0].crop_scale == (0.08, 1.0)
    simsiam = BatchMultiView.from_augmentation("simsiam", 24, (0.5,) * 3, (0.5,) * 3, num_views=3, blur_prob=0.0)
    assert len(simsiam) == 3 and all(v.size == 24 and v.blur_prob == 0.0 for v in simsiam.views)


@pytest.mark.parametrize("name", sorted(transforms_module.AUGMENTATIONS))
def test_every_registered_augmentation_is_supported_or_refused_clearly(name):
    try:
        cpu = build_augmentation(name, 32, (0.5,) * 3, (0.5,) * 3)
    except TypeError as err:  # an augmentation that needs more than a size (not an image augmentation)
        pytest.skip(f"{name} is not built from a size alone: {err}")
    plain = type(cpu).__call__ is transforms_module.MultiViewTransform.__call__
    if plain and all(hasattr(t, "view_kwargs") for t in getattr(cpu, "transforms", [])):
        assert len(BatchMultiView.from_augmentation(name, 32, (0.5,) * 3, (0.5,) * 3)) == len(cpu.transforms)
    else:
        with pytest.raises(ReprzooError, match="no device implementation yet"):
            BatchMultiView.from_augmentation(name, 32, (0.5,) * 3, (0.5,) * 3)


def test_unsupported_augmentation_raises_clear_error(monkeypatch):
    class PairsWithParams(transforms_module.MultiViewTransform):
        def __call__(self, image):
            return {"views": super().__call__(image), "params": 0}

    monkeypatch.setitem(
        transforms_module.AUGMENTATIONS, "pairs_with_params",
        lambda size, mean, std, **kwargs: PairsWithParams([augmentation_view(size, mean=mean, std=std, **kwargs)] * 2),
    )  # fmt: skip
    with pytest.raises(ReprzooError, match="augmentation 'pairs_with_params' has no device implementation yet"):
        BatchMultiView.from_augmentation("pairs_with_params", 32, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ReprzooError, match="no device implementation yet"):
        Digits(augmentation="pairs_with_params", augment_on="device")


# ----------------------------------------------------------------------------- datamodule integration
def test_device_mode_loader_yields_uint8_and_checks_its_options(tmp_path):
    dm = Digits(batch_size=8, augment_on="device")
    images, labels, indices = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32) and labels.shape == indices.shape == (8,)
    batch = (images, labels, indices)
    assert dm.on_after_batch_transfer(batch, 0) is batch  # no trainer: untouched
    x, _ = next(iter(dm.val_dataloader()[1]))
    assert x.dtype == torch.float32
    assert Digits().fingerprint() == dm.fingerprint()
    with pytest.raises(ValueError, match="augment_on must be"):
        Digits(augment_on="gpu")
    (tmp_path / "train" / "a").mkdir(parents=True), (tmp_path / "val" / "a").mkdir(parents=True)
    assert not ImageFolder(root=str(tmp_path), augment_on="device").augments_crops_on_device()  # crops in the loader


def test_torchvision_style_datasets_become_tensor_datasets():
    cifar_like = types.SimpleNamespace(data=np.zeros((5, 32, 32, 3), np.uint8), targets=[0, 1, 2, 3, 4])
    stl_like = types.SimpleNamespace(data=np.zeros((5, 3, 96, 96), np.uint8), labels=np.arange(5))
    assert as_tensor_images(cifar_like).images.shape == (5, 3, 32, 32)
    assert as_tensor_images(stl_like).images.shape == (5, 3, 96, 96)
    assert as_tensor_images(stl_like)[4][1] == 4
    ds = TensorImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]))
    assert as_tensor_images(ds) is ds
    with pytest.raises(ReprzooError, match="in memory at one size"):
        as_tensor_images(types.SimpleNamespace(samples=[("a.jpg", 0)]))


class _CheckBatches(L.Callback):
    def __init__(self):
        self.train, self.val = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.append(batch)


def test_simsiam_trains_with_device_augmentation(tiny_trainer_kwargs):
    from reprzoo.lightning_modules import SimSiam

    L.seed_everything(0)
    data = Digits(batch_size=16, augment_on="device", augmentation_kwargs={"blur_prob": 0.0})
    model = SimSiam(backbone="resnet_tiny_cifar", num_classes=10, proj_hidden_dim=64, proj_output_dim=64, pred_hidden_dim=16)
    check = _CheckBatches()
    trainer = L.Trainer(**tiny_trainer_kwargs, callbacks=[check])
    trainer.fit(model, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert len(check.train) == 2
    for views, labels, indices in check.train:
        assert isinstance(views, list) and len(views) == 2
        assert all(v.dtype == torch.float32 and v.shape == (16, 3, 32, 32) for v in views)
        assert not torch.equal(views[0], views[1]) and labels.shape == indices.shape == (16,)
    x, y = check.val[0]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 32, 32)  # evaluation batches untouched


def test_bench_augment_quick(tmp_path):
    """The throughput benchmark runs and reports every pipeline (no timing asserted; numbers in BENCHMARKS.md)."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_augment.py"
    spec = importlib.util.spec_from_file_location("bench_augment", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--quick", "--out", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(json.dumps(results))
    assert {r["pipeline"] for r in results["results"]} == {"per_sample_tensor", "per_sample_pil", "batched"}
    assert all(r["images_per_s"] > 0 for r in results["results"]) and results["views_per_image"] == 2
