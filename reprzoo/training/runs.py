"""A run folder from Python: what ``reprzoo fit`` leaves behind, for a model trained with a ``lightning.Trainer``
in a script or notebook, so that ``reprzoo.push(folder, name)`` publishes it like any CLI run.

Layout (the one :mod:`reprzoo.zoo.export` reads)::

    config.yaml              seed, trainer (max_epochs), model (class path + its hyperparameters), data (class path
                             + init args): the resolved config ``reprzoo fit`` saves
    checkpoints/last.ckpt    the Trainer's checkpoint
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from reprzoo.atomic import atomic_write_text
from reprzoo.errors import ReprzooError


def data_config(datamodule: Any, init_args: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data:`` section for a datamodule instance built with ``init_args``."""
    return {"class_path": f"{type(datamodule).__module__}.{type(datamodule).__name__}", "init_args": dict(init_args)}


def save_run(folder: str | Path, trainer: Any, model: Any, data: Mapping[str, Any], seed: int = 0) -> Path:
    """Write ``folder`` (new or empty) as ``reprzoo fit`` would: ``config.yaml`` and ``checkpoints/last.ckpt``.

    ``data`` is the config's data section (``{"class_path": ..., "init_args": {...}}``: a recipe's, or
    :func:`data_config`); the model section is the method's class under ``reprzoo.lightning_modules`` with its
    saved hyperparameters."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ReprzooError(f"{folder} is not empty: save_run writes a new run folder (choose another path)")
    if "class_path" not in data:
        raise ReprzooError("save_run needs the data section as {'class_path': ..., 'init_args': {...}}")
    hparams = {k: v for k, v in model.hparams.items() if not k.startswith("_")}
    config = {
        "seed_everything": seed,
        "trainer": {"max_epochs": trainer.max_epochs},
        "model": {"class_path": f"reprzoo.lightning_modules.{type(model).__name__}", "init_args": hparams},
        "data": dict(data),
    }
    folder.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(folder / "checkpoints" / "last.ckpt")  # Lightning writes it whole, then config last
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(json.loads(json.dumps(config, default=list))))
    return folder


__all__ = ["data_config", "save_run"]
