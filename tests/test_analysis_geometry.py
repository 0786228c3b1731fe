import math

import networkx as nx
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

from reprzoo.metrics.analysis.alignment import knn_graph
from reprzoo.metrics.analysis.geometry import (
    _same_class_pairs,
    euclidean_convexity,
    graph_convexity,
    infonce_invariance,
    isoscore,
    neural_collapse,
    per_layer,
    position_context_decomposition,
    prompt_curvature,
    prompt_entropy,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rotation(d: int, seed: int = 1) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, d, generator=_gen(seed), dtype=torch.float64))[0]


# --- IsoScore ---


def _authors_isoscore(points: np.ndarray) -> float:
    """bcbi-edu/p_eickhoff_isoscore, IsoScore/IsoScore.py, condensed; ``points`` is (d, n) as there."""
    points = np.transpose(PCA(n_components=points.shape[0]).fit_transform(np.transpose(points)))
    n = points.shape[0]
    cov_diag = np.cov(points)[np.diag_indices(n)]
    cov_diag_normalized = cov_diag * np.sqrt(n) / np.linalg.norm(cov_diag)
    defect = np.linalg.norm(cov_diag_normalized - np.ones(n)) / np.sqrt(2 * (n - np.sqrt(n)))
    return ((n - defect**2 * (n - np.sqrt(n))) ** 2 - n) / (n * (n - 1))


def test_isoscore_matches_the_authors_code():
    x = torch.randn(300, 8, generator=_gen(0), dtype=torch.float64) * torch.tensor([5, 3, 2, 1, 1, 0.5, 0.2, 0.1])
    for data in (x, x @ _rotation(8), torch.randn(50, 5, generator=_gen(1), dtype=torch.float64)):
        assert isoscore(data)["isoscore"] == pytest.approx(_authors_isoscore(data.numpy().T), abs=1e-10)


def test_isoscore_is_one_when_isotropic_falls_to_zero_as_variance_concentrates_and_is_invariant():
    x = torch.randn(5000, 8, generator=_gen(2), dtype=torch.float64)
    assert isoscore(x)["isoscore"] > 0.98
    scores = [isoscore(x * torch.tensor([s, 1, 1, 1, 1, 1, 1, 1]))["isoscore"] for s in (1, 3, 10, 100)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.01
    line = torch.randn(100, 1, generator=_gen(3), dtype=torch.float64) * torch.randn(1, 8, generator=_gen(4))
    assert isoscore(line)["isoscore"] == pytest.approx(0.0, abs=1e-9)
    assert isoscore(line)["dims_used"] == pytest.approx(1.0)
    aniso = x * torch.tensor([4, 2, 1, 1, 1, 1, 0.5, 0.5])
    assert isoscore(7 * aniso @ _rotation(8))["isoscore"] == pytest.approx(isoscore(aniso)["isoscore"])
    with pytest.raises(ValueError, match="all equal"):
        isoscore(torch.ones(10, 3))


# --- Neural collapse ---


def test_neural_collapse_matches_a_loop():
    h = torch.randn(60, 5, generator=_gen(5), dtype=torch.float64)
    y = torch.arange(60) % 3
    w, b = torch.randn(3, 5, generator=_gen(6), dtype=torch.float64), torch.randn(3, generator=_gen(7))
    out = neural_collapse(h, y, w, b)
    hn, yn = h.numpy(), y.numpy()
    means = np.stack([hn[yn == c].mean(0) for c in range(3)])
    mg = hn.mean(0)
    sw = sum(np.outer(hn[i] - means[yn[i]], hn[i] - means[yn[i]]) for i in range(60)) / 60
    sb = sum(np.outer(means[c] - mg, means[c] - mg) for c in range(3)) / 3
    assert out["nc1"] == pytest.approx(np.trace(sw @ np.linalg.pinv(sb)) / 3)
    norms = [np.linalg.norm(means[c] - mg) for c in range(3)]
    assert out["nc2_equinorm"] == pytest.approx(np.std(norms, ddof=1) / np.mean(norms))
    cos = [(means[c] - mg) @ (means[e] - mg) / (norms[c] * norms[e]) for c in range(3) for e in range(3) if c != e]
    assert out["nc2_equiangular"] == pytest.approx(np.mean(np.abs(np.array(cos) + 0.5)))
    m = means - mg
    assert out["nc3"] == pytest.approx(np.linalg.norm(w.numpy() / np.linalg.norm(w.numpy()) - m / np.linalg.norm(m)))
    pred = np.argmax(hn @ w.numpy().T + b.numpy(), axis=1)
    ncc = [np.argmin([np.linalg.norm(hn[i] - means[c]) for c in range(3)]) for i in range(60)]
    assert out["nc4"] == pytest.approx(np.mean(pred != np.array(ncc)))


def test_neural_collapse_is_zero_for_collapsed_features_on_a_simplex_etf():
    k, d = 4, 6
    etf = math.sqrt(k / (k - 1)) * (torch.eye(k, dtype=torch.float64) - 1 / k)  # rows: a simplex ETF in R^k
    means = 3 * etf @ _rotation(d)[:k]  # embedded in R^d
    y = torch.arange(40) % k
    out = neural_collapse(means[y] + 0.5, y, weight=means)
    for key in ("nc1", "nc2_equinorm", "nc2_equiangular", "nc2_etf", "nc3", "nc4"):
        assert out[key] == pytest.approx(0.0, abs=1e-9), key


def test_nc1_scales_with_within_class_spread_and_nc4_is_zero_for_the_ncc_classifier():
    y = torch.arange(80) % 4
    means = torch.randn(4, 8, generator=_gen(8), dtype=torch.float64) * 3
    noise = torch.randn(80, 8, generator=_gen(9), dtype=torch.float64)
    noise -= torch.stack([noise[y == c].mean(0) for c in range(4)])[y]  # class means stay exactly `means`
    nc1 = [neural_collapse(means[y] + s * noise, y)["nc1"] for s in (1.0, 0.1)]
    assert nc1[1] == pytest.approx(nc1[0] / 100)
    h = means[y] + noise
    mu = torch.stack([h[y == c].mean(0) for c in range(4)])
    # argmax_c (mu_c . h - |mu_c|^2 / 2) = argmin_c |h - mu_c|
    assert neural_collapse(h, y, mu, -(mu**2).sum(1) / 2)["nc4"] == 0.0
    assert neural_collapse(h, y, torch.randn(4, 8, generator=_gen(10), dtype=torch.float64))["nc4"] > 0.2


def test_neural_collapse_argument_checks():
    h = torch.randn(10, 3)
    with pytest.raises(ValueError, match="0..k-1"):
        neural_collapse(h, torch.tensor([0, 2] * 5))
    with pytest.raises(ValueError, match="classifier weight"):
        neural_collapse(h, torch.arange(10) % 2, weight=torch.randn(3, 3))


# --- Convexity ---


def _blobs(seed: int = 11):
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    y = torch.arange(120) % 2
    return centres[y] + torch.randn(120, 2, generator=_gen(seed)), y


def _interleaved(seed: int = 12):
    # twelve alternating chunks of one arc: a same-class geodesic or chord often crosses the other class
    t = torch.linspace(0, 3 * math.pi / 2, 180, dtype=torch.float64)
    x = torch.stack([t.cos(), t.sin()], dim=1) * 10 + 0.05 * torch.randn(180, 2, generator=_gen(seed))
    return x, (torch.arange(180) // 15) % 2


def test_graph_convexity_matches_networkx_shortest_paths():
    x, y = _interleaved()
    out = graph_convexity(x, y, k=4, n_pairs=20, max_samples=None, seed=5)
    g = nx.from_numpy_array(knn_graph(x, 4).numpy())
    gen = torch.Generator().manual_seed(5)
    pairs = [_same_class_pairs(y, c, 20, gen) for c in range(2)]
    for c in range(2):
        scores = []
        for i, j in pairs[c].tolist():
            interior = nx.dijkstra_path(g, i, j)[1:-1]
            scores.append(np.mean([int(y[p]) == c for p in interior]) if interior else 1.0)
        assert float(out["per_class"][c]) == pytest.approx(np.mean(scores))
    assert out["unreachable"] == 0
    # two far-apart copies: about half of a class's pairs straddle them, have no path and score 0 (0.54 -> 0.29)
    split = graph_convexity(torch.cat([x, x + 1000]), torch.cat([y, y]), k=4, n_pairs=200, max_samples=None)
    assert 150 < split["unreachable"] < 250 and split["graph_convexity"] < 0.4


def test_euclidean_convexity_matches_a_sklearn_nearest_neighbour_loop():
    x, y = _interleaved()
    out = euclidean_convexity(x, y, n_pairs=15, n_steps=5, seed=6)
    knn = KNeighborsClassifier(n_neighbors=1).fit(x.numpy(), y.numpy())
    gen = torch.Generator().manual_seed(6)
    for c in range(2):
        hits = []
        for i, j in _same_class_pairs(y, c, 15, gen).tolist():
            for lam in np.linspace(0, 1, 7)[1:-1]:
                hits.append(knn.predict((lam * x[i] + (1 - lam) * x[j]).numpy()[None])[0] == c)
        assert float(out["per_class"][c]) == pytest.approx(np.mean(hits))


def test_convexity_is_one_for_separated_blobs_and_lower_for_interleaved_arcs():
    x, y = _blobs()
    assert graph_convexity(x, y, k=5)["graph_convexity"] == 1.0
    assert euclidean_convexity(x, y)["euclidean_convexity"] == 1.0
    x, y = _interleaved()
    assert graph_convexity(x, y, k=5)["graph_convexity"] < 0.75  # 0.58 here
    assert euclidean_convexity(x, y)["euclidean_convexity"] < 0.75  # 0.63 here
    # a given classifier replaces the nearest neighbour: one that says "class 0" everywhere
    assert euclidean_convexity(x, y, classifier=lambda z: torch.zeros(len(z)))["per_class"].tolist() == [1.0, 0.0]


# --- Position / context ---


def test_position_context_decomposition_recovers_known_terms():
    c, t, d = 5, 7, 6
    mu = torch.randn(d, generator=_gen(13), dtype=torch.float64)
    pos = torch.randn(t, d, generator=_gen(14), dtype=torch.float64)
    pos -= pos.mean(0)
    ctx = torch.randn(c, d, generator=_gen(15), dtype=torch.float64)
    ctx -= ctx.mean(0)
    resid = torch.randn(c, t, d, generator=_gen(16), dtype=torch.float64)
    resid = resid - resid.mean(0) - resid.mean(1, keepdim=True) + resid.mean((0, 1))
    out = position_context_decomposition(mu + pos[None] + ctx[:, None] + resid)
    assert torch.allclose(out["mean"], mu) and torch.allclose(out["pos"], pos) and torch.allclose(out["ctx"], ctx)
    total = sum(float((pos[j] + ctx[i] + resid[i, j]).norm() ** 2) for i in range(c) for j in range(t))
    assert out["pos_share"] == pytest.approx(c * float(pos.norm() ** 2) / total)
    assert out["ctx_share"] == pytest.approx(t * float(ctx.norm() ** 2) / total)
    assert out["pos_share"] + out["ctx_share"] + out["resid_share"] == pytest.approx(1.0)
    cos = [abs(float(torch.cosine_similarity(pos[j], ctx[i], dim=0))) for i in range(c) for j in range(t)]
    assert out["incoherence_max"] == pytest.approx(max(cos)) and out["incoherence_mean"] == pytest.approx(np.mean(cos))


def test_smooth_low_rank_positions_orthogonal_to_contexts():
    c, t, d = 8, 64, 6
    angle = torch.linspace(0, math.pi, t, dtype=torch.float64)
    spiral = torch.zeros(t, d, dtype=torch.float64)
    spiral[:, 0], spiral[:, 1] = angle.cos(), angle.sin()
    ctx = torch.zeros(c, d, dtype=torch.float64)
    ctx[:, 2:] = torch.randn(c, d - 2, generator=_gen(17), dtype=torch.float64)
    smooth = position_context_decomposition(spiral[None] + ctx[:, None])
    assert smooth["pos_topk_share"] == pytest.approx(1.0) and smooth["pos_low_frequency_share"] > 0.95
    assert smooth["incoherence_max"] == pytest.approx(0.0, abs=1e-12) and smooth["resid_share"] < 1e-20
    rough = position_context_decomposition(torch.randn(c, t, d, generator=_gen(18)) + 5 * torch.randn(t, d))
    assert rough["pos_topk_share"] < 0.7 and rough["pos_low_frequency_share"] < 0.4


# --- Layer-wise quality ---


def test_prompt_entropy_matches_eigenvalues_and_its_extremes():
    z = torch.randn(3, 6, 10, generator=_gen(19), dtype=torch.float64)
    for alpha in (1.0, 2.0):
        out = prompt_entropy(z, alpha)
        for i in range(3):
            lam = np.linalg.eigvalsh(z[i].numpy() @ z[i].numpy().T)
            lam = lam.clip(min=0) / lam.clip(min=0).sum()
            ref = -np.sum(lam * np.log(lam)) if alpha == 1 else np.log(np.sum(lam**2)) / (1 - alpha)
            assert float(out["per_prompt"][i]) == pytest.approx(ref)
    orthogonal = (3 * _rotation(10)[:6])[None]
    assert prompt_entropy(orthogonal)["prompt_entropy"] == pytest.approx(math.log(6))
    assert prompt_entropy(orthogonal, alpha=2)["prompt_entropy_normalized"] == pytest.approx(1.0)
    # more tokens than dimensions: the Gram has rank d, the maximum is log d
    spread = torch.cat([_rotation(4), -_rotation(4)])[None]
    assert prompt_entropy(spread)["prompt_entropy_normalized"] == pytest.approx(1.0)
    centred = prompt_entropy(z, center=True)["per_prompt"][0]
    zc = torch.nn.functional.normalize(z[0] - z[0].mean(0), dim=1)
    assert float(centred) == pytest.approx(float(prompt_entropy(zc[None])["per_prompt"][0]))
    identical = torch.randn(10, dtype=torch.float64).expand(1, 6, 10)
    assert prompt_entropy(identical)["prompt_entropy"] == pytest.approx(0.0, abs=1e-9)


def test_prompt_entropy_mask_drops_padding():
    z = torch.randn(2, 7, 5, generator=_gen(20), dtype=torch.float64)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    out = prompt_entropy(z, mask=mask)
    assert float(out["per_prompt"][1]) == pytest.approx(float(prompt_entropy(z[1:, :4])["per_prompt"][0]))
    with pytest.raises(ValueError, match="mask"):
        prompt_entropy(z, mask=mask[:, :3])


def test_prompt_curvature_matches_a_loop_and_is_zero_on_a_line():
    z = torch.randn(2, 6, 4, generator=_gen(21), dtype=torch.float64)
    out = prompt_curvature(z)
    for i in range(2):
        v = np.diff(z[i].numpy(), axis=0)
        angles = [math.acos(np.dot(v[k + 1], v[k]) / np.linalg.norm(v[k + 1]) / np.linalg.norm(v[k])) for k in range(4)]
        assert float(out["per_prompt"][i]) == pytest.approx(np.mean(angles))
    steps = torch.tensor([0.0, 0.3, 1.0, 1.2, 4.0, 9.0], dtype=torch.float64)[:, None]
    line = torch.randn(4, dtype=torch.float64) + steps * torch.randn(4, dtype=torch.float64)
    assert prompt_curvature(line[None])["curvature"] == pytest.approx(0.0, abs=1e-6)
    back_and_forth = torch.tensor([[0.0], [1.0], [0.0], [1.0]], dtype=torch.float64) * torch.ones(1, 3)
    assert prompt_curvature(back_and_forth[None])["curvature"] == pytest.approx(math.pi)


def test_infonce_invariance_matches_the_authors_simclr_form_and_its_bounds():
    z1, z2 = torch.randn(100, 32, generator=_gen(22)), torch.randn(100, 32, generator=_gen(23))
    out = infonce_invariance(z1, z2)
    # Skean et al.'s released calculate_infonce, on unit vectors: -mean log(pos / (pos + neg)) over the 2n anchors
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    sim = torch.exp(z @ z.T / 0.1)
    ids = torch.arange(100).repeat(2)[None]
    pos_mask = (ids.T == ids).double().fill_diagonal_(0)
    pos, neg = (sim * pos_mask).sum(1), (sim * (ids.T != ids)).sum(1)
    assert out["infonce"] == pytest.approx(float(-torch.log(pos / (pos + neg)).mean()))
    assert out["infonce"] > 0.9 * math.log(199)
    assert infonce_invariance(z1, z1 + 0.01 * z2)["infonce"] < 0.1
    capped = infonce_invariance(z1, z2, max_samples=30, seed=1)
    keep = torch.randperm(100, generator=_gen(1))[:30].sort().values
    assert capped["infonce"] == pytest.approx(infonce_invariance(z1[keep], z2[keep])["infonce"])


def test_per_layer_matches_a_loop():
    layers = [torch.randn(2, 5, 4, generator=_gen(s)) for s in range(3)]
    out = per_layer(prompt_entropy, layers, alpha=2.0)
    assert set(out) == {"prompt_entropy", "prompt_entropy_normalized"}
    assert out["prompt_entropy"] == [prompt_entropy(z, alpha=2.0)["prompt_entropy"] for z in layers]
    views = [(torch.randn(8, 4, generator=_gen(s)), torch.randn(8, 4, generator=_gen(s + 9))) for s in range(2)]
    assert per_layer(infonce_invariance, views)["infonce"] == [infonce_invariance(*v)["infonce"] for v in views]
