"""The geometry of one representation: isotropy (IsoScore), neural collapse, convexity of class regions, the
position/context decomposition of token states, and the layer-wise prompt entropy, curvature and invariance of
Skean et al.

Every function takes feature tensors (``(n, d)`` features, ``(n,)`` int64 labels, ``(n, t, d)`` token states) and
returns a ``dict`` of named scalars, plus tensors under documented keys where the paper's result is a vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.fft import dct
from scipy.sparse.csgraph import dijkstra

from reprzoo.metrics.analysis.alignment import knn_graph, sample_indices


def _check_features(x: torch.Tensor, min_samples: int = 2) -> None:
    if x.ndim != 2 or x.shape[0] < min_samples:
        raise ValueError(f"need an (n >= {min_samples}, d) feature tensor, got shape {tuple(x.shape)}")


def _check_labels(x: torch.Tensor, labels: torch.Tensor) -> int:
    """Number of classes; labels must be ``0 .. k-1``, every class present, at least two classes."""
    _check_features(x)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"need one label per row: features {tuple(x.shape)}, labels {tuple(labels.shape)}")
    k = int(labels.max()) + 1
    if int(labels.min()) < 0 or len(labels.unique()) != k or k < 2:
        raise ValueError(f"labels must cover 0..k-1 with k >= 2 classes, got {labels.unique().tolist()}")
    return k


# --- IsoScore -----------------------------------------------------------------------------------------------------


def isoscore(x: torch.Tensor) -> dict[str, float]:
    """How uniformly a point cloud uses its ambient dimensions.

    Rudman, Gillman, Rayne, Eickhoff, "IsoScore: Measuring the Uniformity of Embedding Space Utilization", ACL
    Findings 2022, arXiv:2108.07344, Algorithm 1: (1) PCA-rotate the points; (2) take the variance vector
    :math:`\\Sigma_D` along the principal axes; (3) normalise it to :math:`\\hat\\Sigma_D = \\sqrt{d}\\,\\Sigma_D /
    \\lVert\\Sigma_D\\rVert`; (4) isotropy defect :math:`\\delta = \\lVert\\hat\\Sigma_D - \\mathbf 1\\rVert /
    \\sqrt{2(d - \\sqrt d)}`; (5) dimensions used :math:`k = (d - \\delta^2 (d - \\sqrt d))^2 / d`; (6) IsoScore
    :math:`\\iota = (k - 1) / (d - 1)`.

    Returns:
        ``isoscore`` in [0, 1]: 1 for an isotropic cloud, 0 when all variance lies on one axis; invariant to
        rotations and rescaling. ``isotropy_defect``: :math:`\\delta`; ``dims_used``: :math:`k`.

    Cost: O(n d^2 + d^3). Ours: ``n < d`` is allowed (the missing variances are 0); the authors' code needs
    ``n >= d``.
    """
    _check_features(x)
    d = x.shape[1]
    if d < 2:
        raise ValueError("IsoScore needs at least 2 dimensions")
    x = x.double() - x.double().mean(0)
    # the variances along the principal axes are the covariance's eigenvalues
    variance = torch.linalg.eigvalsh(x.T @ x / (x.shape[0] - 1)).clamp(min=0)
    if variance.sum() == 0:
        raise ValueError("IsoScore is undefined for points that are all equal")
    normalized = math.sqrt(d) * variance / variance.norm()
    defect = float((normalized - 1).norm()) / math.sqrt(2 * (d - math.sqrt(d)))
    dims_used = (d - defect**2 * (d - math.sqrt(d))) ** 2 / d
    return {"isoscore": (dims_used - 1) / (d - 1), "isotropy_defect": defect, "dims_used": dims_used}


# --- Neural collapse ----------------------------------------------------------------------------------------------


def neural_collapse(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> dict:
    """The four neural-collapse statistics of penultimate features (and a linear classifier on them).

    Papyan, Han, Donoho (2020, arXiv:2008.08186), as measured by Dang, Tran, Osher, Tran-The, Ho, Nguyen, "Neural
    Collapse in Deep Linear Networks: From Balanced to Imbalanced Data", ICML 2023, arXiv:2301.00437. With class
    means :math:`\\mu_c`, global mean :math:`\\mu_G`, centred means :math:`M = [\\mu_c - \\mu_G]_c`,
    :math:`\\Sigma_W = \\frac1n\\sum_i (h_i - \\mu_{y_i})(h_i - \\mu_{y_i})^\\top`,
    :math:`\\Sigma_B = \\frac1K \\sum_c (\\mu_c - \\mu_G)(\\mu_c - \\mu_G)^\\top`:

    * NC1 (variability collapse): :math:`\\mathrm{tr}(\\Sigma_W \\Sigma_B^+) / K`;
    * NC2 (simplex ETF): equinorm = std / mean of :math:`\\lVert\\mu_c - \\mu_G\\rVert`; equiangularity = mean over
      ``c != c'`` of :math:`|\\cos(\\mu_c - \\mu_G, \\mu_{c'} - \\mu_G) + 1/(K-1)|`; and the ETF distance
      :math:`\\lVert MM^\\top/\\lVert MM^\\top\\rVert_F - (I_K - \\frac1K \\mathbf 1\\mathbf 1^\\top)/\\sqrt{K-1}\\rVert_F`
      (Zhu et al., 2021);
    * NC3 (self-duality): :math:`\\lVert W/\\lVert W\\rVert_F - M/\\lVert M\\rVert_F\\rVert_F`;
    * NC4 (nearest class centre): share of samples where :math:`\\arg\\max_c (W h + b)_c` differs from
      :math:`\\arg\\min_c \\lVert h - \\mu_c\\rVert`.

    Args:
        features: ``(n, d)``; labels: ``(n,)`` in ``0 .. K-1``, every class present.
        weight, bias: optional ``(K, d)`` / ``(K,)`` last linear layer, row ``c`` = class ``c``; NC3 and NC4 need it.

    Returns:
        ``nc1``, ``nc2_equinorm``, ``nc2_equiangular``, ``nc2_etf`` and, with ``weight``, ``nc3``, ``nc4``: all 0
        under full collapse onto a simplex ETF with a self-dual classifier; ``class_mean_norms``: ``(K,)``
        :math:`\\lVert\\mu_c - \\mu_G\\rVert` (under imbalance the paper's limit is not equinorm: look here).

    Cost: O(n d^2 + d^3).
    """
    k = _check_labels(features, labels)
    h, labels = features.double(), labels.long()
    means = torch.zeros(k, h.shape[1], dtype=torch.float64).index_add_(0, labels, h) / labels.bincount(minlength=k)[:, None]
    m = means - h.mean(0)
    within = h - means[labels]
    sigma_w = within.T @ within / h.shape[0]
    sigma_b = m.T @ m / k
    norms = m.norm(dim=1)
    cos = F.normalize(m, dim=1) @ F.normalize(m, dim=1).T
    off = ~torch.eye(k, dtype=torch.bool)
    gram = m @ m.T
    etf = (torch.eye(k, dtype=torch.float64) - 1 / k) / math.sqrt(k - 1)
    out = {
        "nc1": float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)) / k),
        "nc2_equinorm": float(norms.std() / norms.mean()),
        "nc2_equiangular": float((cos[off] + 1 / (k - 1)).abs().mean()),
        "nc2_etf": float((gram / gram.norm() - etf).norm()),
        "class_mean_norms": norms,
    }
    if weight is None:
        return out
    if weight.shape != (k, h.shape[1]) or (bias is not None and bias.shape != (k,)):
        raise ValueError(f"need a ({k}, {h.shape[1]}) classifier weight and a ({k},) bias, got {tuple(weight.shape)}")
    w = weight.double()
    logits = h @ w.T + (0 if bias is None else bias.double())
    nearest = torch.cdist(h, means).argmin(dim=1)
    return out | {
        "nc3": float((w / w.norm() - m / m.norm()).norm()),
        "nc4": float((logits.argmax(dim=1) != nearest).double().mean()),
    }


# --- Convexity of class regions -----------------------------------------------------------------------------------


def _same_class_pairs(labels: torch.Tensor, c: int, n_pairs: int, gen: torch.Generator) -> torch.Tensor:
    """``(n_pairs, 2)`` random pairs of distinct members of class ``c``."""
    members = torch.nonzero(labels == c).flatten()
    if len(members) < 2:
        raise ValueError(f"class {c} needs at least 2 samples")
    first = torch.randint(len(members), (n_pairs,), generator=gen)
    second = (first + torch.randint(1, len(members), (n_pairs,), generator=gen)) % len(members)
    return torch.stack([members[first], members[second]], dim=1)


def graph_convexity(
    x: torch.Tensor,
    labels: torch.Tensor,
    k: int = 10,
    n_pairs: int = 100,
    max_samples: int | None = 2000,
    seed: int = 0,
) -> dict:
    """Graph convexity of each class region (Tětková, Brüsch, Scheidt, Mager, Aagaard, Foldager, Alstrøm, Hansen,
    "On convex decision regions in deep network representations", 2023, arXiv:2305.17154).

    On the undirected kNN graph of the points (Euclidean edge lengths, :func:`knn_graph`), for ``n_pairs`` random pairs
    of distinct points of class ``c`` the shortest path (Dijkstra) is found; the pair's score is the share of the
    path's interior nodes labelled ``c`` (1 for adjacent points, 0 for points with no path between them, as in the
    authors' code). A class's score is its mean over pairs, the overall score the mean over classes.

    Returns:
        ``graph_convexity``: mean over classes, 1 for classes whose geodesics never leave them; ``per_class``: ``(K,)``;
        ``unreachable``: how many pairs had no path (the graph is disconnected).

    Cost: O(n^2 d) graph, Dijkstra from up to ``K n_pairs`` sources, O(K n_pairs n (k + log n)): cap with
    ``max_samples`` (seeded; the cap may drop a class's rare members: keep it well above the class count). Ours:
    pairs are drawn with replacement (the authors draw distinct ordered pairs).
    """
    _check_labels(x, labels)
    keep = sample_indices(x.shape[0], max_samples, seed)
    x, labels = x[keep], labels[keep]
    classes = _check_labels(x, labels)
    gen = torch.Generator().manual_seed(seed)
    pairs = [_same_class_pairs(labels, c, n_pairs, gen) for c in range(classes)]
    sources = torch.cat(pairs)[:, 0].unique()
    _, predecessors = dijkstra(knn_graph(x, k).numpy(), directed=False, indices=sources.numpy(), return_predecessors=True)
    row = {int(s): i for i, s in enumerate(sources)}
    lab = labels.numpy()
    per_class, unreachable = [], 0
    for c, class_pairs in enumerate(pairs):
        scores = []
        for i, j in class_pairs.tolist():
            pred = predecessors[row[i]]
            interior = []
            node = pred[j]
            while node >= 0 and node != i:
                interior.append(node)
                node = pred[node]
            if node < 0:
                unreachable += 1
                scores.append(0.0)
            else:
                scores.append(float(np.mean(lab[interior] == c)) if interior else 1.0)
        per_class.append(float(np.mean(scores)))
    per_class_t = torch.tensor(per_class, dtype=torch.float64)
    return {"graph_convexity": float(per_class_t.mean()), "per_class": per_class_t, "unreachable": unreachable}


def euclidean_convexity(
    x: torch.Tensor,
    labels: torch.Tensor,
    n_pairs: int = 100,
    n_steps: int = 10,
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
) -> dict:
    """Euclidean convexity of each class region (Tětková et al., 2023, arXiv:2305.17154).

    For ``n_pairs`` random pairs of distinct points of class ``c``, ``n_steps`` points evenly spaced strictly between
    them, :math:`\\lambda x_i + (1 - \\lambda) x_j`, are classified; the class's score is the share predicted ``c``.

    Args:
        classifier: maps ``(m, d)`` points to ``(m,)`` predicted labels. The authors run the rest of the network and
            its head from the layer the points live in; without one (Ours), the nearest neighbour among ``x``.

    Returns:
        ``euclidean_convexity``: mean over classes; ``per_class``: ``(K,)``.

    Cost: ``K n_pairs n_steps`` classifications; the default 1-NN is O(K n_pairs n_steps n d).
    """
    classes = _check_labels(x, labels)
    gen = torch.Generator().manual_seed(seed)
    x = x.double()
    lam = torch.linspace(0, 1, n_steps + 2, dtype=torch.float64)[1:-1, None, None]
    if classifier is None:

        def classifier(z: torch.Tensor) -> torch.Tensor:
            return labels[torch.cdist(z, x, compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)]

    per_class = []
    for c in range(classes):
        i, j = _same_class_pairs(labels, c, n_pairs, gen).T
        points = (lam * x[i] + (1 - lam) * x[j]).reshape(-1, x.shape[1])
        per_class.append(float((classifier(points) == c).double().mean()))
    per_class_t = torch.tensor(per_class, dtype=torch.float64)
    return {"euclidean_convexity": float(per_class_t.mean()), "per_class": per_class_t}


# --- Position / context decomposition -----------------------------------------------------------------------------


def position_context_decomposition(h: torch.Tensor, n_components: int = 2, low_frequency: float = 0.1) -> dict:
    """Mean-effect decomposition of token states into global mean, position, context and residual.

    Song & Zhong, "Uncovering hidden geometry in Transformers via disentangling position and context", 2023,
    arXiv:2310.04861: for states :math:`h \\in R^{C \\times T \\times d}` (context ``c``, position ``t``),
    :math:`h_{c,t} = \\mu + pos_t + ctx_c + resid_{c,t}` with :math:`\\mu` the global mean,
    :math:`pos_t = \\bar h_{\\cdot,t} - \\mu`, :math:`ctx_c = \\bar h_{c,\\cdot} - \\mu`. The three terms are orthogonal over
    the grid, so the total variance :math:`\\sum_{c,t}\\lVert h_{c,t}-\\mu\\rVert^2` splits into
    :math:`C\\sum_t\\lVert pos_t\\rVert^2 + T\\sum_c\\lVert ctx_c\\rVert^2 + \\sum\\lVert resid\\rVert^2`. The paper finds
    ``pos`` low-rank and smooth (a spiral) and ``pos`` and ``ctx`` nearly orthogonal.

    Args:
        h: ``(C, T, d)`` states of ``C`` sequences of equal length ``T``, one layer.
        n_components: principal components of ``pos`` counted in ``pos_topk_share``.
        low_frequency: share of the lowest DCT frequencies along ``t`` counted in ``pos_low_frequency_share``.

    Returns:
        ``pos_share``, ``ctx_share``, ``resid_share``: variance shares (sum to 1); ``pos_topk_share``: share of
        ``pos`` variance in its top ``n_components`` principal components (low rank); ``pos_low_frequency_share``:
        share of ``pos`` energy in the lowest ``ceil(low_frequency T)`` frequencies of its orthonormal DCT-II along
        ``t`` (smoothness); ``incoherence_max`` / ``incoherence_mean``: max / mean :math:`|\\cos(pos_t, ctx_c)|`;
        ``mean``: ``(d,)``; ``pos``: ``(T, d)``; ``ctx``: ``(C, d)``.

    Cost: O(C T d + T d min(T, d)). Ours: the DCT energy share stands for the paper's visual smoothness.
    """
    if h.ndim != 3 or h.shape[0] < 2 or h.shape[1] < 2:
        raise ValueError(f"need (contexts >= 2, positions >= 2, d) token states, got shape {tuple(h.shape)}")
    if not 0 < low_frequency <= 1:
        raise ValueError(f"low_frequency must be in (0, 1], got {low_frequency}")
    contexts, positions = h.shape[:2]
    h = h.double()
    mu = h.mean(dim=(0, 1))
    pos, ctx = h.mean(0) - mu, h.mean(1) - mu
    resid = h - mu - pos[None] - ctx[:, None]
    total = (h - mu).pow(2).sum()
    energy = pos.pow(2).sum()
    spectrum = torch.linalg.svdvals(pos).pow(2)
    freq = (dct(pos.numpy(), type=2, norm="ortho", axis=0) ** 2).sum(axis=1)
    cos = (F.normalize(pos, dim=1) @ F.normalize(ctx, dim=1).T).abs()
    return {
        "pos_share": float(contexts * energy / total),
        "ctx_share": float(positions * ctx.pow(2).sum() / total),
        "resid_share": float(resid.pow(2).sum() / total),
        "pos_topk_share": float(spectrum[:n_components].sum() / energy),
        "pos_low_frequency_share": float(freq[: math.ceil(low_frequency * positions)].sum() / energy),
        "incoherence_max": float(cos.max()),
        "incoherence_mean": float(cos.mean()),
        "mean": mu,
        "pos": pos,
        "ctx": ctx,
    }


# --- Layer-wise quality (Skean et al.) ----------------------------------------------------------------------------


def _sequences(tokens: torch.Tensor, mask: torch.Tensor | None, min_tokens: int) -> list[torch.Tensor]:
    if tokens.ndim != 3:
        raise ValueError(f"need (n, t, d) token states, got shape {tuple(tokens.shape)}")
    if mask is not None and mask.shape != tokens.shape[:2]:
        raise ValueError(f"mask must be (n, t) = {tuple(tokens.shape[:2])}, got {tuple(mask.shape)}")
    seqs = [z if mask is None else z[mask[i].bool()] for i, z in enumerate(tokens.double())]
    if min(len(z) for z in seqs) < min_tokens:
        raise ValueError(f"every sequence needs at least {min_tokens} tokens")
    return seqs


def prompt_entropy(tokens: torch.Tensor, alpha: float = 1.0, mask: torch.Tensor | None = None, center: bool = False) -> dict:
    """Matrix-based Rényi entropy of each prompt's token Gram matrix.

    Skean et al., "Does Representation Matter? Exploring Intermediate Layers in Large Language Models", 2024,
    arXiv:2412.09563 (after Giraldo et al., 2014): for a prompt's ``(t, d)`` token states ``Z``, :math:`K = ZZ^\\top`
    normalised to unit trace has eigenvalues :math:`\\lambda_i` (summing to 1) and
    :math:`S_\\alpha = \\frac{1}{1-\\alpha}\\log\\sum_i \\lambda_i^\\alpha` (Shannon's :math:`-\\sum\\lambda\\log\\lambda` at
    :math:`\\alpha = 1`). High entropy: tokens spread over many directions; 0: all tokens on one line.

    Args:
        tokens: ``(n, t, d)`` one layer's states of ``n`` prompts; mask: ``(n, t)`` true for real (not padding) tokens.
        center: first centre each prompt's tokens on their mean and scale each to unit norm, as the authors' released
            code does (then a prompt of identical tokens is undefined).

    Returns:
        ``prompt_entropy``: mean over prompts, between 0 and ``log min(t, d)`` (reached by orthogonal tokens of equal
        norm); ``prompt_entropy_normalized``: mean of :math:`S_\\alpha / \\log\\min(t, d)` (the authors'
        "maxEntropy" normalisation); ``per_prompt``: ``(n,)``.

    Cost: O(n (t^2 d + t^3)).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    values, normalized = [], []
    for z in _sequences(tokens, mask, min_tokens=2):
        if center:
            z = F.normalize(z - z.mean(0), dim=1)
        gram = z @ z.T
        lam = torch.linalg.eigvalsh(gram / torch.trace(gram)).clamp(min=0)
        if alpha == 1:
            entropy = -float((lam[lam > 0] * lam[lam > 0].log()).sum())
        else:
            entropy = float(lam.pow(alpha).sum().log()) / (1 - alpha)
        values.append(entropy)
        normalized.append(entropy / math.log(min(z.shape)))
    per_prompt = torch.tensor(values, dtype=torch.float64)
    return {
        "prompt_entropy": float(per_prompt.mean()),
        "prompt_entropy_normalized": float(np.mean(normalized)),
        "per_prompt": per_prompt,
    }


def prompt_curvature(tokens: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Average curvature of each prompt's trajectory through representation space.

    Skean et al., 2024, arXiv:2412.09563 (after Hosseini & Fedorenko, 2023): with :math:`v_k = z_{k+1} - z_k`,
    :math:`C = \\frac{1}{t-2}\\sum_k \\arccos \\frac{v_{k+1}^\\top v_k}{\\lVert v_{k+1}\\rVert \\lVert v_k\\rVert}`, in
    radians: 0 for tokens moving along a straight line, :math:`\\pi` for a trajectory that keeps turning back.

    Returns:
        ``curvature``: mean over prompts; ``per_prompt``: ``(n,)``. Steps of zero length (repeated states) are
        skipped (a prompt with none left gives NaN).

    Cost: O(n t d).
    """
    values = []
    for z in _sequences(tokens, mask, min_tokens=3):
        v = z[1:] - z[:-1]
        norm = v.norm(dim=1)
        valid = (norm[1:] > 0) & (norm[:-1] > 0)
        cos = (v[1:] * v[:-1]).sum(1)[valid] / (norm[1:] * norm[:-1])[valid]
        values.append(float(torch.arccos(cos.clamp(-1, 1)).mean()))
    per_prompt = torch.tensor(values, dtype=torch.float64)
    return {"curvature": float(per_prompt.mean()), "per_prompt": per_prompt}


def infonce_invariance(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, max_samples: int | None = None, seed: int = 0
) -> dict[str, float]:
    """Augmentation invariance as the InfoNCE loss between two views' embeddings (Skean et al., 2024,
    arXiv:2412.09563; the SimCLR form of their released code).

    The ``2n`` embeddings of ``n`` prompts under two augmentations are pooled; with :math:`s_{ij}` their cosine,
    each one's positive :math:`p(i)` is the other view of its prompt and
    :math:`\\mathcal L = -\\frac{1}{2n}\\sum_i \\log \\frac{\\exp(s_{i p(i)}/\\tau)}{\\sum_{j \\ne i} \\exp(s_{ij}/\\tau)}`.

    Returns:
        ``infonce``: :math:`\\mathcal L`, lower = more invariant: near 0 for identical views of distinct prompts,
        about ``log(2n - 1)`` or more for unrelated views.

    Cost: O(n^2 d): cap with ``max_samples`` (seeded).
    """
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"need two (n >= 2, d) views of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    keep = sample_indices(z1.shape[0], max_samples, seed)
    z = F.normalize(torch.cat([z1[keep], z2[keep]]).double(), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    positive = (torch.arange(len(z)) + len(keep)) % len(z)
    return {"infonce": float(F.cross_entropy(logits, positive))}


def per_layer(metric: Callable[..., dict], layers: Sequence, **kwargs) -> dict[str, list[float]]:
    """Apply a metric of this module to every layer: ``layers[l]`` is its input (a tensor, or a tuple of tensors
    such as two views for :func:`infonce_invariance`); returns each scalar key as a list over layers."""
    if len(layers) == 0:
        raise ValueError("need at least one layer")
    results = [metric(*(layer if isinstance(layer, tuple) else (layer,)), **kwargs) for layer in layers]
    return {key: [r[key] for r in results] for key, value in results[0].items() if isinstance(value, (int, float))}


__all__ = [
    "euclidean_convexity",
    "graph_convexity",
    "infonce_invariance",
    "isoscore",
    "neural_collapse",
    "per_layer",
    "position_context_decomposition",
    "prompt_curvature",
    "prompt_entropy",
]
