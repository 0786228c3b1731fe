"""The project catalogue agrees with the registry: a row says ``implemented`` exactly when a method carries its title,
that method is exported under its name, and every registered method outside the catalogue is a known baseline."""

from __future__ import annotations

import csv
import json

from reprzoo.cli.main import main
from reprzoo.zoo.catalogue import CATALOGUE_PATH, coverage, load_catalogue

DONE_WINGS = ("vision-ssl",)  # wings whose every METHOD row must be implemented or explicitly moved/out of scope
# rows of those wings still being built (issue 4); this set may only shrink
STILL_PLANNED: set[str] = set()


#: registered methods without a catalogue row: the baselines the seeds build on (a new method needs a row)
BASELINES = {
    "ArcFace",
    "BCT",
    "BYOL",
    "BarlowTwins",
    "CosFace",
    "DINO",
    "FixMatch",
    "IJEPA",
    "MixUp",
    "MoCoV2",
    "MoCoV3",
    "PairContrastive",
    "SimCLR",
    "SupCon",
    "SupervisedCE",
    "Triplet",
    "VICReg",
}


def raw_rows() -> list[dict[str, str]]:
    """The TSV read directly, independently of ``load_catalogue``."""
    with open(CATALOGUE_PATH, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_implemented_rows_name_registered_importable_classes():
    import reprzoo.lightning_modules as modules
    from reprzoo.lightning_modules import get_method, list_methods

    by_title: dict[str, list] = {}
    for info in list_methods():
        by_title.setdefault(info.title, []).append(info)
    rows = raw_rows()
    assert len({r["title"] for r in rows}) == len(rows), "duplicate catalogue titles"
    for row in rows:
        if row["status"] == "implemented":
            assert row["category"] == "METHOD", row["title"]
            infos = by_title.get(row["title"])
            assert infos, f"catalogue says implemented but no method has the title {row['title']!r}"
            for info in infos:  # the class is exported under its name and is what the registry builds
                assert getattr(modules, info.name) is info.cls and get_method(info.name) is info.cls
                assert info.wing == row["wing"], f"{info.name} is registered in {info.wing}, its row in {row['wing']}"
        else:
            assert row["title"] not in by_title, f"{[i.name for i in by_title[row['title']]]} implement {row['title']!r}: mark it"
            assert row["note"].strip(), f"{row['title']!r} is {row['status']} without a note"


def test_metric_rows_name_tested_functions_and_report_sections():
    """Every METRIC row is built (status ``metric``; one ``out-of-scope`` for want of offline data): its note names
    functions of reprzoo.metrics.analysis (each called in tests/test_analysis_*.py) and the ``reprzoo analyze`` section
    that reports it."""
    import re
    from pathlib import Path

    import reprzoo.metrics.analysis as analysis
    from reprzoo.analysis import SECTIONS

    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_analysis_*.py"))
    rows = [r for r in raw_rows() if r["category"] == "METRIC"]
    assert len(rows) == 21 and sorted(r["status"] for r in rows) == ["metric"] * 20 + ["out-of-scope"]
    for row in rows:
        match = re.search(r"reprzoo\.metrics\.analysis: ([\w, ]+); reprzoo analyze section (\w+)", row["note"])
        assert match, row["note"]
        for name in match.group(1).split(", "):
            assert callable(getattr(analysis, name)), name
            assert re.search(rf"\b{name}\(", tests), f"{name} is not called in tests/test_analysis_*.py"
        assert match.group(2) in SECTIONS, match.group(2)


def test_every_registered_method_has_a_catalogue_row_or_is_a_baseline():
    from reprzoo.lightning_modules import list_methods

    titles = {r["title"] for r in raw_rows()}
    outside = {info.name for info in list_methods() if info.title not in titles}
    assert outside == BASELINES


def test_counts_from_the_tsv_match_the_registry_and_coverage():
    from reprzoo.lightning_modules import list_methods

    rows = raw_rows()
    implemented = [r for r in rows if r["status"] == "implemented"]
    registered_titles = {info.title for info in list_methods()} - {
        info.title for info in list_methods() if info.name in BASELINES
    }
    assert len(implemented) == len(registered_titles)
    for wing in {r["wing"] for r in rows}:
        expected: dict[str, int] = {}
        for r in rows:
            if r["wing"] == wing and r["category"] == "METHOD":
                expected[r["status"]] = expected.get(r["status"], 0) + 1
        assert coverage(wing) == expected, wing
    assert [e.title for e in load_catalogue()] == [r["title"] for r in rows]


def test_finished_wings_have_no_planned_method_rows():
    for entry in load_catalogue():
        if entry.wing in DONE_WINGS and entry.category == "METHOD" and entry.title not in STILL_PLANNED:
            assert entry.status in ("implemented", "moved", "out-of-scope"), f"{entry.title!r} is {entry.status}"


def test_catalogue_command(capsys):
    assert main(["catalogue", "--wing", "vision-ssl", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["wing"] == "vision-ssl" for r in rows)
    simsiam = next(r for r in rows if r["title"] == "Exploring Simple Siamese Representation Learning")
    assert simsiam["status"] == "implemented" and simsiam["methods"] == ["SimSiam"]


def test_catalogue_unknown_wing_or_status_is_one_line(capsys):
    """An unknown wing is an error with the near match, not an empty table with exit status 0."""
    assert main(["catalogue", "--wing", "vision_ssl"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "unknown wing 'vision_ssl'. Did you mean: vision-ssl" in captured.err
    assert main(["catalogue", "--status", "implemnted"]) == 2
    assert "Did you mean: implemented" in capsys.readouterr().err


def test_a_methods_own_choices_are_stated_wherever_it_is_listed():
    """A method registered with a ``note`` (what is reprzoo's own where the paper is silent) carries it in the
    catalogue row of its paper, in ``reprzoo methods --json`` and in a pushed model's card."""
    from reprzoo.lightning_modules import list_methods
    from reprzoo.zoo.card import render_card
    from reprzoo.zoo.catalogue import load_catalogue

    noted = [m for m in list_methods() if m.note]
    assert {m.name for m in noted} >= {"SparseJEPA"}
    rows = {e.title: e for e in load_catalogue()}
    for info in noted:
        assert rows[info.title].note == info.note, info.name
        assert info.as_dict()["note"] == info.note
    import json

    from reprzoo.zoo.api import resolve

    config = json.loads((resolve("simsiam-tinyresnet-digits").folder / "config.json").read_text())  # a real config
    config["method"] = {**config["method"], "name": "SparseJEPA", "title": noted[0].title, "note": noted[0].note}
    assert f"**Not from the paper:** {noted[0].note}" in str(render_card(config))
