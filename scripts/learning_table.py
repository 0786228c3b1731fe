"""Render the learning tests' measurements (``REPRZOO_LEARNING_REPORT`` folder) as the README's methods table.

Usage (``make learning-table`` runs both steps):
    REPRZOO_LEARNING_REPORT=docs/learning .venv/bin/python -m pytest -m slow -k test_learns_on_digits -n 2
    .venv/bin/python scripts/learning_table.py docs/learning README.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

START, END = "<!-- learning-table:start -->", "<!-- learning-table:end -->"
BAR = 0.03  # the learning test's margin over random init (tests/test_methods.py)


TEXT_START, TEXT_END = "<!-- text-learning-table:start -->", "<!-- text-learning-table:end -->"
SUP_START, SUP_END = "<!-- supervised-learning-table:start -->", "<!-- supervised-learning-table:end -->"
#: metrics of the supervised wing's protocols (zero-shot retrieval, a classifier on clean labels): their own table
SUPERVISED_METRICS = ("val/map_at_r", "val/classifier_top1")


def _kind(row: dict) -> str:
    metric = row.get("metric", "val/knn_top1")
    return "knn" if metric == "val/knn_top1" else "supervised" if metric in SUPERVISED_METRICS else "text"


def _rows(folder: Path, kind: str) -> list[dict]:
    rows = sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda r: r["method"].lower())
    return [r for r in rows if _kind(r) == kind]


def text_table(folder: Path, kind: str = "text") -> str:
    """The text methods' rows (``kind="text"``; the supervised wing's non-kNN rows with ``"supervised"``): each
    against random init on its datamodule's metric (word similarity, document similarity, retrieval, MAP@R among
    unseen classes, a classifier's accuracy), with the data options of the learning test."""
    lines = [
        "| method | paper | recipe | data | epochs | metric | random init | trained | bar | clears | train s |",
        "|---|---|---|---|---:|---|---:|---:|---:|:---:|---:|",
    ]
    for r in _rows(folder, kind):
        options = ", ".join(f"{k}={v}" for k, v in (r.get("data_options") or {}).items()) or "all of it"
        bar = r["bar"]  # a negative bar: lower is better (a held-out loss)
        learned = r["trained"] < r["random_init"] + bar if bar < 0 else r["trained"] > r["random_init"] + bar
        learns = "yes" if learned else "**no**"
        lines.append(
            f"| {r['method']} | {r['title']} | `{r['recipe']}` | {r['dataset']} ({options}) | {r['epochs']} | "
            f"`{r['metric']}` | {r['random_init']:.3f} | {r['trained']:.3f} | {r['bar']:+.2f} | {learns} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def table(folder: Path) -> str:
    rows = _rows(folder, "knn")
    lines = [
        "| method | paper | recipe | data | epochs | kNN top-1 random init | kNN top-1 trained | clears +0.03 | train s |",
        "|---|---|---|---|---:|---:|---:|:---:|---:|",
    ]
    for r in rows:
        learns = "yes" if r["knn_top1_trained"] > r["knn_top1_random_init"] + BAR else "**no**"
        lines.append(
            f"| {r['method']} | {r['title']} | `{r['recipe']}` | {r['dataset']} | {r['epochs']} | "
            f"{r['knn_top1_random_init']:.3f} | {r['knn_top1_trained']:.3f} | {learns} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(folder: str, readme: str = "README.md") -> None:
    path = Path(readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} section")
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table(Path(folder))}\n{END}", text, flags=re.S)
    if TEXT_START in new and TEXT_END in new:
        body = text_table(Path(folder))
        new = re.sub(re.escape(TEXT_START) + ".*?" + re.escape(TEXT_END), f"{TEXT_START}\n{body}\n{TEXT_END}", new, flags=re.S)
    if SUP_START in new and SUP_END in new:
        body = text_table(Path(folder), "supervised")
        new = re.sub(re.escape(SUP_START) + ".*?" + re.escape(SUP_END), f"{SUP_START}\n{body}\n{SUP_END}", new, flags=re.S)
    path.write_text(new)
    print(table(Path(folder)))


if __name__ == "__main__":
    main(*sys.argv[1:])
