"""The dense and multi-vector retrievers of issue 16 (reprzoo.lightning_modules.retrieval): the form of what each
exports, that it is the score the method trains on or its documented index form, and their data (graph neighbours,
tagged pairs). Tiny models on random token ids; the registry-driven round trip is tests/test_methods.py's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprzoo.datamodules.text.neighbours import (
    GraphNeighbours,
    TaggedPairs,
    _Triplets,
    citation_edges,
    depends_edges,
    neighbour_ranks,
)
from reprzoo.lightning_modules import MEBERT, SESA, MultivariateRetriever, PseudoQueryEmbeddings, RepCONC, SciNCL
from reprzoo.losses.dense_retrieval import (
    concept_loss,
    concept_targets,
    max_inner_product,
    negative_kl,
    pq_assign,
    pq_decode,
    token_kmeans,
)
from reprzoo.metrics.retrieval import SIMILARITIES

TINY = {"vocab_size": 40, "backbone": "bert_tiny", "backbone_kwargs": {"max_length": 16}, "online_probe": False}


def batch(n: int = 4, length: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[1, 3:] = 0  # a short text: 3 tokens
    ids[1, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_mebert_documents_are_their_first_m_token_vectors_and_queries_one_vector():
    model = MEBERT(num_vectors=5, dim=8, **TINY).eval()
    x = batch()
    with torch.no_grad():
        docs, queries = model.embed(x), model.embed_query(x)
        states = model.backbone.token_states(x)
        torch.testing.assert_close(docs[0], model.projection(states[0, :5]))
    assert docs.shape == (4, 5, 8) and queries.shape == (4, 8)
    assert docs[1, 3:].abs().sum() == 0 and docs[1, :3].abs().sum() > 0  # 3 tokens: two padding rows
    # what validation ranks by (maxsim) is ME-BERT's max inner product
    torch.testing.assert_close(SIMILARITIES[model.retrieval_similarity](queries, docs), max_inner_product(queries, docs))
    model.train()
    out = model.training_loss([x, batch(seed=1)])
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.projection.weight.grad.abs().sum() > 0


def test_repconc_exports_reconstructed_documents_and_continuous_queries():
    model = RepCONC(subvectors=4, centroids=3, **TINY)
    assert not bool(model.codebook.initialized)
    x, y = batch(), batch(seed=1)
    out = model.training_loss([x, y])
    out.loss.backward()
    assert bool(model.codebook.initialized) and model.codebook.centroids.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        continuous = model.backbone(y)
        codes = model.codebook.codes(continuous)
        torch.testing.assert_close(model.embed(y), pq_decode(codes, model.codebook.centroids))
        torch.testing.assert_close(codes, pq_assign(continuous, model.codebook.centroids))
        torch.testing.assert_close(model.embed_query(x), model.backbone(x))
    assert codes.shape == (4, 4) and model.retrieval_similarity == "dot"
    assert model.embed(y).shape == (4, model.embedding_dim)


def test_multivariate_inner_product_of_exported_vectors_is_the_negative_kl():
    model = MultivariateRetriever(dim=6, **TINY).eval()
    q, d = batch(), batch(seed=1)
    with torch.no_grad():
        dot = model.embed_query(q) @ model.embed(d).T
        expected = negative_kl(*model.distribution(q), *model.distribution(d))
    assert model.embed(d).shape == (4, 14) and model.retrieval_similarity == "dot"
    torch.testing.assert_close(dot, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(SIMILARITIES["dot"](model.embed_query(q), model.embed(d)), expected, rtol=1e-4, atol=1e-4)


def test_pseudo_query_documents_are_kmeans_centroids_of_their_tokens():
    model = PseudoQueryEmbeddings(num_centroids=3, kmeans_iterations=2, **TINY).eval()
    x = batch()
    with torch.no_grad():
        docs = model.embed(x)
        expected = token_kmeans(model.backbone.token_states(x), x["attention_mask"], 3, 2)
        torch.testing.assert_close(docs, expected)
        assert model.embed_query(x).shape == (4, model.feature_dim)
    assert docs.shape == (4, 3, model.feature_dim)
    assert docs[1].abs().sum(-1).gt(0).sum() == 3  # 3 tokens, 3 centroids
    model.train()
    assert torch.isfinite(model.training_loss([x, batch(seed=1)]).loss)


def test_depends_edges_and_neighbour_ranks():
    records = [
        {"package": "a", "depends": ["b", "zzz", "a"]},
        {"package": "b", "depends": []},
        {"package": "c", "depends": ["a", "b"]},
    ]
    assert depends_edges(records) == [(0, 1), (0, 2), (1, 2)]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 3))
    ranks = neighbour_ranks(vectors)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for i in range(6):
        others = sorted((j for j in range(6) if j != i), key=lambda j: -float(unit[i] @ unit[j]))
        assert ranks[i].tolist() == others


def test_triplets_sample_positives_and_hard_negatives_from_their_rank_bands():
    ids = [torch.tensor([i]) for i in range(10)]
    ranks = np.stack([np.array([j for j in range(10) if j != i]) for i in range(10)])  # i's neighbours: 0, 1, ... in order
    data = _Triplets(ids, ranks, positives=2, band=(5, 7), hard_share=1.0)
    torch.manual_seed(0)
    for _ in range(50):
        (anchor, positive, negative), label = data[3]
        assert int(anchor) == 3 and label == -1
        assert int(positive) in ranks[3][:2] and int(negative) in ranks[3][5:7]


def test_citation_edges_keep_targets_outside_the_corpus_and_drop_hubs():
    records = [
        {"package": "a", "depends": ["b", "ext", "libc6"], "tags": ["role::program"]},
        {"package": "b", "depends": ["libc6", "a"], "tags": []},
        {"package": "c", "depends": ["libc6", "ext"], "tags": ["role::program"]},
    ]
    n, edges = citation_edges(records)  # nodes a, b, c, then ext and libc6 (in first-seen, sorted-target order)
    assert n == 5 and edges == [(0, 1), (0, 3), (0, 4), (1, 4), (2, 3), (2, 4)]
    n, edges = citation_edges(records, max_citers=2)  # libc6 has 3 citers: a hub, left out
    assert n == 4 and edges == [(0, 1), (0, 3), (2, 3)]
    n, edges = citation_edges(records, max_citers=2, tags=True)
    assert n == 5 and (0, 4) in edges and (2, 4) in edges and (1, 4) not in edges


def test_triplets_in_fields_with_the_package_itself_at_rank_zero():
    ids = [torch.tensor([i]) for i in range(10)]
    documents = [torch.tensor([100 + i]) for i in range(10)]
    ranks = np.stack([np.array([j for j in range(10) if j != i]) for i in range(10)])
    data = _Triplets(ids, ranks, positives=2, band=(5, 7), hard_share=1.0, documents=documents, include_self=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        (anchor, positive, negative), _ = data[3]
        assert int(anchor) == 3  # the anchor's own field (the synopsis side)
        assert int(positive) - 100 in (3, ranks[3][0])  # itself (rank 0) or its nearest neighbour, as a document
        assert int(negative) - 100 in ranks[3][4:6]  # ranks shift by one: the band counts the package itself
        seen.add(int(positive) - 100)
    assert seen == {3, int(ranks[3][0])}
    with pytest.raises(ValueError, match="include_self"):
        GraphNeighbours(include_self=True, texts="package")


def test_scincl_triplet_loss_trains_the_encoder():
    model = SciNCL(**TINY).eval()  # no dropout: the same embeddings twice
    out = model.training_loss([batch(), batch(seed=1), batch(seed=2)])
    a, p, n = (model.backbone(batch(seed=s)) for s in (0, 1, 2))
    expected = ((a - p).norm(dim=1) - (a - n).norm(dim=1) + 1.0).clamp(min=0).mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-4, atol=1e-5)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    with pytest.raises(ValueError, match="triplets"):
        model.training_loss([batch(), batch()])


def test_graph_neighbours_builds_triplets_of_training_packages():
    data = GraphNeighbours(max_pairs=1500, positives=3, hard_band=(10, 15), batch_size=4, max_length=32, vocab_size=500)
    data.setup()
    assert data.graph_nodes > 15 and len(data._train) == data.graph_nodes
    views, _ = data._train[0]
    assert len(views) == 3 and all(v.ndim == 1 for v in views)
    loaders = data.val_dataloader()
    assert len(loaders) == 2  # documents, then queries: TextPairs' held-out retrieval
    fields = GraphNeighbours(
        max_pairs=600, positives=3, hard_band=(10, 15), graph="citations", texts="fields", include_self=True,
        walks_per_node=2, batch_size=4, max_length=32, vocab_size=500,
    )  # fmt: skip
    fields.setup()
    train, _ = fields._split_positions()
    nodes, _ = fields.graph_neighbours()
    first = fields._records()[train[nodes[0]]]
    (anchor, positive, negative), _ = fields._train[0]
    assert anchor.tolist() == fields.encode([first["synopsis"]])[0].tolist()
    assert fields.graph_nodes > 15 and positive.tolist() != anchor.tolist()


def test_concept_targets_and_loss_against_a_loop():
    ids = torch.tensor([[1, 3, 0], [0, 0, 0], [2, 0, 0]])
    targets = concept_targets(ids, 3)
    assert targets.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    torch.manual_seed(0)
    logits = torch.randn(3, 3)
    expected = 0.0
    for i in (0, 2):  # the untagged text is left out
        for c in range(3):
            p = torch.sigmoid(logits[i, c])
            expected += -(targets[i, c] * p.log() + (1 - targets[i, c]) * (1 - p).log())
    torch.testing.assert_close(concept_loss(logits, targets), expected / 6)
    assert concept_loss(logits, torch.zeros(3, 3)).item() == 0.0


def test_sesa_embeds_into_the_tag_space_and_learns_from_the_tags():
    data = TaggedPairs(max_pairs=600, min_tag_count=3, batch_size=8, max_length=32, vocab_size=500)
    args = data.model_args()
    concepts = data.concepts()
    assert args["num_concepts"] == len(concepts) > 5
    data.setup()
    views, _ = data._train[0]
    assert len(views) == 3
    model = SESA(num_concepts=args["num_concepts"], vocab_size=args["vocab_size"], backbone="bert_tiny", online_probe=False)
    views, _, _ = next(iter(data.train_dataloader()))
    assert views[2]["input_ids"].max() <= len(concepts)
    out = model.training_loss(views)
    out.loss.backward()
    assert model.concept_head.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        concept_vectors = model.embed(views[0])
    assert concept_vectors.shape == (8, len(concepts)) and bool(((concept_vectors > 0) & (concept_vectors < 1)).all())


def test_retromae_v2_decoding_mask_and_duplex_representation():
    from reprzoo.lightning_modules import RetroMAEv2
    from reprzoo.lightning_modules.retrieval.retromae_v2 import CLS_ID, SEP_ID, enhanced_decoding_mask, mask_tokens

    torch.manual_seed(0)
    attention = torch.tensor([[1] * 8 + [0] * 4, [1] * 12])
    visible = enhanced_decoding_mask(attention, 0.5)
    assert visible[:, :, 0].all()  # the [CLS] slot: always
    assert not visible[:, torch.arange(1, 12), torch.arange(1, 12)].any()  # never itself
    assert not visible[0, :, 8:].any()  # never padding
    share = visible[1, :, 1:].float().mean().item()
    assert 0.3 < share < 0.6  # about half of the others
    ids = torch.tensor([[CLS_ID, 9, 10, 11, SEP_ID]] * 50)
    masked_ids, masked = mask_tokens(ids, torch.ones_like(ids), 0.3, vocab_size=40)
    assert not masked[:, 0].any() and not masked[:, -1].any() and 0.15 < masked[:, 1:4].float().mean() < 0.45

    model = RetroMAEv2(bow_dim=16, **TINY)
    x = batch()
    x["input_ids"][:, 0] = CLS_ID
    out = model.training_loss([x, batch(seed=1)])
    out.loss.backward()
    assert (
        torch.isfinite(out.loss) and model.decoder.ffn[0].weight.grad.abs().sum() > 0 and model.lm_head.bias.grad.abs().sum() > 0
    )
    model.eval()
    with torch.no_grad():
        rep = model.embed(x)
        states = model.backbone.token_states(x)
    assert rep.shape == (4, model.feature_dim + 16) and model.embedding_dim == model.feature_dim + 16
    torch.testing.assert_close(rep[:, : model.feature_dim], torch.nn.functional.normalize(states[:, 0], dim=-1))
    assert (rep[:, model.feature_dim :] >= 0).all()  # ReLU'd vocabulary weights, folded by max
    torch.testing.assert_close(rep[:, model.feature_dim :].norm(dim=-1), torch.ones(4))  # each part of unit length


def test_retromae_v2_fine_tuning_stage_is_in_batch_ranking_of_the_duplex_representation():
    from reprzoo.lightning_modules import RetroMAEv2

    model = RetroMAEv2(bow_dim=16, pretrain_epochs=0, temperature=0.05, **TINY).eval()  # epoch 0 is already fine-tuning
    assert model.fine_tuning() and not RetroMAEv2(bow_dim=16, **TINY).fine_tuning()
    q, d = batch(), batch(seed=1)
    out = model.training_loss([q, d])
    with torch.no_grad():
        scores = model.embed(q) @ model.embed(d).T  # the exported representation, by inner product
    expected = -torch.log_softmax(scores / 0.05, dim=1).diagonal().mean()
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-4, atol=1e-5)
    out.loss.backward()
    assert model.backbone.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pairs"):
        model.training_loss([q, d, q])
    with pytest.raises(ValueError, match="pretrain_epochs"):
        RetroMAEv2(pretrain_epochs=-1, **TINY)
