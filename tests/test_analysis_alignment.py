import functools
import itertools

import networkx as nx
import numpy as np
import ot
import pytest
import torch
from scipy.stats import spearmanr

from reprzoo.metrics.analysis.alignment import (
    contrastive_probe,
    convergent_learning,
    cross_retrieval,
    geo_topological_transform,
    knn_graph,
    linear_cka,
    ollivier_ricci_curvature,
    pairwise_alignment_matrix,
    rdm,
    ricci_alignment,
    rsa,
    sparse_prediction,
    unit_correlation,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rotation(d: int, seed: int = 1) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, d, generator=_gen(seed), dtype=torch.float64))[0]


# --- convergent learning ---


def test_unit_correlation_matches_numpy_corrcoef():
    a, b = torch.randn(50, 4, generator=_gen(0)), torch.randn(50, 3, generator=_gen(1))
    ref = np.corrcoef(a.T.numpy(), b.T.numpy())[:4, 4:]
    assert np.allclose(unit_correlation(a, b).numpy(), ref, atol=1e-6)


def test_one_to_one_matching_recovers_a_permutation_of_units():
    a = torch.randn(200, 12, generator=_gen(0))
    perm = torch.randperm(12, generator=_gen(2))
    out = convergent_learning(a, a[:, perm] * 3 + 1)
    assert out["one_to_one"] == pytest.approx(1.0)
    assert out["many_to_one"] == pytest.approx(1.0)
    assert torch.equal(perm[out["matching"]], torch.arange(12))


def test_wider_first_network_leaves_units_unmatched():
    a = torch.randn(100, 6, generator=_gen(30))
    out = convergent_learning(a, a[:, [4, 1, 2]])
    assert out["matching"].tolist() == [-1, 1, 2, -1, 0, -1]
    assert out["one_to_one"] == pytest.approx(1.0) and out["matched_correlation"].isnan().sum() == 3


def test_one_to_one_matching_is_the_brute_force_optimum():
    a, b = torch.randn(60, 4, generator=_gen(3)), torch.randn(60, 5, generator=_gen(4))
    out = convergent_learning(a, b)
    corr = out["correlation"]
    best = max(sum(float(corr[i, j]) for i, j in enumerate(cols)) for cols in itertools.permutations(range(5), 4))
    assert out["one_to_one"] * 4 == pytest.approx(best)
    assert out["many_to_one"] == pytest.approx(float(corr.max(1).values.mean()))


def test_sparse_prediction_is_soft_thresholding_for_an_orthogonal_design():
    # with A^T A / n = I the Lasso decouples: w = sign(c) max(|c| - alpha, 0), c = A^T b / n
    n, alpha = 100, 0.1
    centred = torch.randn(n, 6, generator=_gen(5), dtype=torch.float64)
    a = torch.linalg.qr(centred - centred.mean(0))[0] * n**0.5  # zero-mean, unit-variance, orthogonal columns
    b = a[:, :3] @ torch.randn(3, 4, generator=_gen(6), dtype=torch.float64) + torch.randn(n, 4, generator=_gen(7))
    out = sparse_prediction(a, b, alpha=alpha)
    bs = (b - b.mean(0)) / b.std(0, unbiased=False)
    c = a.T @ bs / n
    ref = torch.sign(c) * (c.abs() - alpha).clamp(min=0)
    assert torch.allclose(out["coef"], ref.T, atol=1e-6)
    pred = a @ ref
    r2 = 1 - ((bs - pred) ** 2).mean(0)
    assert out["r2"] == pytest.approx(float(r2.mean()), abs=1e-6)


def test_sparse_prediction_of_a_permuted_copy_uses_one_unit():
    a = torch.randn(300, 8, generator=_gen(8))
    out = sparse_prediction(a, a[:, torch.randperm(8, generator=_gen(9))], alpha=0.05)
    assert out["nonzero"] == 1.0
    assert out["r2"] > 0.99


# --- RSA / tRSA ---


def test_rsa_matches_scipy_spearman_and_a_kendall_tau_a_loop():
    x, y = torch.randn(9, 5, generator=_gen(10)), torch.randn(9, 7, generator=_gen(11))
    i, j = np.triu_indices(9, 1)
    dx, dy = rdm(x).numpy()[i, j], rdm(y).numpy()[i, j]
    assert rsa(x, y)["rsa"] == pytest.approx(spearmanr(dx, dy).statistic)
    tx = geo_topological_transform(rdm(x), 0.2, 0.6).numpy()[i, j]
    ty = geo_topological_transform(rdm(y), 0.2, 0.6).numpy()[i, j]
    m = len(tx)
    tau = sum(np.sign(tx[p] - tx[q]) * np.sign(ty[p] - ty[q]) for p in range(m) for q in range(p + 1, m))
    assert rsa(x, y, comparison="kendall", lower=0.2, upper=0.6)["rsa"] == pytest.approx(tau / (m * (m - 1) / 2))


def test_rdm_matches_definitions():
    x = torch.randn(6, 4, generator=_gen(12), dtype=torch.float64)
    assert torch.allclose(rdm(x), torch.as_tensor(1 - np.corrcoef(x.numpy())))
    ref = [[float(np.linalg.norm(x[p] - x[q])) for q in range(6)] for p in range(6)]
    assert torch.allclose(rdm(x, "euclidean"), torch.tensor(ref, dtype=torch.float64), atol=1e-9)


def test_rsa_of_a_model_with_itself_is_one_and_invariant_to_rotations_and_permutations():
    x = torch.randn(40, 16, generator=_gen(13), dtype=torch.float64)
    copy = (x @ _rotation(16))[:, torch.randperm(16, generator=_gen(14))] * 2.5
    assert rsa(x, x)["rsa"] == pytest.approx(1.0)
    assert rsa(x, copy, metric="euclidean")["rsa"] == pytest.approx(1.0)
    assert rsa(x, copy, metric="euclidean", lower=0.1, upper=0.5)["rsa"] == pytest.approx(1.0)
    # tau-a counts tied pairs as neither concordant nor discordant, so a tRDM's tau-a with itself is below 1
    tau = functools.partial(rsa, metric="euclidean", lower=0.1, upper=0.5, comparison="kendall")
    assert tau(x, copy)["rsa"] == pytest.approx(tau(x, x)["rsa"])
    assert torch.allclose(rdm(x, "euclidean"), rdm(copy, "euclidean") / 2.5)
    assert abs(rsa(x, torch.randn(40, 16, generator=_gen(15)))["rsa"]) < 0.2


def test_geo_topological_transform_is_a_clamped_ramp_in_unit_interval():
    d = rdm(torch.randn(30, 8, generator=_gen(16)), "euclidean")
    t = geo_topological_transform(d, 0.25, 0.75)
    assert float(t.min()) == 0.0 and float(t.max()) == 1.0
    off = d[~torch.eye(30, dtype=torch.bool)]
    lo, hi = np.quantile(off.numpy(), [0.25, 0.75])
    assert torch.allclose(t, torch.as_tensor(np.clip((d.numpy() - lo) / (hi - lo), 0, 1)))
    assert set(geo_topological_transform(d, 0.5, 0.5).unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="lower <= upper"):
        geo_topological_transform(d, 0.8, 0.2)


def test_rsa_argument_checks_and_sampling_cap():
    x = torch.randn(50, 4, generator=_gen(17))
    with pytest.raises(ValueError, match="same inputs"):
        rsa(x, x[:40])
    with pytest.raises(ValueError, match="comparison"):
        rsa(x, x, comparison="pearson")
    assert rsa(x, x * 2, max_samples=10, seed=3)["rsa"] == pytest.approx(1.0)


# --- CKA and the pairwise matrix ---


def test_linear_cka_matches_the_hsic_form_and_is_one_for_a_rotated_copy():
    x, y = torch.randn(30, 5, generator=_gen(18), dtype=torch.float64), torch.randn(30, 3, generator=_gen(19))
    h = np.eye(30) - 1 / 30
    k, l_ = x.numpy() @ x.numpy().T, y.double().numpy() @ y.double().numpy().T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    ref = hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))
    assert linear_cka(x, y)["cka"] == pytest.approx(ref)
    assert linear_cka(x, 3 * x @ _rotation(5))["cka"] == pytest.approx(1.0)


def test_pairwise_alignment_matrix_matches_a_loop():
    feats = {name: torch.randn(25, 6, generator=_gen(s)) for s, name in enumerate(["a", "b", "c"])}
    feats["b_rot"] = feats["b"] @ _rotation(6).float()
    names, m = pairwise_alignment_matrix(feats, linear_cka, "cka")
    assert names == ["a", "b", "c", "b_rot"]
    for i, p in enumerate(names):
        for j, q in enumerate(names):
            assert m[i, j] == pytest.approx(linear_cka(feats[p], feats[q])["cka"])
    assert torch.allclose(m.diagonal(), torch.ones(4, dtype=torch.float64))
    assert m[1, 3] == pytest.approx(1.0, abs=1e-6)
    _, r = pairwise_alignment_matrix(feats, functools.partial(rsa, metric="euclidean"), "rsa")
    assert torch.allclose(r, r.T) and r[1, 3] == pytest.approx(1.0)
    _, f = pairwise_alignment_matrix(feats, lambda a, b: linear_cka(a, b)["cka"])
    assert torch.equal(f, m)


# --- Ollivier-Ricci curvature ---


def _reference_curvature(weights: torch.Tensor, alpha: float) -> dict[tuple[int, int], float]:
    """networkx shortest paths + POT's exact EMD over the lazy random-walk measures."""
    g = nx.from_numpy_array(weights.numpy())
    dist = dict(nx.all_pairs_dijkstra_path_length(g))
    out = {}
    for x, y in g.edges():
        sx, sy = [x, *g.neighbors(x)], [y, *g.neighbors(y)]
        mx = np.array([alpha] + [(1 - alpha) / (len(sx) - 1)] * (len(sx) - 1))
        my = np.array([alpha] + [(1 - alpha) / (len(sy) - 1)] * (len(sy) - 1))
        cost = np.array([[dist[p][q] for q in sy] for p in sx])
        out[min(x, y), max(x, y)] = 1 - ot.emd2(mx, my, cost) / dist[x][y]
    return out


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_ricci_curvature_matches_networkx_and_pot(alpha):
    w = knn_graph(torch.randn(40, 3, generator=_gen(20)), k=4)
    out = ollivier_ricci_curvature(w, alpha)
    ref = _reference_curvature(w, alpha)
    assert len(ref) == len(out["edges"])
    for (x, y), kappa in zip(out["edges"].tolist(), out["edge_curvature"].tolist()):
        assert kappa == pytest.approx(ref[x, y], abs=1e-7)
    node0 = np.mean([k for (x, y), k in ref.items() if 0 in (x, y)])
    assert float(out["node_curvature"][0]) == pytest.approx(node0)


def test_ricci_curvature_known_values_clique_tree_and_bridge():
    # complete graph K_n: kappa = 1 - |alpha - (1 - alpha) / (n - 1)|
    clique = torch.as_tensor(nx.to_numpy_array(nx.complete_graph(5)))
    for alpha in (0.0, 0.5):
        kappa = ollivier_ricci_curvature(clique, alpha)["edge_curvature"]
        assert torch.allclose(kappa, torch.full_like(kappa, 1 - abs(alpha - (1 - alpha) / 4)))
    # tree edge between two degree-3 nodes, alpha = 0: Jost & Liu's -2 (1 - 1/d_x - 1/d_y) = -2/3
    tree = nx.Graph([(0, 1), (0, 2), (0, 3), (1, 4), (1, 5)])
    out = ollivier_ricci_curvature(torch.as_tensor(nx.to_numpy_array(tree, nodelist=range(6))), 0.0)
    bridge = out["edges"].tolist().index([0, 1])
    assert float(out["edge_curvature"][bridge]) == pytest.approx(-2 / 3)
    # two cliques joined by one edge: positive inside, negative on the bridge
    barbell = nx.barbell_graph(5, 0)
    out = ollivier_ricci_curvature(torch.as_tensor(nx.to_numpy_array(barbell)), 0.5)
    is_bridge = torch.tensor([tuple(e) == (4, 5) for e in out["edges"].tolist()])
    assert (out["edge_curvature"][is_bridge] < 0).all() and (out["edge_curvature"][~is_bridge] > 0).all()


def test_ricci_alignment_of_a_rotated_rescaled_copy_is_perfect():
    x = torch.randn(30, 5, generator=_gen(21), dtype=torch.float64)
    same = ricci_alignment(x, 2 * x @ _rotation(5), k=4)
    assert same["node_spearman"] == pytest.approx(1.0)
    assert same["node_w1"] == pytest.approx(0.0, abs=1e-6) and same["edge_w1"] == pytest.approx(0.0, abs=1e-6)
    assert same["edge_jaccard"] == 1.0
    other = ricci_alignment(x, torch.randn(30, 5, generator=_gen(22), dtype=torch.float64), k=4)
    assert other["node_spearman"] < 0.5 and other["edge_jaccard"] < 0.5


def test_ricci_argument_checks():
    with pytest.raises(ValueError, match="symmetric"):
        ollivier_ricci_curvature(torch.rand(4, 4, generator=_gen(23)))
    with pytest.raises(ValueError, match="0 < k < n"):
        knn_graph(torch.randn(5, 2), k=5)


# --- contrastive probe ---


def test_cross_retrieval_matches_a_loop():
    zx, zy = torch.randn(12, 4, generator=_gen(24)), torch.randn(12, 4, generator=_gen(25))
    sim = torch.nn.functional.cosine_similarity(zx[:, None], zy[None], dim=2).double()
    ranks = [1 + sum(float(sim[i, j]) > float(sim[i, i]) for j in range(12)) for i in range(12)]
    out = cross_retrieval(zx, zy)
    assert out["mrr_x2y"] == pytest.approx(np.mean([1 / r for r in ranks]), abs=1e-6)
    assert out["top1_x2y"] == pytest.approx(np.mean([r == 1 for r in ranks]))
    assert cross_retrieval(zx, zx)["top1_y2x"] == 1.0


def test_contrastive_probe_aligns_a_rotated_copy_and_is_at_chance_on_noise():
    x = torch.randn(200, 16, generator=_gen(26))
    rotated = contrastive_probe(x, x @ _rotation(16).float())
    assert rotated["n_test"] == 60
    assert min(rotated["top1_x2y"], rotated["top1_y2x"], rotated["top1_x2y_all"]) > 0.9
    noise = contrastive_probe(x, torch.randn(200, 24, generator=_gen(27)))
    # chance MRR among 60 items is H_60 / 60 = 0.08, among all 200 items H_200 / 200 = 0.03
    assert max(noise["mrr_x2y"], noise["mrr_y2x"]) < 0.25 and max(noise["top1_x2y"], noise["top1_y2x"]) < 0.15
    assert noise["mrr_x2y_all"] < 0.15
    with pytest.raises(ValueError, match="split"):
        contrastive_probe(x[:5], x[:5], train_fraction=0.9)
