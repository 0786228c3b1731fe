"""Analyses that need the model or a layer's outputs: representation inversion, the class-embedding-space lens,
feature redundancy by iterative merging, and Net2Vec concept embeddings."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch


def total_variation(x: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """R_{V^beta}(x) = sum_{c,i,j} ((x_{c,i,j+1} - x_{c,i,j})^2 + (x_{c,i+1,j} - x_{c,i,j})^2)^{beta/2} of
    ``(B, C, H, W)`` images, summed over the batch (the last row and column, lacking a neighbour, are left out)."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx**2 + dy**2).clamp_min(1e-12).pow(beta / 2).sum()  # the floor keeps beta < 2 differentiable at 0


def invert_representation(
    layers: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    images: torch.Tensor,
    steps: int = 300,
    lr: float = 0.05,
    alpha: float = 6.0,
    beta: float = 2.0,
    lambda_alpha: float = 1e-5,
    lambda_tv: float = 0.05,
    seed: int = 0,
) -> dict:
    """Reconstruct images from their representation at each layer, by regularised optimisation.

    "Understanding Deep Image Representations by Inverting Them" (Mahendran & Vedaldi, 2015, arXiv:1412.0035):
    x* = argmin_x ||Phi(x) - Phi_0||^2 / ||Phi_0||^2 + lambda_alpha N_alpha(x) + lambda_V R_{V^beta}(x), with
    Phi_0 = Phi(x_0), the alpha-norm N_alpha(x) = ||x / B||_alpha^alpha / (H W) (alpha = 6 keeps pixels in range)
    and the total variation R_{V^beta}(x / V) / (H W) (:func:`total_variation`; beta = 2 removes spikes), where
    B is the mean pixel colour-vector norm of the target images and V = B / 6.5, as in the paper. How close
    Phi(x*) gets to Phi_0, and x* to x_0, tells how much of the image a layer keeps.

    Ours: Adam instead of SGD with momentum; x starts from seeded noise of the images' scale. Phi's parameters
    are not touched (gradients are taken with respect to x only); put the model in eval mode first.

    Args:
        layers: name -> callable mapping ``(B, C, H, W)`` images to that layer's features (any shape).
        images: ``(B, C, H, W)`` targets x_0.
        steps: Adam steps per layer.
        lr: Adam's learning rate, relative to the images' largest absolute pixel value.
        alpha, beta: exponents of the alpha-norm and of the total variation (the paper's 6 and 2).
        lambda_alpha, lambda_tv: weights of the two regularisers on their normalised scales.

    Returns:
        ``reconstruction`` (name -> ``(B, C, H, W)``), ``representation_error`` (name -> final
        ||Phi(x*) - Phi_0||^2 / ||Phi_0||^2), ``image_error`` (name -> ||x* - x_0||^2 / ||x_0||^2) and
        ``error_curve`` (name -> list of the representation error at every step). Cost: ``steps`` forward and
        backward passes per layer.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    x0 = images.detach().float()
    height, width = x0.shape[-2:]
    bound = x0.norm(dim=1).mean().clamp_min(1e-8)
    variation = bound / 6.5
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device)
    result: dict = {"reconstruction": {}, "representation_error": {}, "image_error": {}, "error_curve": {}}
    for name, phi in layers.items():
        with torch.no_grad():
            target = phi(x0)
        scale = target.pow(2).sum().clamp_min(1e-12)
        x = (noise * x0.std()).requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=lr * float(x0.abs().max()))
        curve = []
        for step in range(steps + 1):
            error = (phi(x) - target).pow(2).sum() / scale
            curve.append(float(error.detach()))
            if step == steps:
                break
            prior = (x / bound).abs().pow(alpha).sum() / (height * width)
            smooth = total_variation(x / variation, beta) / (height * width)
            loss = error + lambda_alpha * prior + lambda_tv * smooth
            x.grad = torch.autograd.grad(loss, x)[0]
            optimiser.step()
        result["reconstruction"][name] = x.detach()
        result["representation_error"][name] = curve[-1]
        result["image_error"][name] = float((x.detach() - x0).pow(2).sum() / x0.pow(2).sum())
        result["error_curve"][name] = curve
    return result


def class_embedding_lens(
    hidden_states: torch.Tensor,
    labels: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    norm: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cls_index: int | None = 0,
) -> dict:
    """Class identifiability of intermediate tokens read through the classifier's class-embedding space.

    "Analyzing Vision Transformers for Image Classification in Class Embedding Space" (Vilas, Schaumloeffel &
    Roig, 2023, arXiv:2310.18969): the hidden state of any token at any block is projected as the final one is,
    logits = E norm(h) with E the class-embedding (classifier) matrix and norm the final layer norm; the rank of the
    true class among the logits shows where and in which tokens categorical information builds up. Ranks are
    1-based (1 = the true class scores highest); ties count against the true class.

    Args:
        hidden_states: ``(L, N, T, D)`` token states of N images at L blocks (the last one feeds the head).
        labels: ``(N,)`` true classes.
        head: ``(..., D) -> (..., classes)``, e.g. the model's ``nn.Linear`` classifier.
        norm: the final normalisation applied before the head, or None.
        cls_index: the position of the class token, or None when every token is an image token.

    Returns:
        Lists over layers, for the class token (``cls_*``, absent when ``cls_index`` is None) and for all image
        tokens of all images (``image_*``): ``*_rank`` the mean rank of the true class, ``*_top1`` the share of
        tokens where it ranks first, ``*_identifiability`` the mean normalised score 1 - (rank - 1) / (classes - 1)
        (1 = always first, 0 = always last). Cost: one head pass per token and layer.
    """
    if hidden_states.ndim != 4 or labels.shape != (hidden_states.shape[1],):
        raise ValueError(
            f"need (L, N, T, D) hidden states and (N,) labels, got {tuple(hidden_states.shape)}, {tuple(labels.shape)}"
        )
    tokens = torch.arange(hidden_states.shape[2])
    image_tokens = tokens if cls_index is None else tokens[tokens != cls_index % len(tokens)]
    parts = {"image": image_tokens} if cls_index is None else {"cls": [cls_index], "image": image_tokens}
    result: dict = {f"{part}_{key}": [] for part in parts for key in ("rank", "top1", "identifiability")}
    with torch.no_grad():
        for layer in hidden_states:
            logits = head(layer if norm is None else norm(layer))  # (N, T, classes)
            true = logits.gather(2, labels[:, None, None].expand(-1, logits.shape[1], 1))
            rank = (logits >= true).sum(dim=2).double()  # 1-based: the true class counts itself
            for part, index in parts.items():
                result[f"{part}_rank"].append(float(rank[:, index].mean()))
                result[f"{part}_top1"].append(float((rank[:, index] == 1).double().mean()))
                score = 1 - (rank[:, index] - 1) / (logits.shape[2] - 1)
                result[f"{part}_identifiability"].append(float(score.mean()))
    return result


def iterative_feature_merging(signatures: torch.Tensor, threshold: float = 0.99) -> dict:
    """Count the features of a layer that are functionally equivalent up to a positive scale, by merging them.

    "Going Beyond Neural Network Feature Similarity: The Network Feature Complexity and Its Interpretation Using
    Category Theory" (Chen et al., 2023, arXiv:2310.06756): two features are functionally equivalent when one is
    the other under a transformation the network commutes with (a positive scale passes through a ReLU), so one
    of them can be merged into the other without changing the output; Iterative Feature Merging repeatedly merges
    equivalent features, and the share that merges is the layer's redundancy (1 - its feature complexity).

    Each row is a feature's signature: its activations on a probe set (flattened), or its incoming weights for
    the paper's data-agnostic variant. Rows equal up to a positive scale have cosine similarity 1; here a pair
    merges when the cosine similarity of the groups' representatives (sums of their unit-norm members) is above
    ``threshold``, most similar first, until no pair is. Ours: merges are counted, not written back into the
    next layer's weights. All-zero rows (dead features) are counted apart and never merged.

    Args:
        signatures: ``(C, M)`` one row per feature.

    Returns:
        ``channels`` (C), ``merged`` (how many features were merged away), ``dead``, ``redundancy`` (merged / C)
        and ``groups`` (list of lists of feature indices, one per remaining feature). Cost: O(C^2 M + C^3).
    """
    if signatures.ndim != 2:
        raise ValueError(f"signatures must be (C, M), got shape {tuple(signatures.shape)}")
    x = signatures.detach().double()
    norms = x.norm(dim=1)
    alive = torch.nonzero(norms > 1e-12 * norms.max().clamp_min(1e-300)).flatten().tolist()
    units = x[alive] / norms[alive, None]
    gram = units @ units.T
    groups = [[i] for i in alive]
    active = torch.ones(len(alive), dtype=torch.bool)
    while active.sum() > 1:
        length = gram.diagonal().sqrt()
        cosine = gram / (length[:, None] * length[None, :])
        cosine[~active] = -2
        cosine[:, ~active] = -2
        cosine.fill_diagonal_(-2)
        best = int(cosine.argmax())
        i, j = divmod(best, len(alive))
        if cosine[i, j] <= threshold:
            break
        gram[i] += gram[j]  # the representative of the merged group is the sum of both
        gram[:, i] += gram[:, j]
        groups[i] += groups[j]
        active[j] = False
    kept = [groups[g] for g in range(len(alive)) if active[g]]
    merged = len(alive) - len(kept)
    return {
        "channels": len(x),
        "merged": merged,
        "dead": len(x) - len(alive),
        "redundancy": merged / len(x),
        "groups": kept,
    }


def layer_redundancy(activations: Mapping[str, torch.Tensor], threshold: float = 0.99) -> dict[str, dict]:
    """:func:`iterative_feature_merging` on each layer's ``(N, C, ...)`` activations over a probe set (channel c's
    signature is its activation at every sample and position); returns name -> that function's dict."""
    result = {}
    for name, a in activations.items():
        if a.ndim < 2:
            raise ValueError(f"activations of {name!r} must be (N, C, ...), got shape {tuple(a.shape)}")
        result[name] = iterative_feature_merging(a.transpose(0, 1).reshape(a.shape[1], -1), threshold)
    return result


def net2vec(
    activations: torch.Tensor,
    concepts: torch.Tensor,
    test_fraction: float = 0.3,
    C: float = 1.0,
    seed: int = 0,
) -> dict:
    """Single-filter against multi-filter detection of concepts from a layer's channels.

    "Net2Vec: Quantifying and Explaining how Concepts are Encoded by Filters in Deep Neural Networks" (Fong &
    Vedaldi, 2018, arXiv:1801.03454): a concept is embedded as a weight vector w over the C filters of a layer,
    learned so that sigmoid(w . a + b) detects it; comparing it with the best single filter shows whether concepts
    are distributed over filters, and the cosine similarity of the weight vectors relates concepts. Here, the
    classification task: spatially averaged activations, the single filter chosen by training-split AP and used
    as the score, the multi-filter embedding a logistic regression on standardised activations; both scored by
    test-split average precision. Ours: no segmentation (IoU) variant.

    Args:
        activations: ``(N, C)`` or ``(N, C, H, W)`` (averaged over positions).
        concepts: ``(N, K)`` binary presence of K concepts; each needs positives and negatives in both splits.

    Returns:
        ``single_ap``, ``multi_ap`` (``(K,)`` tensors), ``best_filter`` (``(K,)`` long), ``mean_single_ap``,
        ``mean_multi_ap``, ``embeddings`` (``(K, C)`` concept weight vectors) and ``similarity`` (``(K, K)``
        cosine similarity of the embeddings).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if activations.ndim not in (2, 4) or concepts.ndim != 2 or len(concepts) != len(activations):
        raise ValueError(
            f"need (N, C) or (N, C, H, W) activations and (N, K) concepts, got "
            f"{tuple(activations.shape)}, {tuple(concepts.shape)}"
        )
    a = activations.detach().double()
    a = (a.mean(dim=(2, 3)) if a.ndim == 4 else a).numpy()
    y = concepts.cpu().numpy().astype(int)
    train, test = train_test_split(np.arange(len(a)), test_size=test_fraction, random_state=seed)
    if min(y[train].sum(0).min(), y[test].sum(0).min(), (1 - y[train]).sum(0).min(), (1 - y[test]).sum(0).min()) < 1:
        raise ValueError("every concept needs positive and negative samples in both the training and the test split")
    scaler = StandardScaler().fit(a[train])
    single, multi, best, embeddings = [], [], [], []
    for k in range(y.shape[1]):
        train_ap = [average_precision_score(y[train, k], a[train, c]) for c in range(a.shape[1])]
        best.append(int(np.argmax(train_ap)))
        single.append(average_precision_score(y[test, k], a[test, best[-1]]))
        probe = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(a[train]), y[train, k])
        multi.append(average_precision_score(y[test, k], probe.decision_function(scaler.transform(a[test]))))
        embeddings.append(probe.coef_[0] / scaler.scale_)  # the weights on the raw activations
    w = torch.tensor(np.stack(embeddings))
    unit = torch.nn.functional.normalize(w, dim=1)
    return {
        "single_ap": torch.tensor(single),
        "multi_ap": torch.tensor(multi),
        "best_filter": torch.tensor(best),
        "mean_single_ap": float(np.mean(single)),
        "mean_multi_ap": float(np.mean(multi)),
        "embeddings": w,
        "similarity": unit @ unit.T,
    }
