"""Prototype-part losses of ProtoPNet ("This Looks Like That", Chen et al., 2019, arXiv:1806.10574) and ST-ProtoPNet
("Learning Support and Trivial Prototypes for Interpretable Image Classification", Wang et al., ICCV 2023,
arXiv:2301.04011).

Prototypes are ``(num_prototypes, dim)`` vectors, ``num_prototypes = classes x per_class`` with prototype ``j`` of
class ``j // per_class``. Costs are written, as in the ST-ProtoPNet code, on *similarities*: the cluster cost is the
mean similarity of each sample to its closest own-class prototype (its weight is negative, -0.8), the separation
cost the mean similarity to the closest other-class prototype (positive weight).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

PROTOPNET_EPSILON = 1e-4


def prototype_similarity_maps(
    features: torch.Tensor, prototypes: torch.Tensor, kind: Literal["cosine", "log"] = "cosine"
) -> torch.Tensor:
    """Similarity of every patch (1x1 location) of ``features`` ``(b, d, h, w)`` to every prototype ``(p, d)``.

    ``cosine``: ReLU of the cosine similarity (ST-ProtoPNet, following Deformable ProtoPNet). ``log``: ProtoPNet's
    log-activation log((||z - p||^2 + 1) / (||z - p||^2 + 1e-4)). Returns ``(b, p, h, w)``.
    """
    if features.ndim != 4 or prototypes.ndim != 2 or features.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"expected features (b, d, h, w) and prototypes (p, d), got {tuple(features.shape)} and {tuple(prototypes.shape)}"
        )
    if kind == "cosine":
        cos = torch.einsum("bdhw,pd->bphw", F.normalize(features, dim=1), F.normalize(prototypes, dim=1))
        return torch.relu(cos)
    if kind == "log":
        sq = (features**2).sum(1, keepdim=True) - 2 * torch.einsum("bdhw,pd->bphw", features, prototypes)
        dist = torch.relu(sq + (prototypes**2).sum(1)[None, :, None, None])
        return torch.log((dist + 1) / (dist + PROTOPNET_EPSILON))
    raise ValueError(f"kind must be 'cosine' or 'log', got {kind!r}")


def _class_mask(labels: torch.Tensor, num_prototypes: int, per_class: int) -> torch.Tensor:
    if num_prototypes % per_class:
        raise ValueError(f"{num_prototypes} prototypes do not split into groups of {per_class} per class")
    prototype_class = torch.arange(num_prototypes, device=labels.device) // per_class
    return labels[:, None] == prototype_class[None, :]  # (b, p): prototype j belongs to sample i's class


def cluster_cost(max_similarities: torch.Tensor, labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Mean over samples of the highest similarity to a prototype of the sample's own class (ProtoPNet's Clst)."""
    own = _class_mask(labels, max_similarities.shape[1], per_class)
    return (max_similarities * own).max(dim=1).values.mean()


def separation_cost(max_similarities: torch.Tensor, labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Mean over samples of the highest similarity to a prototype of another class (ProtoPNet's Sep)."""
    other = ~_class_mask(labels, max_similarities.shape[1], per_class)
    return (max_similarities * other).max(dim=1).values.mean()


def _class_pair_similarities(prototypes: torch.Tensor, per_class: int) -> torch.Tensor:
    """Cosine similarities of all prototype pairs arranged ``(C, C, per_class * per_class)`` by class pair."""
    if prototypes.ndim != 2 or prototypes.shape[0] % per_class:
        raise ValueError(f"prototypes must be (classes x {per_class}, dim), got {tuple(prototypes.shape)}")
    p = F.normalize(prototypes, dim=1).view(-1, per_class, prototypes.shape[1])  # (C, M, d)
    c = p.shape[0]
    sims = torch.einsum("amd,bnd->abmn", p, p)  # (C, C, M, M)
    return sims.reshape(c, c, -1)


def closeness_cost(support_prototypes: torch.Tensor, per_class: int) -> torch.Tensor:
    """ST-ProtoPNet's closeness loss on support prototypes: minus the mean, over pairs of different classes, of the
    *lowest* similarity between their prototypes; minimising it pulls every class's support prototypes towards the
    other classes', i.e. towards the decision boundary (the SVM analogy)."""
    sims = _class_pair_similarities(support_prototypes, per_class).min(dim=-1).values
    off = ~torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
    return -sims[off].mean()


def discrimination_cost(trivial_prototypes: torch.Tensor, per_class: int) -> torch.Tensor:
    """ST-ProtoPNet's discrimination loss on trivial prototypes: the mean, over pairs of different classes, of the
    *highest* similarity between their prototypes; minimising it pushes trivial prototypes away from the boundary."""
    sims = _class_pair_similarities(trivial_prototypes, per_class).max(dim=-1).values
    off = ~torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
    return sims[off].mean()


def orthogonality_cost(prototypes: torch.Tensor, per_class: int) -> torch.Tensor:
    """sum_c || P_c P_c^T - I ||_1 over each class's normalised prototypes P_c ``(per_class, d)`` (entrywise L1):
    the prototypes of one class should point in different directions."""
    p = F.normalize(prototypes, dim=1).view(-1, per_class, prototypes.shape[1])
    gram = p @ p.transpose(1, 2)
    return (gram - torch.eye(per_class, device=p.device)).abs().sum()


def last_layer_l1(weight: torch.Tensor, per_class: int) -> torch.Tensor:
    """L1 norm of the last layer's ``(classes, prototypes)`` weights that connect a prototype to another class."""
    own = _class_mask(torch.arange(weight.shape[0], device=weight.device), weight.shape[1], per_class)
    return (weight * ~own).abs().sum()
