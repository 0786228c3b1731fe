"""The Hugging Face Hub backend, through ``huggingface_hub`` and its cache.

Environment read at call time (not only when ``huggingface_hub`` is imported): ``HF_ENDPOINT`` (a mirror or a
private hub), ``HF_HUB_OFFLINE`` (use the cache only), ``HF_HUB_CACHE``. Tokens come from where
``huggingface_hub`` looks (``HF_TOKEN``, ``hf auth login``). Only the three repository files are fetched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reprzoo.errors import ReprzooError
from reprzoo.zoo.repo import REPO_FILES, read_config, repo_files

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")  # a snapshot folder: a full commit hash


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _cache_dir() -> str | None:
    return os.environ.get("HF_HUB_CACHE") or None


def _network_errors() -> tuple[type[BaseException], ...]:
    """HTTP and transport errors of the client huggingface_hub uses (httpx2, httpx or requests, by version)."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError]  # requests' errors are OSErrors
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except ImportError:
            continue
    return tuple(errors)


def is_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or flag in ("1", "on", "yes", "true")


def download(repo_id: str, revision: str | None = None) -> tuple[Path, str]:
    """Fetch (or find in the cache) the repository files; returns the snapshot folder and its commit hash.

    ``config.json`` is fetched at ``revision``; the other files at the commit it resolved to, so that the three
    files always come from one commit even if the branch moves meanwhile.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from reprzoo import __version__

    where = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    offline = is_offline()
    options = dict(
        cache_dir=_cache_dir(),
        endpoint=_endpoint(),
        local_files_only=offline,
        library_name="reprzoo",
        library_version=__version__,
    )
    try:
        config = Path(hf_hub_download(repo_id, REPO_FILES[0], revision=revision, **options))
        commit = config.parent.name  # snapshots/<commit hash>/config.json
        _check_in_cache(config, where)
        for filename in repo_files(read_config(config.parent))[1:]:  # names checked (root files, interop folders)
            _check_in_cache(Path(hf_hub_download(repo_id, filename, revision=commit, **options)), where, filename)
    except RevisionNotFoundError:
        raise ReprzooError(f"revision {revision!r} not found in {where}") from None
    except RepositoryNotFoundError:
        raise ReprzooError(f"{where}: repository not found (or private: log in with `hf auth login` or set HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        if offline:
            raise ReprzooError(
                f"{where} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; download it once online"
            ) from None
        raise ReprzooError(f"{where}: cannot reach the Hub and no cached copy exists") from None
    except EntryNotFoundError as err:
        raise ReprzooError(f"{where} is not a reprzoo model: {err}") from None
    except _network_errors() as err:
        raise ReprzooError(f"{where}: {err}") from None
    except ValueError as err:  # e.g. a cached refs/main naming a path instead of a commit
        if isinstance(err, ReprzooError):
            raise
        raise ReprzooError(f"{where}: the Hugging Face cache is inconsistent ({' '.join(str(err).split())})") from None
    return config.parent, commit


def _check_in_cache(path: Path, where: str, filename: str = REPO_FILES[0]) -> None:
    """``path`` (the file ``filename`` of a cached snapshot) must be ``models--org--repo/snapshots/<commit>/<filename>``
    and resolve (snapshots hold links to blobs) to a file inside that repository's cache folder: a cache whose refs
    or links point elsewhere is refused."""
    snapshot = path.parents[filename.count("/")]
    repo_folder = snapshot.parent.parent
    inside = snapshot.parent.name == "snapshots" and repo_folder.name.startswith("models--") and path == snapshot / filename
    try:
        path.resolve().relative_to(repo_folder.resolve())
    except ValueError:
        inside = False
    if not inside or not COMMIT_RE.fullmatch(snapshot.name):
        raise ReprzooError(
            f"{where}: {path} lies outside its Hugging Face cache folder (a refs/main or link pointing elsewhere); "
            "refusing it: delete the cached repository and download it again"
        )


def upload(folder: Path, repo_id: str, private: bool = False, message: str = "") -> str:
    """Create the repository if needed and upload the folder's files in one commit; returns the commit hash."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=_endpoint())
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            allow_patterns=repo_files(read_config(folder)),
            commit_message=message or "reprzoo push",
        )
    except _network_errors() as err:
        raise ReprzooError(f"push to hf://{repo_id} failed ({api.endpoint}): {err}") from None
    return info.oid


def revisions(repo_id: str) -> list[dict]:
    """Commits of a repository, newest first: from the Hub when online, from the cache's snapshots offline."""
    if is_offline():
        from huggingface_hub import constants

        cache = Path(_cache_dir() or constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
        return [{"id": p.name, "cached": True} for p in sorted(cache.iterdir())] if cache.is_dir() else []
    from huggingface_hub import HfApi

    try:
        commits = HfApi(endpoint=_endpoint()).list_repo_commits(repo_id)
    except _network_errors() as err:
        raise ReprzooError(f"hf://{repo_id}: cannot list revisions ({err})") from None
    return [{"id": c.commit_id, "created": c.created_at.isoformat(), "message": c.title} for c in commits]
