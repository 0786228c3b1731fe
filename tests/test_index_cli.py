"""``reprzoo index`` / ``reprzoo search`` and the index round trip with a real zoo model: a tiny MNRL (WordNet
recipe, 300 pairs, 2 steps) pushed twice to a temporary local hub (two revisions of one name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from reprzoo.cli.main import main
from reprzoo.index import IncompatibleQueryError, Index
from tests.conftest import quiet_trainer_kwargs

pytest.importorskip("faiss")

DOCUMENTS = [
    "a web browser for the graphical desktop",
    "command line tool to download files over http",
    "library for reading and writing compressed archives",
    "a text editor for programmers with syntax highlighting",
    "fonts for rendering unicode text",
    "python bindings for the image processing library",
    "a music player with playlists",
    "tools to manage disk partitions",
]
QUERIES = ["download files from the web", "edit source code"]


@pytest.fixture(scope="module")
def hub_model(tmp_path_factory):
    """``(load reference, first revision, second revision)`` of a tiny MNRL in a temporary local hub."""
    from reprzoo.lightning_modules import get_method
    from reprzoo.zoo.api import push
    from test_methods import datamodule_from_recipe, digits_recipe, write_run

    root = tmp_path_factory.mktemp("index-model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRZOO_HOME", str(root / "home"))
        torch.manual_seed(0)
        recipe = digits_recipe("MNRL")
        recipe["data"]["init_args"] = {**recipe["data"]["init_args"], "max_pairs": 300, "vocab_size": 1000}
        data = datamodule_from_recipe(recipe, batch_size=16)
        model = get_method("MNRL")(num_classes=data.num_classes, **{**data.model_args(), **recipe["model"]["init_args"]})
        trainer = L.Trainer(**quiet_trainer_kwargs(root, limit_val_batches=0))
        trainer.fit(model, datamodule=data)
        run = write_run(root / "run", trainer, model, recipe)
        first = push(run, "mnrl-tiny-wordnet.index", to=f"local:{root / 'hub'}")
        second = push(run, "mnrl-tiny-wordnet.index", to=f"local:{root / 'hub'}")
    assert first.revision != second.revision
    return first.load_ref, first.revision, second.revision


@pytest.fixture
def jsonl(tmp_path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"pkg{i}", "text": t}) + "\n" for i, t in enumerate(DOCUMENTS)))
    return path


def _python(code: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_index_round_trip_in_a_new_process(hub_model, jsonl, tmp_path, capsys):
    from reprzoo.zoo.api import load

    ref, rev1, _ = hub_model
    out = tmp_path / "idx"
    assert main(["index", ref, "--revision", rev1, "--data", str(jsonl), "--out", str(out), "--chunk-size", "3"]) == 0
    assert "indexed 8 documents" in capsys.readouterr().out
    index = Index.load(out)
    assert index.kind == "dense" and index.model["revision"] == rev1 and index.ids == [f"pkg{i}" for i in range(8)]
    encoder = load(ref, revision=rev1)
    here = index.search(QUERIES, k=8, encoder=encoder)
    # one new process: the Python API, then the command line (the model recorded in the manifest embeds the query)
    code = (
        "import json\nfrom reprzoo.cli.main import main\nfrom reprzoo.index import Index\nfrom reprzoo.zoo.api import load\n"
        f"index = Index.load({str(out)!r})\n"
        f"print(json.dumps(index.search({QUERIES!r}, k=8, encoder=load({ref!r}, revision={rev1!r}))))\n"
        f"main(['search', {str(out)!r}, {QUERIES[0]!r}, '-k', '3', '--json'])"
    )
    first, rest = _python(code).split("\n", 1)
    there, cli = json.loads(first), json.loads(rest)
    assert [ids for ids, _ in there] == [ids for ids, _ in here]
    for (_, got), (_, want) in zip(there, here):
        assert got == pytest.approx(want, abs=1e-6)
    assert cli[0]["ids"] == here[0][0][:3]


def test_a_query_model_of_another_revision_is_refused(hub_model, jsonl, tmp_path, capsys):
    from reprzoo.zoo.api import load

    ref, rev1, rev2 = hub_model
    out = tmp_path / "idx"
    assert main(["index", ref, "--revision", rev1, "--data", str(jsonl), "--out", str(out)]) == 0
    capsys.readouterr()
    index = Index.load(out)
    with pytest.raises(IncompatibleQueryError) as err:
        index.search(QUERIES, k=3, encoder=load(ref, revision=rev2))
    assert f"@{rev1}" in str(err.value) and f"@{rev2}" in str(err.value) and "its revision" in str(err.value)
    assert main(["search", str(out), QUERIES[0], "--model", ref, "--revision", rev2]) == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and stderr.startswith("reprzoo: error: index ") and rev2 in stderr


def test_a_compatible_successor_of_the_indexing_model_is_accepted(hub_model, jsonl, tmp_path):
    """A successor whose config records ``lineage.compatible_with = NAME@REVISION`` of the index's model (what
    ``reprzoo.zoo.export`` writes for a compatible method's run) may query the old model's index."""
    from reprzoo.zoo.api import load

    ref, rev1, rev2 = hub_model
    old = load(ref, revision=rev1)
    index_dir = tmp_path / "idx"
    from reprzoo.index import build_index

    index = build_index(old, DOCUMENTS, [f"pkg{i}" for i in range(8)], index_dir, progress=False)
    successor = load(ref, revision=rev2)
    successor.config = {**successor.config, "lineage": {"compatible_with": f"{old.name}@{rev1}"}}
    assert index.search(QUERIES, k=3, encoder=successor) == index.search(QUERIES, k=3, encoder=old)
    successor.config = {**successor.config, "lineage": {"compatible_with": f"{old.name}@{rev2}"}}
    with pytest.raises(IncompatibleQueryError):
        index.search(QUERIES, k=3, encoder=successor)


def test_cli_errors_are_one_line(hub_model, tmp_path, capsys):
    ref, rev1, _ = hub_model
    assert main(["index", ref, "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "i")]) == 2
    assert "is neither 'debian' nor a file" in capsys.readouterr().err
    text = tmp_path / "docs.txt"
    text.write_text("\n".join(DOCUMENTS) + "\n")
    assert main(["index", ref, "--data", str(text), "--out", str(tmp_path / "i"), "--kind", "ivfpq", "--nlist", "64"]) == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "8 documents, too few" in stderr and "--kind dense" in stderr
    assert main(["search", str(tmp_path / "nowhere"), "query"]) == 2
    assert "is not an index" in capsys.readouterr().err
    assert main(["index", ref, "--data", str(text), "--out", str(tmp_path / "t")]) == 0
    assert Index.load(tmp_path / "t").ids == [str(i) for i in range(1, 9)]  # a text file: ids are line numbers


def test_debian_documents_are_package_descriptions():
    from reprzoo.cli.index import read_documents
    from reprzoo.datamodules.text.corpora import debian_packages

    texts, ids = read_documents("debian")
    records = {r["package"]: r for r in debian_packages()}
    assert len(ids) == len(set(ids)) == 5000
    assert all(records[i]["description"] == t for i, t in zip(ids[:50], texts[:50]))
