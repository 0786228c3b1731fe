"""The one atomic file write (``reprzoo.atomic``): concurrent writers, crashing writers, write-once caches, and the
zoo:NAME caches that every DDP rank resolves at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from reprzoo.atomic import atomic_open, atomic_write, atomic_write_bytes, atomic_write_once, atomic_write_text
from reprzoo.training.checkpointing import atomic_torch_save

BIG = 1 << 20  # large enough that a non-atomic write would be seen half done


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_text_and_bytes_helpers_replace_whole_files(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "w.pt", lambda tmp: torch.save({"x": 1}, tmp)) == tmp_path / "w.pt"
    assert torch.load(tmp_path / "w.pt", weights_only=True) == {"x": 1}
    assert leftovers(path.parent) == [] and leftovers(tmp_path) == []
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # the mode of a plain open(), not mkstemp's 0o600
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass


@pytest.mark.parametrize("how", ["open", "writer", "torch"])
def test_a_crash_inside_the_writer_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, how):
    path = tmp_path / "target"
    atomic_write_bytes(path, b"old")

    def crash(f_or_path):
        data = b"x" * BIG
        if hasattr(f_or_path, "write"):
            f_or_path.write(data)
        else:
            Path(f_or_path).write_bytes(data)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        if how == "open":
            with atomic_open(path, "wb") as f:
                crash(f)
        elif how == "writer":
            atomic_write(path, crash)
        else:
            atomic_torch_save({"x": _Unpicklable()}, path)
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("killed mid-write")


def test_two_threads_writing_one_target_never_leave_a_partial_file(tmp_path):
    path = tmp_path / "shared.bin"
    contents = {name: name.encode() * (BIG // 2) for name in ("a", "b")}
    errors: list[BaseException] = []
    seen: set[bytes] = set()
    stop = threading.Event()

    def writer(name: str) -> None:
        try:
            for _ in range(20):
                atomic_write_bytes(path, contents[name])
        except BaseException as err:  # reported below
            errors.append(err)

    def reader() -> None:
        while not stop.is_set():
            if path.exists():
                data = path.read_bytes()
                seen.add((data[:1], len(data)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in contents]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert not errors
    assert path.read_bytes() in contents.values()
    assert seen <= {(b"a", BIG // 2), (b"b", BIG // 2)}  # every read saw one writer's whole file
    assert leftovers(tmp_path) == []


def test_two_processes_writing_one_target_never_leave_a_partial_file(tmp_path):
    path = tmp_path / "shared.txt"
    script = textwrap.dedent(
        """
        import sys
        from reprzoo.atomic import atomic_write_text
        path, letter = sys.argv[1], sys.argv[2]
        for _ in range(30):
            atomic_write_text(path, letter * 200_000)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), letter]) for letter in "xy"]
    reads = 0
    while any(p.poll() is None for p in procs):
        if path.exists():
            text = path.read_text()
            assert text in ("x" * 200_000, "y" * 200_000)
            reads += 1
        time.sleep(0.001)
    assert [p.wait() for p in procs] == [0, 0]
    assert path.read_text() in ("x" * 200_000, "y" * 200_000)
    assert leftovers(tmp_path) == []


def test_write_once_writes_once_for_concurrent_callers_and_repairs_an_incomplete_file(tmp_path):
    path = tmp_path / "cache" / "model.bin"
    calls = []

    def slow_writer(tmp: Path) -> None:
        calls.append(1)
        time.sleep(0.2)  # the other callers arrive while this one writes
        tmp.write_bytes(b"complete")

    results, errors = [], []

    def resolve() -> None:
        try:
            results.append(atomic_write_once(path, slow_writer, is_complete=lambda p: p.read_bytes() == b"complete"))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [path] * 4 and len(calls) == 1
    assert path.read_bytes() == b"complete" and leftovers(path.parent) == []

    path.write_bytes(b"trunc")  # e.g. left by an older version of the cache
    atomic_write_once(path, slow_writer, is_complete=lambda p: p.read_bytes() == b"complete")
    assert path.read_bytes() == b"complete" and len(calls) == 2


@pytest.mark.parametrize("kind", ["teacher", "old_model"])
def test_zoo_names_resolve_concurrently_like_ddp_ranks(tmp_path, monkeypatch, kind):
    """Every rank of a DDP job resolves the same zoo:NAME at once: one file, complete, no error, no leftovers."""
    from reprzoo.zoo.compatible import old_model_checkpoint
    from reprzoo.zoo.repo import safetensors_complete, torch_file_complete
    from reprzoo.zoo.teachers import teacher_weights

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))

    def resolve():
        if kind == "teacher":
            return teacher_weights("simsiam-tinyresnet-digits")
        return old_model_checkpoint("simsiam-tinyresnet-digits")[0]

    results, errors = [], []

    def rank() -> None:
        try:
            results.append(resolve())
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=rank) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1
    path = results[0]
    assert (safetensors_complete if kind == "teacher" else torch_file_complete)(path)
    assert leftovers(path.parent) == [] and not list(path.parent.glob("*.partial"))
    mtime = path.stat().st_mtime_ns
    assert resolve() == path and path.stat().st_mtime_ns == mtime  # reused, not rewritten

    path.write_bytes(path.read_bytes()[:100])  # a damaged cache file is rewritten
    assert resolve() == path
    assert (safetensors_complete if kind == "teacher" else torch_file_complete)(path)


def test_completeness_checks_reject_truncated_files(tmp_path):
    from safetensors.torch import save_file

    from reprzoo.zoo.repo import safetensors_complete, torch_file_complete

    save_file({"w": torch.ones(100, 10)}, str(tmp_path / "a.safetensors"))
    torch.save({"w": torch.ones(100, 10)}, tmp_path / "a.pt")
    assert safetensors_complete(tmp_path / "a.safetensors") and torch_file_complete(tmp_path / "a.pt")
    for name in ("a.safetensors", "a.pt"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
    assert not safetensors_complete(tmp_path / "cut-a.safetensors")
    assert not torch_file_complete(tmp_path / "cut-a.pt")
    assert not safetensors_complete(tmp_path / "a.pt") and not torch_file_complete(tmp_path / "a.safetensors")
