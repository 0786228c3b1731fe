"""The index engine (reprzoo.index): exact kinds against brute force, IVF-PQ recall against exact, persistence
(sha256-checked files, resumable byte-identical builds) and the query model check, with duck-typed encoders.
The round trip through a real pushed model and the CLI: tests/test_index_cli.py."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reprzoo.errors import ReprzooError
from reprzoo.index import IncompatibleQueryError, Index, IndexIntegrityError, build_index
from reprzoo.index.core import merge_topk, topk
from reprzoo.index.dense import DenseEngine
from reprzoo.index.multivector import MaxSimEngine
from reprzoo.metrics.retrieval import cosine_scores, dot_scores, maxsim_scores


class FakeEncoder:
    """A duck-typed zoo model: ``encode`` looks texts up in a table of representations (``"doc 12"`` -> row 12)."""

    def __init__(self, table: torch.Tensor, kind="dense", similarity="cosine", name="fake", revision="r1", config=None):
        self.table, self.kind, self.similarity, self.name, self.revision = table, kind, similarity, name, revision
        self.config = config if config is not None else {"name": name, "architecture": {"embedding_dim": table.shape[-1]}}
        self.calls = 0

    def encode(self, texts, query=False):
        self.calls += 1
        return self.table[[int(t.split()[-1]) for t in texts]]


def corpus(n: int) -> tuple[list[str], list[str]]:
    return [f"doc {i}" for i in range(n)], [f"d{i}" for i in range(n)]


def brute_force(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k by (score descending, position ascending), one row at a time with Python's sort."""
    values, positions = [], []
    for row in scores.tolist():
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
        positions.append(order)
        values.append([row[j] for j in order])
    return np.asarray(values), np.asarray(positions)


def sha256_tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------------------- top-k


def test_topk_breaks_ties_by_position_whatever_the_chunking():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0, 0.0, 3.0]])
    expected = brute_force(scores, 3)
    np.testing.assert_array_equal(topk(scores, 3)[1], expected[1])  # [1, 2, 4]: five tie at 3
    best = None
    for start in range(0, 8, 3):  # chunks of 3 documents merged
        best = merge_topk(best, topk(scores[:, start : start + 3], 3, offset=start), 3)
    np.testing.assert_array_equal(best[1], expected[1])
    np.testing.assert_array_equal(best[0], expected[0])


# ------------------------------------------------------------------------------------------------- exact kinds


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_dense_exact_equals_brute_force(similarity, tmp_path, monkeypatch):
    table = torch.randn(300, 24)
    table[7] = table[3]  # equal documents: a tie that the order must settle by position
    documents, ids = corpus(300)
    index = build_index(FakeEncoder(table, similarity=similarity), documents, ids, tmp_path / "i", chunk_size=64, progress=False)
    assert index.kind == "dense" and index.similarity == similarity
    queries = torch.cat([torch.randn(20, 24), table[3:4]])
    monkeypatch.setattr(DenseEngine, "document_chunk", 50)  # several document chunks merged
    monkeypatch.setattr(DenseEngine, "query_chunk", 8)
    results = Index.load(tmp_path / "i").search(queries, k=10)
    want_scores, want_positions = brute_force({"cosine": cosine_scores, "dot": dot_scores}[similarity](queries, table), 10)
    assert [r[0] for r in results] == [[ids[j] for j in row] for row in want_positions]
    np.testing.assert_allclose([r[1] for r in results], want_scores, rtol=1e-5, atol=1e-5)
    assert results[-1][0][:2] == ["d3", "d7"]  # the tie, by position


def test_sparse_inverted_index_equals_dense_dot_exactly(tmp_path):
    generator = torch.Generator().manual_seed(0)
    vocabulary = 200
    # weights that are multiples of 1/8: every sum of products is exact, in any order, in float32 and float64
    table = (torch.randint(0, 17, (400, vocabulary), generator=generator) / 8.0) * (
        torch.rand(400, vocabulary, generator=generator) < 0.05
    )
    documents, ids = corpus(400)
    index = build_index(
        FakeEncoder(table, kind="sparse", similarity="dot"), documents, ids, tmp_path / "i", chunk_size=128, progress=False
    )
    assert index.kind == "sparse" and index.manifest["nonzeros"] == int((table != 0).sum())
    queries = (torch.randint(0, 9, (30, vocabulary), generator=generator) / 8.0) * (
        torch.rand(30, vocabulary, generator=generator) < 0.1
    )
    scores = index.engine.scores(queries)
    assert np.array_equal(scores, (queries.double() @ table.double().T).numpy())  # exactly the inner products
    results = index.search(queries, k=15)
    want_scores, want_positions = brute_force(queries.double() @ table.double().T, 15)
    assert [r[0] for r in results] == [[ids[j] for j in row] for row in want_positions]
    assert [r[1] for r in results] == want_scores.tolist()


def test_sparse_scores_equal_dense_dot_on_real_valued_weights(tmp_path):
    table = torch.relu(torch.randn(150, 300) - 1.5)
    documents, ids = corpus(150)
    index = build_index(FakeEncoder(table, kind="sparse", similarity="dot"), documents, ids, tmp_path / "i", progress=False)
    queries = torch.relu(torch.randn(10, 300) - 1.0)
    np.testing.assert_allclose(index.engine.scores(queries), (queries.double() @ table.double().T).numpy(), rtol=1e-12)


def test_maxsim_equals_maxsim_scores(tmp_path, monkeypatch):
    table = torch.randn(120, 6, 8)
    table[:, 4:] = 0  # padding vectors
    table[5, 1:] = 0
    documents, ids = corpus(120)
    index = build_index(
        FakeEncoder(table, kind="multi_vector", similarity="maxsim"),
        documents,
        ids,
        tmp_path / "i",
        chunk_size=50,
        progress=False,
    )
    assert index.kind == "maxsim" and index.manifest["vectors_per_document"] == 6
    queries = torch.randn(9, 3, 8)
    queries[0, 2] = 0
    monkeypatch.setattr(MaxSimEngine, "budget", 9 * 3 * 6 * 7)  # chunks of 7 documents
    results = index.search(queries, k=12)
    want_scores, want_positions = brute_force(maxsim_scores(queries, table), 12)
    assert [r[0] for r in results] == [[ids[j] for j in row] for row in want_positions]
    np.testing.assert_allclose([r[1] for r in results], want_scores, rtol=1e-5, atol=1e-5)


def clustered(n: int, dim: int, clusters: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator) * 3
    return centres[torch.randint(0, clusters, (n,), generator=generator)] + torch.randn(n, dim, generator=generator)


@pytest.mark.parametrize(
    "kind, options, bar",
    [("ivfpq", {"nlist": 32, "m": 16, "nbits": 8, "nprobe": 8}, 0.7), ("ivfflat", {"nlist": 32, "nprobe": 8}, 0.9)],
)
def test_ivf_recall_at_10_against_exact(kind, options, bar, tmp_path):
    table = clustered(3000, 32, 40, seed=0)
    documents, ids = corpus(3000)
    encoder = FakeEncoder(table, similarity="cosine")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = build_index(encoder, documents, ids, tmp_path / kind, kind=kind, chunk_size=1000, progress=False, **options)
    # 3,000 vectors train 256 PQ centroids with fewer than faiss's 39 each: said once
    assert len([w for w in caught if "PQ centroids" in str(w.message)]) == (kind == "ivfpq")
    exact = build_index(encoder, documents, ids, tmp_path / "exact", progress=False)
    queries = clustered(200, 32, 40, seed=0)[:200] + 0.5 * torch.randn(200, 32)
    approximate = Index.load(tmp_path / kind).search(queries, k=10)
    truth = exact.search(queries, k=10)
    recall = np.mean([len(set(a[0]) & set(t[0])) / 10 for a, t in zip(approximate, truth)])
    assert recall >= bar, recall
    assert index.manifest["options"]["nlist"] == 32


def test_ivf_refuses_a_corpus_too_small_to_train_before_embedding(tmp_path):
    encoder = FakeEncoder(torch.randn(100, 16))
    with pytest.raises(
        ReprzooError,
        match=r"100 documents, too few .* nlist = 256: it needs at least 9,984 vectors; use nlist <= 2 and nbits <= 6",
    ):
        build_index(encoder, *corpus(100), tmp_path / "i", kind="ivfpq", nlist=256, progress=False)
    with pytest.raises(ReprzooError, match=r"2\*\*nbits = 256"):
        build_index(encoder, *corpus(100), tmp_path / "i", kind="ivfpq", nlist=2, progress=False)
    assert encoder.calls == 0


def test_auto_kind_follows_the_encoder_and_refuses_a_mismatch(tmp_path):
    sparse = FakeEncoder(torch.zeros(4, 10).index_fill_(1, torch.tensor([1]), 1.0), kind="sparse", similarity="dot")
    assert build_index(sparse, *corpus(4), tmp_path / "s", progress=False).kind == "sparse"
    dot = FakeEncoder(torch.randn(4, 5), similarity="dot")
    assert build_index(dot, *corpus(4), tmp_path / "d", progress=False).similarity == "dot"
    with pytest.raises(ReprzooError, match="indexes multi_vector representations, but the model's are dense"):
        build_index(dot, *corpus(4), tmp_path / "m", kind="maxsim", progress=False)


# ------------------------------------------------------------------------------------------------- persistence


class Interrupting(FakeEncoder):
    def __init__(self, table, after: int):
        super().__init__(table)
        self.after = after

    def encode(self, texts, query=False):
        if self.calls == self.after:
            raise KeyboardInterrupt
        return super().encode(texts, query)


@pytest.mark.parametrize("kind", ["dense", "ivfflat"])
def test_an_interrupted_build_resumes_to_the_same_files(kind, tmp_path):
    table = torch.randn(500, 16)
    documents, ids = corpus(500)
    options = {"nlist": 4} if kind == "ivfflat" else {}
    whole = build_index(
        FakeEncoder(table), documents, ids, tmp_path / "whole", kind=kind, chunk_size=64, progress=False, **options
    )
    with pytest.raises(KeyboardInterrupt):
        build_index(
            Interrupting(table, after=3),
            documents,
            ids,
            tmp_path / "resumed",
            kind=kind,
            chunk_size=64,
            progress=False,
            **options,
        )
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    assert len(list((tmp_path / "resumed" / "build").glob("chunk-*.safetensors"))) == 3
    with pytest.raises(ReprzooError, match="not an index: it has no manifest.json .*resume"):
        Index.load(tmp_path / "resumed")
    encoder = FakeEncoder(table)
    resumed = build_index(encoder, documents, ids, tmp_path / "resumed", kind=kind, chunk_size=64, progress=False, **options)
    assert encoder.calls == 8 - 3  # only the chunks not done
    assert sha256_tree(tmp_path / "resumed") == sha256_tree(tmp_path / "whole")
    assert not (tmp_path / "resumed" / "build").exists()
    assert resumed.search(table[:3], k=5) == whole.search(table[:3], k=5)


def test_a_resume_with_another_model_or_options_is_refused(tmp_path):
    table = torch.randn(200, 16)
    documents, ids = corpus(200)
    with pytest.raises(KeyboardInterrupt):
        build_index(Interrupting(table, after=1), documents, ids, tmp_path / "i", chunk_size=64, progress=False)
    other = FakeEncoder(table, revision="r2")
    with pytest.raises(ReprzooError, match=r"unfinished build with other settings \(model fake@r1 -> fake@r2\)"):
        build_index(other, documents, ids, tmp_path / "i", chunk_size=64, progress=False)
    with pytest.raises(ReprzooError, match="chunk_size 64 -> 32"):
        build_index(FakeEncoder(table), documents, ids, tmp_path / "i", chunk_size=32, progress=False)
    built = build_index(other, documents, ids, tmp_path / "i", chunk_size=64, resume=False, progress=False)  # starts over
    assert built.model["revision"] == "r2"
    with pytest.raises(ReprzooError, match="holds another index .*resume=False"):
        build_index(FakeEncoder(table), documents, ids, tmp_path / "i", chunk_size=64, progress=False)


def test_the_manifest_records_the_model_and_every_file(tmp_path):
    encoder = FakeEncoder(torch.randn(10, 4), name="mnrl-x", revision="abc")
    build_index(encoder, *corpus(10), tmp_path / "i", progress=False)
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["count"] == 10 and manifest["dim"] == 4
    assert manifest["ids"] == corpus(10)[1]
    assert manifest["model"]["name"] == "mnrl-x" and manifest["model"]["revision"] == "abc"
    assert len(manifest["model"]["config_sha256"]) == 64
    assert set(manifest["files"]) == {"vectors.safetensors"}
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == ["manifest.json", "vectors.safetensors"]


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_a_tampered_file_is_refused(kind, tmp_path):
    table = torch.relu(torch.randn(50, 12))
    encoder = FakeEncoder(table, kind="dense" if kind == "dense" else "sparse", similarity="dot")
    build_index(encoder, *corpus(50), tmp_path / "i", progress=False)
    path = next(p for p in (tmp_path / "i").iterdir() if p.suffix == ".safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError) as err:
        Index.load(tmp_path / "i")
    assert (
        len(str(err.value).splitlines()) == 1 and path.name in str(err.value) and "does not match its manifest" in str(err.value)
    )
    path.unlink()
    with pytest.raises(IndexIntegrityError, match="is missing"):
        Index.load(tmp_path / "i")


# ------------------------------------------------------------------------------------------------ query models


def test_queries_from_another_model_revision_are_refused(tmp_path):
    table = torch.randn(30, 8)
    index = build_index(FakeEncoder(table, name="m", revision="r1"), *corpus(30), tmp_path / "i", progress=False)
    assert index.search(["doc 4"], k=1, encoder=FakeEncoder(table, name="m", revision="r1"))[0][0] == ["d4"]
    with pytest.raises(IncompatibleQueryError) as err:
        index.search(["doc 4"], k=1, encoder=FakeEncoder(table, name="m", revision="r2"))
    message = str(err.value)
    assert "built by m@r1" in message and "model is m@r2" in message and "revision differs" in message
    other_config = FakeEncoder(table, name="m", revision="r1", config={"name": "m", "changed": True})
    with pytest.raises(IncompatibleQueryError, match="config_sha256 differs"):
        index.search(table[:1], k=1, encoder=other_config)
    with pytest.raises(ReprzooError, match="text queries need the model"):
        index.search(["doc 4"], k=1)


def test_a_compatible_successor_may_query_its_old_models_index(tmp_path):
    table = torch.randn(30, 8)
    index = build_index(FakeEncoder(table, name="old", revision="r1"), *corpus(30), tmp_path / "i", progress=False)
    wider = torch.cat([table, torch.randn(30, 4)], 1)  # a successor whose first 8 dimensions are compatible
    config = {"name": "new", "lineage": {"compatible_with": "old@r1"}, "architecture": {"representation": {"compatible_dim": 8}}}
    successor = FakeEncoder(wider, name="new", revision="s1", config=config)
    successor.compatible_dim = 8
    assert index.search(["doc 11", "doc 2"], k=1, encoder=successor) == index.search(table[[11, 2]], k=1)
    stranger = FakeEncoder(wider, name="new", revision="s1", config={**config, "lineage": {"compatible_with": "old@r0"}})
    with pytest.raises(IncompatibleQueryError, match="built by old@r1"):
        index.search(["doc 11"], k=1, encoder=stranger)


@pytest.mark.parametrize("kind", ["dense", "sparse", "multi_vector"])
def test_non_finite_representations_are_refused(kind, tmp_path):
    table = torch.rand(6, 3, 4) if kind == "multi_vector" else torch.rand(6, 10)
    table[4].view(-1)[1] = float("nan")
    similarity = {"dense": "cosine", "sparse": "dot", "multi_vector": "maxsim"}[kind]
    with pytest.raises(ReprzooError, match="non-finite"):
        build_index(FakeEncoder(table, kind=kind, similarity=similarity), *corpus(6), tmp_path / "i", progress=False)


def test_sparse_queries_may_be_scipy_matrices(tmp_path):
    from scipy import sparse

    table = torch.relu(torch.randn(40, 30) - 1)
    index = build_index(FakeEncoder(table, kind="sparse", similarity="dot"), *corpus(40), tmp_path / "i", progress=False)
    queries = torch.relu(torch.randn(5, 30) - 1)
    assert index.search(sparse.csr_matrix(queries.numpy()), k=4) == index.search(queries, k=4)
