"""The fast per-sample views (``AugmentationView``), JPEG decoding at reduced scale, the device path of ImageFolder
(``CroppedViews`` + ``BatchMultiView`` on crops) and the decoded-image cache, against the definitions they replace:
the torchvision v2 pipeline of each view (same random draws, pixels within a uint8 level or two) and, for the device
path, the CPU path's distributions of crop scales, flip rate and jitter factors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from reprzoo.datamodules import ImageFolder, augmentation_view
from reprzoo.datamodules.images import DecodedImages
from reprzoo.datamodules.transforms import (
    AugmentationView,
    CroppedViews,
    SimSiamTransform,
    adjust_hue_uint8,
    draft_for_views,
    gaussian_blur_uint8,
    open_image,
)

IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # outputs stay in [0, 1]
N = 1500


def random_photo(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(smooth).resize((width, height), Image.BILINEAR))


def pil_kernels_reference(view: AugmentationView) -> v2.Compose:
    """The view's v2 pipeline with every operation on PIL images (``ToImage`` moved before ``ToDtype``)."""
    ops = [t for t in view.transforms if not isinstance(t, v2.ToImage)]
    i = next(k for k, t in enumerate(ops) if isinstance(t, v2.ToDtype))
    return v2.Compose(ops[:i] + [v2.ToImage()] + ops[i:])


@pytest.mark.parametrize("size, side", [(32, 32), (32, 45), (96, 120)])
def test_same_draws_and_pixels_as_the_torchvision_pipeline(size, side):
    """Hue aside (continuous here, 256 steps in PIL), a view on a PIL image equals torchvision's v2 pipeline on PIL
    kernels: the same random draws from torch's generator and the same pixels (the blur within one uint8 level)."""
    view = augmentation_view(size, jitter=(0.4, 0.4, 0.4, 0.0), solarize_prob=0.3, **IDENTITY)
    reference = pil_kernels_reference(view)
    for seed in range(40):
        image = Image.fromarray(random_photo(seed, side, side + 7))
        torch.manual_seed(seed)
        fast, after_fast = view(image), torch.rand(1)
        torch.manual_seed(seed)
        slow, after_slow = reference(image), torch.rand(1)
        assert after_fast == after_slow, "the view consumed torch's random numbers differently"
        assert fast.shape == slow.shape == (3, size, size) and fast.dtype == torch.float32
        assert (fast - slow).abs().max() <= 1.01 / 255


def test_uint8_tensors_follow_the_tensor_pipeline_closely():
    """On uint8 tensors (SyntheticImages, Digits) the previous path ran torchvision's tensor kernels; the same seeds
    give the same views within a few uint8 levels (rounding of PIL's kernels against the tensor ones)."""
    view = augmentation_view(32, mean=(0.5,) * 3, std=(0.25,) * 3)
    diffs = []
    for seed in range(60):
        image = torch.from_numpy(random_photo(seed, 32, 32).copy()).permute(2, 0, 1).contiguous()
        torch.manual_seed(seed)
        fast = view(image)
        torch.manual_seed(seed)
        slow = view.reference(image)
        diffs.append(((fast - slow).abs() * 0.25 * 255).flatten())
    diffs = torch.cat(diffs)
    assert diffs.mean() < 1.0 and diffs.quantile(0.99) <= 4.0


def test_hue_and_blur_kernels_equal_torchvision():
    pixels = random_photo(0, 40, 48)
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()
    for shift in (-0.5, -0.1, 0.03, 0.25):
        expected = TF.adjust_hue(tensor, shift).permute(1, 2, 0).numpy().astype(int)
        assert np.abs(adjust_hue_uint8(pixels, shift).astype(int) - expected).max() <= 1
    for kernel, sigma in ((3, 0.1), (3, 2.0), (23, 0.7), (23, 2.0)):
        expected = TF.gaussian_blur(tensor, [kernel, kernel], [sigma, sigma]).permute(1, 2, 0).numpy().astype(int)
        assert np.abs(gaussian_blur_uint8(pixels, kernel, sigma).astype(int) - expected).max() <= 1


def test_other_inputs_go_through_the_reference():
    view = augmentation_view(16, **IDENTITY)
    floats = torch.rand(3, 20, 20)
    torch.manual_seed(0)
    out = view(floats)
    torch.manual_seed(0)
    assert torch.equal(out, view.reference(floats))
    gray = Image.fromarray(random_photo(1, 20, 20)[..., 0])
    torch.manual_seed(0)
    out = view(gray)
    torch.manual_seed(0)
    assert torch.equal(out, view.reference(gray))


# ----------------------------------------------------------------------------- JPEG files
def write_folder(root: Path, sides: dict[str, tuple[int, int]], fmt: str = "JPEG") -> Path:
    ext = ".jpg" if fmt == "JPEG" else ".png"
    for split in ("train", "val"):
        for i, (name, (h, w)) in enumerate(sides.items()):
            (root / split / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(random_photo(i, h, w)).save(root / split / f"c{i % 2}" / f"{name}{ext}", quality=92)
    return root


def test_jpeg_decodes_at_reduced_scale_only_where_every_crop_keeps_its_pixels(tmp_path):
    write_folder(tmp_path, {"big": (1200, 1600), "small": (200, 260)})
    views = SimSiamTransform(96, crop_scale=(0.2, 1.0)).transforms
    big = open_image(str(tmp_path / "train" / "c0" / "big.jpg"))
    assert big.format == "JPEG" and big.size == (1600, 1200)
    draft_for_views(big, views)
    smallest_crop = math.sqrt(0.2 * 0.75 * big.size[0] * big.size[1])
    assert big.size in ((800, 600), (400, 300)) and smallest_crop >= 96  # 1/2 or 1/4 scale, crops keep 96 px
    small = open_image(str(tmp_path / "train" / "c1" / "small.jpg"))
    draft_for_views(small, views)
    assert small.size == (260, 200)  # too small to reduce
    out = SimSiamTransform(96)(open_image(str(tmp_path / "train" / "c0" / "big.jpg")))
    assert [tuple(v.shape) for v in out] == [(3, 96, 96)] * 2


def test_imagefolder_items_and_fingerprint_unchanged_by_the_lazy_loader(tmp_path):
    from torchvision import datasets

    write_folder(tmp_path, {"a": (64, 80), "b": (70, 70)})
    dm = ImageFolder(root=str(tmp_path), image_size=32)
    dm.setup("fit")
    plain = datasets.ImageFolder(tmp_path / "train")
    for i in range(len(plain)):
        (ours, y1), (theirs, y2) = dm._train[i], plain[i]
        assert y1 == y2 and ours.mode == theirs.mode == "RGB" and np.array_equal(np.asarray(ours), np.asarray(theirs))


# ----------------------------------------------------------------------------- the device path for ImageFolder
def ramp_image(height: int, width: int) -> Image.Image:
    """Red rises along x and green along y over the whole image: a view's pixels tell where its crop lay."""
    x = np.linspace(0, 255, width)[None].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8))


def cpu_and_device_views(dm_kwargs, image: Image.Image, tmp_path: Path, n: int = N):
    """``n`` first views of ``image`` through an ImageFolder's CPU path and through its device path."""
    write_folder(tmp_path, {"a": (40, 40), "b": (40, 40)}, fmt="PNG")
    cpu_dm = ImageFolder(root=str(tmp_path), image_size=24, **dm_kwargs)
    device_dm = ImageFolder(root=str(tmp_path), image_size=24, augment_on="device", **dm_kwargs)
    assert isinstance(device_dm.train_dataloader().dataset.transform, CroppedViews)
    torch.manual_seed(0)
    cpu = torch.stack([cpu_dm.train_transform(image)[0] for _ in range(n)])
    crops = device_dm.train_dataloader().dataset.transform
    torch.manual_seed(1)
    first_views = torch.stack([crops(image)[0] for _ in range(n)])
    assert first_views.dtype == torch.uint8 and first_views.shape == (n, 3, 24, 24)
    second = torch.zeros_like(first_views)
    device = device_dm.batch_augmentation([first_views, second], torch.Generator().manual_seed(2))[0]
    return cpu, device


def assert_same_distribution(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    p = stats.ks_2samp(a.double().numpy(), b.double().numpy()).pvalue
    assert p > 1e-3, f"{what}: CPU and device paths differ (KS p={p:.2g}; means {a.mean():.4f} vs {b.mean():.4f})"


def assert_same_rate(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    pa, pb = a.float().mean().item(), b.float().mean().item()
    se = math.sqrt(max((pa + pb) / 2 * (1 - (pa + pb) / 2), 1e-12) * (1 / len(a) + 1 / len(b)))
    assert abs(pa - pb) < 4 * se + 1e-9, f"{what}: rate {pa:.3f} on the CPU path, {pb:.3f} on the device path"


def test_imagefolder_device_path_crop_scale_and_flip_match_the_cpu_path(tmp_path):
    only_geometry = dict(jitter_prob=0.0, gray_prob=0.0, blur_prob=0.0, hflip_prob=0.5, crop_scale=(0.08, 1.0))
    side_h, side_w = 60, 80
    cpu, device = cpu_and_device_views(
        {"augmentation_kwargs": only_geometry, **{"batch_size": 4}}, ramp_image(side_h, side_w), tmp_path
    )
    mean, std = torch.tensor(ImageFolder.mean).view(1, 3, 1, 1), torch.tensor(ImageFolder.std).view(1, 3, 1, 1)

    def read(views):  # un-normalise, then the ramps' spans give the crop's width and height in source pixels
        x = views * std + mean
        red, green = x[:, 0] * (side_w - 1), x[:, 1] * (side_h - 1)
        dx = red[:, :, -1].mean(1) - red[:, :, 0].mean(1)
        w = dx.abs() * 24 / 23  # first and last output pixels sit half a source step inside the box
        h = (green[:, -1, :].mean(1) - green[:, 0, :].mean(1)) * 24 / 23
        return (w * h) / (side_w * side_h), (w / h).log(), dx < 0

    (area_c, aspect_c, flip_c), (area_d, aspect_d, flip_d) = read(cpu), read(device)
    assert_same_distribution(area_c, area_d, "crop area fraction")
    assert_same_distribution(aspect_c, aspect_d, "crop log aspect ratio")
    assert_same_rate(flip_c, flip_d, "flip rate")
    assert 0.45 < flip_d.float().mean() < 0.55 and 0.08 <= area_d.min() + 0.03 and area_d.max() <= 1.05


@pytest.mark.parametrize("op", ["brightness", "saturation", "hue"])
def test_imagefolder_device_path_jitter_matches_the_cpu_path(tmp_path, op):
    strengths = {"brightness": (0.4, 0, 0, 0), "saturation": (0, 0, 0.4, 0), "hue": (0, 0, 0, 0.1)}[op]
    options = dict(jitter=strengths, jitter_prob=0.8, gray_prob=0.0, blur_prob=0.0, hflip_prob=0.0, crop_scale=(1.0, 1.0))
    colour = Image.new("RGB", (40, 40), (150, 80, 50))
    kwargs = {"augmentation_kwargs": options, "batch_size": 4}
    cpu, device = cpu_and_device_views(kwargs, colour, tmp_path)
    mean, std = torch.tensor(ImageFolder.mean).view(1, 3, 1, 1), torch.tensor(ImageFolder.std).view(1, 3, 1, 1)
    before = torch.tensor([150, 80, 50]) / 255.0

    def measure(views):  # on the uint8 grid of the CPU path (the device path works in float)
        c = ((views * std + mean) * 255).round().mean((2, 3)) / 255
        if op == "brightness":
            return c.mean(1) / before.mean()
        if op == "saturation":
            return (c.amax(1) - c.amin(1)) / (before.max() - before.min())
        import colorsys

        hue = torch.tensor([colorsys.rgb_to_hsv(*rgb)[0] for rgb in c.clamp(0, 1).tolist()])
        return (hue - colorsys.rgb_to_hsv(*before.tolist())[0] + 0.5) % 1 - 0.5

    a, b = measure(cpu).round(decimals=4), measure(device).round(decimals=4)
    assert_same_distribution(a, b, f"{op} factor")
    se = math.sqrt((a.var() + b.var()).item() / len(a))
    assert abs(a.mean() - b.mean()) < 4 * se and abs(a.std() - b.std()) < 0.1 * a.std() + 1e-3


def test_imagefolder_device_loader_yields_uint8_crops_of_each_view(tmp_path):
    write_folder(tmp_path, {"a": (50, 70), "b": (90, 60), "c": (64, 64), "d": (40, 100)})
    dm = ImageFolder(root=str(tmp_path), image_size=32, augment_on="device", batch_size=2, num_workers=0)
    views, labels, indices = next(iter(dm.train_dataloader()))
    assert len(views) == 2 and all(v.dtype == torch.uint8 and v.shape == (2, 3, 32, 32) for v in views)
    out = dm.batch_augmentation(views, torch.Generator().manual_seed(0))
    assert all(v.dtype == torch.float32 and v.shape == (2, 3, 32, 32) for v in out)
    with pytest.raises(ValueError, match="batches of crops"):
        dm.batch_augmentation(views[:1])
    with pytest.raises(ValueError, match="cropped images must be"):
        dm.batch_augmentation([v[..., :16, :16] for v in views])


def test_simsiam_trains_on_an_imagefolder_with_device_augmentation(tmp_path, tiny_trainer_kwargs):
    import lightning as L

    from reprzoo.lightning_modules import SimSiam

    class Batches(L.Callback):
        def __init__(self):
            self.train = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.train.append(batch)

    sides = {f"i{k}": (40 + 7 * k, 60 - 3 * k) for k in range(8)}
    write_folder(tmp_path / "data", sides)
    L.seed_everything(0)
    data = ImageFolder(root=str(tmp_path / "data"), image_size=32, augment_on="device", batch_size=4, num_workers=0)
    model = SimSiam(backbone="resnet_tiny_cifar", num_classes=2, proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=8)
    seen = Batches()
    trainer = L.Trainer(**tiny_trainer_kwargs, callbacks=[seen])
    trainer.fit(model, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and len(seen.train) == 2
    for views, labels, _ in seen.train:  # augmented on the (CPU) device after the transfer: normalised floats
        assert len(views) == 2 and all(v.dtype == torch.float32 and v.shape == (4, 3, 32, 32) for v in views)
        assert views[0].min() < 0 and not torch.equal(views[0], views[1]) and labels.shape == (4,)


# ----------------------------------------------------------------------------- decoded-image cache
@pytest.mark.parametrize("storage", ["memory", "memmap"])
def test_decoded_image_cache_gives_the_same_images(tmp_path, storage):
    import pickle

    from torchvision import datasets

    write_folder(tmp_path / "data", {"a": (50, 70), "b": (90, 60), "c": (64, 64)})
    plain = datasets.ImageFolder(tmp_path / "data" / "train")
    cached = DecodedImages(plain, storage, tmp_path / "cache")
    assert len(cached) == len(plain) and cached.targets == plain.targets
    for i in range(len(plain)):
        assert np.array_equal(np.asarray(cached[i][0]), np.asarray(plain[i][0])) and cached[i][1] == plain[i][1]
    if storage == "memmap":
        files = list((tmp_path / "cache").iterdir())
        assert len(files) == 1 and files[0].suffix == ".u8"
        state = pickle.dumps(cached)
        assert len(state) < 10_000  # workers map the file, the pixels are not pickled
        again = pickle.loads(state)
        assert np.array_equal(np.asarray(again[2][0]), np.asarray(plain[2][0]))
        mtime = files[0].stat().st_mtime_ns
        DecodedImages(plain, storage, tmp_path / "cache")  # reused, not decoded again
        assert files[0].stat().st_mtime_ns == mtime


def test_imagefolder_cache_option(tmp_path):
    write_folder(tmp_path, {"a": (50, 70), "b": (90, 60)})
    dm = ImageFolder(root=str(tmp_path), image_size=32, cache_images="memmap", batch_size=2, num_workers=0)
    views, labels, _ = next(iter(dm.train_dataloader()))
    assert [v.shape for v in views] == [(2, 3, 32, 32)] * 2
    assert list((tmp_path / ".reprzoo_cache").glob("decoded-*.u8"))
    assert dm.fingerprint() == ImageFolder(root=str(tmp_path), image_size=32).fingerprint()
    with pytest.raises(ValueError, match="cache_images must be"):
        ImageFolder(root=str(tmp_path), cache_images="disk")


# ----------------------------------------------------------------------------- the benchmark script runs
def test_bench_pipeline_quick(tmp_path):
    """Smoke run of ``benchmarks/bench_pipeline.py --quick`` (no timing is checked)."""
    import importlib.util

    pytest.importorskip("lightly")
    pytest.importorskip("skimage")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pipeline.py"
    spec = importlib.util.spec_from_file_location("bench_pipeline", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--quick", "--out", str(tmp_path / "p.json")])
    assert (tmp_path / "p.json").exists()
    assert set(results["settings"]) == {"32", "224"}
    assert {"lightly", "reprzoo", "reprzoo_previous"} <= set(results["settings"]["32"]["medians"])
    assert {"reprzoo_cached", "reprzoo_device_loader_and_batch"} <= set(results["settings"]["224"]["medians"])
    assert all(v > 0 for res in results["settings"].values() for v in res["medians"].values())
