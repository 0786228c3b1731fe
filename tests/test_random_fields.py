"""Random field augmentations: fields are smooth unit-variance noise; long length scales give the global transform."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from reprzoo.datamodules.random_fields import RandomFieldTransform, RandomFieldViewsTransform, gaussian_random_field


def test_fields_have_unit_variance_and_are_smoother_with_longer_scales():
    generator = torch.Generator().manual_seed(0)
    short = gaussian_random_field(200, 32, 32, 0.02, generator)
    long = gaussian_random_field(200, 32, 32, 0.2, generator)
    for f in (short, long):  # over draws, every pixel is N(0, 1)
        assert abs(f.mean().item()) < 0.1 and abs(f[:, 5, 7].std().item() - 1) < 0.15

    def roughness(f):  # neighbour differences
        return (f[:, :, 1:] - f[:, :, :-1]).abs().mean()

    assert roughness(long) < 0.5 * roughness(short)
    constant = gaussian_random_field(3, 16, 16, 1e3, generator)  # a practically constant field per draw
    assert constant.std(dim=(1, 2)).max() < 1e-3 and constant.abs().mean() > 0.05
    with pytest.raises(ValueError, match="length_scale"):
        gaussian_random_field(1, 8, 8, 0.0)


def test_zero_strength_is_identity():
    x = torch.rand(3, 16, 16)
    t = RandomFieldTransform(translation=0, rotation=0, brightness=0, saturation=0, hue=0)
    assert torch.allclose(t(x), x, atol=1e-5)


def test_brightness_field_is_local_and_has_the_requested_spread():
    x = torch.full((1, 64, 64), 0.5)
    t = RandomFieldTransform(
        translation=0,
        rotation=0,
        brightness=0.1,
        saturation=0,
        hue=0,
        length_scale=0.05,
        generator=torch.Generator().manual_seed(1),
    )
    shifts = torch.stack([t(x) - x for _ in range(20)])
    assert abs(shifts.std().item() - 0.1) < 0.02  # the requested spread over draws
    assert shifts[0].std() > 0.03  # and it varies from pixel to pixel within one image


def test_constant_rotation_field_is_the_global_rotation():
    """A practically constant angle field rotates the whole image by one angle, as torchvision's rotate does."""
    x = torch.zeros(1, 33, 33)
    x[:, 14:19, 4:29] = 1.0  # a horizontal bar through the centre
    t = RandomFieldTransform(
        translation=0,
        rotation=30.0,
        brightness=0,
        saturation=0,
        hue=0,
        length_scale=1e3,
        generator=torch.Generator().manual_seed(3),
    )
    out = t(x)
    angle = gaussian_random_field(6, 33, 33, 1e3, torch.Generator().manual_seed(3))[2].mean().item() * 30.0
    expected = TF.rotate(x, angle, interpolation=TF.InterpolationMode.BILINEAR)
    centre = (slice(None), slice(8, 25), slice(8, 25))  # away from the reflected borders
    assert abs(angle) > 5 and torch.allclose(out[centre], expected[centre], atol=1e-4)


def test_views_transform_gives_normalised_views():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    views = RandomFieldViewsTransform(size=16, num_views=2, blur_prob=0.0)(image)
    assert len(views) == 2 and views[0].shape == (3, 16, 16) and views[0].dtype == torch.float32
    assert not torch.equal(views[0], views[1])
