"""The retrieval contract shared by every retriever: MaxSim against a loop, the query tower used for queries in
evaluation and after loading, multi-vector rows collected intact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reprzoo.components.retrieval import DualEncoder, encode_query
from reprzoo.metrics.retrieval import SIMILARITIES, QueryDocumentProtocol, maxsim_scores
from reprzoo.metrics.text import IndexedFeatures


def maxsim_loop(queries, documents):
    out = torch.zeros(len(queries), len(documents))
    for a, q in enumerate(queries):
        for b, d in enumerate(documents):
            doc = [v for v in d if v.abs().sum() > 0]
            total = 0.0
            for qv in q:
                if qv.abs().sum() == 0 or not doc:
                    continue
                total += max(float(qv @ dv) for dv in doc)
            out[a, b] = total
    return out


def test_maxsim_matches_a_loop_and_ignores_zero_padding():
    g = torch.Generator().manual_seed(0)
    queries, documents = torch.randn(3, 4, 5, generator=g), torch.randn(6, 7, 5, generator=g)
    queries[0, 2:] = 0  # a two-token query
    documents[1, 3:] = 0  # a three-token document
    documents[2, 1:] = 0
    documents[2, 0] = -documents[2, 0]  # negative similarities must not be lifted to the padding's 0
    torch.testing.assert_close(maxsim_scores(queries, documents), maxsim_loop(queries, documents))
    assert "maxsim" in SIMILARITIES


def test_maxsim_accepts_single_vectors_and_rejects_mismatched_widths():
    q, d = torch.randn(2, 5), torch.randn(3, 4, 5)
    torch.testing.assert_close(maxsim_scores(q, d), maxsim_loop(q[:, None], d))
    with pytest.raises(ValueError, match="maxsim"):
        maxsim_scores(torch.randn(2, 3, 4), torch.randn(2, 3, 5))


def test_dual_encoder_embeds_queries_with_the_query_tower():
    doc, query = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(2, 4)
    shared, two = DualEncoder(doc), DualEncoder(doc, query)
    torch.testing.assert_close(encode_query(shared, x), doc(x))
    torch.testing.assert_close(encode_query(two, x), query(x))
    torch.testing.assert_close(two(x), doc(x))
    torch.testing.assert_close(encode_query(doc, x), doc(x))  # a one-tower encoder


def test_the_query_document_protocol_marks_queries():
    protocol = QueryDocumentProtocol({"q": {"d": 1}}, ["q"], ["d"])
    batch = (torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    assert protocol.read(batch, 0, 2).role == "document"
    assert protocol.read(batch, 1, 2).role == "query"


def test_indexed_features_keep_multi_vector_rows_and_refuse_mixed_shapes():
    metric = IndexedFeatures()
    a, b = torch.randn(2, 3, 4), torch.randn(1, 3, 4)
    metric.update(torch.tensor([2, 0]), a)
    metric.update(torch.tensor([1]), b)
    idx, feats = metric.compute()
    assert idx.tolist() == [0, 1, 2] and feats.shape == (3, 3, 4)
    torch.testing.assert_close(feats[0], a[1])
    with pytest.raises(ValueError, match="one shape"):
        metric.update(torch.tensor([3]), torch.randn(1, 5, 4))
    metric.reset()
    metric.update(torch.tensor([3]), torch.randn(1, 5, 4))  # a new evaluation may use another shape
    assert metric.compute()[1].shape == (1, 5, 4)
