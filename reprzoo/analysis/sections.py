"""The report's sections: each wraps metric functions of :mod:`reprzoo.metrics.analysis` (pure functions over
tensors) for the features :func:`~reprzoo.analysis.analyze` collected, with the figures people would rather look at.
A section says what it needs (labels, two models, layers, token states, slots, ...); one that does not apply to the
models in front of it is listed with the reason, and runs as soon as models of that kind are analysed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from reprzoo.analysis.features import ModelFeatures
from reprzoo.analysis.report import Figure, Section, render_png


@dataclass
class AnalysisContext:
    """What every section reads: each model's features on the same samples, their labels and the settings."""

    models: list[ModelFeatures]
    labels: torch.Tensor
    max_samples: int
    seed: int = 0
    data: str = ""

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).all()) and int(self.labels.unique().numel()) >= 2

    @property
    def num_classes(self) -> int:
        return int(self.labels.unique().numel())


@dataclass
class SectionSpec:
    key: str
    title: str
    paper: str
    what: str
    run_fn: Callable[[AnalysisContext, Section], None]
    needs: tuple[str, ...] = ()
    when: Callable[[AnalysisContext], str | None] | None = None

    def section(self, **kwargs) -> Section:
        return Section(self.key, self.title, self.paper, self.what, **kwargs)

    def applies(self, ctx: AnalysisContext) -> str | None:
        """``None`` if the section runs on ``ctx``, else why not (one sentence)."""
        if "labels" in self.needs and not ctx.labelled:
            return "needs labelled data with at least two classes"
        if "pair" in self.needs and len(ctx.models) < 2:
            return "compares two models: pass two or more names"
        if "layers" in self.needs and not any(m.layers for m in ctx.models):
            return "needs intermediate layers (--layers)"
        return self.when(ctx) if self.when else None

    def run(self, ctx: AnalysisContext) -> Section:
        section = self.section()
        self.run_fn(ctx, section)
        return section


SECTIONS: dict[str, SectionSpec] = {}


def section(key: str, title: str, paper: str, what: str, needs: tuple[str, ...] = (), when=None):
    """Register a section (in report order)."""

    def register(fn):
        SECTIONS[key] = SectionSpec(key, title, paper, what, fn, needs, when)
        return fn

    return register


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid(count: int, size: float = 3.6):
    plt = _plt()
    fig, axes = plt.subplots(1, count, figsize=(size * count, size), squeeze=False)
    return fig, axes[0]


# ------------------------------------------------------------------------------------------------ embedding map
@section(
    "embedding_map",
    "Embedding map (t-SNE)",
    "van der Maaten & Hinton, Visualizing Data using t-SNE (JMLR 2008), scikit-learn's implementation",
    "Each model's representation in two dimensions, coloured by label: class structure at a glance.",
)
def _embedding_map(ctx: AnalysisContext, out: Section) -> None:
    from sklearn.manifold import TSNE

    fig, axes = _grid(len(ctx.models))
    labelled = ctx.labelled
    for ax, model in zip(axes, ctx.models):
        x = model.features.double().numpy()
        perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=ctx.seed).fit_transform(x)
        ax.scatter(points[:, 0], points[:, 1], c=ctx.labels.numpy() if labelled else None, s=6, cmap="tab10")
        ax.set_title(model.name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    out.figures.append(Figure(f"t-SNE (perplexity up to 30) of {len(ctx.labels)} samples", render_png(fig)))
