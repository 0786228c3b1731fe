"""``reprzoo fit|validate|test|predict``: a thin LightningCLI over every registered method and datamodule."""

from __future__ import annotations

import inspect
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

import reprzoo.datamodules as datamodules
from reprzoo.datamodules import EmbeddingDataModule
from reprzoo.errors import ReprzooError, UnknownNameError
from reprzoo.lightning_modules import METHODS, EmbeddingModule
from reprzoo.training.callbacks import EmbeddingPlot, MetricsJSON
from reprzoo.training.checkpointing import (
    AtomicCheckpointIO,
    CheckpointOnSignal,
    RandomStateCheckpoint,
    ResumeLoaderPosition,
    checkpoint_step,
    find_resume_checkpoint,
)
from reprzoo.zoo.recipes import resolve_recipe

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


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
                    EmbeddingPlot(),
                ],
                **({"precision": precision} if (precision := default_precision()) else {}),
            },
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
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

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.trainer.get("logger")
        if logger and not isinstance(logger, bool) and getattr(logger, "init_args", None) is not None:
            if logger.init_args.get("name") == "":  # one folder per method: runs/simsiam/version_0
                logger.init_args.name = config.model.class_path.rsplit(".", 1)[-1].lower()
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
        if self.subcommand == "fit" and config.get("resume"):
            self._resume(config, logger)

    def _resume(self, config, logger) -> None:
        """``--resume auto|PATH``: set ``ckpt_path`` and keep logging into the resumed run's version folder."""
        if config.resume != "auto":
            if checkpoint_step(config.resume) is None:
                raise ReprzooError(
                    f"--resume {config.resume}: not a complete Lightning checkpoint (missing, truncated or corrupt)"
                )
            config.ckpt_path = config.resume
            return
        if not logger or isinstance(logger, bool) or getattr(logger, "init_args", None) is None:
            raise ReprzooError("--resume auto needs the default TensorBoard logger (it finds runs under save_dir/name)")
        root = Path(logger.init_args.get("save_dir") or "runs") / (logger.init_args.get("name") or "")
        found = find_resume_checkpoint(root)
        if found is None:
            print(f"reprzoo: --resume auto found no valid checkpoint under {root}; starting a new run", file=sys.stderr)
            return
        config.ckpt_path = str(found)
        logger.init_args.version = found.parent.parent.name  # runs/<method>/version_N/checkpoints/last.ckpt
        print(f"reprzoo: resuming from {found}", file=sys.stderr)

    def instantiate_trainer(self, **kwargs: Any):
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        configured = config.trainer.get("callbacks") or []  # the user's --trainer.callbacks (kwargs would replace them)
        configured = list(configured) if isinstance(configured, (list, tuple)) else [configured]
        callbacks = [
            *configured,
            *kwargs.pop("callbacks", []),
            MetricsJSON(),
            RandomStateCheckpoint(),
            ResumeLoaderPosition(),
            CheckpointOnSignal(),
        ]
        callbacks += periodic_checkpoints(
            config.get("checkpoint_every_n_steps") or 0, config.get("checkpoint_every_minutes") or 0
        )
        if config.trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(RichProgressBar())
        trainer = super().instantiate_trainer(callbacks=callbacks, **kwargs)
        use_atomic_checkpoint_io(trainer)
        return trainer


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
    if args is not None:
        args = _check_class_names(args)
    try:
        return ReprzooCLI(args=args, run=run)
    except (FileNotFoundError, ValueError, MisconfigurationException) as err:
        if isinstance(err, ReprzooError):
            raise
        raise ReprzooError(str(err)) from err
