"""Imports flow one way: ``cli`` -> ``analysis`` -> ``zoo`` -> ``lightning_modules`` -> ``index`` -> ``losses``,
``metrics``, ``backbones``, ``components``; datamodules know no method, methods know no hub, the library works without its command
line. Checked on the source (every ``import reprzoo.X`` / ``from reprzoo.X import``, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import reprzoo

ROOT = Path(reprzoo.__file__).parent
#: package -> the packages it must not import
FORBIDDEN = {
    "losses": {"lightning_modules", "zoo", "cli", "analysis", "datamodules", "training", "index"},
    "metrics": {"lightning_modules", "zoo", "cli", "analysis", "training", "index"},
    "backbones": {"lightning_modules", "zoo", "cli", "analysis", "datamodules", "training", "index"},
    "components": {"lightning_modules", "zoo", "cli", "analysis", "index"},
    "datamodules": {"lightning_modules", "zoo", "cli", "analysis", "losses", "training", "index"},
    # search indexes over representations: a loaded model is passed in (duck-typed), never imported
    "index": {"lightning_modules", "zoo", "cli", "analysis", "training", "datamodules"},
    "lightning_modules": {"zoo", "cli", "analysis"},
    "training": {"zoo", "cli", "analysis"},
    "zoo": {"cli", "analysis"},
    "analysis": {"cli"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n.split(".")[1] for n in names if n.startswith("reprzoo.")}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"reprzoo/{package} has no modules"
    wrong = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN[package]) for f in files}
    assert not {f: p for f, p in wrong.items() if p}, f"reprzoo/{package} imports what sits above it"
