"""The ``reprzoo`` command.

Training goes through LightningCLI (``fit``, ``validate``, ``test``, ``predict``); the catalogue and zoo commands
(``methods``, ``recipes``, ``demo``, and the hub commands) are plain argparse. User errors print one line and
exit with status 2; set ``REPRZOO_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import warnings
from typing import Callable, Iterator

from reprzoo.errors import ReprzooError

USAGE = """usage: reprzoo <command> [options]       (reprzoo --version: the installed version)

training (LightningCLI; `reprzoo fit --help` for every option):
  fit | validate | test | predict   e.g. reprzoo fit --config digits/simsiam --trainer.max_epochs 5
                                         reprzoo fit --model SimSiam --data Digits

catalogue:
  methods [--json]                  registered methods with their paper titles
  catalogue [--wing W] [--status S] the mission's papers and what reprzoo did with each (coverage per wing)
  recipes [--json]                  shipped training recipes (usable as --config NAME)
  demo                              train SimSiam on the offline digits, compare with random init

zoo (`reprzoo <command> --help` for options):
  list [PATTERN] | info NAME | push RUN --name NAME | finetune NAME --data D | embed NAME --data D --out F
  finetune OLD --compatible METHOD --data D (a compatible successor) | compat OLD NEW --data D
  anomaly fit NAME --data D --normal-class K --out DIR | anomaly score DIR | anomaly protocol NAME --data D
  index NAME --data debian|FILE.jsonl|FILE.txt --out DIR [--kind K] | search DIR "query text" [-k 10]
"""


def cmd_methods(args: argparse.Namespace) -> int:
    from reprzoo.lightning_modules import list_methods
    from reprzoo.zoo.recipes import recipe_methods

    recipes = recipe_methods()
    rows = [{**m.as_dict(), "recipes": recipes.get(m.name, []), "has_recipe": bool(recipes.get(m.name))} for m in list_methods()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console

    width = Console().width  # the terminal's (COLUMNS; 80 when not a terminal)
    print(_cut(f"reprzoo methods ({len(rows)}): name, recipe datasets, paper title (--json: everything)", width))
    name_width = max((len(r["name"]) for r in rows), default=4)
    for wing in sorted({r["wing"] for r in rows}):
        members = [r for r in rows if r["wing"] == wing]
        print(f"\n{wing} ({len(members)})")
        for r in members:  # one line per method at any width: what does not fit ends in an ellipsis
            datasets = " ".join(sorted({recipe.split("/", 1)[0] for recipe in r["recipes"]})) or "-"
            line = f"  {r['name']:<{name_width}}  {_cut(datasets, 18):<18}  {r['title']}"
            print(_cut(line, width))
    return 0


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def cmd_catalogue(args: argparse.Namespace) -> int:
    from reprzoo.errors import UnknownNameError
    from reprzoo.zoo.catalogue import STATUSES, implemented_titles, load_catalogue

    entries = load_catalogue()
    wings = {e.wing for e in entries}
    if args.wing is not None and args.wing not in wings:  # an empty table would read as "nothing there"
        raise UnknownNameError("wing", args.wing, wings)
    if args.status is not None and args.status not in STATUSES:
        raise UnknownNameError("status", args.status, STATUSES)
    registered = implemented_titles()
    rows = [
        {**e.as_dict(), "methods": registered.get(e.title, [])}
        for e in entries
        if (args.wing is None or e.wing == args.wing) and (args.status is None or e.status == args.status)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"reprzoo catalogue ({len(rows)} rows)")
    for col in ("wing", "category", "title", "status", "methods / note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["wing"], r["category"], r["title"], r["status"], ", ".join(r["methods"]) or r["note"])
    console = Console()
    console.print(table)
    methods = Counter(r["status"] for r in rows if r["category"] == "METHOD")
    console.print("METHOD rows: " + ", ".join(f"{n} {status}" for status, n in sorted(methods.items())))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from reprzoo.zoo.recipes import list_recipes

    recipes = {name: str(path) for name, path in list_recipes().items()}
    print(json.dumps(recipes, indent=2) if args.json else "\n".join(recipes))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from reprzoo.cli.demo import run_demo

    return run_demo(epochs=args.epochs, root_dir=args.root_dir)


def build_parser() -> argparse.ArgumentParser:
    # `reprzoo` alone and `reprzoo --help` print USAGE (main); a subcommand's --help starts `usage: reprzoo NAME ...`
    parser = argparse.ArgumentParser(prog="reprzoo", usage="reprzoo <command> [options]")
    sub = parser.add_subparsers(dest="command", required=True, prog="reprzoo")
    p = sub.add_parser("methods", help="list registered methods")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("catalogue", help="the mission's papers and their status")
    p.add_argument("--wing", default=None)
    p.add_argument("--status", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_catalogue)
    p = sub.add_parser("recipes", help="list shipped recipes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recipes)
    p = sub.add_parser("demo", help="the offline demo: SimSiam on digits")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--root-dir", default="runs", help="where runs are written")
    p.set_defaults(func=cmd_demo)
    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


#: Functions that add subcommands (the zoo's hub commands register here).
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _load_extra_commands() -> None:
    try:
        from reprzoo.cli import zoo_commands
    except ImportError as err:  # the hub commands are optional only while they are being built
        if "zoo_commands" not in str(err):
            raise
        return
    if zoo_commands.register not in EXTRA_COMMANDS:
        EXTRA_COMMANDS.append(zoo_commands.register)
    from reprzoo.cli import anomaly

    if anomaly.register not in EXTRA_COMMANDS:
        EXTRA_COMMANDS.append(anomaly.register)
    from reprzoo.cli import index

    if index.register not in EXTRA_COMMANDS:
        EXTRA_COMMANDS.append(index.register)


#: Warnings of the libraries under the command that are not the user's concern (message regex, category), dropped
#: while a ``reprzoo`` command runs (:func:`quiet_startup`); code importing reprzoo as a library still sees them.
STARTUP_NOISE_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # LightningCLI(args=...) while sys.argv has arguments: the command passes its own (resolved) argv on purpose
    (r"LightningCLI's args parameter is intended to run from within Python", Warning),
    # torch's pytree deprecations hit by lightning's own pytree helpers (lightning/pytorch/utilities/_pytree.py)
    (r".*\bLeafSpec\b.*deprecated", FutureWarning),
    (r".*\bLeafSpec\b.*deprecated", DeprecationWarning),
)
#: Informational log lines of Lightning dropped while a command runs: (logger name, text the message contains).
STARTUP_NOISE_LOGS: tuple[tuple[str, str], ...] = (
    # "💡 Tip: For seamless cloud logging ... try installing [litlogger]" (logger_connector.py, rank_zero_info)
    ("lightning.pytorch.utilities.rank_zero", "litlogger"),
    ("lightning.fabric.utilities.rank_zero", "litlogger"),
)


class _DropMessages(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return self.fragment not in record.getMessage()
        except Exception:  # a record whose arguments do not format: not ours to judge
            return True


@contextlib.contextmanager
def quiet_startup() -> Iterator[None]:
    """While a command runs: drop :data:`STARTUP_NOISE_WARNINGS` and :data:`STARTUP_NOISE_LOGS` (library noise a
    user can do nothing about). Scoped to the command, not set at import: library users keep every warning."""
    filters = [(logging.getLogger(name), _DropMessages(fragment)) for name, fragment in STARTUP_NOISE_LOGS]
    with warnings.catch_warnings():
        for message, category in STARTUP_NOISE_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for logger, log_filter in filters:
            logger.addFilter(log_filter)
        try:
            yield
        finally:
            for logger, log_filter in filters:
                logger.removeFilter(log_filter)


def main(argv: list[str] | None = None) -> int:
    with quiet_startup():
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in ("fit", "validate", "test", "predict"):
            from reprzoo.cli.training import cli_main

            cli_main(argv)
            return 0
        if not argv or argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0 if argv else 2
        if argv[0] in ("--version", "-V"):
            from reprzoo import __version__

            print(f"reprzoo {__version__}")
            return 0
        _load_extra_commands()
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ReprzooError as err:
        if os.environ.get("REPRZOO_DEBUG"):
            raise
        print(f"reprzoo: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
