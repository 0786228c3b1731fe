"""Structure of a representation: statistics of discrete visual tokens, slot-wise DCI disentanglement, and the
ideal-word decomposition of factor-labelled embeddings."""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np
import torch


def _token_sequences(tokens: torch.Tensor | Sequence[torch.Tensor]) -> list[np.ndarray]:
    sequences = [np.asarray(t).reshape(-1) for t in (tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens)]
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("tokens must hold at least one non-empty sequence of token ids")
    return sequences


def huffman_code_lengths(counts: np.ndarray) -> np.ndarray:
    """Code length in bits of each symbol in a Huffman code for the given (positive) counts."""
    if len(counts) == 1:
        return np.ones(1)
    lengths = np.zeros(len(counts))
    heap = [(float(c), [i]) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    while len(heap) > 1:
        (c1, s1), (c2, s2) = heapq.heappop(heap), heapq.heappop(heap)
        lengths[s1 + s2] += 1  # every symbol under the merged node gets one bit deeper
        heapq.heappush(heap, (c1 + c2, s1 + s2))
    return lengths


def visual_token_statistics(tokens: torch.Tensor | Sequence[torch.Tensor], vocab_size: int) -> dict:
    """Corpus statistics of a discrete tokenizer's output, read as a language.

    "Analyzing The Language of Visual Tokens" (Chan et al., 2024, arXiv:2411.05001) compares visual languages
    with natural ones through: the Zipf exponent s of the rank-frequency law f(r) ~ r^-s (least squares of
    log f on log r over the observed types); the unigram entropy H = -sum_t p_t log2 p_t and perplexity 2^H;
    compression (how many bits a Huffman code over the unigram distribution spends per token, against the
    log2 V bits of the fixed-length codebook index); and token innovation, how fast new types keep appearing as
    images are added ("the vocabulary floods early"). Visual tokens show higher innovation, higher entropy and
    lower compression than text. Ours: unigrams only; sequences are taken in the given order for innovation.

    Args:
        tokens: a ``(S, L)`` tensor or a list of 1-D tensors: S sequences (images) of token ids in [0, V).
        vocab_size: V, the codebook size.

    Returns:
        ``zipf_exponent``, ``entropy_bits``, ``perplexity``, ``huffman_bits_per_token``, ``compression_rate``
        (Huffman bits / log2 V: 1 = no saving over the codebook index), ``codebook_usage`` (types seen / V),
        ``innovation_rate`` (mean over sequences 2..S of the share of a sequence's types unseen before it) and
        ``types_seen`` (list, distinct types after each sequence). Cost: O(total tokens + V log V).
    """
    sequences = _token_sequences(tokens)
    everything = np.concatenate(sequences)
    if everything.min() < 0 or everything.max() >= vocab_size or vocab_size < 2:
        raise ValueError(f"token ids must lie in [0, vocab_size = {vocab_size}) with vocab_size >= 2")
    counts = np.bincount(everything, minlength=vocab_size)
    counts = np.sort(counts[counts > 0])[::-1].astype(float)
    p = counts / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    ranks = np.arange(1, len(counts) + 1)
    zipf = -np.polyfit(np.log(ranks), np.log(counts), 1)[0] if len(counts) > 1 else float("nan")
    huffman = float((p * huffman_code_lengths(counts)).sum())
    seen: set[int] = set()
    types_seen, innovation = [], []
    for sequence in sequences:
        types = set(sequence.tolist())
        if seen:
            innovation.append(len(types - seen) / len(types))
        seen |= types
        types_seen.append(len(seen))
    return {
        "zipf_exponent": float(zipf),
        "entropy_bits": entropy,
        "perplexity": float(2**entropy),
        "huffman_bits_per_token": huffman,
        "compression_rate": huffman / float(np.log2(vocab_size)),
        "codebook_usage": len(counts) / vocab_size,
        "innovation_rate": float(np.mean(innovation)) if innovation else float("nan"),
        "types_seen": types_seen,
    }


def dci_scores(importance: torch.Tensor) -> dict[str, float]:
    """DCI disentanglement and completeness of a ``(codes, factors)`` importance matrix R >= 0.

    "A Framework for the Quantitative Evaluation of Disentangled Representations" (Eastwood & Williams, 2018):
    with P_ij = R_ij / sum_k R_ik, code i's disentanglement is D_i = 1 - H_K(P_i.) (entropy in base K = number of
    factors) and the total D = sum_i rho_i D_i with rho_i = sum_j R_ij / sum R; with P~_ij = R_ij / sum_k R_kj,
    factor j's completeness is C_j = 1 - H_C(P~_.j) (base C = number of codes), weighted by the factors' share of
    importance as in disentanglement_lib. Both are 1 for a one-to-one (permutation) matrix.
    """
    r = importance.detach().double().clamp_min(0)
    if r.ndim != 2 or min(r.shape) < 2 or r.sum() <= 0:
        raise ValueError(f"importance must be a non-zero (codes >= 2, factors >= 2) matrix, got {tuple(r.shape)}")

    def weighted_score(rows: torch.Tensor) -> float:  # 1 - normalised entropy of each row, weighted by its mass
        mass = rows.sum(dim=1)
        p = rows / mass.clamp_min(1e-300)[:, None]
        entropy = -(p * p.clamp_min(1e-300).log()).sum(dim=1) / np.log(rows.shape[1])
        return float(((1 - entropy) * mass / mass.sum()).sum())

    return {"disentanglement": weighted_score(r), "completeness": weighted_score(r.T)}


def _fit_linear(x: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    return np.linalg.solve(x1.T @ x1 + ridge * np.eye(x1.shape[1]), x1.T @ y)


def match_slots(slots: torch.Tensor, objects: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Permutation-invariant probing: assign each object of each sample to one slot.

    A linear probe slot -> object properties and the per-sample Hungarian matching (cost: the probe's squared
    error) are fitted in turn. The first probe regresses every object on every slot, which points along the
    true slot-object map because unmatched pairs are uncorrelated.

    Args:
        slots: ``(N, K, D)``; objects: ``(N, M, P)`` properties, M <= K, both already standardised.

    Returns:
        ``(N, M)`` long tensor: the slot given to each object.
    """
    from scipy.optimize import linear_sum_assignment

    s, o = slots.double().numpy(), objects.double().numpy()
    n, k, m = s.shape[0], s.shape[1], o.shape[1]
    weights = _fit_linear(np.repeat(s, m, axis=1).reshape(-1, s.shape[2]), np.tile(o, (1, k, 1)).reshape(-1, o.shape[2]))
    assignment = np.zeros((n, m), dtype=int)
    for _ in range(iterations):
        predicted = s @ weights[:-1] + weights[-1]
        cost = ((predicted[:, :, None, :] - o[:, None, :, :]) ** 2).sum(axis=3)  # (N, K, M)
        for i in range(n):
            rows, cols = linear_sum_assignment(cost[i])
            assignment[i, cols] = rows
        weights = _fit_linear(s[np.arange(n)[:, None], assignment].reshape(-1, s.shape[2]), o.reshape(-1, o.shape[2]))
    return torch.as_tensor(assignment)


def slot_dci(
    slots: torch.Tensor,
    objects: torch.Tensor,
    regressor: str = "lasso",
    alpha: float = 0.02,
    iterations: int = 5,
    seed: int = 0,
) -> dict:
    """DCI at the object level and at the property level of a slot representation, after matching slots.

    "Evaluating Disentanglement of Structured Representations" (Dang-Nhu, 2022, arXiv:2101.04041): a slot
    representation is a two-level hierarchy (slots, then dimensions inside a slot), and so are the factors
    (objects, then properties). After a permutation-invariant probe matches slots to objects, one importance
    matrix R between the K*D slot dimensions and the M*P object properties is computed as DCI does (a regressor
    per factor); summing its (slot, object) blocks gives the object-level matrix (K x M: does each object live
    in one slot?), summing over slot and object pairs gives the property-level matrix (D x P: is each property in
    one dimension of a slot?). DCI disentanglement and completeness of both are reported.

    Ours: a linear probe with Hungarian matching (:func:`match_slots`); slots are then reordered per sample so
    that slot position m holds object m (unmatched slots last). R is |coefficient| of a Lasso on standardised
    inputs (``regressor="lasso"``) or a random forest's impurity importance (``"random_forest"``).

    Args:
        slots: ``(N, K, D)`` slot vectors; objects: ``(N, M, P)`` ground-truth properties, M <= K.

    Returns:
        ``object_disentanglement``, ``object_completeness``, ``property_disentanglement``,
        ``property_completeness``, ``informativeness`` (mean in-sample R^2 of the regressors), ``importance``
        (``(K*D, M*P)`` tensor) and ``assignment`` (``(N, M)`` slot per object). Cost: M*P regressor fits on N
        samples of K*D inputs, plus N Hungarian matchings.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import Lasso

    if slots.ndim != 3 or objects.ndim != 3 or len(slots) != len(objects) or objects.shape[1] > slots.shape[1]:
        raise ValueError(
            f"need slots (N, K, D) and objects (N, M, P) with M <= K, got {tuple(slots.shape)}, {tuple(objects.shape)}"
        )
    if regressor not in ("lasso", "random_forest"):
        raise ValueError(f"regressor must be 'lasso' or 'random_forest', got {regressor!r}")
    n, k, d = slots.shape
    m, p = objects.shape[1:]

    def standardise(x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().double().reshape(-1, x.shape[2])
        return ((flat - flat.mean(0)) / flat.std(0).clamp_min(1e-12)).reshape(x.shape)

    s, o = standardise(slots), standardise(objects)
    assignment = match_slots(s, o, iterations)
    unmatched = [[j for j in range(k) if j not in set(row)] for row in assignment.tolist()]
    order = torch.cat([assignment, torch.tensor(unmatched, dtype=torch.long).reshape(n, k - m)], dim=1)
    x = s[torch.arange(n)[:, None], order].reshape(n, k * d).numpy()
    y = o.reshape(n, m * p).numpy()
    importance, r2 = np.zeros((k * d, m * p)), []
    for j in range(m * p):
        if regressor == "lasso":
            model = Lasso(alpha=alpha).fit(x, y[:, j])
            importance[:, j] = np.abs(model.coef_)
        else:
            model = RandomForestRegressor(n_estimators=50, max_depth=6, random_state=seed).fit(x, y[:, j])
            importance[:, j] = model.feature_importances_
        r2.append(model.score(x, y[:, j]))
    blocks = torch.as_tensor(importance).reshape(k, d, m, p)
    object_level, property_level = dci_scores(blocks.sum(dim=(1, 3))), dci_scores(blocks.sum(dim=(0, 2)))
    return {
        "object_disentanglement": object_level["disentanglement"],
        "object_completeness": object_level["completeness"],
        "property_disentanglement": property_level["disentanglement"],
        "property_completeness": property_level["completeness"],
        "informativeness": float(np.mean(r2)),
        "importance": torch.as_tensor(importance),
        "assignment": assignment,
    }


def ideal_words(
    embeddings: torch.Tensor,
    attributes: torch.Tensor,
    objects: torch.Tensor,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> dict:
    """Ideal-word decomposition of embeddings of (attribute, object) inputs and its retrieval accuracy.

    "Linear Spaces of Meanings: Compositional Structures in Vision-Language Models" (Trager et al., 2023,
    arXiv:2302.14383): embeddings u(a, o) of a factor grid are approximated by u0 + u_a + u_o, with the ideal words
    computed from group means, u0 = mean over all pairs of u(a, o), u_a = mean_o u(a, o) - u0 and
    u_o = mean_a u(a, o) - u0; the decomposition is exact when the embedding is compositional (additive). The
    residual share = sum_{a,o} ||u(a,o) - u0 - u_a - u_o||^2 / sum_{a,o} ||u(a,o) - u0||^2 measures how far it is
    from that, and decomposed retrieval assigns a held-out embedding the pair (a, o) whose ideal-word sum is
    nearest (L2). Ours: u(a, o) is the mean of a cell's training embeddings (a seeded stratified split).

    Args:
        embeddings: ``(N, D)``; attributes, objects: ``(N,)`` labels; every (attribute, object) cell needs at
            least two samples (one to fit, one to test).

    Returns:
        ``residual_share`` (0 = exactly additive), ``decomposed_accuracy`` (pair recovered from the ideal-word
        sums), ``cell_accuracy`` (nearest full cell mean, the non-compositional reference),
        ``attribute_accuracy`` and ``object_accuracy`` (each factor of the decomposed prediction alone).
    """
    from sklearn.model_selection import train_test_split

    if embeddings.ndim != 2 or attributes.shape != (len(embeddings),) or objects.shape != (len(embeddings),):
        raise ValueError("need (N, D) embeddings and (N,) attribute and object labels")
    a_values, a_index = torch.unique(attributes, return_inverse=True)
    o_values, o_index = torch.unique(objects, return_inverse=True)
    cell = a_index * len(o_values) + o_index
    if torch.bincount(cell, minlength=len(a_values) * len(o_values)).min() < 2:
        raise ValueError("every (attribute, object) pair needs at least two samples")
    train, test = train_test_split(np.arange(len(cell)), test_size=test_fraction, random_state=seed, stratify=cell.numpy())
    if torch.bincount(cell[train], minlength=len(a_values) * len(o_values)).min() < 1:
        raise ValueError("the training split misses an (attribute, object) pair: lower test_fraction")
    x = embeddings.detach().double()
    cells = torch.zeros(len(a_values) * len(o_values), x.shape[1], dtype=torch.double).index_add_(0, cell[train], x[train])
    means = (cells / torch.bincount(cell[train], minlength=len(cells))[:, None]).reshape(len(a_values), len(o_values), -1)
    u0 = means.mean(dim=(0, 1))
    u_a, u_o = means.mean(dim=1) - u0, means.mean(dim=0) - u0
    composed = u0 + u_a[:, None] + u_o[None]
    residual = float(((means - composed) ** 2).sum() / ((means - u0) ** 2).sum())
    decomposed = torch.cdist(x[test], composed.reshape(len(cells), -1)).argmin(dim=1)
    nearest_cell = torch.cdist(x[test], means.reshape(len(cells), -1)).argmin(dim=1)
    return {
        "residual_share": residual,
        "decomposed_accuracy": float((decomposed == cell[test]).double().mean()),
        "cell_accuracy": float((nearest_cell == cell[test]).double().mean()),
        "attribute_accuracy": float((decomposed // len(o_values) == a_index[test]).double().mean()),
        "object_accuracy": float((decomposed % len(o_values) == o_index[test]).double().mean()),
    }
