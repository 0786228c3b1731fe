"""Rebuild the (Python function, docstring) fixture of the code-retrieval methods (CodeSage) from installed
third-party packages.

Sources (installed in the project's virtual environment; licences from their ``dist-info`` metadata):

=================  ===========  ==================
package            licence      functions at most
=================  ===========  ==================
scikit-learn       BSD-3-Clause 1200
sympy              BSD-3-Clause 1200
networkx           BSD-3-Clause 800
click              BSD-3-Clause 200
joblib             BSD-3-Clause 200
jsonargparse       MIT          150
imageio            BSD-2-Clause 150
attrs              MIT          100
=================  ===========  ==================

The Python standard library is NOT used: its sources and docstrings are reserved as an unseen evaluation set
(/work/shared/DATA.md). Test modules (``tests/``, ``test_*.py``) are skipped.

Each record: ``package``, ``license``, ``module``, ``name``, ``docstring`` (the first paragraph of the function's
docstring, whitespace collapsed, 4-60 words) and ``code`` (the function's source, dedented, WITHOUT its docstring,
3-60 lines, at most 1,500 characters). Duplicated docstrings are dropped; a seeded sample per package.

Writes ``reprzoo/datamodules/text/data/python_functions.jsonl.xz`` and, next to it, ``PYTHON_FUNCTIONS_NOTICE`` (the
packages' licence files, which their licences ask redistributed source to carry).

Usage: ``.venv/bin/python scripts/make_code_fixture.py [--seed 0]``
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata as md
import inspect
import json
import lzma
import random
import textwrap
from pathlib import Path

PACKAGES = {  # distribution -> (import package, licence, most functions)
    "scikit-learn": ("sklearn", "BSD-3-Clause", 1200),
    "sympy": ("sympy", "BSD-3-Clause", 1200),
    "networkx": ("networkx", "BSD-3-Clause", 800),
    "click": ("click", "BSD-3-Clause", 200),
    "joblib": ("joblib", "BSD-3-Clause", 200),
    "jsonargparse": ("jsonargparse", "MIT", 150),
    "imageio": ("imageio", "BSD-2-Clause", 150),
    "attrs": ("attr", "MIT", 100),
}
OUT = Path(__file__).resolve().parents[1] / "reprzoo" / "datamodules" / "text" / "data"


def summary(docstring: str) -> str | None:
    first = inspect.cleandoc(docstring).split("\n\n")[0]
    text = " ".join(first.split())
    return text if 4 <= len(text.split()) <= 60 else None


def functions(path: Path, module: str):
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    lines = source.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc or not isinstance(node.body[0], ast.Expr):
            continue
        text = summary(doc)
        if text is None or len(node.body) < 2:
            continue
        skip = set(range(node.body[0].lineno - 1, node.body[0].end_lineno))
        body = [line for i, line in enumerate(lines[node.lineno - 1 : node.end_lineno], node.lineno - 1) if i not in skip]
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if 3 <= len(code.splitlines()) <= 60 and len(code) <= 1500:
            yield {"module": module, "name": node.name, "docstring": text, "code": code}


def collect(distribution: str, package: str) -> list[dict]:
    root = Path(md.distribution(distribution).locate_file(package))
    records = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if "tests" in rel.parts or path.name.startswith("test_") or path.name == "conftest.py":
            continue
        records.extend(functions(path, ".".join(rel.with_suffix("").parts)))
    return records


def licence_text(distribution: str) -> str:
    dist = md.distribution(distribution)
    files = [f for f in (dist.files or []) if "licen" in f.name.lower() or "copying" in f.name.lower()]
    texts = [Path(dist.locate_file(f)).read_text(encoding="utf-8", errors="replace") for f in files]
    return "\n".join(texts) if texts else f"(no licence file shipped; metadata: {dist.metadata.get('License')})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seen: set[str] = set()
    out, notices = [], []
    for distribution, (package, licence, most) in PACKAGES.items():
        records = collect(distribution, package)
        rng.shuffle(records)
        kept = 0
        for r in records:
            if kept == most or r["docstring"].lower() in seen:
                continue
            seen.add(r["docstring"].lower())
            version = md.version(distribution)
            out.append({"package": f"{distribution}=={version}", "license": licence, **r})
            kept += 1
        print(f"{distribution}: {kept} of {len(records)} functions")
        notices.append(f"==== {distribution} {md.version(distribution)} ({licence}) ====\n{licence_text(distribution)}")
    OUT.mkdir(parents=True, exist_ok=True)
    with lzma.open(OUT / "python_functions.jsonl.xz", "wt", encoding="utf-8", preset=9) as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    header = "Function sources and docstrings in python_functions.jsonl.xz come from these packages:\n\n"
    (OUT / "PYTHON_FUNCTIONS_NOTICE").write_text(header + "\n\n".join(notices) + "\n", encoding="utf-8")
    print(f"{len(out)} pairs -> {OUT / 'python_functions.jsonl.xz'}")


if __name__ == "__main__":
    main()
