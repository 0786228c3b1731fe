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

Usage::

    python scripts/make_text_fixtures.py                      # apt-get download wordnet-base
    python scripts/make_text_fixtures.py --deb wordnet-base_1%3a3.0-37_all.deb
    python scripts/make_text_fixtures.py --wordnet-dir /usr/share/wordnet --version "1:3.0-37"
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from reprzoo.datamodules.text.corpora import DATA_DIR, WORDNET_FIXTURE, parse_wordnet_data, write_wordnet_tsv

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet-dir", type=Path, help="a WordNet dict folder (skips the download)")
    parser.add_argument("--deb", type=Path, help="a downloaded wordnet-base .deb (skips the download)")
    parser.add_argument("--version", default=None, help="package version to record (read from the .deb otherwise)")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--all", action="store_true", help="ship every synset instead of the subset")
    args = parser.parse_args()
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
