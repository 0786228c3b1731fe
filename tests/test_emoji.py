"""The emoji set: the committed fixture, the Emoji datamodule (labels, split, captions) and, where Debian's font and
emoji-test.txt are installed, the fixture rendered again from them."""

from __future__ import annotations

import importlib.util
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from reprzoo.datamodules.emoji import (
    EMOJI_TEST_PATH,
    FIXTURE,
    FONT_PATH,
    SKIN_TONES,
    Emoji,
    load_emoji,
    read_emoji_test,
    render_emoji,
    select_emoji,
)

INSTALLED = FONT_PATH.is_file() and EMOJI_TEST_PATH.is_file()
needs_font = pytest.mark.skipif(not INSTALLED, reason="needs Debian's fonts-noto-color-emoji and unicode-data")


def test_fixture_holds_every_emoji_once_with_its_labels():
    emoji = load_emoji()
    assert emoji.images.shape == (1870, 32, 32, 3) and emoji.images.dtype == np.uint8
    assert FIXTURE.stat().st_size < 3_000_000
    assert len(set(emoji.names)) == len(emoji) == len(emoji.codepoints) == len(emoji.subgroups) == len(emoji.groups)
    assert len(set(emoji.subgroups)) == 99 and len(set(emoji.groups)) == 9
    assert not any(int(p, 16) in SKIN_TONES for cps in emoji.codepoints for p in cps.split())
    row = emoji.names.index("grinning face")
    assert (emoji.codepoints[row], emoji.subgroups[row], emoji.groups[row]) == ("1F600", "face-smiling", "Smileys & Emotion")
    # each subgroup lies in one group; every image holds a drawing, on white
    assert all(len(g) == 1 for g in _groups_of_subgroups(emoji).values())
    pixels = emoji.images.reshape(len(emoji), -1)
    assert (pixels.std(axis=1) > 5).all()
    assert (emoji.images[:, 0, 0] == 255).all(axis=1).mean() > 0.9  # corners white but for square symbols (keycaps)
    assert (FIXTURE.parent / "EMOJI_NOTICE").read_text().count("Open Font License") >= 1


def _groups_of_subgroups(emoji):
    out: dict[str, set] = {}
    for s, g in zip(emoji.subgroups, emoji.groups):
        out.setdefault(s, set()).add(g)
    return out


def test_reading_and_selecting_emoji_test_lines(tmp_path):
    path = tmp_path / "emoji-test.txt"
    path.write_text(
        "# group: Smileys & Emotion\n\n# subgroup: face-smiling\n"
        "1F600                                  ; fully-qualified     # 😀 E1.0 grinning face\n"
        "263A FE0F                              ; fully-qualified     # ☺️ E0.6 smiling face\n"
        "263A                                   ; unqualified         # ☺ E0.6 smiling face\n"
        "# group: People & Body\n# subgroup: hand-fingers-open\n"
        "1F44B                                  ; fully-qualified     # 👋 E0.6 waving hand\n"
        "1F44B 1F3FB                            ; fully-qualified     # 👋🏻 E1.0 waving hand: light skin tone\n",
        encoding="utf-8",
    )
    entries = read_emoji_test(path)
    assert [e.status for e in entries].count("fully-qualified") == 4
    assert entries[1].codepoints == (0x263A, 0xFE0F) and entries[1].text == "\u263a\ufe0f"
    kept = select_emoji(entries)
    assert [(e.name, e.group, e.subgroup) for e in kept] == [
        ("grinning face", "Smileys & Emotion", "face-smiling"),
        ("smiling face", "Smileys & Emotion", "face-smiling"),
        ("waving hand", "People & Body", "hand-fingers-open"),
    ]


def test_datamodule_labels_are_the_subgroups_of_the_names():
    data = Emoji(batch_size=16)
    emoji = load_emoji(with_images=False)
    counts = Counter(emoji.subgroups)
    expected_classes = [s for s in dict.fromkeys(emoji.subgroups) if counts[s] >= 10]
    assert data.class_names == expected_classes and data.num_classes == 57
    data.setup()
    subgroup_of = dict(zip(emoji.names, emoji.subgroups))
    for split in ("train", "test"):
        dataset = data._train if split == "train" else data._test
        assert [data.class_names[int(y)] for y in dataset.labels] == [subgroup_of[n] for n in data.names(split)]
        image, label = dataset[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and isinstance(label, int)
    assert len(data._train) + len(data._test) == sum(counts[s] for s in expected_classes) == 1611
    # stratified: every class on both sides, in proportion
    assert set(data._test.labels.tolist()) == set(range(57))
    # the pixels are the fixture's, for the emoji of that name
    row = emoji.names.index(data.names("test")[0])
    assert torch.equal(data._test.images[0], torch.from_numpy(load_emoji().images[row]).permute(2, 0, 1))
    x, y = next(iter(data.val_dataloader()[1]))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (16,)


def test_group_labels_and_min_members():
    groups = Emoji(labels="group")
    assert groups.num_classes == 9 and groups.class_names[0] == "Smileys & Emotion"
    assert Emoji(min_members=1).num_classes == 99 and Emoji(min_members=20).num_classes == 30
    with pytest.raises(ValueError, match="labels"):
        Emoji(labels="category")
    with pytest.raises(ValueError, match="source"):
        Emoji(source="web")
    with pytest.raises(ValueError, match="no subgroup"):
        Emoji(min_members=10_000)


def test_label_protocols_of_image_datamodules_apply():
    """The metric-learning zero-shot split: the first 28 subgroups (file order) to train on, the other 29 to retrieve
    among, each side renumbered from 0."""
    data = Emoji(class_split="zero_shot")
    data.setup()
    assert data.num_classes == 28 and len(data.val_dataloader()) == 1
    assert set(data._train.labels.tolist()) == set(range(28)) and set(data._test.labels.tolist()) == set(range(29))
    assert len(data._train) + len(data._test) == 1611


def test_split_is_seeded_and_deterministic():
    def split(seed):
        data = Emoji(split_seed=seed)
        data.setup()
        return data.names("train"), data.names("test")

    first, again, other = split(0), split(0), split(1)
    assert first == again and first != other
    assert not set(first[0]) & set(first[1])


def test_captioned_training_batches_carry_each_image_s_own_name():
    data = Emoji(captions=True, batch_size=8, augmentation="simclr", augmentation_kwargs={"blur_prob": 0.0})
    assert data.model_args() == {"vocab_size": data.vocab_size} and data.vocab_size > 500
    assert Emoji().model_args() == {}
    views, labels, indices = next(iter(data.train_dataloader()))
    assert len(views["images"]) == 2 and views["images"][0].shape == (8, 3, 32, 32)
    assert views["input_ids"].shape == (8, data.max_length) and views["input_ids"].dtype == torch.long
    tokenizer = data.fit_tokenizer()
    names = data.names("train")
    for ids, index, label in zip(views["input_ids"], indices, labels):
        assert tokenizer.decode(ids[ids > 0].tolist()) == _words(names[int(index)])
        assert int(label) == int(data._train.labels[int(index)])


def _words(name: str) -> str:
    """A name as BERT's normaliser and pre-tokenizer split it: lowercase, accents stripped, punctuation apart."""
    plain = "".join(c for c in unicodedata.normalize("NFD", name.lower()) if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+|[^\w\s]", plain))


def test_captions_need_the_plain_split():
    data = Emoji(captions=True, class_split="zero_shot")
    with pytest.raises(Exception, match="captions"):
        data.train_dataloader()
    with pytest.raises(ValueError, match="augment_on"):
        Emoji(captions=True, augment_on="device")


def test_font_source_without_the_font_says_what_to_install(tmp_path):
    from reprzoo.errors import ReprzooError

    with pytest.raises(ReprzooError, match="fonts-noto-color-emoji"):
        load_emoji("font", font_path=tmp_path / "missing.ttf", emoji_test=Path(__file__))


@needs_font
def test_fixture_is_what_the_installed_font_renders():
    spec = importlib.util.spec_from_file_location(
        "make_emoji_fixture", Path(__file__).parents[1] / "scripts/make_emoji_fixture.py"
    )
    script = importlib.util.module_from_spec(spec)
    sys.modules["make_emoji_fixture"] = script
    spec.loader.exec_module(script)
    assert script.main(["--check", "--tolerance", "2"]) == 0  # renders all 1,870 and compares with the fixture


@needs_font
def test_font_source_renders_at_any_size():
    fresh = render_emoji(["\U0001f600", "\U0001f1ef\U0001f1f5"], size=48)  # a face and a flag (regional indicators)
    assert fresh.shape == (2, 48, 48, 3) and fresh.std() > 10
    data = Emoji(source="font", image_size=16, min_members=40)
    data.setup()
    assert data._train.images.shape[1:] == (3, 16, 16)
