"""The project catalogue agrees with the registry: a row says ``implemented`` exactly when a method carries its title."""

from __future__ import annotations

import json

from reprzoo.cli.main import main
from reprzoo.zoo.catalogue import STATUSES, implemented_titles, load_catalogue

DONE_WINGS = ("vision-ssl",)  # wings whose every METHOD row must be implemented or explicitly moved/out of scope
# rows of those wings still being built (issue 4); this set may only shrink
STILL_PLANNED: set[str] = set()


def test_statuses_agree_with_the_registry():
    registered = implemented_titles()
    catalogue = load_catalogue()
    titles = {e.title for e in catalogue}
    for entry in catalogue:
        assert entry.status in STATUSES
        if entry.status == "implemented":
            assert entry.title in registered, f"catalogue says implemented but no method has the title {entry.title!r}"
        else:
            assert entry.title not in registered, f"{registered.get(entry.title)} implement {entry.title!r}: mark it"
            assert entry.note, f"{entry.title!r} is {entry.status} without a note"
    baselines = {t: names for t, names in registered.items() if t not in titles}
    # methods outside the mission's catalogue are the baselines the seeds build on (SimCLR, MoCo, ...)
    assert all(info for info in baselines.values())


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
