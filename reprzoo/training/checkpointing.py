"""Checkpoints that survive preemption: atomic writes, random state in the checkpoint, a checkpoint on SIGTERM or
SIGUSR1 before exiting, and the newest valid checkpoint of a run for ``--resume auto``.

Why each piece: a kill during ``torch.save`` must not destroy the last good checkpoint (write, fsync, rename);
dropout, masks and other in-step randomness must continue where they stopped for a resumed run to equal an
uninterrupted one (the loaders' order and views are handled by ``reprzoo.datamodules.resumable``); clusters send
SIGTERM (or SLURM's SIGUSR1) shortly before killing a job, and the work since the last periodic checkpoint should
not be lost.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import signal
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from reprzoo.atomic import atomic_open
from reprzoo.errors import ReprzooError

CHECKPOINT_GLOB = "*.ckpt"
#: Key of the digest :class:`AtomicCheckpointIO` stores in every checkpoint: the SHA-256 of everything else in it
#: (tensors byte for byte, plain values by type and repr). A checkpoint whose content no longer matches is refused.
DIGEST_KEY = "reprzoo_sha256"
#: Exit status of a run stopped by a signal after writing its checkpoint: 128 + the signal's number, as a shell
#: reports a process killed by it (143 for SIGTERM), so that a scheduler sees that the run did not finish.
PREEMPTED_EXIT_BASE = 128


class CorruptCheckpointError(ReprzooError):
    """A checkpoint that cannot be read safely: truncated, corrupt, not matching its digest, or not weights-only."""


def content_digest(obj: Any) -> str:
    """SHA-256 of a checkpoint's content, independent of how it was serialised: dicts by sorted key, tensors by
    dtype, shape and bytes, plain values by type and ``repr``. :data:`DIGEST_KEY` itself is left out."""
    h = hashlib.sha256()
    _digest_into(h, obj, top=True)
    return h.hexdigest()


def _digest_into(h: Any, obj: Any, top: bool = False) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.device.type != "meta" and t.numel():
            h.update(memoryview(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, dict):
        keys = sorted(((type(k).__name__, repr(k)), k) for k in obj if not (top and k == DIGEST_KEY))
        h.update(f"D{len(keys)}:".encode())
        for (kind, text), key in keys:
            h.update(f"{kind}:{text}=".encode())
            _digest_into(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for item in obj:
            _digest_into(h, item)
    else:
        h.update(f"V{type(obj).__name__}:{obj!r};".encode())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint") -> dict[str, Any]:
    """A Lightning checkpoint read the only way reprzoo reads one: a local file, ``torch.load(weights_only=True)``
    (tensors and plain values; nothing is unpickled), its content digest checked when it records one.

    Raises :class:`CorruptCheckpointError` (one line) for a URL, a file holding pickled objects, a truncated or
    corrupt file, or one whose content does not match its digest."""
    text = str(path)
    if "://" in text:
        raise CorruptCheckpointError(
            f"refusing {what} {text}: checkpoints are read from local files only (a downloaded one could unpickle "
            "code); download it yourself and pass the file"
        )
    path = Path(text).expanduser()
    try:
        if not path.is_file():
            raise CorruptCheckpointError(f"{what} {path} does not exist")
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CorruptCheckpointError(
            f"refusing {what} {path}: it holds pickled Python objects, not only tensors and plain values, and reprzoo "
            "loads checkpoints with weights_only=True; re-save it as a state dict"
        ) from None
    except CorruptCheckpointError:
        raise
    except OSError as err:  # a name too long for the file system, no permission
        raise CorruptCheckpointError(f"{what} {text[:80]} cannot be read ({err.strerror or err})") from None
    except Exception as err:  # truncated zip, bad record, EOF, a name too long: unreadable either way
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise CorruptCheckpointError(f"{what} {path} is truncated or corrupt ({reason})") from None
    if not isinstance(ckpt, dict):
        raise CorruptCheckpointError(f"{what} {path} is not a Lightning checkpoint (it holds a {type(ckpt).__name__})")
    recorded = ckpt.get(DIGEST_KEY)
    if recorded is not None and recorded != content_digest(ckpt):
        raise CorruptCheckpointError(
            f"{what} {path} does not match the digest recorded when it was written: it changed since (a corrupt "
            f"byte; refusing it). A checkpoint edited on purpose must be saved without its {DIGEST_KEY!r} entry"
        )
    return ckpt


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``: readers see the old
    file or the complete new one, never a partial write."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO for local paths with :func:`atomic_torch_save` (remote URLs go to Lightning's)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        checkpoint = {k: v for k, v in checkpoint.items() if k != DIGEST_KEY}
        atomic_torch_save({**checkpoint, DIGEST_KEY: content_digest(checkpoint)}, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Always weights-only and local (``--ckpt_path``, ``--resume``): see :func:`load_checkpoint`."""
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCheckpoint(L.Callback):
    """Stores the process's random states (torch, CUDA, numpy, Python) in every checkpoint and restores them on
    resume, so that in-step randomness (dropout, masks, sampled negatives) continues as in an uninterrupted run.
    The state saved is this rank's; each rank restores its own."""

    def state_dict(self) -> dict[str, Any]:
        return {"rank_states": {self._rank: _rng_state()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("rank_states", {})
        if self._rank in states:
            _set_rng_state(states[self._rank])

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._rank_value = trainer.global_rank

    @property
    def _rank(self) -> int:
        return getattr(self, "_rank_value", 0)


class ResumeLoaderPosition(L.Callback):
    """Puts a resumed run's training loader back at the epoch and batch stored in the checkpoint.

    Lightning restores a stateful loader only when the train loader is first built after the checkpoint is
    loaded; the base's ``configure_optimizers`` builds it earlier (``estimated_stepping_batches``), so the stored
    position would be dropped and the epoch would restart from its first batch. Applying it again is harmless.
    """

    def __init__(self):
        self._states: list[dict[str, Any]] = []

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        self._states = list((fit_loop.get("state_dict") or {}).get("combined_loader") or [])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        states, self._states = self._states, []
        loader = trainer.fit_loop._combined_loader
        if not states or loader is None:
            return
        stateful = [dl for dl in loader.flattened if callable(getattr(dl, "load_state_dict", None))]
        for dl, state in zip(stateful, states):
            dl.load_state_dict(state)


class CheckpointOnSignal(L.Callback):
    """On SIGTERM or SIGUSR1, stop at the end of the current training step and write ``last.ckpt`` into the run's
    checkpoint folder; restarting with ``--resume auto`` continues from it.

    Under SLURM with Lightning's auto-requeue, SIGUSR1 belongs to Lightning (it saves an ``hpc_ckpt`` and requeues
    the job), so this callback only handles SIGTERM there.
    """

    def __init__(self, filename: str = "last"):
        self.filename = filename
        self._requested = False
        self._signal = signal.SIGTERM
        self._previous: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or _slurm_requeue(trainer) or not hasattr(signal, "SIGUSR1"):
            return
        try:
            self._previous = signal.signal(signal.SIGUSR1, self._on_signal)
        except ValueError:  # not the main thread (e.g. a notebook executor): signals cannot be installed
            self._previous = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def _on_signal(self, signum, frame) -> None:
        self._requested = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._requested:  # SIGUSR1: stop the way Lightning stops on SIGTERM (the checkpoint is written below)
            self._requested = False
            self._signal = signal.SIGUSR1
            raise SIGTERMException()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Lightning raises SIGTERMException at the next step boundary after SIGTERM: the state is consistent there
        if not isinstance(exception, SIGTERMException):
            return
        if exception.code in (None, 0):  # a SystemExit: without a code the preempted process would exit with 0
            exception.code = preempted_exit_code(self._signal)
        if trainer.state.fn != "fit":
            return
        path = Path(checkpoint_dir(trainer)) / f"{self.filename}.ckpt"
        rank_zero_info(f"reprzoo: stopping on a signal; writing {path} at step {trainer.global_step}")
        trainer.save_checkpoint(path)


def preempted_exit_code(signum: int = signal.SIGTERM) -> int:
    """The exit status of a run stopped by ``signum`` (143 for SIGTERM): not 0, the run did not finish."""
    return PREEMPTED_EXIT_BASE + int(signum)


def _slurm_requeue(trainer: L.Trainer) -> bool:
    env = trainer._accelerator_connector.cluster_environment
    return isinstance(env, SLURMEnvironment) and getattr(env, "auto_requeue", False)


def checkpoint_dir(trainer: L.Trainer) -> str:
    callback = trainer.checkpoint_callback
    if callback is not None and callback.dirpath:
        return str(callback.dirpath)
    root = trainer.log_dir or trainer.default_root_dir
    return os.path.join(root, "checkpoints")


def checkpoint_status(path: str | os.PathLike, resumable: bool = True) -> tuple[int | None, str]:
    """``(global step, "")`` of a complete Lightning checkpoint (it loads weights-only, matches its digest, and holds
    weights and, if ``resumable``, loop state); ``(None, why not)`` for a truncated, corrupt or foreign file."""
    try:
        ckpt = load_checkpoint(path)
    except CorruptCheckpointError as err:
        return None, str(err)
    if "state_dict" not in ckpt:
        return None, f"{path} holds no state_dict: not a Lightning checkpoint"
    if resumable and "loops" not in ckpt:
        return None, f"{path} holds weights only (no loop state): it cannot be resumed"
    return int(ckpt.get("global_step", 0)), ""


def checkpoint_step(path: str | os.PathLike, resumable: bool = True) -> int | None:
    """The global step of a complete Lightning checkpoint (see :func:`checkpoint_status`); ``None`` for a
    truncated, corrupt or foreign file."""
    return checkpoint_status(path, resumable)[0]


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint file that was skipped because it cannot be read (the message names the file and why)."""


def _valid_step(path: Path, resumable: bool) -> int | None:
    """The step of ``path``, warning (naming the file) when it is skipped as unreadable: a corrupt checkpoint is
    never passed over silently."""
    step, why = checkpoint_status(path, resumable)
    if step is None:
        warnings.warn(f"reprzoo: skipping checkpoint {path}: {why}", CorruptCheckpointWarning, stacklevel=3)
    return step


def _checkpoint_files(pattern_root: Path, pattern: str) -> list[Path]:
    """The ``.ckpt`` files matching ``pattern``, without the hidden temporary files of interrupted atomic writes."""
    return [p for p in pattern_root.glob(pattern) if p.is_file() and not p.name.startswith(".")]


def newest_checkpoint(paths: Iterable[Path], resumable: bool = True) -> Path | None:
    """The complete Lightning checkpoint among ``paths`` with the highest global step (then the newest file);
    truncated, corrupt and foreign files are skipped, and so are weights-only ones if ``resumable``. ``None`` when
    there is none."""
    best: tuple[int, float, Path] | None = None
    for path in paths:
        step = _valid_step(path, resumable)
        if step is not None and (best is None or (step, path.stat().st_mtime) > best[:2]):
            best = (step, path.stat().st_mtime, path)
    return best[2] if best else None


def run_checkpoint_files(run_root: str | os.PathLike) -> dict[Path, list[Path]]:
    """Every run folder under ``run_root`` (``runs/<method>``: ``version_*``) that holds checkpoint files, with its
    ``checkpoints/*.ckpt`` (unchecked; the hidden temporary files of interrupted atomic writes left out)."""
    runs: dict[Path, list[Path]] = {}
    for path in sorted(_checkpoint_files(Path(run_root), f"*/checkpoints/{CHECKPOINT_GLOB}")):
        runs.setdefault(path.parent.parent, []).append(path)
    return runs


def newest_run_checkpoint(runs: dict[Path, list[Path]]) -> Path | None:
    """The checkpoint to resume among ``runs`` (run folder -> its checkpoint files): the newest run (by the
    modification time of its newest valid checkpoint), and in it the valid checkpoint of the highest global step
    (then the newest file). Truncated, corrupt, foreign and weights-only files are skipped. ``None`` when no run
    holds a valid checkpoint."""
    best: tuple[float, int, Path] | None = None
    for paths in runs.values():
        valid = [(step, path.stat().st_mtime, path) for path in paths if (step := _valid_step(path, True)) is not None]
        if not valid:
            continue
        newest = max(mtime for _, mtime, _ in valid)
        step, _, chosen = max(valid, key=lambda v: v[:2])
        if best is None or (newest, step) > best[:2]:
            best = (newest, step, chosen)
    return best[2] if best else None


def find_resume_checkpoint(run_root: str | os.PathLike, accept: Callable[[Path], bool] | None = None) -> Path | None:
    """The checkpoint ``--resume auto`` continues under ``run_root`` (``runs/<method>``: every
    ``version_*/checkpoints/*.ckpt``): among the run folders that ``accept`` (all when ``None``), the newest run by
    modification time, and in it the valid checkpoint of the highest global step; corrupt or partial files are
    skipped. ``None`` when there is none.

    A run with more steps is not preferred over a newer one: an older, longer run (a finished demo, another
    recipe) is not the run a rerun of an interrupted command should continue."""
    runs = run_checkpoint_files(run_root)
    if accept is not None:
        runs = {run: paths for run, paths in runs.items() if accept(run)}
    return newest_run_checkpoint(runs)


class CheckpointNotFoundError(ReprzooError, FileNotFoundError):
    """A run folder or checkpoint that does not exist or holds no checkpoint (also a ``FileNotFoundError``)."""


def find_run_checkpoint(path: str | os.PathLike, what: str = "") -> tuple[Path, Path, Path | None]:
    """``(run_dir, checkpoint, config.yaml or None)`` of a run folder (``runs/<method>/version_N``) or of a
    ``.ckpt`` file (inside the run's ``checkpoints/`` folder, or anywhere).

    A run folder gives its ``checkpoints/last.ckpt``, else its checkpoint of the highest global step that loads;
    the run folder of a file is the parent of its ``checkpoints/`` folder, else its own folder. ``what`` names the
    argument in error messages (``"old_model"``); the error is a :class:`CheckpointNotFoundError`.
    """
    label = f"{what} {path}" if what else str(path)
    path = Path(path).expanduser()
    try:
        path.stat()
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:  # a name too long for the file system, an embedded NUL
        raise CheckpointNotFoundError(f"{label[:80]}... is not a usable path ({getattr(err, 'strerror', None) or err})") from None
    if path.is_file():
        ckpt = path
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    elif path.is_dir():
        run_dir = path
        candidates = _checkpoint_files(path / "checkpoints", CHECKPOINT_GLOB) if (path / "checkpoints").is_dir() else []
        if not candidates:
            raise CheckpointNotFoundError(f"{label} has no checkpoints/*.ckpt: is it a finished `reprzoo fit` run?")
        last = path / "checkpoints" / "last.ckpt"
        ckpt = last if last.is_file() else newest_checkpoint(candidates, resumable=False)
        if ckpt is None:
            names = ", ".join(sorted(p.name for p in candidates))
            raise CheckpointNotFoundError(
                f"{label}: none of its checkpoints ({names}) loads as a Lightning checkpoint; give one as a .ckpt file"
            )
    else:
        raise CheckpointNotFoundError(f"{label} does not exist: give a run directory (runs/<method>/version_N) or a .ckpt file")
    config = run_dir / "config.yaml"
    return run_dir, ckpt, config if config.is_file() else None
