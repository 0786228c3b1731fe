"""Text components: multi-layer attentive pooling ("Pooling And Attention"), Zipfian whitening and its symmetry
scores ("Zipfian Whitening"), iterative nullspace projection ("Null It Out")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprzoo.backbones.text import TransformerEncoder
from reprzoo.components.attentive_pooling import MultiLayerAttentionPooling
from reprzoo.components.text_postprocessing import (
    iterative_nullspace_projection,
    zipfian_symmetry,
    zipfian_whitening,
)


# ----------------------------------------------------------------- multi-layer attentive pooling
def _states(batch=3, length=7, hidden=16, layers=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = tuple(torch.randn(batch, length, hidden, generator=g) for _ in range(layers + 1))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 4:] = 0
    return states, mask


def _reference_pooling(pool: MultiLayerAttentionPooling, states, mask) -> torch.Tensor:
    """The same computation written out per text, per head and per latent."""
    heads = pool.heads
    outputs = []
    for b in range(mask.shape[0]):
        real = mask[b].bool()
        layers = torch.stack([h[b][real].mean(0) for h in states[1:]]) + pool.layer_embedding.weight
        keys, values = pool.to_kv(pool.norm_layers(layers)).chunk(2, -1)
        queries = pool.to_q(pool.norm_latents(pool.latents))
        head_dim = queries.shape[-1] // heads
        latents = []
        for i in range(pool.latents.shape[0]):
            per_head = []
            for h in range(heads):
                part = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(keys[:, part] @ queries[i, part] / head_dim**0.5, 0)
                per_head.append(weights @ values[:, part])
            latents.append(pool.to_out(torch.cat(per_head)) + pool.latents[i])
        x = torch.stack(latents)
        x = pool.ff(pool.norm_ff(x)) + x
        outputs.append(torch.nn.functional.normalize(x.mean(0), dim=0))
    return torch.stack(outputs)


def test_multilayer_attention_pooling_matches_a_per_head_loop():
    torch.manual_seed(0)
    states, mask = _states()
    pool = MultiLayerAttentionPooling(16, num_layers=3, num_latents=5, heads=2, head_dim=4)
    out = pool(states, mask)
    assert out.shape == (3, 16)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out, _reference_pooling(pool, states, mask), atol=1e-5)


def test_multilayer_attention_pooling_reads_every_layer_and_ignores_padding():
    torch.manual_seed(1)
    states, mask = _states()
    pool = MultiLayerAttentionPooling(16, num_layers=3, num_latents=4, heads=2, head_dim=8)
    out = pool(states, mask)
    padded = tuple(h.clone() for h in states)
    for h in padded:
        h[1, 4:] = 100.0
    assert torch.allclose(pool(padded, mask), out, atol=1e-5)
    embeddings_changed = (states[0] + 5.0, *states[1:])  # the embedding output is not read, as the authors
    assert torch.allclose(pool(embeddings_changed, mask), out, atol=1e-6)
    first_layer_changed = (states[0], states[1] + torch.randn_like(states[1]), *states[2:])
    assert not torch.allclose(pool(first_layer_changed, mask), out, atol=1e-3)
    with pytest.raises(ValueError, match="expected 4 hidden states"):
        pool(states[1:], mask)


def test_transformer_encoder_pools_with_multilayer_attention():
    torch.manual_seed(2)
    encoder = TransformerEncoder(
        vocab_size=50, pooling="multilayer_attention", pooling_kwargs={"num_latents": 8, "heads": 2, "head_dim": 16}
    )
    ids = torch.randint(5, 50, (4, 9))
    ids[2, 5:] = 0
    batch = {"input_ids": ids, "attention_mask": ids.ne(0).long()}
    out = encoder(batch)
    assert out.shape == (4, encoder.num_features)
    out.pow(3).sum().backward()
    assert encoder.attention_pooling.latents.grad.abs().sum() > 0
    assert encoder.model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert TransformerEncoder(vocab_size=50).attention_pooling is None  # the default pooling is unchanged


# ----------------------------------------------------------------- Zipfian whitening
def _zipf_vectors(n=400, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + 3.0  # skewed, off-centre
    frequencies = 1.0 / np.arange(1, n + 1)  # Zipf's law
    return torch.tensor(vectors), torch.tensor(rng.permutation(frequencies))


def test_zipfian_whitening_gives_zero_weighted_mean_and_identity_weighted_covariance():
    vectors, counts = _zipf_vectors()
    whitened, mean, transform = zipfian_whitening(vectors, counts * 1000)  # counts: normalised inside
    p = counts / counts.sum()
    assert torch.allclose(mean, (p[:, None] * vectors).sum(0))
    assert torch.allclose(p @ whitened, torch.zeros(8, dtype=torch.float64), atol=1e-10)
    covariance = sum(p[i] * torch.outer(whitened[i], whitened[i]) for i in range(len(p)))
    assert torch.allclose(covariance, torch.eye(8, dtype=torch.float64), atol=1e-8)
    assert torch.allclose((vectors - mean) @ transform, whitened)
    # the uniform measure would not whiten these vectors under the Zipfian one
    uniform, _, _ = zipfian_whitening(vectors, torch.ones(len(p)))
    assert not torch.allclose(p @ uniform, torch.zeros(8, dtype=torch.float64), atol=1e-2)


def test_zipfian_whitening_with_uniform_frequencies_is_pca_whitening():
    from sklearn.decomposition import PCA

    vectors, _ = _zipf_vectors(n=300)
    whitened, _, _ = zipfian_whitening(vectors, torch.ones(300))
    # sklearn whitens with the unbiased covariance (n - 1); the paper's uniform measure weights each word 1/n
    reference = PCA(whiten=True).fit_transform(vectors.numpy()) * np.sqrt(300 / 299)
    signs = np.sign((whitened.numpy() * reference).sum(0))  # principal axes are defined up to sign
    assert np.allclose(whitened.numpy() * signs, reference, atol=1e-8)


def test_zipfian_whitening_checks_its_arguments():
    vectors, counts = _zipf_vectors()
    with pytest.raises(ValueError, match="one per vector"):
        zipfian_whitening(vectors, counts[:-1])
    with pytest.raises(ValueError, match="non-negative"):
        zipfian_whitening(vectors, -counts)
    with pytest.raises(ValueError, match="num_words, dim"):
        zipfian_whitening(vectors[0], counts)
    flat = vectors.clone()
    flat[:, 0] = flat[:, 1]
    with pytest.raises(ValueError, match="do not span"):
        zipfian_whitening(flat, counts)


def test_zipfian_symmetry_scores():
    vectors, counts = _zipf_vectors()
    p = counts / counts.sum()
    mean = p @ vectors
    covariance = sum(p[i] * torch.outer(vectors[i] - mean, vectors[i] - mean) for i in range(len(p)))
    eigen = torch.linalg.eigvalsh(covariance)
    share = eigen / eigen.sum()
    centrality, isotropy = zipfian_symmetry(vectors, counts)
    assert centrality == pytest.approx(1 - float(mean.norm() / (p @ vectors.norm(dim=1))))
    assert isotropy == pytest.approx(float(-(share * share.log()).sum() / np.log(8)))
    assert centrality < 0.5 and isotropy < 0.95  # skewed and off-centre
    whitened, _, _ = zipfian_whitening(vectors, counts)
    assert zipfian_symmetry(whitened, counts) == pytest.approx((1.0, 1.0), abs=1e-8)


# ----------------------------------------------------------------- iterative nullspace projection
@pytest.fixture(scope="module")
def newsgroup_vectors():
    """The 200 mini-newsgroups posts as 32-d LSA vectors (TF-IDF, truncated SVD); the topic is the attribute."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from reprzoo.datamodules.text.corpora import mini_newsgroups

    texts, labels, _ = mini_newsgroups()
    tfidf = TfidfVectorizer(min_df=2, stop_words="english").fit_transform(texts)
    vectors = TruncatedSVD(32, random_state=0).fit_transform(tfidf)
    order = np.random.default_rng(0).permutation(len(texts))
    return vectors[order], np.asarray(labels)[order]


def _probe_accuracy(train, y_train, test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000).fit(train, y_train).score(test, y_test)


def test_inlp_removes_the_linearly_decodable_topic(newsgroup_vectors):
    x, y = newsgroup_vectors
    train, dev = slice(0, 140), slice(140, None)
    majority = max(y[dev].mean(), 1 - y[dev].mean())
    assert _probe_accuracy(x[train], y[train], x[dev], y[dev]) > 0.85  # the topic is linearly decodable
    result = iterative_nullspace_projection(x[train], y[train], 10, x[dev], y[dev])
    P = result.projection
    assert np.allclose(P @ P, P, atol=1e-10) and np.allclose(P, P.T, atol=1e-12)
    assert np.linalg.matrix_rank(P) == 32 - 10  # one direction per binary classifier
    for w in result.weights:  # P projects onto the intersection of the classifiers' nullspaces
        assert np.allclose(w @ P, 0, atol=1e-8)
    assert result.accuracies[0] > 0.85
    after = _probe_accuracy(x[train] @ P, y[train], x[dev] @ P, y[dev])
    assert after < majority + 0.15, f"a new linear classifier still decodes the topic: {after:.3f}"


def test_inlp_with_logistic_regression_and_argument_checks(newsgroup_vectors):
    from sklearn.linear_model import LogisticRegression

    x, y = newsgroup_vectors
    result = iterative_nullspace_projection(x, y, 3, classifier=lambda: LogisticRegression(max_iter=2000))
    assert result.accuracies[0] > 0.9 and len(result.weights) == 3
    removed = sum(not np.allclose(w, 0) for w in result.weights)  # a classifier with no signal left is all zeros
    assert removed >= 2 and np.linalg.matrix_rank(result.projection) == 32 - removed
    skipped = iterative_nullspace_projection(x, y, 2, min_accuracy=1.01)  # no classifier is good enough
    assert np.allclose(skipped.projection, np.eye(32)) and not skipped.weights
    with pytest.raises(ValueError, match="labels"):
        iterative_nullspace_projection(x, y[:-1])
    with pytest.raises(ValueError, match="both eval_vectors"):
        iterative_nullspace_projection(x, y, eval_vectors=x)
