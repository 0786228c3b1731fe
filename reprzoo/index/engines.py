"""Index kind -> its engine class (how a kind's chunks are stored, finished into files, loaded and searched)."""

from __future__ import annotations

from reprzoo.errors import ReprzooError


def engine_class(kind: str):
    from reprzoo.index.dense import DenseEngine, IVFEngine, IVFFlatEngine
    from reprzoo.index.multivector import MaxSimEngine
    from reprzoo.index.sparse import SparseEngine

    engines = {e.kind: e for e in (DenseEngine, IVFEngine, IVFFlatEngine, SparseEngine, MaxSimEngine)}
    if kind not in engines:
        raise ReprzooError(f"unknown index kind {kind!r}; known: {', '.join(engines)}")
    return engines[kind]


__all__ = ["engine_class"]
