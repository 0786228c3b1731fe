"""Regenerate the WordNet 3.0 gloss fixture of the text wing: ``reprzoo/datamodules/text/data/``.

Downloads Debian's ``wordnet-base`` package with ``apt-get download`` into a temporary folder, unpacks it with
``dpkg -x``, parses ``data.{noun,verb,adj,adv}`` with :func:`reprzoo.datamodules.text.corpora.parse_wordnet_data`
and writes

* ``wordnet30_glosses.tsv.xz``: ``synset pos words definition examples`` rows, after ``#`` header lines that carry
  the WordNet licence, the package version, the subset rule and ``# synsets: N``;
* ``WORDNET_LICENSE``: the WordNet 3.0 licence, as the licence asks it to travel with every copy.

Subset rule (all 117,659 synsets compress to ~3.4 MB, over the ~3 MB budget of the fixture): keep every synset
except (1) proper-name synsets, whose lemmas all start with a capital letter (people, places, genera, ...), and
(2) noun synsets of the lexicographer files ``noun.animal`` and ``noun.plant`` (biological taxonomy). That keeps all
verbs, adverbs and common adjectives and the common nouns: 89,578 synsets, ~2.6 MB. ``--all`` ships every synset.
The full set stays one call away: ``wordnet_glosses("/usr/share/wordnet")``.

``--debian`` regenerates the Debian package-description fixture instead (no download: it reads the apt lists of
this machine, after ``apt-get -o Acquire::Languages=en update``):

* ``debian_packages.jsonl.xz``: ``#`` header lines (sources, list dates, the sampling rule, the licence note), then
  one JSON object per package (``package section synopsis description depends tags``), read with
  :func:`reprzoo.datamodules.text.corpora.read_debian_jsonl`;
* ``DEBIAN_NOTICE``: where the descriptions come from and under which terms they travel.

Sampling rule: among the packages of the lists with a non-empty long description, the ``--count`` (5,000) whose
SHA-256 of ``"debian:<package name>"`` is smallest: deterministic, independent of list order, and stable when the
archive changes (a package stays in or out unless it is itself added or removed). The full set stays one call
away: ``debian_packages("/var/lib/apt/lists")``.

Usage::

    python scripts/make_text_fixtures.py                      # apt-get download wordnet-base
    python scripts/make_text_fixtures.py --deb wordnet-base_1%3a3.0-37_all.deb
    python scripts/make_text_fixtures.py --wordnet-dir /usr/share/wordnet --version "1:3.0-37"
    apt-get -o Acquire::Languages=en update && python scripts/make_text_fixtures.py --debian
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from reprzoo.datamodules.text.corpora import (
    DATA_DIR,
    DEBIAN_FIXTURE,
    SOURCES,
    WORDNET_FIXTURE,
    debian_packages,
    parse_wordnet_data,
    write_debian_jsonl,
    write_wordnet_tsv,
)

POS_FILES = ("noun", "verb", "adj", "adv")
DROPPED_LEXFILES = {5: "noun.animal", 20: "noun.plant"}  # lex_filenum of WordNet's lexnames file


def licence_lines(data_file: Path) -> list[str]:
    """The licence header of a WordNet data file (lines starting with two spaces and a line number)."""
    lines = []
    for line in data_file.read_text(encoding="utf-8").splitlines():
        if not line.startswith("  "):
            break
        number, _, text = line.strip().partition(" ")
        lines.append(text.rstrip() if number.isdigit() else line.strip())
    return lines


def lexfiles(data_file: Path) -> dict[str, int]:
    """Synset id (as :func:`parse_wordnet_data` names it) -> lex_filenum."""
    out = {}
    for line in data_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  ") or not line.strip():
            continue
        offset, lexnum, ss_type = line.split(None, 3)[:3]
        out[f"{offset}-{'a' if ss_type == 's' else ss_type}"] = int(lexnum)
    return out


def keep(record: dict, lexnum: int) -> bool:
    """The subset rule (see the module docstring)."""
    proper = all(w[:1].isupper() for w in record["words"])
    return not proper and not (record["pos"] == "n" and lexnum in DROPPED_LEXFILES)


def build(wordnet_dir: Path, version: str, out_dir: Path, everything: bool) -> None:
    records, lex = [], {}
    for pos in POS_FILES:
        records.extend(parse_wordnet_data(wordnet_dir / f"data.{pos}"))
        lex.update(lexfiles(wordnet_dir / f"data.{pos}"))
    kept = records if everything else [r for r in records if keep(r, lex[r["synset"]])]
    licence = licence_lines(wordnet_dir / "data.noun")
    counts = Counter(r["pos"] for r in kept)
    rule = (
        "all synsets"
        if everything
        else "all synsets except proper-name synsets (every lemma capitalized) and the nouns of noun.animal and noun.plant"
    )
    header = [
        f"WordNet 3.0 glosses, from Debian package wordnet-base {version}, data.{{noun,verb,adj,adv}}",
        "written by scripts/make_text_fixtures.py; read with reprzoo.datamodules.text.corpora.read_wordnet_tsv",
        f"subset: {rule}: {len(kept)} of {len(records)} synsets",
        "by pos: " + ", ".join(f"{p} {counts[p]}" for p in "nvar"),
        "columns: synset (offset-pos), pos (n v a r; satellites as a), words (|-joined lemmas), definition, examples (|-joined)",
        "",
        *licence,
        "",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / WORDNET_FIXTURE.name
    write_wordnet_tsv(kept, target, header)
    (out_dir / "WORDNET_LICENSE").write_text(
        f"The WordNet 3.0 data in {target.name} come with this licence (from the header of WordNet's data files):\n\n"
        + "\n".join(licence)
        + "\n",
        encoding="utf-8",
    )
    words = sum(len(r["definition"].split()) + sum(len(e.split()) for e in r["examples"]) for r in kept)
    print(f"{target}: {len(kept)} of {len(records)} synsets ({dict(counts)}), {words} gloss words, {target.stat().st_size} bytes")


DEBIAN_NOTICE = """Debian package descriptions in {name}

Source: the Packages and Translation-en lists of the Debian archive, amd64, suites:
{suites}
read from apt's lists folder by scripts/make_text_fixtures.py --debian; {count} packages sampled by the rule
in the fixture's header.

Terms: each package's description (its one-line synopsis and long description, and the Section, Depends and
Tag fields kept beside them) is part of that package's control data and is distributed under the package's
own copyright and licence, stated in its debian/copyright file (/usr/share/doc/<package>/copyright on an
installed system, and in the package's source). Every package of Debian's main archive is free software under the Debian Free Software Guidelines
(https://www.debian.org/social_contract#guidelines): its contents, descriptions included, may be copied,
modified and redistributed. Debtags (the Tag field) are from the Debian Package Tags project
(https://wiki.debian.org/Debtags), distributed with the archive's lists.

Debian is a registered trademark of Software in the Public Interest, Inc.
"""


def debian_sample_key(package: str) -> str:
    """The sampling order of the Debian fixture (see the module docstring)."""
    return hashlib.sha256(f"debian:{package}".encode()).hexdigest()


def release_dates(lists: Path) -> list[str]:
    """``<suite>: <Date>`` of each InRelease/Release file in an apt lists folder."""
    out = []
    for path in sorted(lists.glob("*Release")):
        fields = dict(
            line.split(": ", 1) for line in path.read_text(errors="replace").splitlines() if ": " in line and line[0] != " "
        )
        if "Suite" in fields:
            out.append(
                f"{fields.get('Origin', '?')} {fields['Suite']} ({fields.get('Codename', '?')}): {fields.get('Date', '?')}"
            )
    return out


def build_debian(lists: Path, out_dir: Path, count: int) -> None:
    records = [r for r in debian_packages(lists) if r["description"]]
    if len(records) < count:
        raise SystemExit(
            f"{lists}: only {len(records)} packages with a long description (a plain `apt-get update` drops the "
            "Translation-en lists): run `apt-get -o Acquire::Languages=en update` first"
        )
    kept = sorted(sorted(records, key=lambda r: debian_sample_key(r["package"]))[:count], key=lambda r: r["package"])
    dates = release_dates(lists)
    sections = Counter(r["section"] for r in kept)
    header = [
        "Debian package descriptions, from the apt lists (Packages, Translation-en) of this machine:",
        *[f"  {d}" for d in dates],
        "written by scripts/make_text_fixtures.py --debian; read with reprzoo.datamodules.text.corpora.read_debian_jsonl",
        f"sample: of the {len(records)} packages with a long description, the {len(kept)} with the smallest "
        "sha256('debian:<package>')",
        f"sections: {len(sections)}; " + ", ".join(f"{s} {n}" for s, n in sections.most_common()),
        "fields: package, section (archive area dropped), synopsis, description (paragraphs split by blank lines), "
        "depends (Pre-Depends + Depends names), tags (debtags)",
        "",
        "licence: " + SOURCES["debian"]["licence"],
        "",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / DEBIAN_FIXTURE.name
    write_debian_jsonl(kept, target, header)
    suites = "\n".join(f"  {d.split(':')[0]}" for d in dates) or "  (unknown)"
    (out_dir / "DEBIAN_NOTICE").write_text(
        DEBIAN_NOTICE.format(name=target.name, suites=suites, count=len(kept)), encoding="utf-8"
    )
    print(f"{target}: {len(kept)} of {len(records)} packages, {len(sections)} sections, {target.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet-dir", type=Path, help="a WordNet dict folder (skips the download)")
    parser.add_argument("--deb", type=Path, help="a downloaded wordnet-base .deb (skips the download)")
    parser.add_argument("--version", default=None, help="package version to record (read from the .deb otherwise)")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--all", action="store_true", help="ship every synset instead of the subset")
    parser.add_argument("--debian", action="store_true", help="build the Debian package fixture instead of WordNet's")
    parser.add_argument("--apt-lists", type=Path, default=Path("/var/lib/apt/lists"), help="apt lists folder (--debian)")
    parser.add_argument("--count", type=int, default=5000, help="packages in the Debian fixture")
    args = parser.parse_args()
    if args.debian:
        build_debian(args.apt_lists, args.out, args.count)
        return
    if args.wordnet_dir:
        build(args.wordnet_dir, args.version or "(unknown version)", args.out, args.all)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deb = args.deb
        if deb is None:
            subprocess.run(["apt-get", "download", "wordnet-base"], cwd=tmp, check=True)
            deb = next(tmp.glob("wordnet-base_*.deb"))
        version = (
            args.version
            or subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True).stdout.strip()
        )
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "root")], check=True)
        build(tmp / "root" / "usr" / "share" / "wordnet", version, args.out, args.all)


if __name__ == "__main__":
    main()
