"""Sequence datamodules, generated offline: multichannel time series of a few classes, and Atari-like frame sequences.

* :class:`SyntheticTimeSeries`: seeded series whose class sets frequency and waveform (phase, amplitude, trend and
  noise vary); a fraction of training series can be drowned in noise. Train views by the time-series augmentations
  of TS-TCC ("Time-Series Representation Learning via Temporal and Contextual Contrasting", arXiv:2106.14112): a weak
  view (scaling) and a strong view (segment permutation + jitter), with optional time masking (TS2Vec).
* :class:`GeneratedFrames`: episodes of a small Pong (a ball bouncing between walls and two paddles that chase
  it), with the ground-truth state of every frame (AtariARI-style variables); train samples are consecutive frame
  pairs ``(x_t, x_{t+1})``; labels (for kNN and the probe) are the ball's x position in ``num_bins`` bins.

Both give the batches of :class:`~reprzoo.datamodules.base.EmbeddingDataModule` and know no method.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from reprzoo.datamodules.base import EmbeddingDataModule, TransformedDataset
from reprzoo.datamodules.transforms import MultiViewTransform
from reprzoo.errors import UnknownNameError


# ----------------------------------------------------------------------------------------------- time series
def jitter(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Add N(0, sigma^2) noise to every time step of ``x`` ``(channels, time)``."""
    return x + sigma * torch.randn_like(x) if sigma > 0 else x


def scaling(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Multiply each channel by a factor drawn from N(1, sigma^2)."""
    return x * (1 + sigma * torch.randn(x.shape[0], 1, dtype=x.dtype)) if sigma > 0 else x


def permutation(x: torch.Tensor, max_segments: int) -> torch.Tensor:
    """Cut the time axis at random points into 2..max_segments segments and shuffle their order."""
    length = x.shape[-1]
    num_segments = int(torch.randint(2, max(max_segments, 2) + 1, ()))
    cuts = torch.randperm(length - 2)[: num_segments - 1].add(1).sort().values.tolist()
    pieces = torch.tensor_split(torch.arange(length), cuts)
    order = torch.randperm(len(pieces)).tolist()
    return x[:, torch.cat([pieces[i] for i in order])]


def time_mask(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero a random ``ratio`` of the time steps (TS2Vec's timestamp masking), the same steps in every channel."""
    if ratio <= 0:
        return x
    keep = torch.rand(x.shape[-1]) >= ratio
    return x * keep.to(x.dtype)


class TimeSeriesTransform(MultiViewTransform):
    """TS-TCC's weak and strong views of a ``(channels, time)`` series (arXiv:2106.14112, Sec. 4.1; the augmentation
    code DBPM reuses): weak = scaling (then jitter, off by default), strong = segment permutation then jitter (then
    time masking, off by default).

    Args:
        views: the kind of each view, ``weak`` or ``strong``.
        scale_ratio: standard deviation of the weak view's channel scaling (1.1 in TS-TCC/DBPM for ECG).
        weak_jitter_ratio: jitter of the weak view.
        jitter_ratio: jitter of the strong view (0.8 in TS-TCC/DBPM for ECG).
        max_segments: most segments of the strong view's permutation (8 in DBPM).
        mask_ratio: fraction of time steps the strong view masks.
    """

    def __init__(
        self,
        views: Sequence[str] = ("weak", "strong"),
        scale_ratio: float = 1.1,
        weak_jitter_ratio: float = 0.0,
        jitter_ratio: float = 0.8,
        max_segments: int = 8,
        mask_ratio: float = 0.0,
    ):
        bad = [v for v in views if v not in ("weak", "strong")]
        if bad:
            raise ValueError(f"views must be 'weak' or 'strong', got {bad}")
        self.scale_ratio, self.weak_jitter_ratio = scale_ratio, weak_jitter_ratio
        self.jitter_ratio, self.max_segments, self.mask_ratio = jitter_ratio, max_segments, mask_ratio
        super().__init__([self.weak if v == "weak" else self.strong for v in views])

    def weak(self, x: torch.Tensor) -> torch.Tensor:
        return jitter(scaling(x, self.scale_ratio), self.weak_jitter_ratio)

    def strong(self, x: torch.Tensor) -> torch.Tensor:
        return time_mask(jitter(permutation(x, self.max_segments), self.jitter_ratio), self.mask_ratio)


SEQUENCE_AUGMENTATIONS: dict[str, type[MultiViewTransform]] = {"weak_strong": TimeSeriesTransform}


class TensorSeriesDataset(Dataset):
    """Series held as one float ``(N, channels, time)`` tensor, with integer labels."""

    def __init__(self, series: torch.Tensor, labels: torch.Tensor):
        if series.ndim != 3 or not series.is_floating_point():
            raise ValueError(f"series must be a float (N, channels, time) tensor, got {series.dtype} {tuple(series.shape)}")
        if len(series) != len(labels):
            raise ValueError(f"{len(series)} series but {len(labels)} labels")
        self.series, self.labels = series, labels.long()

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, index: int):
        return self.series[index], int(self.labels[index])


class SyntheticTimeSeries(EmbeddingDataModule):
    """Generated multichannel series of ``num_classes`` classes.

    Class ``k`` fixes the waveform (sine, square-ish, sawtooth, by ``k % 3``) and the frequency (``2 + 1.25 k``
    cycles per window, +-8%); each channel draws its own phase, amplitude and offset; a random linear trend and
    Gaussian noise of standard deviation ``noise_std`` are added. A ``noisy_fraction`` of the *training* series get
    ``noisy_std`` noise instead (noisy positive pairs in DBPM's sense). Series are standardised with the training
    split's mean and standard deviation. Deterministic for a given ``seed``.

    Args:
        num_classes: classes of the series.
        channels: channels per series.
        length: time steps per series.
        train_size: training series.
        test_size: test series.
        noise_std: standard deviation of the additive noise.
        noisy_fraction: fraction of training series drowned in noise.
        noisy_std: noise of those series.
        seed: seed of the generator.
        augmentation: name of the multi-view augmentation (``weak_strong``).
        augmentation_kwargs: overrides of its defaults, e.g. ``{jitter_ratio: 0.2}``.
    """

    def __init__(
        self,
        num_classes: int = 6,
        channels: int = 3,
        length: int = 128,
        train_size: int = 1200,
        test_size: int = 400,
        noise_std: float = 0.3,
        noisy_fraction: float = 0.0,
        noisy_std: float = 3.0,
        seed: int = 0,
        augmentation: str = "weak_strong",
        augmentation_kwargs: dict[str, Any] | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if not 0.0 <= noisy_fraction <= 1.0:
            raise ValueError(f"noisy_fraction must be in [0, 1], got {noisy_fraction}")
        if augmentation not in SEQUENCE_AUGMENTATIONS:
            raise UnknownNameError("augmentation", augmentation, SEQUENCE_AUGMENTATIONS)
        self.num_classes, self.channels, self.length = num_classes, channels, length
        self.train_size, self.test_size, self.seed = train_size, test_size, seed
        self.noise_std, self.noisy_fraction, self.noisy_std = noise_std, noisy_fraction, noisy_std
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in (augmentation_kwargs or {}).items()}
        self.train_transform = SEQUENCE_AUGMENTATIONS[augmentation](**kwargs)
        self.noisy: torch.Tensor | None = None  # which training series were drowned in noise

    def _generate(self, n: int, g: torch.Generator, noisy_fraction: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, self.num_classes, (n,), generator=g)
        t = torch.linspace(0, 1, self.length)
        freq = (2 + 1.25 * labels.float()) * (1 + 0.08 * (2 * torch.rand(n, generator=g) - 1))
        phase = 2 * math.pi * torch.rand(n, self.channels, 1, generator=g)
        arg = 2 * math.pi * freq[:, None, None] * t + phase  # (n, channels, length)
        shape = (labels % 3)[:, None, None]
        sine = torch.sin(arg)
        square = torch.tanh(4 * sine)
        saw = 2 * torch.remainder(arg / (2 * math.pi), 1.0) - 1
        wave = torch.where(shape == 0, sine, torch.where(shape == 1, square, saw))
        amplitude = 0.5 + torch.rand(n, self.channels, 1, generator=g)
        offset = 0.5 * torch.randn(n, self.channels, 1, generator=g)
        trend = 0.5 * torch.randn(n, self.channels, 1, generator=g) * (t - 0.5)
        noisy = torch.rand(n, generator=g) < noisy_fraction
        std = torch.where(noisy, self.noisy_std, self.noise_std)[:, None, None]
        series = amplitude * wave + offset + trend + std * torch.randn(n, self.channels, self.length, generator=g)
        return series, labels, noisy

    def _splits(self):
        g = torch.Generator().manual_seed(self.seed)
        train, train_labels, self.noisy = self._generate(self.train_size, g, self.noisy_fraction)
        test, test_labels, _ = self._generate(self.test_size, g, 0.0)
        mean, std = train.mean(dim=(0, 2), keepdim=True), train.std(dim=(0, 2), keepdim=True)
        return (
            TensorSeriesDataset((train - mean) / std, train_labels),
            TensorSeriesDataset((test - mean) / std, test_labels),
        )

    def preprocessing(self) -> dict[str, Any]:
        return {"modality": "time_series", "channels": self.channels, "length": self.length}


# ----------------------------------------------------------------------------------------------- frames
STATE_VARIABLES = ("ball_x", "ball_y", "left_paddle_y", "right_paddle_y")  # the positions AtariARI-style probes read


class FrameDataset(Dataset):
    """Frames rendered from a ``(N, V)`` table of states, with integer labels and episode ids.

    ``render(states, ids)`` draws the frames of some rows (float in [0, 1], ``(k, C, H, W)``); with ``cache`` all
    frames are drawn once and kept, otherwise each is drawn when read (full-size frames of long runs).
    """

    def __init__(self, states: torch.Tensor, labels: torch.Tensor, episodes: torch.Tensor, render, cache: bool = True):
        if not len(states) == len(labels) == len(episodes):
            raise ValueError("states, labels and episodes differ in length")
        self.states, self.labels, self.episodes, self.render = states, labels.long(), episodes, render
        self._cache = render(states, torch.arange(len(states))) if cache else None

    @property
    def frames(self) -> torch.Tensor:
        """Every frame, ``(N, C, H, W)``."""
        return self._cache if self._cache is not None else self.render(self.states, torch.arange(len(self.states)))

    def frame(self, index: int) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[index]
        return self.render(self.states[index : index + 1], torch.tensor([index]))[0]

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, index: int):
        return self.frame(index), int(self.labels[index])


class ConsecutiveFrames(Dataset):
    """The pairs ``(x_t, x_{t+1})`` of consecutive frames of the same episode, stacked as ``(2, C, H, W)``, labelled
    by frame ``t``'s label."""

    def __init__(self, frames: FrameDataset):
        self.frames = frames
        same = frames.episodes[1:] == frames.episodes[:-1]
        self.starts = torch.nonzero(same).flatten()

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int):
        t = int(self.starts[index])
        return torch.stack([self.frames.frame(t), self.frames.frame(t + 1)]), int(self.frames.labels[t])


class PairViews:
    """The two views of a stacked pair ``(2, ...)``: ``[x_t, x_{t+1}]``."""

    def __call__(self, pair: torch.Tensor) -> list[torch.Tensor]:
        return [pair[0], pair[1]]

    def __repr__(self) -> str:
        return "PairViews(x_t, x_t+1)"


class GeneratedFrames(EmbeddingDataModule):
    """Episodes of a small generated Pong with the ground-truth state of every frame.

    A 2x2 ball moves with a constant velocity (1 to 2.5 pixels a frame in x, up to 1.5 in y), bounces off the walls
    (top and bottom rows) and off the paddles (columns 1 and ``S-2``); a paddle that misses sends the ball back to
    the middle with a new velocity. Each paddle chases the ball's height with a limited speed and some noise. Frames
    are RGB in [0, 1]: walls grey, paddles orange, ball white, plus faint pixel noise.

    ``labels`` are the ball's x position in ``num_bins`` equal bins of its range (for kNN and the probe);
    :meth:`state_variables` gives every frame's object positions (AtariARI-style probing).
    Training samples are consecutive frame pairs ``(x_t, x_{t+1})`` as the two views.

    Args:
        image_size: side of the square frames.
        train_episodes: episodes of the training split.
        test_episodes: episodes of the test split.
        episode_length: frames per episode.
        num_bins: classes of the ball-x label.
        paddle_height: paddle length in pixels.
        pixel_noise: standard deviation of the pixel noise.
        seed: seed of the generator.
        cache_bytes: splits whose frames fit in this many bytes are drawn once and kept; larger ones are drawn
            when read.
    """

    def __init__(
        self,
        image_size: int = 32,
        train_episodes: int = 40,
        test_episodes: int = 12,
        episode_length: int = 50,
        num_bins: int = 8,
        paddle_height: int = 6,
        pixel_noise: float = 0.02,
        seed: int = 0,
        cache_bytes: int = 2**30,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        if image_size < 12:
            raise ValueError(f"image_size must be at least 12, got {image_size}")
        if episode_length < 2:
            raise ValueError(f"episode_length must be at least 2 (pairs of consecutive frames), got {episode_length}")
        self.image_size, self.train_episodes, self.test_episodes = image_size, train_episodes, test_episodes
        self.episode_length, self.num_classes, self.paddle_height = episode_length, num_bins, paddle_height
        self.pixel_noise, self.seed, self.cache_bytes = pixel_noise, seed, cache_bytes
        self.train_transform = PairViews()
        self.state_names = STATE_VARIABLES

    # -- simulation
    def _episodes(self, num: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``(num * length, V)`` and episode ids of ``num`` simulated episodes."""
        s, half = self.image_size, self.paddle_height / 2
        lo, hi = 1.0, s - 3.0  # the ball's top-left corner stays off the walls
        left_x, right_x = 1.0, s - 2.0

        def serve():
            speed_x = 1 + 1.5 * float(torch.rand((), generator=g))
            sign = 1 if float(torch.rand((), generator=g)) < 0.5 else -1
            vy = 3 * float(torch.rand((), generator=g)) - 1.5
            y = lo + (hi - lo) * float(torch.rand((), generator=g))
            x = s / 2 - 1 + 4 * float(torch.rand((), generator=g)) - 2
            return x, y, sign * speed_x, vy

        rows, episodes = [], []
        for episode in range(num):
            x, y, vx, vy = serve()
            x = 2 + (s - 6) * float(torch.rand((), generator=g))  # episodes start anywhere
            paddles = [lo + (hi - lo) * float(torch.rand((), generator=g)) for _ in range(2)]
            for _ in range(self.episode_length):
                rows.append((x, y, paddles[0], paddles[1], vx, vy))
                episodes.append(episode)
                x, y = x + vx, y + vy
                if y < lo or y > hi:  # bounce off a wall
                    y = 2 * (lo if y < lo else hi) - y
                    vy = -vy
                for i in range(len(paddles)):
                    target = y + 1 - paddles[i]
                    step = max(-1.5, min(1.5, target)) + 0.3 * float(torch.randn((), generator=g))
                    paddles[i] = max(half, min(s - half, paddles[i] + step))
                hit_left, hit_right = x <= left_x + 1, x >= right_x - 2
                if hit_left or hit_right:
                    paddle = paddles[0 if hit_left else 1]
                    if abs(y + 1 - paddle) <= half + 1:  # the paddle returns the ball
                        edge = left_x + 1 if hit_left else right_x - 2
                        x, vx = 2 * edge - x, -vx
                    else:
                        x, y, vx, vy = serve()
        return torch.tensor(rows, dtype=torch.float32), torch.tensor(episodes)

    def _render(self, states: torch.Tensor, ids: torch.Tensor, noise_seed: int) -> torch.Tensor:
        s, n = self.image_size, len(states)
        grid = torch.arange(s, dtype=torch.float32)
        frames = torch.zeros(n, 3, s, s)
        frames[:, :, 0, :] = frames[:, :, -1, :] = 0.5  # walls
        paddle_colour = torch.tensor([1.0, 0.55, 0.1])[None, :, None]
        for column, paddle_y in ((1, states[:, 2]), (s - 2, states[:, 3])):
            rows = ((grid[None] - paddle_y[:, None]).abs() < self.paddle_height / 2).float()  # (n, s)
            frames[:, :, :, column] = torch.maximum(frames[:, :, :, column], rows[:, None, :] * paddle_colour)
        bx, by = states[:, 0].round().long().clamp(0, s - 2), states[:, 1].round().long().clamp(0, s - 2)
        idx = torch.arange(n)
        for dy in (0, 1):
            for dx in (0, 1):
                frames[idx, :, by + dy, bx + dx] = 1.0
        if self.pixel_noise > 0:  # the same noise for a frame whether it is drawn alone or with others
            for k, i in enumerate(ids.tolist()):
                g = torch.Generator().manual_seed(noise_seed * 1_000_003 + i)
                frames[k] += self.pixel_noise * torch.randn(3, s, s, generator=g)
        return frames.clamp(0, 1)

    def _split(self, num_episodes: int, g: torch.Generator, noise_seed: int) -> FrameDataset:
        states, episodes = self._episodes(num_episodes, g)
        x_min, x_max = 2.0, self.image_size - 4.0  # where the paddles return the ball
        position = (states[:, 0] - x_min) / (x_max - x_min)
        labels = (position * self.num_classes).floor().long().clamp(0, self.num_classes - 1)
        cache = len(states) * 3 * self.image_size**2 * 4 <= self.cache_bytes
        render = partial(self._render, noise_seed=noise_seed)
        return FrameDataset(states, labels, episodes, render, cache=cache)

    def _splits(self):
        g = torch.Generator().manual_seed(self.seed)
        return self._split(self.train_episodes, g, 2 * self.seed), self._split(self.test_episodes, g, 2 * self.seed + 1)

    # -- what the base does not know: training on pairs, and the state of each frame
    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(TransformedDataset(ConsecutiveFrames(self._train), self.train_transform, with_index=True), train=True)

    def state_variables(self, split: str = "train") -> dict[str, torch.Tensor]:
        """The ground-truth state of every frame of ``split`` (``train`` or ``test``, in loader order): the objects'
        positions in pixels (integers). The ball's velocity, not readable from one frame, stays in ``states``."""
        self.setup()
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        values = (self._train if split == "train" else self._test).states[:, : len(self.state_names)].round().long()
        return {name: values[:, i] for i, name in enumerate(self.state_names)}

    def preprocessing(self) -> dict[str, Any]:
        return {"modality": "image", "image_size": self.image_size, "mean": [0.0] * 3, "std": [1.0] * 3}


__all__ = [
    "ConsecutiveFrames",
    "FrameDataset",
    "GeneratedFrames",
    "PairViews",
    "SEQUENCE_AUGMENTATIONS",
    "STATE_VARIABLES",
    "SyntheticTimeSeries",
    "TensorSeriesDataset",
    "TimeSeriesTransform",
    "jitter",
    "permutation",
    "scaling",
    "time_mask",
]
