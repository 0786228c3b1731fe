"""Emoji rendered from a font, labelled by their Unicode groups: a second real image set that ships offline.

Every fully-qualified emoji of Unicode's ``emoji-test.txt`` (Emoji 15.0 in Debian 12's ``unicode-data``), except the
skin-tone variants (one image per concept: a sequence holding a modifier U+1F3FB..U+1F3FF is left out), drawn with
Debian's ``fonts-noto-color-emoji`` (Noto Color Emoji 2.042) by Pillow on a white background and downscaled to
32x32 RGB (Lanczos). Each emoji carries its CLDR name (``grinning face``, ``flag: Japan``), which serves as its
caption, its subgroup (99 of them: ``face-smiling``, ``animal-mammal``, ``country-flag``) and its group (9:
``Smileys & Emotion``, ``Flags``, ...). 1,870 images; the committed fixture ``data/emoji32.npz`` is what
``scripts/make_emoji_fixture.py`` writes (2.5 MB).

Licences: the font, Noto Color Emoji, is under the SIL Open Font License 1.1 (OFL-1.1; copyright 2013-2017 Google
Inc., Debian's ``/usr/share/doc/fonts-noto-color-emoji/copyright``); images rendered with a font are documents made
with it, and ``data/EMOJI_NOTICE`` carries the OFL's text with them. ``emoji-test.txt`` (names, groups, subgroups)
is (c) Unicode, Inc., under the Unicode License Agreement for Data Files and Software
(https://www.unicode.org/license.txt; ``/usr/share/doc/unicode-data/copyright``), whose notice travels in the same file.

Noto Color Emoji is a bitmap (CBDT) font: FreeType draws it only at its strike size, 109 px, with
``embedded_color=True``; each glyph is a 136x128 bitmap, centred on a white 136x136 square before the downscale.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from reprzoo.datamodules.base import TransformedDataset
from reprzoo.datamodules.images import ImageDataModule, TensorImageDataset
from reprzoo.datamodules.text.tokenizers import truncate
from reprzoo.errors import ReprzooError

DATA_DIR = Path(__file__).parent / "data"
FIXTURE = DATA_DIR / "emoji32.npz"
FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # Debian's fonts-noto-color-emoji
EMOJI_TEST_PATH = Path("/usr/share/unicode/emoji/emoji-test.txt")  # Debian's unicode-data
STRIKE_SIZE = 109  # the font's only bitmap strike
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))  # EMOJI MODIFIER FITZPATRICK TYPE-1-2 .. TYPE-6
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class EmojiEntry:
    """One line of ``emoji-test.txt``: code points, qualification status, group, subgroup, CLDR name."""

    codepoints: tuple[int, ...]
    status: str
    group: str
    subgroup: str
    name: str

    @property
    def text(self) -> str:
        return "".join(map(chr, self.codepoints))


def read_emoji_test(path: str | Path = EMOJI_TEST_PATH) -> list[EmojiEntry]:
    """Every emoji line of Unicode's ``emoji-test.txt`` in file (CLDR) order, with its group and subgroup."""
    entries, group, subgroup = [], "", ""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            points, rest = line.split(";", 1)
            status, comment = rest.split("#", 1)
            # comment: "<emoji> E<version> <name>"
            name = comment.strip().split(" ", 2)[2]
            entries.append(EmojiEntry(tuple(int(p, 16) for p in points.split()), status.strip(), group, subgroup, name))
    if not entries:
        raise ReprzooError(f"no emoji in {path}: not an emoji-test.txt")
    return entries


def select_emoji(entries: Sequence[EmojiEntry]) -> list[EmojiEntry]:
    """The fully-qualified emoji without skin-tone modifiers: one entry per concept (1,870 of Emoji 15.0's 3,655)."""
    return [e for e in entries if e.status == "fully-qualified" and not SKIN_TONES.intersection(e.codepoints)]


def render_emoji(texts: Sequence[str], size: int = 32, font_path: str | Path = FONT_PATH) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 images of emoji strings drawn with a colour bitmap font on white.

    A sequence the font cannot draw as one glyph (several glyphs side by side) raises: the set holds only emoji
    the font knows.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), STRIKE_SIZE)
    out = np.empty((len(texts), size, size, 3), dtype=np.uint8)
    for i, text in enumerate(texts):
        left, top, right, bottom = font.getbbox(text)
        width, height = right - left, bottom - top
        if width > 1.5 * height:
            raise ReprzooError(f"{text!r} (U+{' U+'.join(f'{ord(c):04X}' for c in text)}) renders as several glyphs")
        glyph = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((-left, -top), text, font=font, embedded_color=True)
        side = max(width, height)
        square = Image.new("RGBA", (side, side), (*BACKGROUND, 255))
        square.alpha_composite(glyph, ((side - width) // 2, (side - height) // 2))
        out[i] = np.asarray(square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
    return out


@dataclass
class EmojiSet:
    """The rendered set: ``images`` ``(N, H, W, 3)`` uint8 and, per image, its code points (``"1F600"``,
    space-separated), CLDR name, subgroup and group."""

    images: np.ndarray
    codepoints: list[str]
    names: list[str]
    subgroups: list[str]
    groups: list[str]

    def __len__(self) -> int:
        return len(self.names)


def load_emoji(
    source: Literal["fixture", "font"] = "fixture",
    fixture: str | Path = FIXTURE,
    font_path: str | Path = FONT_PATH,
    emoji_test: str | Path = EMOJI_TEST_PATH,
    image_size: int = 32,
    with_images: bool = True,
) -> EmojiSet:
    """The emoji set from the committed fixture (``source="fixture"``, 32 px) or rendered now from the installed
    font and ``emoji-test.txt`` (``source="font"``, any ``image_size``). ``with_images=False`` reads the names and
    labels only (the font is then not needed)."""
    if source == "fixture":
        with np.load(fixture, allow_pickle=False) as data:
            images = data["images"] if with_images else np.empty((0, 32, 32, 3), np.uint8)
            subgroup_names, group_names = list(data["subgroup_names"]), list(data["group_names"])
            return EmojiSet(
                images,
                [str(c) for c in data["codepoints"]],
                [str(n) for n in data["names"]],
                [str(subgroup_names[i]) for i in data["subgroups"]],
                [str(group_names[i]) for i in data["groups"]],
            )
    if source != "font":
        raise ValueError(f"source must be 'fixture' or 'font', got {source!r}")
    for path, package in ((emoji_test, "unicode-data"), (font_path, "fonts-noto-color-emoji")):
        if not Path(path).is_file():
            raise ReprzooError(
                f"{path} not found: install Debian's {package} (apt-get install {package}) or use source='fixture'"
            )
    entries = select_emoji(read_emoji_test(emoji_test))
    images = render_emoji([e.text for e in entries], image_size, font_path) if with_images else np.empty((0,), np.uint8)
    return EmojiSet(
        images,
        [" ".join(f"{p:04X}" for p in e.codepoints) for e in entries],
        [e.name for e in entries],
        [e.subgroup for e in entries],
        [e.group for e in entries],
    )


def save_fixture(emoji: EmojiSet, path: str | Path = FIXTURE, meta: dict[str, Any] | None = None) -> Path:
    """Write ``emoji`` as a compressed npz: ``images`` uint8, ``subgroups``/``groups`` int16 indices into
    ``subgroup_names``/``group_names`` (in file order), ``names``, ``codepoints`` and a JSON ``meta`` string."""
    subgroup_names = list(dict.fromkeys(emoji.subgroups))
    group_names = list(dict.fromkeys(emoji.groups))
    np.savez_compressed(
        path,
        images=emoji.images,
        subgroups=np.array([subgroup_names.index(s) for s in emoji.subgroups], dtype=np.int16),
        groups=np.array([group_names.index(g) for g in emoji.groups], dtype=np.int16),
        subgroup_names=np.array(subgroup_names),
        group_names=np.array(group_names),
        names=np.array(emoji.names),
        codepoints=np.array(emoji.codepoints),
        meta=np.array(json.dumps(meta or {}, sort_keys=True)),
    )
    return Path(path)


class CaptionedImages(TensorImageDataset):
    """A :class:`TensorImageDataset` whose samples also have a caption each (``names``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, names: Sequence[str] | None = None):
        super().__init__(images, labels)
        if names is not None and len(names) != len(images):
            raise ValueError(f"{len(images)} images but {len(names)} captions")
        self.names = list(names) if names is not None else None

    def subset(self, indices: Sequence[int], labels: torch.Tensor) -> CaptionedImages:
        """The positions ``indices`` with new ``labels``, captions kept."""
        names = [self.names[i] for i in indices] if self.names is not None else None
        return CaptionedImages(self.images[torch.as_tensor(list(indices), dtype=torch.long)], labels, names)


class CaptionedViews(torch.utils.data.Dataset):
    """Training items ``({"images": views, "input_ids": caption ids}, label, index)``: the views of
    :class:`TransformedDataset` (seeded per sample and epoch as there) with the sample's tokenised caption."""

    def __init__(self, views: TransformedDataset, input_ids: torch.Tensor):
        if len(views) != len(input_ids):
            raise ValueError(f"{len(views)} samples but {len(input_ids)} captions")
        self.views, self.input_ids = views, input_ids

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, key):
        views, label, index = self.views[key]
        return {"images": views, "input_ids": self.input_ids[index]}, label, index


class Emoji(ImageDataModule):
    """Noto Color Emoji at 32x32 RGB, labelled by Unicode subgroup or group, captioned by CLDR name (see the module
    docstring for the data and its licences).

    Classes: the subgroups with at least ``min_members`` emoji (57 of 99 at the default 10: 1,611 images, 1,288 train / 323 test), or the 9
    groups (``labels="group"``; the same emoji are kept). Class ids follow the order of ``emoji-test.txt``. A
    stratified split (``test_size``, seeded by ``split_seed``), as Digits'. Horizontal flips are off (arrows,
    clocks and flags are not symmetric).

    With ``captions=True`` training items are ``({"images": views, "input_ids": (max_length,) ids}, label, index)``:
    each emoji's name tokenised by a word-level tokenizer trained on the training names (``[CLS] ... [SEP]``,
    padded with 0); :meth:`model_args` gives a text tower its ``vocab_size``. Evaluation loaders stay
    ``(image, label)``. Captions need the training set as it is split here: ``class_split``, ``label_noise`` and
    ``labels_per_class`` rebuild it without them (an error says so).

    Args:
        source: ``fixture`` (the committed 32-px render) or ``font`` (render now from the installed font).
        labels: ``subgroup`` or ``group``.
        min_members: keep the emoji of subgroups with at least this many members.
        test_size: share of each class held out for evaluation.
        split_seed: seed of the stratified split.
        captions: add tokenised captions to the training items (cross-modal methods).
        vocab_size: at most this many caption tokens (special tokens included).
        max_length: caption ids are cut (keeping ``[SEP]``) or padded to this length.
        kwargs: options of :class:`ImageDataModule` (batch size, augmentation, label protocols).
    """

    mean, std = (0.833, 0.786, 0.731), (0.276, 0.280, 0.343)  # of the fixture's pixels (mostly white)
    default_image_size = 32
    model_args_keys = ("vocab_size",)

    def __init__(
        self,
        source: Literal["fixture", "font"] = "fixture",
        labels: Literal["subgroup", "group"] = "subgroup",
        min_members: int = 10,
        test_size: float = 0.2,
        split_seed: int = 0,
        captions: bool = False,
        vocab_size: int = 2000,
        max_length: int = 16,
        augmentation_kwargs: dict[str, Any] | None = None,
        num_workers: int = 0,
        **kwargs,
    ):
        if labels not in ("subgroup", "group"):
            raise ValueError(f"labels must be 'subgroup' or 'group', got {labels!r}")
        if captions and kwargs.get("augment_on", "cpu") != "cpu":
            raise ValueError("captions=True needs augment_on='cpu' (device augmentation batches bare images)")
        defaults = {"hflip_prob": 0.0, "crop_scale": (0.5, 1.0)}
        super().__init__(augmentation_kwargs={**defaults, **(augmentation_kwargs or {})}, num_workers=num_workers, **kwargs)
        self.source, self.labels, self.min_members = source, labels, min_members
        self.test_size, self.split_seed = test_size, split_seed
        self.captions, self.vocab_size_limit, self.max_length = captions, vocab_size, max_length
        meta = load_emoji(source, with_images=False)
        counts = Counter(meta.subgroups)
        self.kept = np.array([counts[s] >= min_members for s in meta.subgroups])
        if not self.kept.any():
            raise ValueError(f"no subgroup has {min_members} members")
        keys = np.array(meta.subgroups if labels == "subgroup" else meta.groups)[self.kept]
        #: class names, index = class id (file order)
        self.class_names: list[str] = list(dict.fromkeys(keys.tolist()))
        self.num_classes = len(self.class_names)
        self._tokenizer = None

    def _splits(self):
        from sklearn.model_selection import train_test_split

        data = load_emoji(self.source, image_size=self.image_size)
        keep = np.flatnonzero(self.kept)
        keys = np.array(data.subgroups if self.labels == "subgroup" else data.groups)[keep]
        labels = torch.tensor([self.class_names.index(k) for k in keys])
        images = torch.from_numpy(np.ascontiguousarray(data.images[keep])).permute(0, 3, 1, 2).contiguous()
        names = [data.names[i] for i in keep]
        idx_train, idx_test = train_test_split(
            np.arange(len(keep)), test_size=self.test_size, random_state=self.split_seed, stratify=labels.numpy()
        )

        def part(idx):
            return CaptionedImages(images[idx], labels[idx], [names[i] for i in idx])

        return part(idx_train), part(idx_test)

    def names(self, split: Literal["train", "test"] = "train") -> list[str]:
        """The captions (CLDR names) of a split's samples, in the split's order."""
        self.setup()
        dataset = self._train if split == "train" else self._test
        names = getattr(dataset, "names", None)
        if names is None:
            raise ReprzooError(f"the {split} split was rebuilt by a label protocol and carries no captions")
        return names

    # ----------------------------------------------------------------- captions
    def fit_tokenizer(self):
        """The word-level tokenizer of the training captions (deterministic; cached)."""
        if self._tokenizer is None:
            from reprzoo.datamodules.text.tokenizers import train_tokenizer

            self._tokenizer = train_tokenizer(self.names("train"), "wordlevel", self.vocab_size_limit, min_frequency=1)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.fit_tokenizer().get_vocab_size()

    def model_args(self) -> dict[str, Any]:
        """Init args a method takes from this data: the caption vocabulary's size (only with ``captions=True``)."""
        return {"vocab_size": self.vocab_size} if self.captions else {}

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), max_length)`` token ids of captions, padded with 0, cut keeping the final ``[SEP]``."""
        out = torch.zeros(len(texts), self.max_length, dtype=torch.long)
        for row, encoding in enumerate(self.fit_tokenizer().encode_batch(list(texts))):
            ids = truncate(encoding.ids, self.max_length)
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def train_dataloader(self):
        if not self.captions:
            return super().train_dataloader()
        self.setup()
        views = TransformedDataset(self._train, self.train_transform, with_index=True, seed=self.training_seed())
        return self._loader(CaptionedViews(views, self.encode(self.names("train"))), train=True)


__all__ = [
    "CaptionedImages",
    "CaptionedViews",
    "Emoji",
    "EmojiEntry",
    "EmojiSet",
    "load_emoji",
    "read_emoji_test",
    "render_emoji",
    "save_fixture",
    "select_emoji",
]
