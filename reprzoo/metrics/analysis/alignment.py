"""How alike two representations of the same ``n`` inputs are: unit matching, (t)RSA, linear CKA, Ollivier-Ricci
curvature of their neighbourhood graphs, and a contrastive linear probe between them.

Every function takes ``(n, d_a)`` and ``(n, d_b)`` feature tensors whose rows are the same inputs in the same order
and returns a ``dict`` of named scalars (plus tensors where the paper's result is a matrix or a matching).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment, linprog
from scipy.sparse.csgraph import shortest_path
from scipy.stats import rankdata, wasserstein_distance


def sample_indices(n: int, max_samples: int | None, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded random subset of ``max_samples`` of ``n`` rows (all rows when ``None`` or ``n``
    is smaller): the cap that metrics quadratic in the sample count take."""
    if max_samples is None or n <= max_samples:
        return torch.arange(n)
    if max_samples < 2:
        raise ValueError(f"max_samples must be at least 2, got {max_samples}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_samples].sort().values


def _check_pair(a: torch.Tensor, b: torch.Tensor, min_samples: int = 2) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"need (n, d_a) and (n, d_b) features of the same inputs, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} inputs, got {a.shape[0]}")


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit (population) variance per column; constant columns stay 0."""
    x = x.double() - x.double().mean(0)
    std = x.pow(2).mean(0).sqrt()
    return x / torch.where(std > 0, std, torch.ones_like(std))


# --- Convergent learning ------------------------------------------------------------------------------------------


def unit_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(d_a, d_b)`` Pearson correlation of every unit of ``a`` with every unit of ``b`` over the inputs (a constant
    unit correlates 0 with everything)."""
    _check_pair(a, b)
    return _standardize(a).T @ _standardize(b) / a.shape[0]


def convergent_learning(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Unit-level alignment of two networks (or layers) by activation correlation.

    Li, Yosinski, Clune, Lipson, Hopcroft, "Convergent Learning: Do different neural networks learn the same
    representations?", ICLR 2016, arXiv:1511.07543. The correlation :math:`\\rho_{ij}` of unit ``i`` of net A with
    unit ``j`` of net B over a probe set (for conv layers, over images and spatial positions: pass
    ``(n * h * w, channels)``) is matched *one-to-one* by the bipartite (Hungarian) matching that maximises
    :math:`\\sum \\rho_{i\\pi(i)}`, and *many-to-one* by the semi-matching :math:`\\max_j \\rho_{ij}` of each unit of A.

    Returns:
        ``one_to_one``: mean correlation of the matched pairs; ``many_to_one``: mean over A's units of their best
        correlation in B; ``matched_correlation``: ``(d_a,)`` the matched pair's correlation per unit of A (NaN where
        ``d_a > d_b`` leaves it unmatched); ``matching``: ``(d_a,)`` int64, B's unit matched to each unit of A (-1 if
        unmatched); ``correlation``: the ``(d_a, d_b)`` matrix.

    Cost: O(n d_a d_b) for the correlations, O(max(d_a, d_b)^3) for the matching. Ours: the paper's spectral
    many-to-many clustering (a visualisation) is left out; :func:`sparse_prediction` is its one-to-many part.
    """
    corr = unit_correlation(a, b)
    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    matching = torch.full((corr.shape[0],), -1, dtype=torch.long)
    matching[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    matched = torch.full((corr.shape[0],), float("nan"), dtype=torch.float64)
    matched[torch.as_tensor(rows)] = corr[rows, cols]
    return {
        "one_to_one": float(corr[rows, cols].mean()),
        "many_to_one": float(corr.max(dim=1).values.mean()),
        "matched_correlation": matched,
        "matching": matching,
        "correlation": corr,
    }


def sparse_prediction(a: torch.Tensor, b: torch.Tensor, alpha: float = 0.05) -> dict:
    """Sparse one-to-many prediction of each unit of B from all units of A (Li et al., 2016, Sec. 4).

    Both sides are standardised per unit; unit ``j`` of B is regressed on A by the Lasso
    :math:`\\min_w \\frac{1}{2n}\\lVert b_j - A w\\rVert^2 + \\alpha \\lVert w\\rVert_1` (scikit-learn's objective), so a
    larger ``alpha`` allows fewer A units per B unit.

    Returns:
        ``r2``: mean in-sample :math:`R^2` over B's non-constant units; ``r2_per_unit``: ``(d_b,)`` (NaN for constant
        units); ``nonzero``: mean number of A units used per B unit; ``coef``: ``(d_b, d_a)`` weights.

    Cost: coordinate descent, about O(n d_a d_b) per sweep.
    """
    from sklearn.linear_model import Lasso

    _check_pair(a, b)
    xa, xb = _standardize(a).numpy(), _standardize(b).numpy()
    coef = Lasso(alpha=alpha, fit_intercept=False, max_iter=10_000, tol=1e-8).fit(xa, xb).coef_.reshape(xb.shape[1], -1)
    var = xb.var(axis=0)
    r2 = np.where(var > 0, 1 - ((xb - xa @ coef.T) ** 2).mean(axis=0) / np.where(var > 0, var, 1.0), np.nan)
    return {
        "r2": float(np.nanmean(r2)),
        "r2_per_unit": torch.as_tensor(r2),
        "nonzero": float((coef != 0).sum(axis=1).mean()),
        "coef": torch.as_tensor(coef),
    }


# --- RSA and topological RSA --------------------------------------------------------------------------------------


def rdm(x: torch.Tensor, metric: str = "correlation") -> torch.Tensor:
    """``(n, n)`` representational dissimilarity matrix: ``1 - Pearson`` between the inputs' patterns
    (``"correlation"``) or their Euclidean distance (``"euclidean"``)."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (n >= 2, d) tensor, got shape {tuple(x.shape)}")
    x = x.double()
    if metric == "euclidean":
        return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    if metric != "correlation":
        raise ValueError(f"metric must be 'correlation' or 'euclidean', got {metric!r}")
    if (x.std(dim=1) == 0).any():
        raise ValueError("the correlation distance is undefined for an input whose pattern is constant")
    return 1 - torch.corrcoef(x)


def geo_topological_transform(d: torch.Tensor, lower: float = 0.1, upper: float = 0.9) -> torch.Tensor:
    """Lin & Kriegeskorte's geo-topological transform of a dissimilarity matrix: with ``l`` and ``u`` the ``lower``
    and ``upper`` quantiles of its off-diagonal entries, ``d <= l -> 0``, ``d >= u -> 1``, ``(d - l) / (u - l)``
    between (a step at ``l`` when ``l == u``). ``lower=0, upper=1`` is min-max scaling (plain RSA); ``lower = upper``
    keeps only the topology of the thresholded neighbourhood graph."""
    if not 0 <= lower <= upper <= 1:
        raise ValueError(f"need 0 <= lower <= upper <= 1, got lower={lower}, upper={upper}")
    off = d[~torch.eye(d.shape[0], dtype=torch.bool)].double()
    lo, hi = torch.quantile(off, lower), torch.quantile(off, upper)
    if hi == lo:
        return (d.double() > lo).double()
    return ((d.double() - lo) / (hi - lo)).clamp(0, 1)


def _kendall_tau_a(u: torch.Tensor, v: torch.Tensor, chunk: int = 1024) -> float:
    """(concordant - discordant) / all pairs; ties count as neither (Nili et al., 2014, for RDMs with ties)."""
    total = 0.0
    for i in range(0, len(u), chunk):
        total += float((torch.sign(u[i : i + chunk, None] - u) * torch.sign(v[i : i + chunk, None] - v)).sum())
    return total / (len(u) * (len(u) - 1))


def rsa(
    x: torch.Tensor,
    y: torch.Tensor,
    metric: str = "correlation",
    comparison: str = "spearman",
    lower: float | None = None,
    upper: float | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Representational similarity analysis, optionally topological (tRSA).

    Lin & Kriegeskorte, "The Topology and Geometry of Neural Representations", PNAS 2024, arXiv:2309.11028. Each
    representation gives an RDM over the same stimuli (:func:`rdm`); with ``lower``/``upper`` set, both pass through
    the geo-topological transform (:func:`geo_topological_transform`), giving tRDMs. The RDMs are compared by a rank
    correlation of their upper triangles: Spearman, or Kendall's :math:`\\tau_a` (which tRDMs' many ties call for).

    Returns:
        ``rsa``: the rank correlation, 1 for a model against itself (or any copy that is a rotation, a permutation of
        units or, for ``"euclidean"``, a rescaling of it); NaN if one (t)RDM is constant.

    Cost: O(n^2 d) for the RDMs; Spearman O(n^2 log n), Kendall tau-a O(n^4): cap with ``max_samples`` (seeded).
    """
    _check_pair(x, y, min_samples=3)
    if comparison not in ("spearman", "kendall"):
        raise ValueError(f"comparison must be 'spearman' or 'kendall', got {comparison!r}")
    keep = sample_indices(x.shape[0], max_samples, seed)
    dx, dy = rdm(x[keep], metric), rdm(y[keep], metric)
    if lower is not None or upper is not None:
        dx = geo_topological_transform(dx, 0.0 if lower is None else lower, 1.0 if upper is None else upper)
        dy = geo_topological_transform(dy, 0.0 if lower is None else lower, 1.0 if upper is None else upper)
    i, j = torch.triu_indices(len(keep), len(keep), offset=1)
    u, v = dx[i, j], dy[i, j]
    if comparison == "kendall":
        return {"rsa": _kendall_tau_a(u, v)}
    ru, rv = torch.as_tensor(rankdata(u.numpy())), torch.as_tensor(rankdata(v.numpy()))
    return {"rsa": float(torch.corrcoef(torch.stack([ru, rv]))[0, 1])}


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Linear centred kernel alignment (Kornblith et al., "Similarity of Neural Network Representations Revisited",
    ICML 2019, arXiv:1905.00414): with column-centred ``X``, ``Y``,
    :math:`\\lVert Y^\\top X\\rVert_F^2 / (\\lVert X^\\top X\\rVert_F \\lVert Y^\\top Y\\rVert_F)`.

    Returns:
        ``cka`` in [0, 1]: 1 for copies equal up to rotation and isotropic scaling. Cost O(n d^2).
    """
    _check_pair(x, y)
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    return {"cka": float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))}


def pairwise_alignment_matrix(
    features: dict[str, torch.Tensor],
    metric: Callable[[torch.Tensor, torch.Tensor], dict[str, float] | float],
    key: str | None = None,
) -> tuple[list[str], torch.Tensor]:
    """``metric(features[a], features[b])[key]`` (or the float it returns) for every ordered pair of models, for a heatmap.

    Args:
        features: model name -> ``(n, d_model)`` features of the same ``n`` inputs.
        metric: a two-representation metric of this module, e.g. :func:`linear_cka` or
            ``functools.partial(rsa, comparison="kendall")``.
        key: which of its returned scalars to tabulate, e.g. ``"cka"``, ``"rsa"``, ``"one_to_one"``; ``None`` for a
            metric that returns a float.

    Returns:
        The names in the dict's order and the ``(m, m)`` matrix, row = first argument (asymmetric metrics such as
        ``many_to_one`` stay asymmetric).
    """
    names = list(features)
    if len(names) < 1:
        raise ValueError("need at least one model's features")
    matrix = torch.empty(len(names), len(names), dtype=torch.float64)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            value = metric(features[a], features[b])
            matrix[i, j] = float(value if key is None else value[key])
    return names, matrix


# --- Ollivier-Ricci curvature -------------------------------------------------------------------------------------


def knn_graph(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(n, n)`` symmetric weights of the undirected k-nearest-neighbour graph (an edge where either point is among
    the other's ``k`` nearest), weighted by Euclidean distance; 0 means no edge (points are assumed distinct)."""
    if x.ndim != 2 or not 0 < k < x.shape[0]:
        raise ValueError(f"need an (n, d) tensor and 0 < k < n, got shape {tuple(x.shape)} and k={k}")
    d = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
    idx = d.fill_diagonal_(float("inf")).topk(k, largest=False).indices
    w = torch.zeros_like(d).scatter_(1, idx, d.gather(1, idx))
    return torch.maximum(w, w.T)


def _w1(mu: np.ndarray, nu: np.ndarray, cost: np.ndarray) -> float:
    """Earth mover's distance between two discrete measures as the transport linear program."""
    m, n = cost.shape
    a_eq = np.vstack([np.kron(np.eye(m), np.ones((1, n))), np.kron(np.ones((1, m)), np.eye(n))])
    return float(linprog(cost.ravel(), A_eq=a_eq, b_eq=np.concatenate([mu, nu]), bounds=(0, None), method="highs").fun)


def ollivier_ricci_curvature(weights: torch.Tensor, alpha: float = 0.5) -> dict[str, torch.Tensor]:
    """Ollivier-Ricci curvature of every edge and node of a weighted undirected graph.

    Ollivier (2009), as used by Torbati et al., "Exploring Geometric Representational Alignment through
    Ollivier-Ricci Curvature and Ricci Flow", 2025, arXiv:2501.00919:
    :math:`\\kappa(x, y) = 1 - W_1(m_x, m_y) / d(x, y)`, with ``d`` the shortest-path distance and :math:`m_x` the lazy
    random walk from ``x``: mass ``alpha`` stays on ``x``, ``(1 - alpha)`` spreads uniformly over its neighbours. A
    node's curvature is the mean over its edges.

    Args:
        weights: ``(n, n)`` symmetric non-negative edge lengths, 0 for no edge (e.g. :func:`knn_graph`).
        alpha: laziness of the random walk in [0, 1).

    Returns:
        ``edges``: ``(e, 2)`` int64 node pairs ``i < j``; ``edge_curvature``: ``(e,)``; ``node_curvature``: ``(n,)``
        (NaN for isolated nodes).

    Cost: one small transport LP per edge (supports of degree + 1 points; HiGHS, a few ms each) plus all-pairs
    shortest paths, O(n^3).
    Ours: uniform neighbour measure (Ollivier's); GraphRicciCurvature's default weights neighbours by
    :math:`e^{-d^2}`.
    """
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or not torch.equal(weights, weights.T):
        raise ValueError(f"need a symmetric (n, n) weight matrix, got shape {tuple(weights.shape)}")
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    w = weights.double().numpy()
    adj = w > 0
    dist = shortest_path(w, directed=False)

    def walk(node: int) -> tuple[np.ndarray, np.ndarray]:
        nbrs = np.flatnonzero(adj[node])
        return np.concatenate([[node], nbrs]), np.concatenate([[alpha], np.full(len(nbrs), (1 - alpha) / len(nbrs))])

    src, dst = np.nonzero(np.triu(adj))
    kappa = np.empty(len(src))
    for e, (x, y) in enumerate(zip(src, dst)):
        (sx, mx), (sy, my) = walk(x), walk(y)
        kappa[e] = 1 - _w1(mx, my, dist[np.ix_(sx, sy)]) / dist[x, y]
    total = np.bincount(src, kappa, len(w)) + np.bincount(dst, kappa, len(w))
    degree = adj.sum(axis=1)
    node = np.where(degree > 0, total / np.maximum(degree, 1), np.nan)
    edges = torch.as_tensor(np.stack([src, dst], axis=1), dtype=torch.long)
    return {"edges": edges, "edge_curvature": torch.as_tensor(kappa), "node_curvature": torch.as_tensor(node)}


def ricci_alignment(
    x: torch.Tensor,
    y: torch.Tensor,
    k: int = 10,
    alpha: float = 0.5,
    max_samples: int | None = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Geometric alignment of two systems through the Ollivier-Ricci curvature of their kNN graphs.

    Torbati et al., 2025, arXiv:2501.00919: each system's representation of the same stimuli becomes a kNN graph
    (:func:`knn_graph`) whose edge and node curvatures (:func:`ollivier_ricci_curvature`) describe its local geometry;
    the systems are compared by the distributions of node and edge curvature and, since nodes are the same stimuli,
    node by node.

    Returns:
        ``node_spearman``: Spearman correlation of the stimuli's node curvatures in the two graphs (1 when aligned);
        ``node_w1`` / ``edge_w1``: 1-D Wasserstein distance between the two node- / edge-curvature distributions
        (0 when aligned); ``edge_jaccard``: Jaccard index of the two edge sets; ``mean_curvature_x`` /
        ``mean_curvature_y``: mean edge curvature of each graph.

    Cost: O(n^2 d) graphs, O(n^3) shortest paths, one LP per edge (about ``n k`` edges, a few ms each: some 10 s
    per graph at ``n = 300, k = 10``): cap with ``max_samples`` (seeded).
    Ours: the paper's Ricci-flow community comparison is left out.
    """
    _check_pair(x, y, min_samples=k + 1)
    keep = sample_indices(x.shape[0], max_samples, seed)
    wx, wy = knn_graph(x[keep], k), knn_graph(y[keep], k)
    cx, cy = ollivier_ricci_curvature(wx, alpha), ollivier_ricci_curvature(wy, alpha)
    nx_, ny_ = cx["node_curvature"].numpy(), cy["node_curvature"].numpy()
    ex, ey = cx["edge_curvature"].numpy(), cy["edge_curvature"].numpy()
    rank = torch.as_tensor(np.stack([rankdata(nx_), rankdata(ny_)]))
    return {
        "node_spearman": float(torch.corrcoef(rank)[0, 1]),
        "node_w1": float(wasserstein_distance(nx_, ny_)),
        "edge_w1": float(wasserstein_distance(ex, ey)),
        "edge_jaccard": int(((wx > 0) & (wy > 0)).sum()) / int(((wx > 0) | (wy > 0)).sum()),
        "mean_curvature_x": float(ex.mean()),
        "mean_curvature_y": float(ey.mean()),
    }


# --- Contrastive linear probe -------------------------------------------------------------------------------------


def cross_retrieval(zx: torch.Tensor, zy: torch.Tensor) -> dict[str, float]:
    """Retrieval of the paired item by cosine similarity in both directions.

    Returns:
        ``top1_x2y``, ``top1_y2x``: share of items whose partner is the most similar item of the other side;
        ``mrr_x2y``, ``mrr_y2x``: mean reciprocal rank of the partner (ties ranked pessimistically); ``chance_top1``:
        ``1 / n``.
    """
    _check_pair(zx, zy)
    sim = F.normalize(zx.double(), dim=1) @ F.normalize(zy.double(), dim=1).T
    out = {}
    for name, s in (("x2y", sim), ("y2x", sim.T)):
        rank = (s >= s.diagonal()[:, None]).sum(1).double()
        out[f"top1_{name}"] = float((rank == 1).double().mean())
        out[f"mrr_{name}"] = float((1 / rank).mean())
    return out | {"chance_top1": 1 / zx.shape[0]}


def contrastive_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    dim: int | None = None,
    train_fraction: float = 0.7,
    temperature: float = 0.1,
    steps: int = 300,
    lr: float = 0.01,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out retrieval through linear projections of two frozen embedding spaces, trained contrastively.

    Ngo & Kim, "What Do Language Models Hear? Probing for Auditory Representations in Language Models", ACL 2024,
    arXiv:2402.16998: linear heads :math:`P_x`, :math:`P_y` project the paired items' embeddings (the paper's sounds
    ``x`` and their classes' text ``y``) into a shared space, trained on a split of the items with
    :math:`\mathcal L = \sum_c -s(y_c, x_c)/\tau + \log\sum_{c'} \exp(s(y_{c'}, x_c)/\tau)`, ``s`` the cosine of
    the projections; the probe is then tested on items it never saw.

    Args:
        x, y: ``(n, d_x)`` and ``(n, d_y)`` frozen embeddings of the same ``n`` items.
        dim: width of the shared space (default ``min(d_x, d_y)``).
        train_fraction: share of items (seeded random split) used to train the probe.
        temperature, steps, lr: :math:`\tau`, full-batch Adam steps and learning rate.

    Returns:
        :func:`cross_retrieval` among the held-out items, both directions (``top1_x2y``, ``top1_y2x``, ``mrr_x2y``,
        ``mrr_y2x``, ``chance_top1``); the paper's protocol, a held-out ``x`` retrieving its partner among all ``n``
        items' ``y`` (``top1_x2y_all``, ``mrr_x2y_all``); ``n_test``.

    Cost: O(steps n_train (n_train + d_x + d_y) dim). Ours: features are z-scored with the training split's
    statistics.
    """
    _check_pair(x, y, min_samples=4)
    n_train = int(round(train_fraction * x.shape[0]))
    if not 2 <= n_train <= x.shape[0] - 2:
        raise ValueError(f"train_fraction={train_fraction} leaves fewer than 2 items on one side of the split")
    dim = dim or min(x.shape[1], y.shape[1])
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=gen)
    train, test = perm[:n_train], perm[n_train:]
    x, y = x.double(), y.double()
    x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-8)
    y = (y - y[train].mean(0)) / (y[train].std(0) + 1e-8)
    heads = [
        (torch.randn(z.shape[1], dim, generator=gen, dtype=torch.float64) / z.shape[1] ** 0.5).requires_grad_() for z in (x, y)
    ]
    optimizer = torch.optim.Adam(heads, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            logits = F.normalize(x[train] @ heads[0], dim=1) @ F.normalize(y[train] @ heads[1], dim=1).T
            loss = F.cross_entropy(logits / temperature, torch.arange(n_train))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        zx, zy = F.normalize(x @ heads[0], dim=1), F.normalize(y @ heads[1], dim=1)
        sim = zx[test] @ zy.T
        rank = (sim >= sim[torch.arange(len(test)), test][:, None]).sum(1).double()
        return cross_retrieval(zx[test], zy[test]) | {
            "top1_x2y_all": float((rank == 1).double().mean()),
            "mrr_x2y_all": float((1 / rank).mean()),
            "n_test": len(test),
        }


__all__ = [
    "contrastive_probe",
    "convergent_learning",
    "cross_retrieval",
    "geo_topological_transform",
    "knn_graph",
    "linear_cka",
    "ollivier_ricci_curvature",
    "pairwise_alignment_matrix",
    "rdm",
    "ricci_alignment",
    "rsa",
    "sample_indices",
    "sparse_prediction",
    "unit_correlation",
]
