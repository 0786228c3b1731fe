"""AMCL's objectives: contrastive terms whose positive and negative similarities each have their own adaptive,
regularised temperature ("Adaptive Multi-head Contrastive Learning", Wang et al., ECCV 2024, arXiv:2310.05615).

The temperature of a pair (a, b) is tau = sigma(phi(a)^T phi(b)) with phi a small MLP shared by all heads and
sigma(r) = eta + iota / (1 + exp(r)), i.e. in (tau_min, tau_max); the losses here take phi's outputs, so the
network itself stays in the method. With a Gaussian likelihood of one view given another whose variance is the
pair's temperature, p(z_b | z_a) ~ tau^(-d/2) exp(-(1 - s_ab) / tau) for unit vectors, the posterior that b is
a's positive among the candidates is a softmax over the logits s/tau - Omega(tau), with the regulariser
Omega(tau) = d/2 log tau + 1/tau (weighted by beta) keeping temperatures away from 0 and infinity. The per-head
loss is that posterior's negative log-likelihood; the heads' losses are summed. With a constant temperature the
regulariser cancels in the softmax and the loss is InfoNCE / NT-Xent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather, rank
from reprzoo.losses.redundancy import cross_correlation


def temperature_regularizer(tau: torch.Tensor, dim: int) -> torch.Tensor:
    """Omega(tau) = dim / 2 * log(tau) + 1 / tau, elementwise (minimal at tau = 2 / dim)."""
    return 0.5 * dim * torch.log(tau) + 1.0 / tau


def pair_temperature(scores: torch.Tensor, tau_min: float = 1e-5, tau_max: float = 2.0) -> torch.Tensor:
    """sigma(r) = tau_min + (tau_max - tau_min) / (1 + exp(r)): pairs phi scores as more alike get colder."""
    if not 0 < tau_min < tau_max:
        raise ValueError(f"temperatures need 0 < tau_min < tau_max, got {tau_min} and {tau_max}")
    return tau_min + (tau_max - tau_min) * torch.sigmoid(-scores)


def adaptive_logits(
    sim: torch.Tensor, scores: torch.Tensor, dim: int, beta: float, tau_min: float, tau_max: float
) -> torch.Tensor:
    """Posterior logits s / tau - beta * Omega(tau) of pairs with similarities ``sim`` and phi scores ``scores``."""
    tau = pair_temperature(scores.float(), tau_min, tau_max)
    return sim.float() / tau - beta * temperature_regularizer(tau, dim)


def _keep_topk(logits: torch.Tensor, sim: torch.Tensor, negatives: torch.Tensor, topk: int | None) -> torch.Tensor:
    """Masks all but the ``topk`` most similar negatives of each row (the paper's top-k approximation)."""
    if topk is None or topk >= int(negatives.sum(dim=1).min()):
        return logits
    ranked = sim.masked_fill(~negatives, float("-inf")).topk(topk, dim=1).indices
    keep = torch.zeros_like(negatives).scatter_(1, ranked, True) | ~negatives
    return logits.masked_fill(~keep, float("-inf"))


def amcl_nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    beta: float = 0.01,
    tau_min: float = 1e-5,
    tau_max: float = 2.0,
    topk: int | None = None,
) -> torch.Tensor:
    """AMCL on SimCLR, one head: NT-Xent's 2N anchors, each pair with its adaptive temperature.

    Args:
        z1, z2: ``(n, d)`` the head's projections of the two views (L2-normalised here).
        t1, t2: ``(n, h)`` the temperature network's outputs for them (phi of the normalised projections).
        beta: weight of the temperature regulariser.
        tau_min, tau_max: range of the temperatures.
        topk: keep only the k most similar negatives of each anchor; ``None`` keeps all 2(N-1).
    """
    if z1.shape != z2.shape or z1.ndim != 2 or t1.shape != t2.shape or t1.shape[0] != z1.shape[0]:
        shapes = ", ".join(str(tuple(x.shape)) for x in (z1, z2, t1, t2))
        raise ValueError(f"need (n, d) projections and (n, h) temperature features, got {shapes}")
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n, d = z1.shape
    anchors, anchor_t = torch.cat([z1, z2]), torch.cat([t1, t2])
    g1, g2 = gather(z1), gather(z2)
    keys, key_t = torch.cat([g1, g2]), torch.cat([gather(t1), gather(t2)])
    big_n = g1.shape[0]
    rows = torch.arange(2 * n, device=z1.device)
    own = torch.where(rows < n, rows + rank() * n, rows - n + rank() * n + big_n)
    positive = torch.where(rows < n, own + big_n, own - big_n)
    sim = anchors @ keys.T
    logits = adaptive_logits(sim, anchor_t @ key_t.T, d, beta, tau_min, tau_max)
    negatives = torch.ones_like(logits, dtype=torch.bool)
    negatives[rows, own] = False
    negatives[rows, positive] = False
    logits = _keep_topk(logits, sim, negatives, topk)
    logits[rows, own] = float("-inf")  # an anchor is not its own candidate
    return F.cross_entropy(logits, positive)


def amcl_info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    t_query: torch.Tensor,
    t_key: torch.Tensor,
    t_queue: torch.Tensor,
    beta: float = 0.01,
    tau_min: float = 1e-5,
    tau_max: float = 2.0,
    topk: int | None = None,
) -> torch.Tensor:
    """AMCL on MoCo, one head: the query's positive key against the queue of negatives, each pair with its own
    adaptive temperature.

    Args:
        query: ``(n, d)`` the head's query projections; key: ``(n, d)`` their keys (momentum encoder).
        queue: ``(m, d)`` negative keys. All three are L2-normalised here.
        t_query, t_key, t_queue: the temperature network's outputs for them, ``(n, h)``, ``(n, h)``, ``(m, h)``.
        beta, tau_min, tau_max, topk: as :func:`amcl_nt_xent`.
    """
    if query.shape != key.shape or query.ndim != 2 or queue.ndim != 2 or queue.shape[1] != query.shape[1]:
        shapes = ", ".join(str(tuple(x.shape)) for x in (query, key, queue))
        raise ValueError(f"need (n, d) query and key and an (m, d) queue, got {shapes}")
    if t_query.shape != t_key.shape or t_queue.shape[0] != queue.shape[0]:
        raise ValueError("temperature features must match the query, key and queue rows")
    query, key, queue = F.normalize(query, dim=1), F.normalize(key, dim=1), F.normalize(queue, dim=1)
    sim = torch.cat([(query * key).sum(1, keepdim=True), query @ queue.T], dim=1)
    scores = torch.cat([(t_query * t_key).sum(1, keepdim=True), t_query @ t_queue.T], dim=1)
    logits = adaptive_logits(sim, scores, query.shape[1], beta, tau_min, tau_max)
    negatives = torch.ones_like(logits, dtype=torch.bool)
    negatives[:, 0] = False
    logits = _keep_topk(logits, sim, negatives, topk)
    return F.cross_entropy(logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device))


def amcl_barlow_twins(
    z1: torch.Tensor,
    z2: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    lambda_: float = 5e-3,
    beta: float = 1e-4,
    tau_min: float = 1e-5,
    tau_max: float = 2.0,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """AMCL on Barlow Twins, one head: each entry of the cross-correlation matrix has its own temperature,
    tau_lm = sigma(phi(z_l:)^T phi(z'_m:)) from the batch-wise channel vectors of the two views:

    sum_l (1 - C_ll / tau_ll)^2 + lambda sum_{l != m} C_lm^2 / tau_lm + beta [sum_l Omega(tau_ll) - sum_{l != m}
    Omega(tau_lm)], the diagonal as positives and the off-diagonal as negatives of the posterior above.

    Args:
        z1, z2: ``(n, d)`` the head's projections of the two views.
        t1, t2: ``(d, h)`` the temperature network's outputs for the channel vectors (columns) of the global batch.
    """
    if t1.shape != t2.shape or t1.shape[0] != z1.shape[1]:
        raise ValueError(
            f"need (d, h) temperature features for the {z1.shape[1]} channels, got {tuple(t1.shape)} and {tuple(t2.shape)}"
        )
    c = cross_correlation(z1, z2, gather_distributed=gather_distributed).float()
    d = c.shape[0]
    tau = pair_temperature((t1 @ t2.T).float(), tau_min, tau_max)
    diag = torch.eye(d, dtype=torch.bool, device=c.device)
    on = (1 - torch.diagonal(c) / torch.diagonal(tau)).pow(2).sum()
    off = (c.pow(2) / tau)[~diag].sum()
    omega = temperature_regularizer(tau, d)
    return on + lambda_ * off + beta * (omega[diag].sum() - omega[~diag].sum())
