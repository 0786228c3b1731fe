"""MUVERA fixed dimensional encodings (reprzoo/index/muvera.py): exact properties, agreement with MaxSim, and
FDE shortlist + MaxSim re-ranking against exhaustive MaxSim."""

from __future__ import annotations

import pytest
import torch

from reprzoo.index.muvera import FDEConfig, FixedDimensionalEncoder, fde_search
from reprzoo.metrics.retrieval import maxsim_scores

DIM = 16


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def clustered_sets(seed: int = 0, n_docs: int = 200, n_queries: int = 40):
    """Documents of 12 tokens drawn around 30 topic centres; each query is 6 noisy tokens of one document."""
    g = torch.Generator().manual_seed(seed)
    centres = unit(torch.randn(30, DIM, generator=g))
    docs = unit(centres[torch.randint(0, 30, (n_docs, 12), generator=g)] + 0.3 * torch.randn(n_docs, 12, DIM, generator=g))
    queries = unit(docs[:n_queries, :6] + 0.3 * torch.randn(n_queries, 6, DIM, generator=g))
    return queries, docs


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def test_query_fde_is_linear_and_padding_is_ignored():
    enc = FixedDimensionalEncoder(FDEConfig(dim=DIM, repetitions=3, simhash_projections=3, projection_dim=8, final_dim=50))
    q = torch.randn(7, DIM, generator=torch.Generator().manual_seed(1))
    whole = enc.encode_queries(q)
    assert whole.shape == (50,)
    torch.testing.assert_close(whole, enc.encode_queries(q[:3]) + enc.encode_queries(q[3:]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(enc.encode_queries(2.5 * q), 2.5 * whole, atol=1e-4, rtol=1e-4)
    padded = torch.cat([q, torch.zeros(4, DIM)])[None]
    torch.testing.assert_close(enc.encode_queries(padded)[0], whole)
    docs = torch.randn(2, 5, DIM)
    torch.testing.assert_close(enc.encode_documents(torch.cat([docs, torch.zeros(2, 3, DIM)], 1)), enc.encode_documents(docs))


def test_one_bucket_identity_projection_is_sum_of_query_dots_with_document_mean():
    enc = FixedDimensionalEncoder(FDEConfig(dim=DIM, repetitions=1, simhash_projections=0, projection_dim=None))
    g = torch.Generator().manual_seed(2)
    q, d = torch.randn(5, DIM, generator=g), torch.randn(9, DIM, generator=g)
    expected = sum(torch.dot(qi, d.mean(0)) for qi in q)
    torch.testing.assert_close(enc.encode_queries(q) @ enc.encode_documents(d), expected, atol=1e-4, rtol=1e-4)


def test_document_buckets_average_and_empty_buckets_take_the_hamming_nearest_vector():
    config = FDEConfig(dim=DIM, repetitions=1, simhash_projections=3, projection_dim=None)
    enc = FixedDimensionalEncoder(config)
    d = torch.randn(4, DIM, generator=torch.Generator().manual_seed(3))
    bits = (d @ enc.hyperplanes[0] > 0).long()
    codes = [int("".join(map(str, b.tolist())), 2) for b in bits]
    fde = enc.encode_documents(d).view(config.buckets, DIM)
    for bucket in range(config.buckets):  # a loop re-derivation of the document FDE
        members = [i for i, c in enumerate(codes) if c == bucket]
        if members:
            expected = d[members].mean(0)
        else:
            bucket_bits = torch.tensor([(bucket >> s) & 1 for s in (2, 1, 0)])
            expected = d[int((bits != bucket_bits).sum(1).argmin())]
        torch.testing.assert_close(fde[bucket], expected)
    no_fill = FixedDimensionalEncoder(
        FDEConfig(dim=DIM, repetitions=1, simhash_projections=3, projection_dim=None, fill_empty=False)
    )
    empty = [b for b in range(config.buckets) if b not in codes]
    assert empty and no_fill.encode_documents(d).view(config.buckets, DIM)[empty].abs().sum() == 0


def test_fde_dot_tracks_maxsim_and_improves_with_repetitions():
    queries, docs = clustered_sets()
    exact = maxsim_scores(queries, docs)
    corr = {}
    for reps in (1, 20):
        enc = FixedDimensionalEncoder(FDEConfig(dim=DIM, repetitions=reps, simhash_projections=3, projection_dim=None, seed=5))
        corr[reps] = correlation(enc.encode_queries(queries) @ enc.encode_documents(docs).T, exact)
    assert corr[20] > 0.6, corr
    assert corr[20] > corr[1] + 0.2, corr


def test_fde_shortlist_reranked_by_maxsim_recovers_exact_top10():
    queries, docs = clustered_sets(seed=1)
    exact_top = maxsim_scores(queries, docs).topk(10, dim=1).indices
    enc = FixedDimensionalEncoder(FDEConfig(dim=DIM, repetitions=20, simhash_projections=4, projection_dim=None))
    scores, ids = fde_search(enc, queries, docs, k=10, candidates=60)
    recall = sum(len(set(ids[i].tolist()) & set(exact_top[i].tolist())) for i in range(len(queries))) / exact_top.numel()
    assert recall > 0.75, recall  # a random shortlist of 60 of 200 documents keeps about 0.3
    torch.testing.assert_close(scores, torch.gather(maxsim_scores(queries, docs), 1, ids))
    assert (ids[:, 0] == torch.arange(len(queries))).float().mean() > 0.85  # the source document comes first


def test_seeded_and_argument_checks():
    a = FixedDimensionalEncoder(FDEConfig(dim=DIM, seed=3)).encode_documents(torch.ones(2, DIM))
    b = FixedDimensionalEncoder(FDEConfig(dim=DIM, seed=3)).encode_documents(torch.ones(2, DIM))
    assert torch.equal(a, b) and a.shape == (20 * 32 * 16,)
    with pytest.raises(ValueError, match="simhash_projections"):
        FDEConfig(dim=DIM, simhash_projections=-1)
    with pytest.raises(ValueError, match="projection_dim"):
        FDEConfig(dim=DIM, projection_dim=0)
    with pytest.raises(ValueError, match="expected"):
        FixedDimensionalEncoder(FDEConfig(dim=DIM)).encode_queries(torch.ones(2, 3, DIM + 1))
    with pytest.raises(ValueError, match="candidates"):
        fde_search(FixedDimensionalEncoder(FDEConfig(dim=DIM)), torch.ones(1, 2, DIM), torch.ones(3, 2, DIM), k=1, candidates=0)
