"""ST-DIM's objective: "Unsupervised State Representation Learning in Atari" (Anand et al., NeurIPS 2019,
arXiv:1906.08226), Sec. 3.

InfoNCE at every location of a local feature map, with a bilinear score f(x, y) = q(x)^T k(y): the query is a
linear map of the global feature of x_{t+1} (global-local) or of its local feature at that location (local-local),
the positive key the local feature of x_t at the same location, the negatives the local features of the other frames
of the batch at that location (gathered across ranks with gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.distributed import gather, rank


def spatial_info_nce(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Mean over locations l of InfoNCE(-log softmax_j(q_{i,l} . k_{j,l})[i]), averaged over the batch.

    Args:
        queries: ``(n, L, d)`` one query per location, or ``(n, d)`` one query for every location (the global
            feature, already through the bilinear map W).
        keys: ``(n, L, d)`` the local features whose row i is the positive of query i; the other rows of the global
            batch are the negatives.
    Returns:
        the scalar loss, mean over locations and this rank's queries.
    """
    if keys.ndim != 3:
        raise ValueError(f"keys must be (n, locations, d), got {tuple(keys.shape)}")
    if queries.ndim == 2:
        queries = queries[:, None, :].expand(-1, keys.shape[1], -1)
    if queries.shape != keys.shape:
        raise ValueError(f"queries {tuple(queries.shape)} do not match keys {tuple(keys.shape)}")
    n, locations, _ = keys.shape
    all_keys = gather(keys)  # (N, L, d)
    logits = torch.einsum("ild,jld->lij", queries, all_keys)  # (L, n, N)
    targets = (torch.arange(n, device=keys.device) + rank() * n).repeat(locations)
    return F.cross_entropy(logits.reshape(locations * n, -1), targets)


def stdim_loss(global_next: torch.Tensor, local_next: torch.Tensor, local_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ST-DIM's two terms, given the bilinear maps already applied to the queries.

    Args:
        global_next: ``(n, d)`` W_g applied to the global feature of x_{t+1}.
        local_next: ``(n, L, d)`` W_l applied to the local features of x_{t+1}.
        local_t: ``(n, L, d)`` the local features of x_t (the keys).
    Returns:
        ``(global_local, local_local)``; the paper's loss is their sum.
    """
    return spatial_info_nce(global_next, local_t), spatial_info_nce(local_next, local_t)
