"""Losses of methods that learn from dictionary definitions (WordNet glosses): SetCSE's inter-set contrastive loss,
the definition-modelling token loss of the unified reverse dictionary, and DefSent+'s projection of definitions
onto (quasi-)isotropic entry embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def inter_set_contrastive_loss(embeddings: torch.Tensor, set_labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """SetCSE's inter-set contrastive loss ("SetCSE: Set Operations using Contrastive Learning of Sentence
    Embeddings", Liu, 2024, arXiv:2404.17606): every sentence is pulled towards the other sentences of its semantic
    set and pushed from the sentences of the other sets,

        l(x) = -log( sum_{x' in S(x), x' != x} exp(cos(x, x') / t) / sum_{x'' not in S(x)} exp(cos(x, x'') / t) ),

    averaged over the sentences that have at least one set-mate and one sentence of another set in the batch.

    Args:
        embeddings: ``(n, d)`` sentence embeddings.
        set_labels: ``(n,)`` integer id of each sentence's set.
        temperature: of the cosine similarities (SimCSE's 0.05).
    """
    if embeddings.ndim != 2 or set_labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"need (n, d) embeddings and (n,) set labels, got {tuple(embeddings.shape)} and {tuple(set_labels.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = F.normalize(embeddings, dim=-1)
    logits = z @ z.T / temperature
    same = set_labels[:, None] == set_labels[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive, negative = same & ~eye, ~same
    usable = positive.any(1) & negative.any(1)
    if not usable.any():
        raise ValueError("the batch needs a sentence with a set-mate and a sentence of another set")
    pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    neg = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=1)
    return (neg - pos)[usable].mean()


def definition_modelling_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Teacher-forced token negative log-likelihood of a generated definition, averaged over its real tokens.

    Args:
        logits: ``(n, L, vocab)`` next-token scores.
        targets: ``(n, L)`` the tokens to predict.
        mask: ``(n, L)`` 1 where a target token is real (not padding).
    """
    if logits.ndim != 3 or logits.shape[:2] != targets.shape or targets.shape != mask.shape:
        raise ValueError(
            f"need (n, L, V) logits with (n, L) targets and mask, got {tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(mask.shape)}"
        )
    if not mask.any():
        raise ValueError("no target token to predict")
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    mask = mask.flatten().to(nll.dtype)
    return (nll * mask).sum() / mask.sum()


def isotropy_statistics(entries: torch.Tensor, mode: str = "isotropic", eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, transform)`` that make entry embeddings (quasi-)isotropic: ``(x - mean) @ transform``.

    ``isotropic``: whitening (PCA rotation scaled by the inverse square roots of the covariance's eigenvalues: the
    transformed entries have identity covariance); ``quasi-isotropic``: centering only (the common mean direction
    that makes language-model embeddings anisotropic removed; cosine similarities then normalise the lengths).

    Args:
        entries: ``(n, d)`` entry embeddings, ``n >= 2``.
        mode: ``isotropic`` or ``quasi-isotropic``.
        eps: added to the eigenvalues.
    """
    if entries.ndim != 2 or entries.shape[0] < 2:
        raise ValueError(f"need (n >= 2, d) entries, got {tuple(entries.shape)}")
    if mode not in ("isotropic", "quasi-isotropic"):
        raise ValueError(f"mode must be 'isotropic' or 'quasi-isotropic', got {mode!r}")
    x = entries.double()
    mean = x.mean(0)
    if mode == "quasi-isotropic":
        return mean.to(entries.dtype), torch.eye(x.shape[1], dtype=entries.dtype, device=entries.device)
    centred = x - mean
    cov = centred.T @ centred / (x.shape[0] - 1)
    values, vectors = torch.linalg.eigh(cov)
    transform = vectors * values.clamp_min(0).add(eps).rsqrt()
    return mean.to(entries.dtype), transform.to(entries.dtype)


def entry_projection_loss(
    definitions: torch.Tensor,
    entries: torch.Tensor,
    targets: torch.Tensor,
    scale: float = 20.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """DefSent(+)'s objective: each definition embedding is classified into its dictionary entry among every entry
    of the table, ``-log softmax_j(scale * cos(def_i, entry_j))`` at its entry (DefSent: "Sentence Embeddings using
    Definition Sentences", Tsukagoshi et al., 2021; DefSent+: Liu, 2024, arXiv:2405.16153).

    Args:
        definitions: ``(n, d)`` definition embeddings (with gradients).
        entries: ``(m, d)`` the entry table (fixed targets: no gradient flows into it from here).
        targets: ``(n,)`` the row of each definition's entry.
        scale: inverse temperature of the cosine similarities.
        valid: ``(m,)`` bool, the rows that hold an entry (others never compete); all by default.
    """
    if definitions.ndim != 2 or entries.ndim != 2 or definitions.shape[1] != entries.shape[1]:
        raise ValueError(f"need (n, d) definitions and (m, d) entries, got {tuple(definitions.shape)} and {tuple(entries.shape)}")
    if targets.shape != (definitions.shape[0],) or int(targets.max()) >= entries.shape[0] or int(targets.min()) < 0:
        raise ValueError(f"targets must be (n,) rows of the {entries.shape[0]}-entry table")
    logits = scale * F.normalize(definitions, dim=-1) @ F.normalize(entries.detach(), dim=-1).T
    if valid is not None:
        if not bool(valid[targets].all()):
            raise ValueError("a definition's entry is not a valid row of the table")
        logits = logits.masked_fill(~valid[None, :], float("-inf"))
    return F.cross_entropy(logits, targets)


__all__ = ["definition_modelling_loss", "entry_projection_loss", "inter_set_contrastive_loss", "isotropy_statistics"]
