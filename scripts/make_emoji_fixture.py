"""Regenerate the emoji fixture: ``reprzoo/datamodules/data/emoji32.npz`` and its ``EMOJI_NOTICE``.

Needs Debian's ``fonts-noto-color-emoji`` (Noto Color Emoji, OFL-1.1) and ``unicode-data`` (``emoji-test.txt``,
Unicode licence)::

    apt-get -o Acquire::Languages=en install -y fonts-noto-color-emoji unicode-data
    python scripts/make_emoji_fixture.py            # write the fixture and the notice
    python scripts/make_emoji_fixture.py --check    # render again and compare with the committed fixture

What is rendered (:mod:`reprzoo.datamodules.emoji`): every fully-qualified emoji of ``emoji-test.txt`` without a
skin-tone modifier (1,870 of Emoji 15.0's 3,655 fully-qualified; the skin-tone variants repeat a concept), at the
font's 109-px strike, centred on white, Lanczos-downscaled to 32x32 RGB. All of them fit the ~3 MB budget (2.5 MB
compressed), so none is dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np

from reprzoo.datamodules.emoji import EMOJI_TEST_PATH, FIXTURE, FONT_PATH, load_emoji, save_fixture

FONT_COPYRIGHT = Path("/usr/share/doc/fonts-noto-color-emoji/copyright")
UNICODE_COPYRIGHT = Path("/usr/share/doc/unicode-data/copyright")


def package_version(package: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def notice() -> str:
    """Where the data comes from and its licences, with the OFL's and Unicode's texts from Debian's copyright files."""
    font_text = FONT_COPYRIGHT.read_text(encoding="utf-8")
    ofl = font_text[font_text.index("License:   SIL-1.1") :]
    unicode_text = UNICODE_COPYRIGHT.read_text(encoding="utf-8")
    return (
        "Emoji images in emoji32.npz\n\n"
        f"Rendered by scripts/make_emoji_fixture.py with Pillow from Noto Color Emoji (Debian's fonts-noto-color-emoji "
        f"{package_version('fonts-noto-color-emoji')}), copyright 2013-2017 Google Inc., licensed under the SIL Open Font "
        "License, Version 1.1 (OFL-1.1), reproduced below from Debian's copyright file.\n\n"
        f"Names, groups and subgroups from emoji-test.txt (Debian's unicode-data {package_version('unicode-data')}, "
        "Emoji 15.0), copyright Unicode, Inc., distributed under the Unicode License Agreement for Data Files and "
        "Software (https://www.unicode.org/license.txt), reproduced below from Debian's copyright file.\n\n"
        f"==== {FONT_COPYRIGHT}\n{ofl}\n\n==== {UNICODE_COPYRIGHT}\n{unicode_text}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURE)
    parser.add_argument("--check", action="store_true", help="render and compare with the fixture; write nothing")
    parser.add_argument("--tolerance", type=int, default=0, help="--check: largest pixel difference allowed")
    args = parser.parse_args(argv)

    emoji = load_emoji("font")
    if args.check:
        committed = load_emoji("fixture", fixture=args.out)
        same_rows = (committed.names, committed.subgroups, committed.groups, committed.codepoints) == (
            emoji.names,
            emoji.subgroups,
            emoji.groups,
            emoji.codepoints,
        )
        diff = int(np.abs(committed.images.astype(int) - emoji.images.astype(int)).max()) if same_rows else None
        print(f"{len(emoji)} emoji rendered; names/labels {'match' if same_rows else 'DIFFER'}; largest pixel difference {diff}")
        return 0 if same_rows and diff <= args.tolerance else 1
    meta = {
        "font": FONT_PATH.name,
        "font_package": f"fonts-noto-color-emoji {package_version('fonts-noto-color-emoji')}",
        "font_sha256": sha256(FONT_PATH),
        "emoji_test_package": f"unicode-data {package_version('unicode-data')}",
        "emoji_test_sha256": sha256(EMOJI_TEST_PATH),
        "rule": "fully-qualified, no skin-tone modifier; 109 px strike on white, centred, Lanczos to 32x32 RGB",
        "licences": "font OFL-1.1; emoji-test.txt Unicode License (see EMOJI_NOTICE)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_fixture(emoji, args.out, meta)
    (args.out.parent / "EMOJI_NOTICE").write_text(notice(), encoding="utf-8")
    print(f"{args.out}: {len(emoji)} emoji, {len(set(emoji.subgroups))} subgroups, {args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
