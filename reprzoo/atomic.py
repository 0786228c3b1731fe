"""Atomic file writes, the one copy every layer uses (checkpoints, metrics.json, hub refs, cached zoo files).

A write goes to a fresh temporary file in the target's folder (a unique name, so concurrent writers, e.g. every DDP
rank resolving the same ``zoo:NAME``, never share one), is fsynced, renamed over the target with ``os.replace``
(atomic on one filesystem) and the folder is fsynced so that the rename itself reaches the disk. Readers see the
old file or the complete new one, never a partial write; a writer that raises leaves the old file as it was and
removes its temporary file. Temporary files are named ``.<name>.<random>.tmp``: hidden, and skipped by the
checkpoint finders.

Only the standard library is imported here (and ``filelock``, on first use of :func:`atomic_write_once`), so that
every layer can import this module without a cycle.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

TMP_SUFFIX = ".tmp"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder: the renames and creations inside it reach the disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened, and renames there need no fsync of the folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_path(path: str | os.PathLike) -> tuple[Path, int]:
    """A new, empty, uniquely named file next to ``path`` and an open write descriptor on it.

    Like ``tempfile.mkstemp``, but created with the permissions an ordinary ``open`` would give (0o666 less the
    umask) rather than 0o600: the renamed file is a cache or a checkpoint others may read.
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name next to {path}")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """``with atomic_open(path, "w") as f: f.write(...)``: a file object on a temporary file that replaces ``path``
    when the block ends without an exception (then fsynced, file and folder); on an exception the temporary file
    is removed and ``path`` is untouched."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = temporary_path(path)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp)`` to write a temporary file next to ``path``, then fsync it and rename it over ``path``.

    For writers that take a file name (``safetensors.torch.save_file``, ``torch.save``, ``shutil.copyfile``); those
    that take a file object can use :func:`atomic_open`. Returns ``path``. If ``writer`` raises, ``path`` keeps its
    old content and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = temporary_path(path)
    os.close(fd)
    try:
        writer(tmp)
        fd = os.open(tmp, os.O_RDONLY)  # fsync through any descriptor flushes the file's data
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def atomic_write_once(
    path: str | os.PathLike, writer: Callable[[Path], object], is_complete: Callable[[Path], bool] | None = None
) -> Path:
    """Create the cache file ``path`` with :func:`atomic_write` unless it is there already, safe when several
    processes ask at once (every DDP rank resolving the same ``zoo:NAME``).

    A file lock next to it (``.<name>.lock``) lets one process write while the others wait, then reuse its file;
    an existing file is reused when ``is_complete(path)`` holds (default: it exists) and rewritten otherwise.
    """
    from filelock import FileLock

    path = Path(path)
    complete = is_complete or (lambda p: True)
    if path.is_file() and complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if not (path.is_file() and complete(path)):  # another process may have written it while this one waited
            atomic_write(path, writer)
    return path
