"""Callbacks every run gets: metrics.json in the run directory, written atomically on rank zero."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import lightning as L
import torch


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MetricsJSON(L.Callback):
    """Keeps ``metrics.json`` in the run directory: the final value of every logged metric.

    Written at the end of fit, validate and test; later stages add to (and override) earlier values.
    """

    filename = "metrics.json"

    @staticmethod
    def run_dir(trainer: L.Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir)

    def _write(self, trainer: L.Trainer) -> None:
        path = self.run_dir(trainer) / self.filename  # trainer.log_dir broadcasts from rank 0: call it on every rank
        if not trainer.is_global_zero:
            return
        metrics = json.loads(path.read_text()) if path.exists() else {}
        for name, value in trainer.callback_metrics.items():
            value = float(value.item() if isinstance(value, torch.Tensor) else value)
            if math.isfinite(value):
                metrics[name] = value
        metrics["epoch"] = trainer.current_epoch
        metrics["global_step"] = trainer.global_step
        atomic_write_text(path, json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._write(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer)
