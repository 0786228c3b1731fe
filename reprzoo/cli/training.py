"""``reprzoo fit|validate|test|predict``: a thin LightningCLI over every registered method and datamodule."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from argparse import ArgumentError
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Optional

import lightning as L
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

import reprzoo.datamodules as datamodules
from reprzoo.datamodules import EmbeddingDataModule
from reprzoo.errors import ReprzooError, UnknownNameError
from reprzoo.lightning_modules import METHODS, EmbeddingModule
from reprzoo.training.callbacks import DiscardEmptyRun, EmbeddingPlot, MetricsJSON, ValidateAtFitEnd
from reprzoo.training.checkpointing import (
    AtomicCheckpointIO,
    CheckpointOnSignal,
    RandomStateCheckpoint,
    ResumeLoaderPosition,
    checkpoint_status,
    load_checkpoint,
    newest_run_checkpoint,
    preempted_exit_code,
    run_checkpoint_files,
)
from reprzoo.zoo.recipes import resolve_recipe

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

#: Epochs of a fit that sets none of max_epochs, max_steps and max_time (no recipe): Lightning's own default is 1000.
DEFAULT_MAX_EPOCHS = 100

#: ``REPRZOO_SMOKE=1``: every run the CLI builds is a smoke run, which checks that a command runs, not what it learns
#: (tests/test_readme.py runs the README's commands so): these trainer settings, and no t-SNE plot.
SMOKE_ENV = "REPRZOO_SMOKE"
SMOKE_TRAINER = {
    "max_epochs": 1,
    "limit_train_batches": 1,
    "limit_val_batches": 1,
    "limit_test_batches": 1,
    "limit_predict_batches": 1,
    "num_sanity_val_steps": 0,
}


def smoke_run() -> bool:
    """Whether ``REPRZOO_SMOKE`` asks for smoke runs (set and not ``0``/``false``/``no``/empty)."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


#: Config keys (dotted, and everything under them) that do not tell runs apart for ``--resume auto``: the resume
#: options themselves, the log version it sets, and what observes or saves a run rather than what it trains.
RESUME_IGNORED_KEYS = (
    "resume",
    "ckpt_path",
    "config",
    "trainer.logger.init_args.version",
    "trainer.callbacks",
    "trainer.enable_progress_bar",
    "checkpoint_every_n_steps",
    "checkpoint_every_minutes",
)


def datamodule_names() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(datamodules).items()
        if inspect.isclass(obj) and issubclass(obj, EmbeddingDataModule) and not inspect.isabstract(obj)
    }


def _check_class_names(args: list[str]) -> list[str]:
    """Fail early, with near matches, on ``--model NAME`` / ``--data NAME`` that name no registered class; resolve
    ``--config NAME`` to a shipped recipe when no such file exists."""
    known = {"--model": METHODS, "--data": datamodule_names()}
    out = list(args)
    for i, arg in enumerate(args):
        key, _, value = arg.partition("=")
        if not value and i + 1 < len(args) and key == arg:
            value = args[i + 1]
        if key in known and value and not value.startswith("-") and "." not in value and not value.endswith((".yaml", ".yml")):
            if value not in known[key]:
                raise UnknownNameError("method" if key == "--model" else "datamodule", value, known[key])
        if key == "--config" and value and not Path(value).exists():
            resolved = str(resolve_recipe(value))
            out[i] = f"--config={resolved}" if "=" in arg else arg
            if "=" not in arg:
                out[i + 1] = resolved
    return out


def default_precision() -> str | None:
    """``bf16-mixed`` where a CUDA device computes in bfloat16 (Ampere and later): about twice the convolution
    throughput of float32 with float32's exponent range, so no loss scaling. ``None`` (Lightning's 32-bit) elsewhere."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return None


class ReprzooCLI(LightningCLI):
    """LightningCLI in subclass mode (``--model SimSiam --data Digits``) with the zoo's defaults:
    TensorBoard logs under ``runs/<method>/version_N``, a rich progress bar, the last checkpoint kept,
    ``metrics.json`` written in the run directory, and bf16 mixed precision on GPUs that support it
    (``--trainer.precision 32-true`` turns it off)."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any):
        # parse errors raise (ArgumentError) instead of printing the usage: parse_arguments makes them one line
        # and no abbreviations: a mistyped --trainer.max_epoch must not quietly set max_epochs
        kwargs["parser_kwargs"] = {"exit_on_error": False, "allow_abbrev": False, **(kwargs.get("parser_kwargs") or {})}
        super().__init__(
            EmbeddingModule,
            EmbeddingDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs", "name": ""},
                },
                "callbacks": [
                    LearningRateMonitor(logging_interval="epoch"),
                    ModelCheckpoint(save_last=True),
                    *([] if smoke_run() else [EmbeddingPlot()]),  # t-SNE takes longer than a smoke run
                ],
                **({"precision": precision} if (precision := default_precision()) else {}),
            },
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        max_epochs = parser._option_string_actions.get("--trainer.max_epochs")
        if max_epochs is not None:  # the trainer's docstring states Lightning's default (1000)
            max_epochs.help = (
                f"{max_epochs.help or ''} reprzoo: {DEFAULT_MAX_EPOCHS} when none of max_epochs, max_steps and "
                "max_time is set (a run without a recipe); recipes set their own."
            ).strip()
        parser.add_argument(
            "--resume",
            type=Optional[str],
            default=None,
            help="fit only: 'auto' continues from the newest valid checkpoint of this method's runs (same run "
            "folder), or starts fresh when there is none; a path resumes from that checkpoint",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=0,
            help="also write last.ckpt every N training steps (0: only at epoch ends and on SIGTERM/SIGUSR1)",
        )
        parser.add_argument(
            "--checkpoint_every_minutes",
            type=float,
            default=0.0,
            help="also write last.ckpt every M minutes of training (0: off)",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            parsers = [parser, *getattr(self, "_subcommand_parsers", {}).values()]
            options = {o for p in parsers for o in p._option_string_actions if o.startswith("--") and "." not in o}
            raise parse_error(str(err), options) from err

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path`` is read weights-only from a local file before anything else reads it: a URL, a file
        holding pickled objects or a corrupt file is refused with one line (Lightning would unpickle a URL's)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):  # Lightning's names: its own files
            load_checkpoint(ckpt_path, what="--ckpt_path")
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.trainer.get("logger")
        if logger and not isinstance(logger, bool) and getattr(logger, "init_args", None) is not None:
            if logger.init_args.get("name") == "":  # one folder per method: runs/simsiam/version_0
                logger.init_args.name = config.model.class_path.rsplit(".", 1)[-1].lower()
            root_dir = config.trainer.get("default_root_dir")
            if root_dir and logger.init_args.get("save_dir") == "runs":  # runs go under --trainer.default_root_dir
                logger.init_args.save_dir = str(root_dir)
        init_args = config.model.get("init_args") if config.get("model") else None
        if init_args is not None and isinstance(init_args.get("teacher_weights"), str):  # zoo:NAME -> a local file
            from reprzoo.zoo.teachers import resolve_teacher_weights

            backbone = init_args.get("teacher_backbone")
            init_args.teacher_weights = resolve_teacher_weights(init_args.teacher_weights, backbone)
        if init_args is not None and isinstance(init_args.get("old_model"), str):  # zoo:NAME -> a local checkpoint
            from reprzoo.zoo.compatible import resolve_old_model

            init_args.old_model, old_name = resolve_old_model(init_args.old_model)
            if old_name and not init_args.get("old_model_name"):
                init_args.old_model_name = old_name  # lineage: the successor's compatible_with
        fill_model_args_from_data(config)  # a text method's vocab_size from its datamodule's vocabulary
        if self.subcommand in (None, "fit"):  # None: run=False, the caller fits (the demo, finetune)
            self._default_max_epochs(config)
        if smoke_run():
            for key, value in SMOKE_TRAINER.items():
                config.trainer[key] = value
            print(
                f"reprzoo: {SMOKE_ENV}={os.environ[SMOKE_ENV]}: a smoke run (1 epoch, 1 batch per loader, no t-SNE "
                "plot): it checks that the command runs, not what it learns",
                file=sys.stderr,
            )
        warn_cpu_processes(config.trainer)
        if self.subcommand == "fit" and config.get("resume"):
            self._resume(config, logger)

    def before_fit(self) -> None:
        """A CPU image run whose training step cannot fit in memory fails here with one line (the estimate, the
        memory available, what to change) instead of being killed by the kernel mid-step."""
        from reprzoo.training.memory import check_training_memory

        check_training_memory(self.model, self.datamodule, self.trainer)

    def _default_max_epochs(self, config) -> None:
        """A fit without a recipe trains :data:`DEFAULT_MAX_EPOCHS` epochs, not Lightning's 1000, and says so."""
        trainer = config.trainer
        if trainer.get("fast_dev_run") or trainer.get("max_epochs") is not None or trainer.get("max_time") is not None:
            return
        if trainer.get("max_steps") not in (None, -1):
            return
        trainer.max_epochs = DEFAULT_MAX_EPOCHS
        print(
            f"reprzoo: no trainer.max_epochs, max_steps or max_time set (no recipe): training for {DEFAULT_MAX_EPOCHS} "
            "epochs; set --trainer.max_epochs N to change it",
            file=sys.stderr,
        )

    def _resume(self, config, logger) -> None:
        """``--resume auto|PATH``: set ``ckpt_path`` and keep logging into the resumed run's version folder.

        ``auto`` continues the run this command started: among ``save_dir/<method>/version_*`` the runs whose
        ``config.yaml`` is this command's resolved config (apart from :data:`RESUME_IGNORED_KEYS`), the newest by
        modification time. Runs with another config (a finished demo, other epochs) are never touched; when none
        matches, a new run starts. Either way one line on stderr says what was chosen and why."""
        if config.resume != "auto":
            step, why = checkpoint_status(config.resume)
            if step is None:
                raise ReprzooError(f"--resume {config.resume}: not a resumable Lightning checkpoint: {why}")
            config.ckpt_path = config.resume
            return
        if not logger or isinstance(logger, bool) or getattr(logger, "init_args", None) is None:
            raise ReprzooError("--resume auto needs the default TensorBoard logger (it finds runs under save_dir/name)")
        root = Path(logger.init_args.get("save_dir") or "runs") / (logger.init_args.get("name") or "")
        runs = run_checkpoint_files(root)
        if not runs:
            print(f"reprzoo: --resume auto: no checkpoint under {root}; starting a new run", file=sys.stderr)
            return
        wanted = run_identity(yaml.safe_load(self._parser(self.subcommand).dump(config, skip_none=False, skip_validation=True)))
        matching, differences = {}, {}
        for run, paths in runs.items():
            saved = _saved_config(run)
            diff = ["config.yaml missing or unreadable"] if saved is None else config_differences(wanted, run_identity(saved))
            if diff:
                differences[run] = diff
            else:
                matching[run] = paths
        found = newest_run_checkpoint(matching)  # warns, naming each file, about the corrupt checkpoints it skips
        if found is None:
            if matching:  # the run to continue is there but unreadable: starting over would hide that and exit 0
                files = [str(p) for paths in matching.values() for p in paths]
                shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                raise ReprzooError(
                    f"--resume auto: the {len(matching)} run(s) with this command's config under {root} hold no valid "
                    f"checkpoint ({shown}: corrupt, truncated or not resumable); delete them to start over, or pass "
                    "--resume PATH"
                )
            else:
                newest = max(differences, key=lambda run: max(p.stat().st_mtime for p in runs[run]))
                diff = differences[newest]
                shown = ", ".join(diff[:3]) + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")
                why = f"none of the {len(runs)} run(s) there has this command's config (the newest, {newest.name}, differs in {shown})"
            print(f"reprzoo: --resume auto: {why}; starting a new run under {root}", file=sys.stderr)
            return
        run_dir = found.parent.parent  # runs/<method>/version_N/checkpoints/last.ckpt
        config.ckpt_path = str(found)
        logger.init_args.version = run_dir.name
        others = f", the newest of {len(matching)}" if len(matching) > 1 else ""
        print(
            f"reprzoo: --resume auto: resuming from {found}: {run_dir.name} is the "
            f"run with this command's config{others}; {len(differences)} other run(s) differ and are left alone",
            file=sys.stderr,
        )

    def instantiate_trainer(self, **kwargs: Any):
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        configured = config.trainer.get("callbacks") or []  # the user's --trainer.callbacks (kwargs would replace them)
        configured = list(configured) if isinstance(configured, (list, tuple)) else [configured]
        callbacks = [
            *configured,
            *kwargs.pop("callbacks", []),
            ValidateAtFitEnd(),
            MetricsJSON(),
            RandomStateCheckpoint(),
            ResumeLoaderPosition(),
            CheckpointOnSignal(),
            DiscardEmptyRun(),
            RefuseEmptyTraining(),
        ]
        callbacks += periodic_checkpoints(
            config.get("checkpoint_every_n_steps") or 0, config.get("checkpoint_every_minutes") or 0
        )
        if config.trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(RichProgressBar())
        trainer = super().instantiate_trainer(callbacks=callbacks, **kwargs)
        use_atomic_checkpoint_io(trainer)
        return trainer


def warn_cpu_processes(trainer: Any) -> int:
    """One line on stderr when a run asks for several devices (or nodes) on the CPU: Lightning then starts one
    process per device (DDP over gloo), each training on its share of the data and of the cores, which is rarely
    what ``--trainer.devices 4`` on a machine without a GPU was meant to do. Returns the number of processes."""
    import torch

    accelerator = trainer.get("accelerator") or "auto"
    if not isinstance(accelerator, str):
        return 1
    gpu = torch.cuda.is_available() or (torch.backends.mps.is_available() and torch.backends.mps.is_built())
    if accelerator != "cpu" and not (accelerator == "auto" and not gpu):
        return 1
    devices = trainer.get("devices")
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        devices = len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, (list, tuple)):
        devices = len(devices)
    processes = (devices if isinstance(devices, int) and devices > 0 else 1) * max(int(trainer.get("num_nodes") or 1), 1)
    if processes > 1:
        print(
            f"reprzoo: warning: {processes} devices on the CPU start {processes} training processes (DDP over gloo), "
            "each on its share of the data and of the cores; --trainer.devices 1 trains in one process",
            file=sys.stderr,
        )
    return processes


class RefuseEmptyTraining(L.Callback):
    """Fail before training when a training loader yields no batch (a batch size above the training set's size:
    the loaders drop the last incomplete batch), instead of fitting nothing and exiting with status 0."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.limit_train_batches == 0:  # asked for: no training
            return
        loop = trainer.fit_loop
        if loop._combined_loader is None:
            loop.setup_data()
        loader = loop._combined_loader
        for dl in loader.flattened if loader is not None else []:
            try:
                batches = len(dl)
            except TypeError:  # an iterable dataset: its length is unknown
                continue
            if batches == 0:
                dataset = getattr(dl, "dataset", None)
                size = len(dataset) if hasattr(dataset, "__len__") else "?"
                raise ReprzooError(
                    f"the training set has {size} samples (on this rank) but the batch size is "
                    f"{getattr(dl, 'batch_size', '?')}: training loaders drop the last incomplete batch, so no step "
                    f"would run; set --data.batch_size to at most {size}"
                )


def parse_error(message: str, options: Iterable[str] = ()) -> ReprzooError:
    """A jsonargparse error as one line: an unknown key (a mistyped option, or a recipe key no class accepts) is
    named with its near matches (:class:`UnknownNameError`; ``options``: the command's top-level options);
    anything else is the message on one line."""
    text = " ".join(message.split())
    unknown = _unknown_key(text)
    if unknown is not None:
        where, key, known = unknown
        if known:
            return UnknownNameError(f"{where} argument", key, known)
        if options and key.startswith("--"):  # a top-level option: near matches among the command's own options
            return UnknownNameError("option", key, options)
        if options and "." not in key:  # a top-level recipe key: the same, without the dashes
            return UnknownNameError("key", key, {o.lstrip("-") for o in options})
    return ReprzooError(one_line(message))


def one_line(message: str) -> str:
    """A jsonargparse (or instantiation) error on one line. A union's report (every subtype tried, the value
    repeated) keeps what failed for the subtypes other than ``None`` and a short given value."""
    lines = [line.strip() for line in message.strip().splitlines()]
    if "Errors:" in lines:
        head = lines[0] if lines[0].startswith("Parser key") else ""
        start = lines.index("Errors:") + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("Given value")), len(lines))
        items: list[list[str]] = []
        for line in lines[start:end]:
            if line.startswith("- "):
                items.append([line[2:]])
            elif items:
                items[-1].append(line)
        errors = [" ".join(item) for item in items if "NoneType" not in " ".join(item)]
        given = next((line for line in lines[end:] if line.startswith("Given value:")), "")
        if errors:
            tail = f" ({given[len('Given value:') :].strip()!r} given)" if given and len(given) < 80 else ""
            return " ".join([head, "; ".join(errors)]).strip() + tail
    return " ".join(" ".join(lines).split())


def _unknown_key(text: str) -> tuple[str, str, list[str]] | None:
    """``(where, key, known keys there)`` of the unknown key a jsonargparse message names, or ``None``."""
    option = re.search(r"unrecognized arguments: --?([\w.\-]+)", text, re.IGNORECASE)  # on the command line
    recipe_key = re.search(r"does not accept option '([\w.\-]+)'", text)  # in a recipe, outside a class
    if option or recipe_key:  # a key of no class: --trainer.max_epoch, --checkpoint_every_n_step, seed_everythin:
        dotted = (option or recipe_key).group(1)
        section, _, rest = dotted.partition(".")
        if section == "trainer" and rest:
            return "trainer", rest.removeprefix("init_args."), _init_arguments(L.Trainer)
        return "option", f"--{dotted}" if option else dotted, []
    class_path = re.search(r"class_path '([\w.]+)'", text)  # a key of a model or data class: command line or recipe
    key = re.search(r"Option '([\w.]+)' is not accepted|No action for key \"([\w.]+)\"|Key '([\w.]+)' is not expected", text)
    if class_path and key:
        name = next(group for group in key.groups() if group).removeprefix("init_args.")
        return _class_name(class_path.group(1)), name, _init_arguments(class_path.group(1))
    return None


def _class_name(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def _init_arguments(cls: type | str) -> list[str]:
    """The keyword arguments a class accepts, through the ``**kwargs`` it passes to its bases (as jsonargparse
    resolves them, near enough for suggestions)."""
    if isinstance(cls, str):
        module, _, name = cls.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            return []
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [
            p.name
            for p in parameters
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in names
        ]
    return names


def _saved_config(run_dir: Path) -> dict | None:
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, dict) else None


def run_identity(config: dict) -> dict[str, Any]:
    """A run's config flattened to dotted keys, without :data:`RESUME_IGNORED_KEYS`."""
    flat: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if any(prefix == k or prefix.startswith(k + ".") for k in RESUME_IGNORED_KEYS):
            return
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = value

    walk(config, "")
    return flat


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two :func:`run_identity` configs."""
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def periodic_checkpoints(every_n_steps: int, every_minutes: float) -> list[ModelCheckpoint]:
    """Extra ``last.ckpt`` writers (Lightning allows one trigger per ModelCheckpoint): by steps, by wall time."""
    out = []
    if every_n_steps > 0:
        out.append(ModelCheckpoint(save_last=True, save_top_k=0, every_n_train_steps=every_n_steps))
    if every_minutes > 0:
        out.append(ModelCheckpoint(save_last=True, save_top_k=0, train_time_interval=timedelta(minutes=every_minutes)))
    return out


def use_atomic_checkpoint_io(trainer) -> None:
    """Checkpoints written by rename-after-fsync, unless the run configured its own checkpoint IO plugin."""
    strategy = trainer.strategy
    if type(getattr(strategy, "_checkpoint_io", None)) in (type(None), TorchCheckpointIO):
        strategy.checkpoint_io = AtomicCheckpointIO()


def cli_main(args: list[str] | None = None, run: bool = True) -> ReprzooCLI:
    """Entry point for tests and scripts: ``cli_main(["fit", "--config", "digits/simsiam"])``."""
    from reprzoo.cli.main import quiet_startup

    if args is not None:
        args = _check_class_names(args)
    try:
        with quiet_startup():  # library noise a user can do nothing about (also when called in-process)
            return ReprzooCLI(args=args, run=run)
    except SIGTERMException as err:  # a SystemExit: without a code a preempted run would exit with status 0
        if err.code in (None, 0):
            err.code = preempted_exit_code()
        raise
    except ArgumentError as err:  # outside parse_arguments: e.g. the hyperparameters of a --ckpt_path checkpoint
        raise parse_error(str(err)) from err
    except (FileNotFoundError, ValueError, MisconfigurationException) as err:
        if isinstance(err, ReprzooError):
            raise
        raise ReprzooError(one_line(str(err))) from err


def fill_model_args_from_data(config) -> None:
    """Init args a method takes from its data (``datamodule.model_args()``: a text vocabulary's size) that the
    method accepts and the command left unset. The datamodule is built once here to read them; what it prepares
    (a tokenised corpus, a vocabulary) is cached, so the trainer's own instance does not redo it."""
    import importlib

    data, model = config.get("data"), config.get("model")
    if not data or not model or not getattr(data, "class_path", None) or not getattr(model, "class_path", None):
        return
    module_name, _, class_name = data.class_path.rpartition(".")
    data_cls = getattr(importlib.import_module(module_name), class_name, None)
    if data_cls is None or not hasattr(data_cls, "model_args"):
        return
    init_args = model.get("init_args")
    module_name, _, class_name = model.class_path.rpartition(".")
    model_cls = getattr(importlib.import_module(module_name), class_name)
    accepted = _init_arguments(model_cls)
    missing = [k for k in data_cls.model_args_keys if k in accepted and (init_args is None or init_args.get(k) is None)]
    if not missing:
        return
    if init_args is None:
        from jsonargparse import Namespace

        init_args = model.init_args = Namespace()
    datamodule = data_cls(**dict(data.get("init_args") or {}))
    values = datamodule.model_args()
    for key in missing:
        init_args[key] = values[key]
