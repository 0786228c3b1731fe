"""The README is a contract (issue 20). Its Python snippets define every name they use and embed in evaluation mode
without gradients; every Python block and every command of its bash blocks runs, in order, as a smoke run
(``REPRZOO_SMOKE=1``); its tables state their protocol and the command that regenerates them; it states no counts
that drift; and the command-line behaviour it promises (one line per method in ``reprzoo methods``, a warning for
several CPU devices, the Python API writing under ``runs/``) holds."""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

README = Path(__file__).parents[1] / "README.md"


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def snippet(containing: str) -> str:
    (code,) = [code for code in python_snippets() if containing in code]
    return code


def undefined_names(code: str) -> set[str]:
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return used - defined


def embed_calls_outside_no_grad(code: str) -> list[int]:
    """Line numbers of ``.embed(...)`` calls not inside a ``with torch.no_grad():`` block."""
    tree = ast.parse(code)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any("no_grad" in ast.unparse(item.context_expr) for item in node.items):
            guarded |= {id(n) for body in node.body for n in ast.walk(body)}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "embed"
        if id(node) not in guarded
    ]


def test_readme_has_python_snippets():
    assert len(python_snippets()) >= 3


@pytest.mark.parametrize("index", range(len(python_snippets())))
def test_snippet_defines_every_name_it_uses(index):
    code = python_snippets()[index]
    assert not undefined_names(code), f"README snippet {index} uses undefined names:\n{code}"


@pytest.mark.parametrize("index", range(len(python_snippets())))
def test_snippet_embeds_without_gradients(index):
    code = python_snippets()[index]
    assert not embed_calls_outside_no_grad(code), f"README snippet {index}: embed outside torch.no_grad():\n{code}"
    if ".fit(" in code and ".embed(" in code.split(".fit(", 1)[1]:
        between = code.split(".fit(", 1)[1].split(".embed(", 1)[0]
        assert ".eval()" in between, "fit leaves the model in training mode: the snippet must call model.eval()"


def test_zoo_snippet_runs():
    namespace: dict = {}
    exec(compile(snippet('reprzoo.load("simsiam-tinyresnet-digits")'), "README.md", "exec"), namespace)
    assert namespace["z"].shape[0] == 1 and namespace["z"].ndim == 2
    assert type(namespace["method"]).__name__ == "SimSiam"


def test_python_api_snippet_runs(monkeypatch, tmp_path):
    """The training snippet, with a tiny trainer instead of 20 epochs."""
    import lightning

    monkeypatch.chdir(tmp_path)

    real_trainer = lightning.Trainer

    def tiny_trainer(**kwargs):
        kwargs.update(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0)
        return real_trainer(**kwargs, logger=False, enable_checkpointing=False, enable_progress_bar=False)

    monkeypatch.setattr(lightning, "Trainer", tiny_trainer)
    namespace: dict = {}
    exec(compile(snippet("L.Trainer("), "README.md", "exec"), namespace)
    features, images, model = namespace["features"], namespace["images"], namespace["model"]
    assert features.shape[0] == images.shape[0] and features.ndim == 2
    assert not model.training and not features.requires_grad
    model.train()
    assert not torch.equal(model.embed(images), features), "in training mode BatchNorm uses batch statistics"


# ------------------------------------------------------------------------------- every block of the README, in order
#: What a ``# needs: X`` comment at the end of a command may name: the README test skips exactly these commands.
NEEDS = {"gpu": "a GPU", "network": "the network (and a Hugging Face token)", "nodes": "several machines"}
NEEDS_MARK = re.compile(r"#[^#]*\bneeds:\s*([a-z][a-z, ]*?)\s*$")
PAPER_RECIPE = re.compile(r"^(cifar10|cifar100|stl10)/(\w+)$")
#: Lightning's own environment defaults for a Trainer built in Python (the Python API block): 2 steps, 1 val batch.
PYTHON_SMOKE_ENV = {"PL_TRAINER_MAX_STEPS": "2", "PL_TRAINER_LIMIT_VAL_BATCHES": "1"}


def readme_blocks() -> list[tuple[str, str]]:
    """``(kind, code)`` of every ```python and ```bash block, in README order."""
    text = README.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(python|bash)[^\n]*\n(.*?)```", text, re.S)]


def shell_commands(block: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, blank and comment-only lines left out."""
    commands, current = [], ""
    for line in block.splitlines():
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.strip().startswith("#"):
            commands.append(current.strip())
        current = ""
    return commands


def needs(command: str) -> set[str]:
    match = NEEDS_MARK.search(command)
    return {n.strip() for n in match.group(1).split(",") if n.strip()} if match else set()


def readme_plan() -> list[tuple[str, str, str | None]]:
    """``(kind, code, why skipped or None)`` for every block (python) and command (bash) of the README, in order.

    The documented replacements (README, set-up): ``make demo`` runs as ``reprzoo demo``; ``make learning-table`` as
    its last step on a copy of the README (``learning-table``); ``make test`` is not run again (this test is part
    of it); a ``reprzoo fit`` of a paper recipe (``cifar10/NAME``) runs on ``digits/NAME`` without ``--data.root``;
    a command marked ``# needs: gpu|network|nodes`` is skipped."""
    plan: list[tuple[str, str, str | None]] = []
    for kind, code in readme_blocks():
        if kind == "python":
            plan.append(("python", code, None))
            continue
        for command in shell_commands(code):
            wanted = needs(command)
            unknown = wanted - NEEDS.keys()
            assert not unknown, f"README: unknown '# needs: {', '.join(unknown)}' (known: {', '.join(NEEDS)}): {command}"
            words = shlex.split(command, comments=True)
            if wanted:
                plan.append(("bash", command, f"needs {', '.join(NEEDS[n] for n in sorted(wanted))}"))
            elif words[:2] == ["make", "test"]:
                plan.append(("bash", command, "make test: this test is part of it"))
            elif words[:1] == ["pip"] or words[:2] == ["python", "-m"] and words[2:3] == ["pip"]:
                plan.append(("bash", command, "an install: the test runs in the installed environment"))
            elif words[:2] == ["make", "demo"]:
                plan.append(("reprzoo", shlex.join(["reprzoo", "demo", *words[2:]]), None))
            elif words[:2] == ["make", "learning-table"]:
                plan.append(("learning-table", command, None))
            elif words[:1] == ["reprzoo"]:
                plan.append(("reprzoo", shlex.join(digits_instead_of_paper_recipe(words)), None))
            else:
                plan.append(("bash", command, None))
    return plan


def digits_instead_of_paper_recipe(words: list[str]) -> list[str]:
    """``reprzoo fit --config cifar10/NAME ...`` -> ``... --config digits/NAME`` without ``--data.root DIR``."""
    if words[1:2] != ["fit"] or "--print_config" in words:
        return words
    out, skip = [], False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word == "--data.root":
            skip = True
            continue
        if word.startswith("--data.root="):
            continue
        match = PAPER_RECIPE.match(word) if i and words[i - 1] == "--config" else None
        out.append(f"digits/{match.group(2)}" if match else word)
    return out


def run_reprzoo(words: list[str]) -> tuple[int, str]:
    """``reprzoo ARGS [> FILE]`` through the console script's entry point (``reprzoo.cli.main:main``) in this
    process: an interpreter and Lightning start once for all the commands, not once per command."""
    from reprzoo.cli.main import main

    args, target = words[1:], None
    if ">" in args:
        index = args.index(">")
        args, target = args[:index], args[index + 1]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = main(args)
    except SystemExit as exit_:  # --print_config and --help exit
        code = exit_.code
    if target is not None:
        Path(target).write_text(out.getvalue())
    return int(code or 0), out.getvalue()


@pytest.mark.slow
def test_every_readme_block_and_command_runs(tmp_path, monkeypatch):
    """The README is a contract: every Python block and every command of its bash blocks runs, in README order
    (later ones use what earlier ones trained and pushed), in an empty directory with its own REPRZOO_HOME, with
    REPRZOO_SMOKE=1 (and Lightning's PL_TRAINER_* defaults for the Trainer built in Python) instead of the full
    budgets. Only the commands marked ``# needs: gpu|network|nodes`` and ``make test`` are skipped."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("REPRZOO_SMOKE", "1")
    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "reprzoo-home"))
    plan = readme_plan()
    ran, skipped = [], []
    for kind, code, why in plan:
        started = time.perf_counter()
        if why is not None:
            skipped.append((code, why))
            continue
        if kind == "python":
            with monkeypatch.context() as env:
                for name, value in PYTHON_SMOKE_ENV.items():
                    env.setenv(name, value)
                exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
        elif kind == "reprzoo":
            status, out = run_reprzoo(shlex.split(code, comments=True))
            assert status == 0, f"README command failed ({status}): {code}\n{out[-2000:]}"
        elif kind == "learning-table":  # its last step, on a copy: the kept measurements give the README's table
            copy = work / "README.md"
            copy.write_text(README.read_text(encoding="utf-8"), encoding="utf-8")
            root = README.parent
            subprocess.run(
                [sys.executable, str(root / "scripts" / "learning_table.py"), str(root / "docs" / "learning"), str(copy)],
                check=True,
                capture_output=True,
            )
            assert copy.read_text(encoding="utf-8") == README.read_text(encoding="utf-8"), (
                "README's methods table is not what make learning-table renders from docs/learning/"
            )
        else:
            result = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"README command failed: {code}\n{result.stdout[-1000:]}{result.stderr[-1000:]}"
        ran.append((code, round(time.perf_counter() - started, 1)))
    print("\n".join(f"{seconds:6.1f} s  {code.splitlines()[0][:100]}" for code, seconds in ran))
    assert len(ran) + len(skipped) == len(plan)
    marked = [code for kind, code, _ in plan if kind == "bash" and needs(code)]
    assert sorted(c for c, why in skipped if why.startswith("needs")) == sorted(marked)
    for code, why in skipped:  # the rest: make test and installs, nothing else
        assert why.startswith("needs") or shlex.split(code, comments=True)[:2] == ["make", "test"] or "install" in why, code
    assert (work / "runs").is_dir() and not (work / "lightning_logs").exists(), "the Python API writes under runs/"


def test_readme_commands_are_plain_commands():
    """No usage notation (``[--json]``, ``a|b|c``) in a command: each line runs as written; marks are known."""
    plan = readme_plan()
    assert sum(kind != "python" for kind, _, _ in plan) >= 25 and sum(kind == "python" for kind, _, _ in plan) >= 3
    for kind, code, _ in plan:
        if kind == "python":
            continue
        words = shlex.split(code, comments=True)
        assert words[0] in ("reprzoo", "make"), code
        assert not any(w.startswith("[") or w in ("|", "||") or "|" in w and not w.startswith("{") for w in words), code
    assert {why for _, _, why in plan if why and why.startswith("needs")} >= {
        "needs a GPU",
        "needs the network (and a Hugging Face token)",
    }


def test_paper_recipe_commands_run_on_the_digits_recipe():
    words = shlex.split("reprzoo fit --config cifar10/directpred --data.root /data/cifar --model.predictor linear")
    assert digits_instead_of_paper_recipe(words) == [
        "reprzoo",
        "fit",
        "--config",
        "digits/directpred",
        "--model.predictor",
        "linear",
    ]
    printed = ["reprzoo", "fit", "--config", "cifar10/simsiam", "--print_config"]
    assert digits_instead_of_paper_recipe(printed) == printed


def markdown_tables() -> list[tuple[int, str]]:
    """``(first line index, text since the previous table or heading)`` of every Markdown table of the README."""
    lines = README.read_text(encoding="utf-8").splitlines()
    tables, context_start = [], 0
    for i, line in enumerate(lines):
        if line.startswith("#"):
            context_start = i
        if line.startswith("|") and not lines[i - 1].startswith("|"):
            tables.append((i, "\n".join(lines[context_start:i])))
            context_start = i
    return tables


def test_every_table_states_its_protocol_and_how_to_regenerate_it():
    tables = markdown_tables()
    assert len(tables) >= 3
    for line, context in tables:
        assert "Protocol" in context, f"README table at line {line + 1}: no 'Protocol' line (classes, k, split) before it"
        assert re.search(r"`(reprzoo|make|pytest|nice -n 10 reprzoo)[^`]*`|```bash", context), (
            f"README table at line {line + 1}: no command that regenerates it"
        )


def test_readme_states_no_counts_that_drift():
    """Test counts, method counts and suite times drift with every commit: the README does not state them, and
    what it says of the methods table (every method in it clears the bar) is checked here."""
    text = README.read_text(encoding="utf-8")
    assert not re.findall(r"\b\d+ (?:tests|methods|METHOD rows)\b|\b\d+ passed\b", text)
    from reprzoo.lightning_modules import list_methods

    rows = re.findall(r"^\| (\w+) \|.*\| (yes|\*\*no\*\*) \| \d+ \|$", text, re.M)
    assert rows and {name for name, _ in rows} <= {m.name for m in list_methods()}
    import importlib.util

    spec = importlib.util.spec_from_file_location("_test_methods", Path(__file__).with_name("test_methods.py"))
    methods_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(methods_tests)
    known = set(methods_tests.LEARNING_KNOWN_FAILURES)  # listed with their reasons: the README says which
    missed = {name for name, clears in rows if clears != "yes"}
    assert missed <= known, f"the README says every other method in its tables clears the bar: {sorted(missed - known)}"


def test_python_api_writes_under_runs():
    """The README's Python API snippet passes ``default_root_dir="runs"``: Lightning alone writes ``lightning_logs/``
    in the working directory, away from the CLI's ``runs/``."""
    trainers = [
        node
        for code in python_snippets()
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Trainer")
    ]
    assert trainers
    for call in trainers:
        keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert keywords.get("default_root_dir") == "'runs'" or "logger" in keywords, ast.unparse(call)


def test_methods_table_is_one_line_per_method_at_80_columns(monkeypatch, capsys):
    """``reprzoo methods`` was a rich table of about 250 lines at 80 columns, titles cut over several lines."""
    from reprzoo.cli.main import main
    from reprzoo.lightning_modules import list_methods

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    methods = list_methods()
    wings = {m.wing for m in methods}
    assert len(lines) <= len(methods) + 2 * len(wings) + 2, len(lines)
    assert max(len(line) for line in lines) <= 80
    for m in methods:
        (line,) = [line for line in lines if line.split()[:1] == [m.name]]
        assert m.title in line or line.endswith("…"), line


def test_several_cpu_devices_warn_in_one_line(tmp_path, capsys):
    """``--trainer.devices 4`` without a GPU silently started 4 gloo processes."""
    from reprzoo.cli.training import cli_main

    logs = f"--trainer.logger.init_args.save_dir={tmp_path}"
    cli_main(["--config", "digits/simsiam", "--trainer.accelerator=cpu", "--trainer.devices=4", logs], run=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "4 training processes" in warnings[0] and "--trainer.devices 1" in warnings[0]
    cli_main(["--config", "digits/simsiam", "--trainer.accelerator=cpu", "--trainer.devices=1", logs], run=False)
    assert "warning" not in capsys.readouterr().err


def test_smoke_runs_are_one_batch_of_one_epoch(tmp_path, monkeypatch, capsys):
    from reprzoo.cli.training import cli_main
    from reprzoo.training.callbacks import EmbeddingPlot

    monkeypatch.setenv("REPRZOO_SMOKE", "1")
    cli = cli_main(["--config", "digits/simsiam", f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
    assert cli.trainer.max_epochs == 1 and cli.trainer.limit_train_batches == 1 and cli.trainer.limit_val_batches == 1
    assert not any(isinstance(c, EmbeddingPlot) for c in cli.trainer.callbacks)
    assert "REPRZOO_SMOKE=1: a smoke run" in capsys.readouterr().err
    monkeypatch.setenv("REPRZOO_SMOKE", "0")
    cli = cli_main(["--config", "digits/simsiam", f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
    assert cli.trainer.max_epochs == 20 and any(isinstance(c, EmbeddingPlot) for c in cli.trainer.callbacks)
