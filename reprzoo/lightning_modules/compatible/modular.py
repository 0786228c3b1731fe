"""PICLE: "A Probabilistic Framework for Modular Continual Learning" (Valkov, Srivastava, Chaudhuri & Sutton,
ICLR 2024, arXiv:2306.06545)."""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.compatible.base import CompatibleModule
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.continual import composition_log_prior, gaussian_log_likelihood


class LibraryModule(nn.Module):
    """One module of the modular network (3x3 conv, batch norm, ReLU, then 2x2 max-pool, or global average pooling
    for the last layer) with a Gaussian model of the inputs it was trained on, in a fixed random projection."""

    def __init__(self, in_ch: int, out_ch: int, last: bool, proj_dim: int):
        super().__init__()
        pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if last else nn.MaxPool2d(2)
        self.block = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True), pool
        )
        self.register_buffer("input_mean", torch.zeros(proj_dim))
        self.register_buffer("input_cov", torch.eye(proj_dim))
        generator = torch.Generator().manual_seed(in_ch)  # the same projection for every module of a layer
        self.register_buffer("projection", torch.randn(in_ch * 16, proj_dim, generator=generator) / (in_ch * 16) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)

    def summarize(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch ``(n, c, h, w)`` as ``(n, proj_dim)``: 4x4 average pooling, then the random projection."""
        return F.adaptive_avg_pool2d(x, 4).flatten(1) @ self.projection

    @torch.no_grad()
    def fit_inputs(self, summaries: torch.Tensor, ridge: float = 1e-3) -> None:
        self.input_mean.copy_(summaries.mean(0))
        centred = summaries - self.input_mean
        self.input_cov.copy_(
            centred.T @ centred / max(len(summaries) - 1, 1) + ridge * torch.eye(len(self.input_mean), device=summaries.device)
        )

    def input_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_log_likelihood(self.summarize(x).double(), self.input_mean.double(), self.input_cov.double())


class ModularNet(nn.Module):
    """A path: one module per layer, applied in order; ``num_features`` is the last module's width."""

    def __init__(self, modules: list[LibraryModule]):
        super().__init__()
        self.path = nn.ModuleList(modules)
        self.num_features = modules[-1].block[0].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.path:
            x = module(x)
        return x


@register_method(
    title="A Probabilistic Framework for Modular Continual Learning", wing="compatible-representations", arxiv="2306.06545"
)
class PICLE(CompatibleModule):
    """PICLE's modular continual learning, in its perceptual-transfer form: each problem is solved by a path of
    modules, one per layer; modules trained on earlier problems form a library and stay frozen (no forgetting by
    design). For a new problem PICLE searches the compositions that reuse pre-trained modules in the first
    ``reuse_layers`` layers (new modules above) without training them: a probabilistic model scores each,

        log p(path | D) = log p(path) + sum_i log N(summary of the inputs D gives module i | its training inputs),

    the prior p(path) favouring compositions of modules used together before (``composition_log_prior``) and the
    likelihood measuring how familiar the new inputs look to each reused module. The best path is trained (its new
    modules and the head).

    At this scale (ours): 3 conv modules, input summaries by 4x4 pooling and a fixed random projection to
    ``proj_dim`` dims with a full-covariance Gaussian, the prior's pseudo-count ``alpha``. PICLE further trains the
    best path of every prefix length and keeps the best on validation data (choose with ``reuse_layers``), and
    searches latent-transfer paths (reused modules on top of new ones) by Bayesian optimisation with a Gaussian
    process; both are left out. Tasks are told apart at test time: the loss and ``classify`` cover the current
    problem's classes. The ``backbone`` option is unused: the network is the modular one (``widths``).

    Args:
        widths: output channels of the modules of each layer.
        reuse_layers: layers whose modules are reused from the library (1 .. layers - 1).
        proj_dim: dimension of the input summaries.
        alpha: pseudo-count of the prior.
        search_batches: training batches used to score the candidate paths and to fit the input models.
        library_sizes, path, history: the library's modules per layer, this problem's path (library index or -1 for
            a new module) and the earlier paths; set from the old model and saved so that a checkpoint rebuilds.
        kwargs: options of :class:`CompatibleModule` (``old_model``) and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128),
        reuse_layers: int = 2,
        proj_dim: int = 16,
        alpha: float = 1.0,
        search_batches: int = 4,
        library_sizes: list[int] | None = None,
        path: list[int] | None = None,
        history: list[list[int]] | None = None,
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        backbone: str = "resnet_tiny_cifar",
        **kwargs,
    ):
        if not 1 <= reuse_layers < len(widths):
            raise ValueError(f"reuse_layers must be in 1..{len(widths) - 1}, got {reuse_layers}")
        self._widths = tuple(widths)
        super().__init__(lr=lr, weight_decay=weight_decay, backbone=backbone, **kwargs)
        if "library" not in self._modules:  # not already built from an old model during super().__init__
            self._build(list(library_sizes or [0] * len(widths)), list(path or [-1] * len(widths)), list(history or []))

    def _new_module(self, layer: int) -> LibraryModule:
        ins = (3, *self._widths[:-1])
        return LibraryModule(ins[layer], self._widths[layer], layer == len(self._widths) - 1, self.hparams.proj_dim)

    def _build(self, library_sizes: list[int], path: list[int], history: list[list[int]]) -> None:
        self.library = nn.ModuleList(nn.ModuleList(self._new_module(i) for _ in range(n)) for i, n in enumerate(library_sizes))
        self.library.requires_grad_(False)
        self._set_path(path)
        self.hparams.library_sizes, self.hparams.history = library_sizes, history

    def _set_path(self, path: list[int]) -> None:
        modules = [self.library[i][m] if m >= 0 else self._new_module(i) for i, m in enumerate(path)]
        self.backbone = ModularNet(modules)
        self.feature_dim = self.backbone.num_features
        self.hparams.path = list(path)
        self.resize_probe(self.feature_dim)

    def build_classifier(self) -> nn.Module:
        return nn.Linear(self._widths[-1], self.hparams.num_classes)

    def on_old_model_set(self, old: EmbeddingModule) -> None:
        if not isinstance(old, PICLE):
            raise TypeError(f"PICLE's old model must be a PICLE model, got {type(old).__name__}")
        library = [list(layer) for layer in copy.deepcopy(old.library)]
        old_path = []
        for i, (m, module) in enumerate(zip(old.hparams.path, old.backbone.path)):
            if m < 0:  # the old problem's new module joins the library
                library[i].append(copy.deepcopy(module))
                m = len(library[i]) - 1
            old_path.append(m)
        self.library = nn.ModuleList(nn.ModuleList(layer) for layer in library)
        self.library.requires_grad_(False)
        self.hparams.library_sizes = [len(layer) for layer in library]
        self.hparams.history = [*old.hparams.history, old_path]
        self._set_path([-1] * len(self._widths))
        self.hparams.path = None  # chosen by the search, at setup
        self.to(self.num_seen_classes.device)

    # ----------------------------------------------------------------- the search
    @torch.no_grad()
    def path_scores(self, images: torch.Tensor) -> dict[tuple[int, ...], float]:
        """log p(path | images) of every reuse of ``reuse_layers`` library modules."""
        depth, sizes = self.hparams.reuse_layers, self.hparams.library_sizes
        scores = {}
        for prefix in itertools.product(*(range(n) for n in sizes[:depth])):
            x, log_likelihood = images, 0.0
            for i, m in enumerate(prefix):
                module = self.library[i][m].eval()
                log_likelihood += float(module.input_log_likelihood(x))
                x = module(x)
            scores[prefix] = composition_log_prior(list(prefix), self.hparams.history, sizes, self.hparams.alpha) + log_likelihood
        return scores

    def _train_images(self) -> torch.Tensor:
        loader = self.trainer.datamodule.train_dataloader()
        batches = []
        for views, *_ in itertools.islice(loader, self.hparams.search_batches):
            batches.append(views[0] if isinstance(views, (list, tuple)) else views)
        return torch.cat(batches)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit" or self.hparams.path is not None or min(self.hparams.library_sizes) == 0:
            if self.hparams.path is None:
                self._set_path([-1] * len(self._widths))
            return
        scores = self.path_scores(self._train_images())
        best = max(scores, key=scores.get)
        self._set_path([*best, *[-1] * (len(self._widths) - len(best))])
        self.to(self.num_seen_classes.device)

    def on_train_end(self) -> None:
        """Fit the input model of this problem's new modules on its training inputs (they join the next library)."""
        with torch.no_grad():
            x = self._train_images().to(self.device)
            self.backbone.eval()
            for m, module in zip(self.hparams.path, self.backbone.path):
                if m < 0:
                    module.fit_inputs(module.summarize(x))
                x = module(x)

    def train(self, mode: bool = True):
        super().train(mode)
        if "library" in self._modules:
            self.library.eval()  # reused modules are frozen, batch-norm statistics included
        return self

    # ----------------------------------------------------------------- the problem's objective
    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits over the current problem's classes (the problem is known at test time)."""
        return self.classifier(features)[:, self.num_old_classes : int(self.num_seen_classes)]

    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError("PICLE is supervised: it needs the batch's labels")
        x = views[0] if isinstance(views, (list, tuple)) else views
        features = self.backbone(x)
        task_labels = labels - self.num_old_classes
        task_labels = torch.where(task_labels >= 0, task_labels, torch.full_like(task_labels, -1))
        return TrainingOutput(F.cross_entropy(self.classify(features), task_labels, ignore_index=-1), features=features)
