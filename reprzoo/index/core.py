"""The persistent index: a folder with ``manifest.json`` and its arrays, loaded and searched by :class:`Index`.

Layout of an index folder (``build_index`` writes it, :meth:`Index.load` reads it)::

    manifest.json        format version, kind, similarity, shapes, count, document ids, the model that built it
                         (name, revision, source, sha256 of its config), build options, every file's sha256
    vectors.safetensors  dense / maxsim: the document representations (cosine: L2-normalised)
    postings.safetensors sparse: the inverted index (CSC of the document x vocabulary weights)
    index.faiss          ivfpq / ivfflat: the faiss index (faiss.write_index)

Arrays are safetensors (never pickle). Every file's sha256 is recorded in the manifest and checked on load: a file
changed after the build is refused. Files are written atomically (:mod:`reprzoo.atomic`).

Rankings are exact and deterministic for the exact kinds (``dense``, ``sparse``, ``maxsim``): documents ordered by
score, ties by position (the lower document position first), whatever the chunking.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from reprzoo.atomic import atomic_write_text
from reprzoo.errors import ReprzooError
from reprzoo.metrics.retrieval import _order, topk  # noqa: F401  (re-exported: the engines' exact top-k)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: index kinds: exact inner products, faiss IVF (product-quantised or flat lists), an inverted index over
#: vocabulary weights, exact late interaction
KINDS = ("dense", "ivfpq", "ivfflat", "sparse", "maxsim")
#: index kind -> the representation kind (``Encoder.kind``) it indexes
REPRESENTATION_OF_KIND = {
    "dense": "dense",
    "ivfpq": "dense",
    "ivfflat": "dense",
    "sparse": "sparse",
    "maxsim": "multi_vector",
}


class IndexIntegrityError(ReprzooError):
    """An index file that is missing or differs from what its manifest recorded."""


class IncompatibleQueryError(ReprzooError):
    """Queries from a model other than the one that built the index (and not a compatible successor of it)."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_sha256(config: Mapping[str, Any] | None) -> str:
    """sha256 of a model's config (``config.json``'s content as canonical JSON: sorted keys, no spaces)."""
    return hashlib.sha256(canonical_json(dict(config or {})).encode("utf-8")).hexdigest()


def model_record(encoder: Any) -> dict[str, Any]:
    """What the manifest records of the model that built an index (a loaded zoo ``Encoder`` or a duck-typed one)."""
    return {
        "name": str(getattr(encoder, "name", "") or ""),
        "revision": getattr(encoder, "revision", None),
        "source": getattr(encoder, "source", None),
        "config_sha256": config_sha256(getattr(encoder, "config", None)),
        "representation": getattr(encoder, "kind", "dense"),
        "similarity": getattr(encoder, "similarity", "cosine"),
    }


def model_label(record: Mapping[str, Any]) -> str:
    return f"{record.get('name') or record.get('source') or '?'}@{record.get('revision') or '-'}"


def resolve_kind(kind: str, representation: str, similarity: str) -> tuple[str, str]:
    """``(index kind, similarity)`` for an encoder's representation kind and similarity; ``auto`` follows them."""
    if kind == "auto":
        kind = {"sparse": "sparse", "multi_vector": "maxsim"}.get(representation, "dense")
    if kind not in KINDS:
        raise ReprzooError(f"unknown index kind {kind!r}; choose one of auto, {', '.join(KINDS)}")
    wanted = REPRESENTATION_OF_KIND[kind]
    if representation != wanted:
        raise ReprzooError(
            f"index kind {kind!r} indexes {wanted} representations, but the model's are {representation}; "
            f"use --kind auto (an index of kind {resolve_kind('auto', representation, similarity)[0]!r})"
        )
    if kind == "maxsim":
        return kind, "maxsim"
    if kind == "sparse":
        return kind, "dot"  # a vocabulary vector's relevance is its inner product (SPLADE)
    if similarity not in ("cosine", "dot"):
        raise ReprzooError(f"a {kind} index compares by cosine or dot, but the model's similarity is {similarity!r}")
    return kind, similarity


# ----------------------------------------------------------------------------------------------------------- top-k


def merge_topk(a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray], k: int):
    """The top ``k`` of two candidate lists (each the exact top of its documents): the top of their union."""
    if a is None:
        return b
    values, positions = _order(np.concatenate([a[0], b[0]], 1), np.concatenate([a[1], b[1]], 1))
    return values[:, :k], positions[:, :k]


def as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if hasattr(x, "toarray"):  # a scipy sparse matrix of vocabulary weights
        x = x.toarray()
    return torch.as_tensor(np.asarray(x))


# -------------------------------------------------------------------------------------------------------- manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        hint = " (an unfinished build: run the same build again to resume it)" if (folder / "build").is_dir() else ""
        raise ReprzooError(f"{folder} is not an index: it has no {MANIFEST}{hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IndexIntegrityError(f"{path} is not valid JSON ({err}); rebuild the index") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ReprzooError(f"{path} has index format {version!r}; this reprzoo reads format {FORMAT_VERSION}")
    return manifest


def verify_files(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a file missing, or different from the sha256 the manifest recorded."""
    for name, record in sorted((manifest.get("files") or {}).items()):
        path = Path(folder) / name
        if Path(name).name != name or not path.is_file():
            raise IndexIntegrityError(f"{path} is missing (the manifest lists it); rebuild the index")
        digest = sha256_file(path)
        if digest != record.get("sha256"):
            raise IndexIntegrityError(
                f"{path} does not match its manifest (sha256 {digest[:12]}..., recorded {str(record.get('sha256'))[:12]}...): "
                "it changed after the index was built; refusing to load it (rebuild the index)"
            )


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


# ----------------------------------------------------------------------------------------------------------- Index


class Index:
    """A built index: ``Index.load(folder).search(queries, k)`` -> one ``(ids, scores)`` per query.

    Attributes:
        manifest: the manifest as a dict; ``ids`` the document ids in position order; ``kind``, ``similarity``;
        ``model`` the record of the model that built it (name, revision, source, config_sha256).
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], engine: Any):
        self.folder, self.manifest, self.engine = Path(folder), manifest, engine
        self.ids: list[str] = list(manifest["ids"])
        self.kind: str = manifest["kind"]
        self.similarity: str = manifest["similarity"]
        self.model: dict[str, Any] = dict(manifest["model"])

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Index({str(self.folder)!r}, kind={self.kind!r}, documents={len(self)}, model={model_label(self.model)!r})"

    @classmethod
    def load(cls, folder: str | Path, verify: bool = True) -> "Index":
        """Read an index folder; ``verify`` checks every file against the sha256 its manifest recorded."""
        from reprzoo.index.engines import engine_class

        folder = Path(folder)
        manifest = read_manifest(folder)
        if verify:
            verify_files(folder, manifest)
        return cls(folder, manifest, engine_class(manifest["kind"]).load(folder, manifest))

    @property
    def size_bytes(self) -> int:
        """Bytes of the index's files (the manifest included)."""
        return sum(int(r["size"]) for r in self.manifest["files"].values()) + (self.folder / MANIFEST).stat().st_size

    # ------------------------------------------------------------------------------------------------ queries

    def check_encoder(self, encoder: Any) -> int | None:
        """Refuse a query encoder other than the model that built the index, unless its config records it as a
        compatible successor of that model (``lineage.compatible_with == "NAME@REVISION"``). Returns the prefix of
        the successor's representation compared with the index (its ``compatible_dim``; None: all of it)."""
        mine, theirs = self.model, model_record(encoder)
        same = all(theirs[key] == mine.get(key) for key in ("name", "revision", "config_sha256"))
        if same:
            return None
        lineage = ((getattr(encoder, "config", None) or {}).get("lineage") or {}).get("compatible_with")
        revision = mine.get("revision") or "-"
        # the labels reprzoo.zoo.compatible records: the zoo name, hf's org/repo, or local:PATH, then @revision
        source = str(mine.get("source") or "")
        labels = {mine.get("name"), source, source.removeprefix("hf://")} - {"", None}
        accepted = {f"{label}@{revision}" for label in labels}
        if lineage and lineage in accepted:
            return getattr(encoder, "compatible_dim", None)
        differs = [key for key in ("name", "revision", "config_sha256") if theirs[key] != mine.get(key)]
        raise IncompatibleQueryError(
            f"index {self.folder} was built by {model_label(mine)} (config sha256 {str(mine.get('config_sha256'))[:12]}); "
            f"the queries' model is {model_label(theirs)} (config sha256 {theirs['config_sha256'][:12]}): its "
            f"{', '.join(differs)} differ{'s' if len(differs) == 1 else ''}, so its representations are not comparable "
            f"with the index's. Query with {model_label(mine)} (or a compatible successor of it), or rebuild the index"
        )

    def encode_queries(self, texts: Sequence[str], encoder: Any, batch_size: int = 256) -> torch.Tensor:
        """Texts embedded as queries by ``encoder`` (checked against the index's model first)."""
        prefix = self.check_encoder(encoder)
        texts = list(texts)
        parts = [as_tensor(encoder.encode(texts[i : i + batch_size], query=True)) for i in range(0, len(texts), batch_size)]
        queries = torch.cat(parts).float()
        if prefix is not None and queries.ndim == 2:
            queries = queries[:, :prefix]
        return queries

    def search(
        self, queries: Any, k: int = 10, encoder: Any = None, batch_size: int = 256
    ) -> list[tuple[list[str], list[float]]]:
        """The top ``k`` documents of each query: ``[(ids, scores), ...]``, one pair per query, best first.

        ``queries``: representations (a tensor or array in the index's form: ``(n, dim)``, ``(n, vectors, dim)``
        or ``(n, vocabulary)``) or texts (a string or a list of strings; then ``encoder`` embeds them as queries,
        and must be the model that built the index or a compatible successor of it). A representation with an
        ``encoder`` given is checked against the index's model too.
        """
        if isinstance(queries, str) or (isinstance(queries, (list, tuple)) and queries and isinstance(queries[0], str)):
            if encoder is None:
                raise ReprzooError(
                    f"text queries need the model that embeds them: search(texts, encoder=reprzoo.load("
                    f"{self.model.get('source') or self.model.get('name')!r}, revision={self.model.get('revision')!r}))"
                )
            queries = self.encode_queries([queries] if isinstance(queries, str) else list(queries), encoder, batch_size)
        else:
            prefix = self.check_encoder(encoder) if encoder is not None else None
            queries = as_tensor(queries).float()
            if prefix is not None and queries.ndim == 2:
                queries = queries[:, :prefix]
        if k < 1:
            raise ReprzooError(f"k must be at least 1, got {k}")
        scores, positions = self.engine.search(queries, k)
        return [
            ([self.ids[p] for p in row_pos if p >= 0], [float(s) for s, p in zip(row_scores, row_pos) if p >= 0])
            for row_scores, row_pos in zip(scores.tolist(), positions.tolist())
        ]

    def run(self, queries: Any, query_ids: Sequence[str], k: int = 100, encoder: Any = None) -> dict[str, dict[str, float]]:
        """An ir-measures run ``{query id: {document id: score}}`` of the top ``k`` documents of every query."""
        results = self.search(queries, k, encoder=encoder)
        return {q: dict(zip(ids, scores)) for q, (ids, scores) in zip(query_ids, results)}


__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "MANIFEST",
    "IncompatibleQueryError",
    "Index",
    "IndexIntegrityError",
    "config_sha256",
    "merge_topk",
    "model_record",
    "resolve_kind",
    "topk",
]
