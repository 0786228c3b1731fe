"""Features for analysis: one pass of a zoo model over the evaluation split, keeping its representation (what
``embed`` returns) and, through forward hooks, the pooled output of chosen intermediate layers. Every analysis then
works from these tensors: a model is run once per dataset, not once per metric."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from reprzoo.errors import ReprzooError


@dataclass
class ModelFeatures:
    """What one model computed on the analysed samples (rows in the same order for every model).

    Attributes:
        name: the zoo name the model was loaded by.
        revision: the revision loaded.
        features: ``(N, D)`` the representation (``encoder.embed``).
        layers: layer name -> ``(N, C)`` its output, pooled (mean over positions or tokens), in forward order.
        tokens: layer name -> ``(N, T, C)`` token states, for sequence models whose layers output tokens.
        token_mask: ``(N, T)`` which tokens are real (text: not padding); ``None`` when all are.
        kind: the representation kind the model records (``dense``, ``multi_vector``, ``slots``, ...).
        encoder: the loaded model (for analyses that run it again: inversion).
        inputs: the first few analysed inputs, preprocessed for this model (inversion's targets).
        maps: layer name -> ``(MAP_SAMPLES, C, ...)`` unpooled outputs of the first samples (channel signatures over
            samples and positions, for feature merging).
    """

    name: str
    revision: str | None
    features: torch.Tensor
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)
    kind: str = "dense"
    encoder: nn.Module | None = None
    inputs: torch.Tensor | None = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    token_mask: torch.Tensor | None = None


MAP_SAMPLES = 32  # unpooled layer outputs kept (memory: 32 x C x H x W floats per layer)


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def default_layers(module: nn.Module, prefix: str = "") -> list[str]:
    """The layers analysed when none are named: the module's children with parameters, a wrapper with one such child
    unwrapped (a text encoder's ``BertModel``, its ``encoder.layer``), and a ``Sequential``/``ModuleList`` expanded
    into its own children (a ResNet's stages, a transformer's blocks)."""
    names = []
    for name, child in module.named_children():
        if not _has_parameters(child):
            continue
        name = prefix + name
        while not isinstance(child, (nn.Sequential, nn.ModuleList)):
            inner = [(n, c) for n, c in child.named_children() if _has_parameters(c)]
            if len(inner) != 1:
                break
            name, child = f"{name}.{inner[0][0]}", inner[0][1]
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 1:
            names += [f"{name}.{n}" for n, c in child.named_children() if _has_parameters(c)]
        else:
            names.append(name)
    if len(names) == 1 and not prefix:  # a single wrapper (TransformerEncoder -> BertModel): its layers instead
        inner = default_layers(dict(module.named_modules())[names[0]], names[0] + ".")
        return inner or names
    return names


def _tensor(output) -> torch.Tensor:
    if isinstance(output, (tuple, list)):
        output = output[0]
    if hasattr(output, "last_hidden_state"):
        output = output.last_hidden_state
    if not isinstance(output, torch.Tensor):
        raise ReprzooError(f"a layer returned {type(output).__name__}, not a tensor: name another layer")
    return output.detach().float()


def _pooled(output, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A layer's output as ``(N, C)`` (mean over spatial positions, or over the real tokens where ``mask`` (N, T)
    says which they are) and its token states, if any."""
    output = _tensor(output)
    if output.ndim == 4:  # (N, C, H, W)
        return output.mean((2, 3)), None
    if output.ndim == 3:  # (N, T, C)
        if mask is not None and mask.shape == output.shape[:2]:
            weights = mask.to(output.dtype).unsqueeze(-1)
            return (output * weights).sum(1) / weights.sum(1).clamp_min(1.0), output
        return output.mean(1), output
    if output.ndim == 2:
        return output, None
    raise ReprzooError(f"a layer returned a {output.ndim}-d tensor; analysis reads 2-d, 3-d (tokens) or 4-d outputs")


def collect_features(
    encoder,
    loader,
    layers: list[str] | None = None,
    device: str | torch.device = "cpu",
    keep_tokens: bool = False,
) -> tuple[ModelFeatures, torch.Tensor]:
    """Run ``encoder`` (a loaded zoo model) over ``loader`` once: ``(features, labels)``.

    Args:
        encoder: a :class:`~reprzoo.zoo.encoder.Encoder`.
        loader: batches of ``(input, label)``.
        layers: dotted module names inside ``encoder.encoder`` (default: :func:`default_layers`).
        device: where to run.
        keep_tokens: keep the ``(N, T, C)`` states of token-sequence layers (memory: N x T x C floats each).
    """
    from reprzoo.zoo.embedding import to_device

    module = encoder.encoder
    named = dict(module.named_modules())
    layers = default_layers(module) if layers is None else list(layers)
    unknown = [name for name in layers if name not in named]
    if unknown:
        from reprzoo.errors import UnknownNameError

        raise UnknownNameError(f"layer of {encoder.name}", unknown[0], [n for n in named if n])
    pooled: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    tokens: dict[str, list[torch.Tensor]] = {}
    maps: dict[str, torch.Tensor] = {}
    batch_mask: list[torch.Tensor | None] = [None]  # the current batch's attention mask (text)

    def hook(name):
        def record(_module, _inputs, output):
            mask = batch_mask[0]
            flat, seq = _pooled(output, mask)
            pooled[name].append(flat.cpu())
            if keep_tokens and seq is not None:
                tokens.setdefault(name, []).append(seq.cpu())
            if name not in maps:  # the first batch's unpooled outputs: (n, C, positions...)
                full = _tensor(output)[:MAP_SAMPLES].cpu()
                if full.ndim == 3 and mask is not None and mask.shape[1] == full.shape[1]:
                    full = full[mask[:MAP_SAMPLES].bool().cpu()].T[None]  # (1, C, real tokens)
                maps[name] = full.transpose(1, 2) if full.ndim == 3 and mask is None else full

        return record

    handles = [named[name].register_forward_hook(hook(name)) for name in layers]
    chunks, labels, masks = [], [], []
    try:
        with torch.inference_mode():
            for x, y in loader:
                batch_mask[0] = x.get("attention_mask") if isinstance(x, dict) else None
                if batch_mask[0] is not None:
                    masks.append(batch_mask[0].cpu())
                chunks.append(encoder.embed(to_device(x, device)).float().cpu())
                labels.append(torch.as_tensor(y))
    finally:
        for handle in handles:
            handle.remove()
    if not chunks:
        raise ReprzooError("the analysed split is empty")
    features = ModelFeatures(
        name=encoder.name,
        revision=encoder.revision,
        features=torch.cat(chunks),
        layers={name: torch.cat(parts) for name, parts in pooled.items() if parts},
        tokens={name: _cat_tokens(parts) for name, parts in tokens.items()},
        token_mask=_cat_tokens([m[..., None] for m in masks])[..., 0].bool() if masks and tokens else None,
        kind=encoder.kind,
        encoder=encoder,
        maps=maps,
    )
    return features, torch.cat(labels).long()


def _cat_tokens(parts: list[torch.Tensor]) -> torch.Tensor:
    """Token states of batches padded to one length (zeros after a shorter batch's end)."""
    length = max(p.shape[1] for p in parts)
    return torch.cat([nn.functional.pad(p, (0, 0, 0, length - p.shape[1])) for p in parts])


__all__ = ["ModelFeatures", "collect_features", "default_layers"]
