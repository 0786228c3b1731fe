"""The local hub: a directory of model repositories with immutable revisions, needing no server.

Layout under the hub root (``$REPRZOO_HOME/hub``, default ``~/.cache/reprzoo/hub``; the shipped models use the
same layout, read-only, inside the package)::

    <name>/refs/main                   the id of the latest revision (one line)
    <name>/revisions/<id>/             config.json, model.safetensors, README.md, commit.json
    .staging/                          pushes in progress, never read

A push writes and fsyncs every file in ``.staging``, renames the finished folder to ``revisions/<id>`` (one atomic
rename on the same filesystem) and only then moves ``refs/main``, also by rename. A crash at any point leaves the
previous revision current and nothing half-written under ``revisions/``. Revision ids are hashes of the content,
the parent and the time, like git commits; a revision folder is never rewritten.

Concurrent pushes to one name are serialised by a file lock (``<name>/.push.lock``) held from reading the parent to
moving ``refs/main``: both revisions land, the later one's parent is the earlier one, none is orphaned.

Reading a revision verifies it: the revision folder and its files must be plain files and folders inside the hub
(no symbolic link out of it), and every file must match the size and SHA-256 its ``commit.json`` records.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from reprzoo.atomic import atomic_write, atomic_write_text, fsync_dir
from reprzoo.errors import ReprzooError
from reprzoo.zoo.names import check_name, check_revision
from reprzoo.zoo.repo import INTEROP_FILE, REPO_FILES, IntegrityError, read_config, repo_files, sha256_file

COMMIT_FILE = "commit.json"
STAGING = ".staging"
STALE_STAGING_S = 3600.0
PUSH_LOCK = ".push.lock"
#: Test hook: set to a stage name ("weights", "rename") and a push pauses there, so a test can kill it mid-push.
PAUSE_ENV = "REPRZOO_TEST_PUSH_PAUSE"


def default_home() -> Path:
    return Path(os.environ.get("REPRZOO_HOME") or Path.home() / ".cache" / "reprzoo").expanduser()


@dataclass(frozen=True)
class Revision:
    id: str
    created: float
    message: str
    files: dict[str, dict]
    path: Path


class LocalHub:
    """A hub folder; ``writable=False`` for the models shipped inside the package."""

    def __init__(self, root: Path, writable: bool = True, label: str | None = None):
        self.root = Path(root)
        self.writable = writable
        self.label = label or str(self.root)

    def __repr__(self) -> str:
        return f"LocalHub({str(self.root)!r}, writable={self.writable})"

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / "refs" / "main").is_file())

    def has(self, name: str) -> bool:
        return (self._repo(name) / "refs" / "main").is_file()

    def head(self, name: str) -> str:
        ref = self._repo(name) / "refs" / "main"
        if not ref.is_file():
            raise ReprzooError(f"{name!r} is not in the hub at {self.label}")
        return check_revision(ref.read_text().strip())

    def revisions(self, name: str) -> list[Revision]:
        """Complete revisions of ``name``, oldest first."""
        folder = self._repo(name) / "revisions"
        out = []
        for path in folder.iterdir() if folder.is_dir() else []:
            commit = path / COMMIT_FILE
            if path.name.startswith(".") or not commit.is_file():
                continue
            meta = _read_commit(commit)
            out.append(Revision(path.name, float(meta.get("created", 0)), meta.get("message", ""), meta.get("files", {}), path))
        return sorted(out, key=lambda r: (r.created, r.id))

    def find_revision(self, name: str, revision: str | None = None, verify: bool = True) -> Path:
        """The folder of a revision: the latest for ``None``/``"main"``, else an id or a unique prefix of one;
        checked with :meth:`verify_revision` unless ``verify=False`` (a listing that reads only its config)."""
        if not self.has(name):
            raise ReprzooError(f"{name!r} is not in the hub at {self.label}")
        rev = self.head(name) if revision in (None, "main") else check_revision(revision)
        path = self._repo(name) / "revisions" / rev
        if (path / COMMIT_FILE).is_file() or path.is_symlink():
            return self.verify_revision(path) if verify else path
        known = [r.id for r in self.revisions(name)]
        matches = [r for r in known if len(rev) >= 6 and r.startswith(rev)]
        if len(matches) == 1:
            path = self._repo(name) / "revisions" / matches[0]
            return self.verify_revision(path) if verify else path
        raise ReprzooError(
            f"revision {rev!r} of {name!r} not found in {self.label}"
            + (" (ambiguous prefix)" if len(matches) > 1 else "")
            + f"; available: {', '.join(known) or 'none'}"
        )

    def verify_revision(self, path: Path) -> Path:
        """``path`` (a revision folder) after checking that it and its files are no links out of the hub and that
        every file matches the size and SHA-256 recorded in its ``commit.json``; an :class:`IntegrityError` names
        what differs. ``config.json`` is checked as a config first (format, file names), so that what it is
        refused for is said before the hashes."""
        root = self.root.resolve()
        expected = root / path.parent.parent.name / "revisions" / path.name
        if path.is_symlink() or path.resolve() != expected:
            raise IntegrityError(
                f"refusing revision {path}: it is a symbolic link (to {path.resolve()}); revisions are plain folders "
                f"inside the hub {self.label}"
            )
        commit = _read_commit(path / COMMIT_FILE)
        files = commit.get("files")
        if not isinstance(files, dict) or not files:
            raise IntegrityError(f"{path / COMMIT_FILE} records no files; the revision cannot be verified")
        for filename in {*REPO_FILES, *map(str, files)}:
            nested = "/" in filename and INTEROP_FILE.match(filename)  # one module folder of an interop export
            if ("/" in filename and not nested) or "\\" in filename or filename.startswith(".") or filename == COMMIT_FILE:
                raise IntegrityError(f"{path / COMMIT_FILE} names a file outside its revision: {filename!r}")
            if nested and (path / filename).parent.is_symlink():
                raise IntegrityError(f"refusing {path / filename}: its folder is a symbolic link; a revision holds plain files")
            if (path / filename).is_symlink():
                raise IntegrityError(
                    f"refusing {path / filename}: it is a symbolic link (to {(path / filename).resolve()}); a revision "
                    "holds plain files"
                )
        missing = sorted(set(repo_files(read_config(path))) - set(files))  # with its preprocessing files
        if missing:
            raise IntegrityError(f"{path / COMMIT_FILE} does not record {', '.join(missing)}; refusing the revision")
        for filename, record in files.items():
            file = path / filename
            if not file.is_file():
                raise IntegrityError(f"{path} lacks {filename}, which its {COMMIT_FILE} records")
            sha = record.get("sha256") if isinstance(record, dict) else None
            if not isinstance(sha, str):
                raise IntegrityError(f"{path / COMMIT_FILE} records no sha256 for {filename}")
            size = record.get("size")
            if isinstance(size, int) and file.stat().st_size != size:
                raise IntegrityError(
                    f"{file} is {file.stat().st_size} bytes but {COMMIT_FILE} records {size}: it was truncated or "
                    "modified after the push; refusing to load it"
                )
            digest = sha256_file(file)
            if digest != sha:
                raise IntegrityError(
                    f"{file} has SHA-256 {digest[:16]}... but {COMMIT_FILE} records {sha[:16]}...: it was modified or "
                    "corrupted after the push; refusing to load it"
                )
        return path

    def _repo(self, name: str) -> Path:
        path = self.root / check_name(name)
        if path.resolve().parent != self.root.resolve():  # belt and braces on top of check_name
            raise ReprzooError(f"model name {name!r} resolves outside the hub {self.label}")
        return path

    # ------------------------------------------------------------------ writing
    def push(self, name: str, folder: Path, message: str = "") -> str:
        """Copy the repository files of ``folder`` into a new revision of ``name``; return its id."""
        if not self.writable:
            raise ReprzooError(f"the hub at {self.label} is read-only")
        repo = self._repo(name)
        missing = [f for f in REPO_FILES if not (Path(folder) / f).is_file()]
        if missing:
            raise ReprzooError(f"{folder} lacks {', '.join(missing)}; nothing was pushed")
        filenames = repo_files(read_config(Path(folder)))  # with its preprocessing files (tokenizer.json, ...)
        missing = [f for f in filenames if not (Path(folder) / f).is_file()]
        if missing:
            raise ReprzooError(
                f"{folder} lacks the preprocessing files {', '.join(missing)} its config lists; nothing was pushed"
            )
        staging_root = self.root / STAGING
        staging_root.mkdir(parents=True, exist_ok=True)
        self._clean_stale(staging_root)
        stage = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=staging_root))
        try:
            files = {}
            for filename in filenames:
                (stage / filename).parent.mkdir(exist_ok=True)  # an interop module folder (0_Transformer/)
                atomic_write(stage / filename, partial(shutil.copyfile, Path(folder) / filename))
                files[filename] = {"sha256": sha256_file(stage / filename), "size": (stage / filename).stat().st_size}
                if filename == "model.safetensors":
                    _pause("weights")
            repo.mkdir(parents=True, exist_ok=True)
            from filelock import FileLock

            # one push at a time per name, from reading the parent to moving the ref: none is orphaned
            with FileLock(str(repo / PUSH_LOCK)):
                parent = self.head(name) if self.has(name) else None
                created = time.time()
                rev = _revision_id(files, parent, created)
                commit = {"id": rev, "parent": parent, "created": created, "message": message, "files": files}
                atomic_write_text(stage / COMMIT_FILE, json.dumps(commit, indent=2) + "\n")
                for path in stage.rglob("*"):
                    os.chmod(path, 0o755 if path.is_dir() else 0o444)  # a revision is never rewritten
                os.chmod(stage, 0o755)  # mkdtemp made it private; a hub is readable like any cache
                fsync_dir(stage)
                (repo / "revisions").mkdir(parents=True, exist_ok=True)
                _pause("rename")
                os.rename(stage, repo / "revisions" / rev)  # atomic; fails rather than merge into an existing revision
                fsync_dir(repo / "revisions")
                _pause("ref")
                (repo / "refs").mkdir(exist_ok=True)
                atomic_write_text(repo / "refs" / "main", rev + "\n")
            return rev
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    @staticmethod
    def _clean_stale(staging_root: Path) -> None:
        now = time.time()
        for path in staging_root.iterdir():
            try:
                if now - path.stat().st_mtime > STALE_STAGING_S:
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:  # another push cleaned it first
                continue


def _read_commit(path: Path) -> dict:
    """A revision's ``commit.json``, or an :class:`IntegrityError` naming it when it is not a JSON object."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"{path.parent} has no {COMMIT_FILE}; the revision cannot be verified") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise IntegrityError(f"{path} is not a commit record (a JSON object)")
    return meta


def _revision_id(files: dict, parent: str | None, created: float) -> str:
    import hashlib

    payload = json.dumps({"files": files, "parent": parent, "created": created, "pid": os.getpid()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _pause(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        import sys

        print(f"reprzoo-push-paused:{stage}", file=sys.stderr, flush=True)
        time.sleep(600)
