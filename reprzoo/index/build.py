"""``build_index``: documents embedded by a zoo model, chunk by chunk, into a persistent :class:`Index`.

Resumable: each finished chunk of representations is written atomically under ``OUT/build/`` with the build's
fingerprint (the model's name, revision and config hash, the kind, similarity, options, chunk size and a hash of
the documents and ids). A build that stops (an exception, Ctrl-C, a killed process) is resumed by calling it
again: the chunks done are reused, and the index it writes is byte for byte the one an uninterrupted build
writes. A resume with another model, other documents or other options is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from reprzoo.atomic import atomic_write_text
from reprzoo.errors import ReprzooError
from reprzoo.index.core import (
    FORMAT_VERSION,
    MANIFEST,
    Index,
    as_tensor,
    canonical_json,
    model_label,
    model_record,
    resolve_kind,
    write_manifest,
)
from reprzoo.index.dense import load_arrays, save_arrays
from reprzoo.index.engines import engine_class

BUILD_DIR = "build"
STATE = "state.json"


def corpus_sha256(documents: Sequence[str], ids: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for i, text in zip(ids, documents):
        digest.update(canonical_json([i, text]).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _check_corpus(documents: Sequence[str], ids: Sequence[str]) -> None:
    if len(documents) != len(ids):
        raise ReprzooError(f"{len(documents)} documents but {len(ids)} ids")
    if not documents:
        raise ReprzooError("no documents to index")
    if not all(isinstance(i, str) for i in ids) or not all(isinstance(t, str) for t in documents):
        raise ReprzooError("documents and ids must be strings")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise ReprzooError(f"document ids must be unique; {duplicate!r} appears more than once")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key == "model":
                out.append(f"model {model_label(old.get(key) or {})} -> {model_label(new[key])}")
            else:
                out.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    return out


def build_index(
    encoder: Any,
    documents: Sequence[str],
    ids: Sequence[str],
    out_dir: str | Path,
    kind: str = "auto",
    chunk_size: int = 1024,
    resume: bool = True,
    progress: bool = True,
    **options: Any,
) -> Index:
    """Embed ``documents`` with ``encoder`` (``encoder.encode(texts, query=False)``) and write an index to ``out_dir``.

    Args:
        encoder: a loaded zoo model (``reprzoo.load(name)``) or any object with ``encode``, ``name``, ``revision``,
            ``config``, ``kind`` and ``similarity``.
        documents, ids: the texts and their (unique) ids.
        kind: ``auto`` (from the model: ``dense`` exact for dense vectors, ``sparse`` for vocabulary vectors,
            ``maxsim`` for multi-vector ones), ``dense``, ``ivfpq``, ``ivfflat``, ``sparse`` or ``maxsim``.
        chunk_size: documents embedded and persisted per step (the unit of resumption).
        resume: reuse the chunks of an interrupted build of the same model, documents and options; False starts
            over (and replaces an index already in ``out_dir``).
        progress: show a progress bar (rich).
        options: the kind's options: ``ivfpq`` ``nlist``, ``m``, ``nbits``, ``nprobe``; ``ivfflat`` ``nlist``, ``nprobe``.
    """
    documents, ids = list(documents), list(ids)
    _check_corpus(documents, ids)
    if chunk_size < 1:
        raise ReprzooError(f"chunk_size must be at least 1, got {chunk_size}")
    model = model_record(encoder)
    kind, similarity = resolve_kind(kind, model["representation"], model["similarity"])
    engine = engine_class(kind)
    options = engine.check_options({k: v for k, v in options.items() if v is not None}, len(documents))  # fails early
    fingerprint = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "similarity": similarity,
        "options": options,
        "chunk_size": int(chunk_size),
        "count": len(documents),
        "corpus_sha256": corpus_sha256(documents, ids),
        "model": model,
    }
    out = Path(out_dir)
    build = out / BUILD_DIR
    if (out / MANIFEST).is_file() and resume:
        existing = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if existing.get("build") == fingerprint:
            return Index.load(out)  # built already
        raise ReprzooError(
            f"{out} holds another index ({'; '.join(_differences(existing.get('build') or {}, fingerprint)) or 'another build'}); "
            "choose another folder, or pass resume=False (--no-resume) to replace it"
        )
    if build.is_dir() and resume and (build / STATE).is_file():
        state = json.loads((build / STATE).read_text(encoding="utf-8"))
        if state != fingerprint:
            raise ReprzooError(
                f"{build} holds an unfinished build with other settings ({'; '.join(_differences(state, fingerprint))}); "
                "resume it with the same model and options, or pass resume=False (--no-resume) to start over"
            )
    elif build.exists():
        shutil.rmtree(build)
    if not resume:
        for stale in [out / MANIFEST, *(out / name for name in ("vectors.safetensors", "postings.safetensors", "index.faiss"))]:
            stale.unlink(missing_ok=True)
    build.mkdir(parents=True, exist_ok=True)
    atomic_write_text(build / STATE, json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")

    starts = list(range(0, len(documents), chunk_size))
    paths = [build / f"chunk-{i:06d}.safetensors" for i in range(len(starts))]
    done = sum(min(chunk_size, len(documents) - s) for s, p in zip(starts, paths) if p.is_file())
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"indexing with {model_label(model)}", total=len(documents), completed=done)
        for start, path in zip(starts, paths):
            if path.is_file():
                continue
            reps = as_tensor(encoder.encode(documents[start : start + chunk_size], query=False))
            if len(reps) != len(documents[start : start + chunk_size]):
                raise ReprzooError(
                    f"the model returned {len(reps)} representations for {len(documents[start : start + chunk_size])} documents"
                )
            save_arrays(path, engine.chunk_arrays(reps, similarity))
            bar.advance(task, len(reps))
    chunks = [load_arrays(p) for p in paths]
    files, meta, options = engine.finish(chunks, similarity, options, out)
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "similarity": similarity,
        **meta,
        "count": len(ids),
        "ids": ids,
        "model": model,
        "options": options,
        "files": files,
        "build": fingerprint,
    }
    write_manifest(out, manifest)  # last: a folder with a manifest is a finished index
    shutil.rmtree(build)
    return Index.load(out)


__all__ = ["build_index", "corpus_sha256"]
