"""Model names and sources: ``method-backbone-dataset[.tag]``, ``hf://org/repo[@rev]``, ``local:PATH`` or a directory.

Names and revisions are checked before they touch a path, so that ``../`` or an absolute path in a name can never
reach outside a hub folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reprzoo.errors import ReprzooError

MAX_NAME_LENGTH = 100  # a name is a folder name: far below any file system's limit
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*(?:-[a-z0-9][a-z0-9_]*){2,}(?:\.[a-z0-9][a-z0-9_-]*)?$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HF_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
NAME_FORMAT = "method-backbone-dataset[.tag], lowercase letters, digits and '_' (e.g. simsiam-tinyresnet-digits.demo)"


class InvalidNameError(ReprzooError, ValueError):
    """A name, revision or repository id that is malformed or tries to escape its folder."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid zoo name; raise with the reason otherwise."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"invalid model name {name!r}: expected {NAME_FORMAT}")
    if "/" in name or "\\" in name or ".." in name or Path(name).is_absolute():
        raise InvalidNameError(
            f"invalid model name {name!r}: names cannot contain paths ('/', '..', absolute paths); "
            f"use local:PATH for a directory or hf://org/repo for the Hugging Face Hub. Names are {NAME_FORMAT}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"invalid model name {name[:40]!r}... ({len(name)} characters): at most {MAX_NAME_LENGTH}")
    if not NAME_RE.fullmatch(name):  # fullmatch: `$` alone would accept a trailing newline
        raise InvalidNameError(f"invalid model name {name!r}: expected {NAME_FORMAT}")
    return name


def check_revision(revision: str) -> str:
    """Return ``revision`` if it is a plain revision id or branch name (no path separators, no '..')."""
    if not isinstance(revision, str) or ".." in revision or not REVISION_RE.fullmatch(revision):
        raise InvalidNameError(f"invalid revision {revision!r}: expected a revision id or 'main' (no '/', '..')")
    return revision


def check_hf_repo(repo_id: str) -> str:
    if ".." in repo_id or not HF_REPO_RE.fullmatch(repo_id):
        raise InvalidNameError(f"invalid Hugging Face repository {repo_id!r}: expected hf://org/repo[@revision]")
    return repo_id


@dataclass(frozen=True)
class Source:
    """Where a model lives.

    Attributes:
        kind: ``name`` (resolved through the registry), ``hf`` (a Hugging Face repository) or ``local`` (a folder).
        target: the name, the ``org/repo`` id, or the folder path.
        revision: a pinned revision, or None for the latest.
    """

    kind: str
    target: str
    revision: str | None = None

    def __str__(self) -> str:
        if self.kind == "hf":
            return f"hf://{self.target}" + (f"@{self.revision}" if self.revision else "")
        if self.kind == "local":
            return f"local:{self.target}"
        return self.target + (f"@{self.revision}" if self.revision else "")


def parse_source(spec: str, revision: str | None = None) -> Source:
    """Parse a model reference; ``revision`` (a keyword argument) wins over an ``@rev`` suffix only if they agree.

    ``hf://org/repo[@rev]`` and ``local:PATH`` are explicit; an existing directory holding ``config.json`` is a
    local model; anything else must be a valid zoo name, optionally ``name@rev``.
    """
    if not isinstance(spec, str) or not spec:
        raise InvalidNameError(f"invalid model reference {spec!r}")
    if spec.startswith("hf://"):
        repo, _, rev = spec[len("hf://") :].partition("@")
        return Source("hf", check_hf_repo(repo), _merge_revision(spec, rev or None, revision))
    if spec.startswith("local:"):
        path = spec[len("local:") :]
        if not path:
            raise InvalidNameError("local: needs a path, e.g. local:./my-model")
        return Source("local", str(Path(path).expanduser()), revision)
    if _is_model_folder(spec):
        return Source("local", str(Path(spec).expanduser()), revision)
    name, _, rev = spec.partition("@")
    return Source("name", check_name(name), _merge_revision(spec, rev or None, revision))


def _merge_revision(spec: str, from_spec: str | None, from_kwarg: str | None) -> str | None:
    if from_spec and from_kwarg and from_spec != from_kwarg:
        raise InvalidNameError(f"{spec!r} pins revision {from_spec!r} but revision={from_kwarg!r} was also given")
    rev = from_spec or from_kwarg
    return check_revision(rev) if rev else None


def _is_model_folder(spec: str) -> bool:
    """Whether ``spec`` is a directory holding a config.json (a name too long for a path is not one)."""
    try:
        path = Path(spec).expanduser()
        return path.is_dir() and (path / "config.json").is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, embedded NUL: not a folder; the name check says what is wrong
        return False
