"""The shared base of compatible-representation methods: a successor trained against a frozen predecessor.

A compatible method trains a new model whose features can be compared with the features of an old model (new
queries searched in a gallery the old model embedded, without re-embedding it). :class:`CompatibleModule` holds:

- ``old``: the predecessor, a whole LightningModule of any registered method, frozen (no gradients, always in eval
  mode) and kept OUT of the successor's parameters and state dict (it is not a submodule; ``_apply`` moves it with
  the successor across devices and dtypes). It comes from ``old_model`` (a local file, see below) or from
  :meth:`CompatibleModule.set_old_model` (tests, notebooks, the zoo layer). ``None`` for the first model.
- a classifier over ALL classes of the protocol (``num_classes``; rows of future classes are reserved), of which
  :meth:`classify` uses the seen ones; ``num_seen_classes`` (a buffer, saved with the model) is set at ``setup``
  from the datamodule (``ClassIncremental.num_seen_classes``; every class for any other datamodule).
- validation of compatibility when an old model is set: ``val/compat_top1`` and ``val/compat_map`` (new queries in the
  old model's gallery), ``val/old_top1`` (the old model alone), ``val/self_top1`` (the new model alone) and
  ``val/ecc`` (1 when the empirical compatibility criterion compat_top1 > old_top1 holds), with the datamodule's bank
  as the gallery; the 2 x 2 matrix goes to TensorBoard as a heatmap (``val/compatibility``).

Methods know no hub: ``old_model`` is a path on this machine, a Lightning checkpoint (``.ckpt``) or a run directory
(``runs/<method>/version_N``); the method class of the checkpoint is read from the checkpoint's ``reprzoo_method``
key, else from the run's ``config.yaml``, else it is the successor's own class. The CLI resolves ``zoo:NAME`` into
such a checkpoint (``reprzoo.zoo.compatible``) before the model is built.

Hooks a method overrides (each documented below): ``build_classifier`` (e.g. a fixed d-simplex), ``training_loss``,
``on_old_model_set`` (e.g. copy or distil from the old model); helpers it calls: ``old_features``, ``old_logits``,
``classify``, ``classification_loss``, ``is_old_class``, ``num_old_classes``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule
from reprzoo.lightning_modules.registry import without_local_args
from reprzoo.metrics.compatibility import CrossModelRetrieval
from reprzoo.metrics.evaluators import CompatibilityEvaluator


class CompatibleModule(EmbeddingModule):
    """Base of methods that train a successor compatible with a frozen old model.

    Args:
        old_model: the predecessor, a local ``.ckpt`` or run directory (``None`` for the first model).
        old_model_name: the zoo ``name@revision`` the old model came from, recorded as lineage (the CLI sets it).
        init_from_old: start the backbone (and the classifier, when shapes match) from the old model's weights.
        kwargs: options of :class:`EmbeddingModule` (backbone, ``num_classes``, optimiser, evaluation).
    """

    def __init__(
        self,
        old_model: str | None = None,
        old_model_name: str | None = None,
        init_from_old: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not self.hparams.num_classes:
            raise ValueError(f"{type(self).__name__} trains a classifier: it needs num_classes (the CLI links it)")
        self.classifier = self.build_classifier()
        self.register_buffer("num_seen_classes", torch.tensor(int(self.hparams.num_classes)))
        self.compat_retrieval = CrossModelRetrieval()  # new queries, old gallery
        self.old_retrieval = CrossModelRetrieval()  # old queries, old gallery
        self.self_retrieval = CrossModelRetrieval()  # new queries, new gallery
        object.__setattr__(self, "_old_module", None)  # not a submodule: outside parameters and state dict
        if old_model is not None:
            self.set_old_model(load_old_model(old_model, default_class=type(self)))

    # ----------------------------------------------------------------- hooks
    def build_classifier(self) -> nn.Module:
        """The classifier over all ``num_classes`` classes; a linear layer here. Override for a fixed classifier."""
        return nn.Linear(self.feature_dim, self.hparams.num_classes)

    def on_old_model_set(self, old: EmbeddingModule) -> None:
        """Called once the old model is in place; by default applies ``init_from_old``."""
        if self.hparams.init_from_old:
            self.backbone.load_state_dict(old.backbone.state_dict())
            old_classifier = getattr(old, "classifier", None)
            if old_classifier is not None and all(
                a.shape == b.shape for a, b in zip(old_classifier.state_dict().values(), self.classifier.state_dict().values())
            ):
                self.classifier.load_state_dict(old_classifier.state_dict())

    # ----------------------------------------------------------------- the old model
    @property
    def old(self) -> EmbeddingModule | None:
        """The frozen predecessor, or ``None``."""
        return self.__dict__.get("_old_module")

    def set_old_model(self, module: EmbeddingModule) -> None:
        """Use (a frozen copy of) ``module`` as the old model."""
        old = copy.deepcopy(module).eval().requires_grad_(False)
        if isinstance(old, CompatibleModule):
            object.__setattr__(old, "_old_module", None)  # the predecessor's own predecessor is not needed
        device = self.num_seen_classes.device
        object.__setattr__(self, "_old_module", old.to(device))
        self.on_old_model_set(old)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        old = self.__dict__.get("_old_module")
        if old is not None:
            old._apply(fn, *args, **kwargs)  # follow the successor across devices and dtypes
        return self

    @property
    def num_old_classes(self) -> int:
        """Classes the old model was trained on (0 without one)."""
        if self.old is None:
            return 0
        seen = getattr(self.old, "num_seen_classes", None)
        return int(seen) if seen is not None else int(self.old.hparams.num_classes)

    def is_old_class(self, labels: torch.Tensor) -> torch.Tensor:
        """Mask of labels the old model knows (labels are contiguous per task: old classes come first)."""
        return (labels >= 0) & (labels < self.num_old_classes)

    @torch.no_grad()
    def old_features(self, x: torch.Tensor) -> torch.Tensor:
        """The old model's representation of ``x`` (its ``embed``), without gradients."""
        if self.old is None:
            raise RuntimeError("no old model: set old_model (or call set_old_model) to train a successor")
        self.old.eval()
        return self.old.embed(x)

    def old_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` through the old model's frozen classifier, over the classes it saw; gradients flow to
        ``features`` (BCT's influence loss), none to the old classifier."""
        old_classifier = getattr(self.old, "classifier", None) if self.old is not None else None
        if old_classifier is None:
            raise RuntimeError(f"the old model ({type(self.old).__name__}) has no classifier")
        return old_classifier(features)[:, : self.num_old_classes]

    @property
    def compatible_dim(self) -> int:
        """Width of the prefix of the representation compared with the old model's gallery: all of it here;
        methods that add dimensions (BT^2, OCA, DER) compare the prefix of the old model's width. A pushed
        successor records it (``architecture.representation.compatible_dim``)."""
        return int(self.embedding_dim)

    def compatible_embed(self, x: torch.Tensor) -> torch.Tensor:
        """The part of the representation compared with the old model's gallery: the first ``compatible_dim``."""
        z = self.embed(x)
        return z if self.compatible_dim >= z.shape[-1] else z[:, : self.compatible_dim]

    # ----------------------------------------------------------------- the new model's classifier
    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits over the seen classes ``0 .. num_seen_classes - 1``."""
        return self.classifier(features)[:, : int(self.num_seen_classes)]

    def classification_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the seen classes (unlabelled samples, -1, ignored)."""
        return F.cross_entropy(self.classify(features), labels, ignore_index=-1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["reprzoo_method"] = type(self).__name__  # lets load_old_model rebuild it without a config.yaml

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        seen = getattr(datamodule, "num_seen_classes", None)
        self.num_seen_classes.fill_(int(seen) if seen is not None else int(self.hparams.num_classes))

    # ----------------------------------------------------------------- compatibility during validation
    def build_evaluators(self):
        """The base's evaluators plus cross-model retrieval with the old model (compat/old/self top-1 and mAP, ECC)."""
        evaluators = super().build_evaluators()
        evaluators.append(CompatibilityEvaluator(self.compat_retrieval, self.old_retrieval, self.self_retrieval))
        return evaluators


def _method_classes() -> dict[str, type]:
    from reprzoo.lightning_modules.finetune import FineTune
    from reprzoo.lightning_modules.registry import METHODS, _import_all

    _import_all()
    return {**{name: info.cls for name, info in METHODS.items()}, "FineTune": FineTune}


def load_old_model(path: str | Path, default_class: type | None = None) -> EmbeddingModule:
    """Rebuild the LightningModule saved in a checkpoint (or run directory), with its weights, for use as an old
    model. The checkpoint is read with ``weights_only=True``; only registered method classes are built."""
    import yaml

    from reprzoo.training.checkpointing import find_run_checkpoint

    _, ckpt_path, config_path = find_run_checkpoint(path, "old_model")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    name = ckpt.get("reprzoo_method")
    if name is None and config_path is not None:
        name = ((yaml.safe_load(config_path.read_text()) or {}).get("model") or {}).get("class_path", "").rsplit(".", 1)[-1]
    classes = _method_classes()
    if name:
        if name not in classes:
            raise ValueError(f"old_model {ckpt_path} was trained with {name!r}, which is not a registered method")
        cls = classes[name]
    elif default_class is not None:
        cls = default_class
    else:
        raise ValueError(f"old_model {ckpt_path}: cannot tell its method (no reprzoo_method key, no config.yaml)")
    hparams: dict[str, Any] = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    module = cls(**without_local_args(hparams))  # the old model's own old model, teacher, ... are not followed
    state = ckpt["state_dict"]
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "num_seen_classes"]  # absent from non-compatible methods
    if missing or result.unexpected_keys:
        raise ValueError(
            f"old_model {ckpt_path} does not match {cls.__name__}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return module.eval().requires_grad_(False)
