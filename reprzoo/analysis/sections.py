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
    quick: bool = False  # a smoke run: fewer optimisation steps where a section optimises

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


# ------------------------------------------------------------------------------------------------ helpers
def _halves(ctx: AnalysisContext) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded, stratified-by-shuffling half split of the analysed samples: ``(train, test)`` index tensors."""
    order = torch.randperm(len(ctx.labels), generator=torch.Generator().manual_seed(ctx.seed))
    return order[: len(order) // 2], order[len(order) // 2 :]


def _pairs(ctx: AnalysisContext):
    for i, a in enumerate(ctx.models):
        for b in ctx.models[i + 1 :]:
            yield a, b


def _scalars(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _logistic(features: torch.Tensor, labels: torch.Tensor):
    """A logistic-regression probe on standardised features: ``(weight, bias)`` in the features' own coordinates."""
    from sklearn.linear_model import LogisticRegression

    x = features.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    probe = LogisticRegression(max_iter=2000).fit(((x - mean) / std).numpy(), labels.numpy())
    weight = torch.as_tensor(probe.coef_) / std
    bias = torch.as_tensor(probe.intercept_) - weight @ mean
    if weight.shape[0] == 1:  # binary: sklearn keeps one row
        weight, bias = torch.cat([-weight, weight]) / 2, torch.cat([-bias, bias]) / 2
    return weight.float(), bias.float()


def _heatmap(ax, matrix: torch.Tensor, names: list[str], title: str) -> None:
    image = ax.imshow(matrix.numpy(), vmin=min(0.0, float(matrix.min())), vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for (i, j), v in zip(torch.cartesian_prod(torch.arange(len(names)), torch.arange(len(names))).tolist(), matrix.flatten()):
        ax.text(j, i, f"{float(v):.2f}", ha="center", va="center", color="white", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


def _layer_stack(model: ModelFeatures) -> dict[str, torch.Tensor]:
    """The model's hooked layers, then its representation (``embedding``)."""
    return {**model.layers, "embedding": model.features}


# ------------------------------------------------------------------------------------------------ geometry
@section(
    "isotropy",
    "IsoScore and effective rank, per layer",
    "Rudman et al., IsoScore: Measuring the Uniformity of Embedding Space Utilization (ACL Findings 2022, arXiv:2108.07344)",
    "How uniformly each layer uses its dimensions: IsoScore is 1 for an isotropic cloud and 0 when the variance "
    "sits in one direction; the effective rank (entropy of the normalised singular values) beside it.",
)
def _isotropy(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.geometry import isoscore
    from reprzoo.metrics.collapse import effective_rank

    fig, axes = _grid(2, 4.2)
    for model in ctx.models:
        layers = _layer_stack(model)
        scores = [isoscore(x)["isoscore"] for x in layers.values()]
        ranks = [float(effective_rank(x)) for x in layers.values()]
        out.values[model.name] = {"isoscore": scores[-1], "effective_rank": ranks[-1], "dim": int(model.features.shape[1])}
        out.values[f"{model.name} per layer"] = {n: round(s, 4) for n, s in zip(layers, scores)}
        axes[0].plot(range(len(layers)), scores, marker="o", label=model.name)
        axes[1].plot(range(len(layers)), ranks, marker="o", label=model.name)
        for ax in axes:
            ax.set_xticks(range(len(layers)), list(layers), rotation=45, ha="right", fontsize=7)
    axes[0].set_title("IsoScore per layer", fontsize=9)
    axes[1].set_title("effective rank per layer", fontsize=9)
    axes[0].legend(fontsize=7)
    out.figures.append(Figure("IsoScore and effective rank from the first hooked layer to the representation", render_png(fig)))


@section(
    "neural_collapse",
    "Neural collapse (NC1-NC4)",
    "Dang et al., Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data (ICML 2023, "
    "arXiv:2301.00437); the statistics of Papyan, Han & Donoho (2020)",
    "NC1 within-class variability relative to between-class (0: collapsed), NC2 distance of the centred class means "
    "from a simplex ETF, NC3 self-duality of a linear classifier and the means, NC4 disagreement of the classifier "
    "with the nearest class centre. Self-supervised models have no classifier: NC3/NC4 use a logistic probe fitted "
    "on the same features.",
    needs=("labels",),
)
def _neural_collapse(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.geometry import neural_collapse

    keys = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc2_etf", "nc3", "nc4")
    fig, axes = _grid(len(keys), 2.4)
    for model in ctx.models:
        weight, bias = _logistic(model.features, ctx.labels)
        out.values[model.name] = {
            k: v for k, v in _scalars(neural_collapse(model.features, ctx.labels, weight, bias)).items() if k in keys
        }
    for ax, key in zip(axes, keys):
        ax.bar(range(len(ctx.models)), [out.values[m.name][key] for m in ctx.models], color="tab:blue")
        ax.set_xticks(range(len(ctx.models)), [m.name for m in ctx.models], rotation=60, ha="right", fontsize=6)
        ax.set_title(key, fontsize=9)
    out.figures.append(Figure("neural-collapse statistics of each representation (lower = more collapsed)", render_png(fig)))


@section(
    "convexity",
    "Convexity of class regions",
    "Tětková et al., On convex decision regions in deep network representations (arXiv:2305.17154)",
    "Graph convexity: share of the nodes on shortest kNN-graph paths between two points of a class that belong to "
    "that class; Euclidean convexity: share of points interpolated between them classified as that class (by the "
    "nearest neighbour).",
    needs=("labels",),
)
def _convexity(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.geometry import euclidean_convexity, graph_convexity

    fig, axes = _grid(1, 5.0)
    width = 0.8 / max(1, 2 * len(ctx.models))
    for i, model in enumerate(ctx.models):
        graph = graph_convexity(model.features, ctx.labels, k=10, n_pairs=50, seed=ctx.seed)
        line = euclidean_convexity(model.features, ctx.labels, n_pairs=50, seed=ctx.seed)
        out.values[model.name] = {"graph_convexity": graph["graph_convexity"], "euclidean_convexity": line["euclidean_convexity"]}
        classes = torch.arange(len(graph["per_class"]))
        axes[0].bar(classes + (2 * i) * width, graph["per_class"], width, label=f"{model.name} graph")
        axes[0].bar(classes + (2 * i + 1) * width, line["per_class"], width, label=f"{model.name} euclidean")
    axes[0].set_xlabel("class")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=6)
    out.figures.append(Figure("convexity of each class region (50 same-class pairs per class)", render_png(fig)))


# ------------------------------------------------------------------------------------------------ similarity
RDM_SAMPLES = 300  # RDMs are O(n^2): the section's own cap (the report states it)


@section(
    "rsa",
    "Representational similarity: RDMs, RSA, topological RSA and linear CKA",
    "Lin & Kriegeskorte, The Topology and Geometry of Neural Representations (PNAS 2024, arXiv:2309.11028); "
    "linear CKA of Kornblith et al. (ICML 2019) beside it",
    "Each model's representational dissimilarity matrix (1 - Pearson, samples sorted by label), and every pair of "
    "models compared by the Spearman correlation of their RDMs (RSA), of their geo-topologically transformed RDMs "
    "(tRSA: distances below the 10% quantile -> 0, above the 90% -> 1) and by linear CKA.",
)
def _rsa(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.alignment import linear_cka, pairwise_alignment_matrix, rdm, rsa, sample_indices

    keep = sample_indices(len(ctx.labels), RDM_SAMPLES, ctx.seed)
    keep = keep[torch.argsort(ctx.labels[keep], stable=True)]
    fig, axes = _grid(len(ctx.models), 3.2)
    for ax, model in zip(axes, ctx.models):
        ax.imshow(rdm(model.features[keep]).numpy(), cmap="magma")
        ax.set_title(model.name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    out.figures.append(Figure(f"RDMs of {len(keep)} samples sorted by label (dark: similar)", render_png(fig)))
    features = {m.name: m.features[keep] for m in ctx.models}
    if len(ctx.models) < 2:
        out.values["note"] = "one model: pass two or more names for RSA, tRSA and CKA between models"
        return
    matrices = {
        "RSA": pairwise_alignment_matrix(features, rsa, "rsa"),
        "tRSA": pairwise_alignment_matrix(features, lambda a, b: rsa(a, b, lower=0.1, upper=0.9), "rsa"),
        "linear CKA": pairwise_alignment_matrix(features, linear_cka, "cka"),
    }
    fig, axes = _grid(3, 3.6)
    for ax, (title, (names, matrix)) in zip(axes, matrices.items()):
        _heatmap(ax, matrix, names, title)
    out.figures.append(Figure("model-to-model alignment (1 on the diagonal)", render_png(fig)))
    for a, b in _pairs(ctx):
        i, j = list(features).index(a.name), list(features).index(b.name)
        out.values[f"{a.name} vs {b.name}"] = {title: float(m[i, j]) for title, (_, m) in matrices.items()}


@section(
    "convergent_learning",
    "Convergent learning: unit matching between two networks",
    "Li et al., Convergent Learning: Do different neural networks learn the same representations? (ICLR 2016, arXiv:1511.07543)",
    "Correlation of every unit of one network with every unit of the other on the same inputs; one-to-one "
    "(Hungarian) matching and many-to-one (best match) mean correlations, per pair of same-named layers, and the "
    "sparse (Lasso) one-to-many prediction R^2 of the representation.",
    needs=("pair",),
)
def _convergent(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.alignment import convergent_learning, sparse_prediction

    fig, axes = _grid(1, 5.0)
    for a, b in _pairs(ctx):
        la, lb = _layer_stack(a), _layer_stack(b)
        shared = [n for n in la if n in lb]
        rows = {n: convergent_learning(la[n], lb[n]) for n in shared}
        values = {f"{n} one-to-one": r["one_to_one"] for n, r in rows.items()}
        values |= {f"{n} many-to-one": r["many_to_one"] for n, r in rows.items()}
        values["embedding sparse R^2"] = sparse_prediction(a.features, b.features)["r2"]
        out.values[f"{a.name} vs {b.name}"] = values
        axes[0].plot(
            range(len(shared)), [rows[n]["one_to_one"] for n in shared], marker="o", label=f"{a.name} vs {b.name} one-to-one"
        )
        axes[0].plot(range(len(shared)), [rows[n]["many_to_one"] for n in shared], marker="x", ls="--", label="many-to-one")
        axes[0].set_xticks(range(len(shared)), shared, rotation=45, ha="right", fontsize=7)
    axes[0].set_ylabel("mean unit correlation")
    axes[0].legend(fontsize=6)
    out.figures.append(Figure("unit-matching correlation per layer", render_png(fig)))


RICCI_SAMPLES = 150  # Ollivier-Ricci needs an optimal-transport problem per kNN edge


@section(
    "ricci",
    "Ollivier-Ricci curvature alignment",
    "Exploring Geometric Representational Alignment through Ollivier-Ricci Curvature and Ricci Flow (arXiv:2501.00919)",
    f"kNN graphs (k = 10) of both models on the same {RICCI_SAMPLES} samples; Ollivier-Ricci curvature of every edge "
    "and node; alignment = rank correlation of the samples' node curvatures, distances between the curvature "
    "distributions and the overlap of the two edge sets.",
    needs=("pair",),
)
def _ricci(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.alignment import ricci_alignment

    for a, b in _pairs(ctx):
        out.values[f"{a.name} vs {b.name}"] = _scalars(
            ricci_alignment(a.features, b.features, k=10, max_samples=RICCI_SAMPLES, seed=ctx.seed)
        )


@section(
    "contrastive_probe",
    "Contrastive linear probe between two embedding spaces",
    "Ngo & Kim, What Do Language Models Hear? Probing for Auditory Representations in Language Models (arXiv:2402.16998)",
    "Linear maps of two frozen spaces into a shared one, trained with InfoNCE on 70% of the samples; held-out "
    "retrieval of each sample's partner (top-1 and MRR, both directions) measures how linearly the spaces align.",
    needs=("pair",),
)
def _contrastive_probe(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.alignment import contrastive_probe

    for a, b in _pairs(ctx):
        out.values[f"{a.name} vs {b.name}"] = _scalars(contrastive_probe(a.features, b.features, seed=ctx.seed))


# ------------------------------------------------------------------------------------------------ probes
@section(
    "generative_probe",
    "Naive Bayes beside logistic regression: sample efficiency",
    "Zheng et al., Revisiting Discriminative vs. Generative Classifiers: Theory and Implications (ICML 2023, arXiv:2302.02334)",
    "Gaussian naive-Bayes and logistic-regression probes on frozen features, fitted on k labelled samples per "
    "class from one half of the analysed samples and scored on the other half: naive Bayes is expected ahead with "
    "few labels, logistic regression with many.",
    needs=("labels",),
)
def _generative_probe(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.probes import naive_bayes_vs_logistic

    train, test = _halves(ctx)
    smallest = int(torch.bincount(ctx.labels[train]).min())
    shots = [s for s in (1, 2, 5, 10, 20, 50) if s <= smallest] or [1]
    fig, axes = _grid(1, 5.0)
    for model in ctx.models:
        f = model.features
        result = naive_bayes_vs_logistic(
            f[train], ctx.labels[train], f[test], ctx.labels[test], shots=shots, repeats=3, seed=ctx.seed
        )
        out.values[model.name] = {
            **{f"NB {s}-shot": v for s, v in zip(shots, result["naive_bayes_accuracy"])},
            **{f"LR {s}-shot": v for s, v in zip(shots, result["logistic_accuracy"])},
            "NB all": result["naive_bayes_full"],
            "LR all": result["logistic_full"],
        }
        line = axes[0].plot(shots, result["naive_bayes_accuracy"], marker="o", label=f"{model.name} naive Bayes")[0]
        axes[0].plot(shots, result["logistic_accuracy"], marker="x", ls="--", color=line.get_color(), label="logistic")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("labelled samples per class")
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=6)
    out.figures.append(Figure("accuracy against labelled samples per class (mean of 3 draws)", render_png(fig)))


@section(
    "sparse_probe",
    "k-sparse probing",
    "Gurnee et al., Finding Neurons in a Haystack: Case Studies with Sparse Probing (TMLR 2023, arXiv:2305.01610)",
    "For each class against the rest, units ranked by the difference of class means, a logistic probe on the top k: "
    "F1 against k shows how localised a class is in the representation (high F1 at k = 1: one unit carries it).",
    needs=("labels",),
)
def _sparse_probe(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.probes import sparse_probe

    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= min(m.features.shape[1] for m in ctx.models)]
    classes = ctx.labels.unique().tolist()
    fig, axes = _grid(1, 5.0)
    for model in ctx.models:
        curves = torch.tensor(
            [sparse_probe(model.features, ctx.labels, ks=ks, positive_class=c, seed=ctx.seed)["f1"] for c in classes]
        )
        mean = curves.mean(0)
        out.values[model.name] = {f"F1 k={k}": float(v) for k, v in zip(ks, mean)}
        axes[0].plot(ks, mean.tolist(), marker="o", label=model.name)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("k (units)")
    axes[0].set_ylabel("F1, mean over one-vs-rest classes")
    axes[0].legend(fontsize=7)
    out.figures.append(Figure("k-sparse probe F1 against k", render_png(fig)))


@section(
    "rashomon",
    "Rashomon ratio of linear probes",
    "Semenova, Rudin & Parr, On the Existence of Simpler Machine Learning Models (FAccT 2022, arXiv:1908.01755)",
    "Share of linear classifiers sampled around the fitted logistic probe whose loss is within theta of the best: a "
    "large Rashomon set means many simple models fit the representation about equally well.",
    needs=("labels",),
)
def _rashomon(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.probes import rashomon_ratio

    for model in ctx.models:
        result = rashomon_ratio(model.features, ctx.labels, seed=ctx.seed)
        out.values[model.name] = {f"theta={t}": r for t, r in zip(result["theta"], result["rashomon_ratio"])}


@section(
    "off_the_shelf",
    "Off-the-shelf protocol: linear SVM and instance retrieval",
    "Razavian et al., CNN Features off-the-shelf: an Astounding Baseline for Recognition (CVPRW 2014, arXiv:1403.6382)",
    "L2-normalised frozen features: a linear SVM trained on one half of the samples, scored on the other; and "
    "nearest-neighbour retrieval mAP with every sample as a query (relevant: same label).",
    needs=("labels",),
)
def _off_the_shelf(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.probes import instance_retrieval_map, off_the_shelf_svm

    train, test = _halves(ctx)
    for model in ctx.models:
        f = model.features
        out.values[model.name] = {
            **off_the_shelf_svm(f[train], ctx.labels[train], f[test], ctx.labels[test]),
            "retrieval_map": instance_retrieval_map(f, ctx.labels)["map"],
        }


# ------------------------------------------------------------------------------------------------ token models
def _token_models(ctx: AnalysisContext) -> str | None:
    if any(m.tokens for m in ctx.models):
        return None
    return "needs token states (a transformer's layers: ViT or text encoders); these models' layers output feature maps"


@section(
    "position_context",
    "Position and context in token states",
    "Song & Zhong, Uncovering hidden geometry in Transformers via disentangling position and context (arXiv:2310.04861)",
    "h[c, t] = mean + pos[t] + ctx[c] + residual per layer: the variance shares of position, context and residual, "
    "how low-dimensional and smooth the positional part is, and how incoherent it is with the context part (texts: "
    "the first t positions of the inputs at least t tokens long, t the median length).",
    when=_token_models,
)
def _position_context(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.geometry import position_context_decomposition

    for model in ctx.models:
        for layer, states in model.tokens.items():
            if model.token_mask is not None:  # padded texts: the first t positions of the inputs that have them
                lengths = model.token_mask.sum(1)
                t = int(lengths.float().median())
                states = states[lengths >= t, :t]
            out.values[f"{model.name} {layer}"] = _scalars(position_context_decomposition(states))


@section(
    "layer_quality",
    "Layer-wise prompt entropy and curvature",
    "Skean et al., Does Representation Matter? Exploring Intermediate Layers in Large Language Models (arXiv:2412.09563)",
    "Per layer: matrix-based Renyi entropy of each input's token Gram matrix (normalised by its maximum) and the "
    "mean angle between successive token-difference vectors.",
    when=_token_models,
)
def _layer_quality(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.geometry import prompt_curvature, prompt_entropy

    fig, axes = _grid(2, 4.2)
    for model in ctx.models:
        names = list(model.tokens)
        mask = model.token_mask
        entropy = [prompt_entropy(model.tokens[n], mask=mask)["prompt_entropy_normalized"] for n in names]
        curvature = [prompt_curvature(model.tokens[n], mask=mask)["curvature"] for n in names]
        out.values[model.name] = {f"{n} entropy": e for n, e in zip(names, entropy)} | {
            f"{n} curvature": c for n, c in zip(names, curvature)
        }
        axes[0].plot(range(len(names)), entropy, marker="o", label=model.name)
        axes[1].plot(range(len(names)), curvature, marker="o", label=model.name)
    axes[0].set_title("normalised prompt entropy", fontsize=9)
    axes[1].set_title("curvature (radians)", fontsize=9)
    axes[0].legend(fontsize=7)
    out.figures.append(Figure("token-level quality per layer", render_png(fig)))


# ------------------------------------------------------------------------------------------------ not yet in the zoo
def _never(reason: str):
    def check(ctx: AnalysisContext) -> str | None:
        return reason

    return check


def _kind(kind: str, reason: str):
    def check(ctx: AnalysisContext) -> str | None:
        return None if any(m.kind == kind for m in ctx.models) else reason

    return check


# ------------------------------------------------------------------------------------------------ the model itself
def _images(ctx: AnalysisContext) -> str | None:
    if all(m.inputs is not None and m.inputs.ndim == 4 and m.encoder is not None for m in ctx.models):
        return None
    return "inverts image representations: needs image models"


class _Reached(Exception):
    def __init__(self, output):
        self.output = output


def _layer_fn(module: torch.nn.Module, name: str):
    """``x -> the output of module's submodule `name``` (the forward pass stops there)."""
    target = dict(module.named_modules())[name]

    def stop(_module, _inputs, output):
        raise _Reached(output[0] if isinstance(output, (tuple, list)) else output)

    def run(x: torch.Tensor) -> torch.Tensor:
        handle = target.register_forward_hook(stop)
        try:
            module(x)
        except _Reached as reached:
            return reached.output
        finally:
            handle.remove()
        raise RuntimeError(f"layer {name} was not reached by the forward pass")

    return run


INVERSION_STEPS = 150
INVERSION_IMAGES = 2


def _inversion_layers(names: list[str]) -> list[str]:
    """The first and the middle hooked layer (the representation is added): three inversions per model."""
    return list(dict.fromkeys([names[0], names[len(names) // 2]])) if names else []


@section(
    "inversion",
    "Inverting the representation",
    "Mahendran & Vedaldi, Understanding Deep Image Representations by Inverting Them (CVPR 2015, arXiv:1412.0035)",
    f"Images reconstructed from the output alone of the first hooked layer, the middle one and the representation "
    f"({INVERSION_STEPS} Adam steps from noise, alpha-norm and total-variation priors): how much of the input a layer "
    "keeps. Representation error ||Phi(x*) - Phi_0||^2 / ||Phi_0||^2 and image error ||x* - x_0||^2 / ||x_0||^2.",
    when=_images,
)
def _inversion(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.models import invert_representation

    for model in ctx.models:
        module = model.encoder.encoder
        names = _inversion_layers(list(model.layers))
        layers = {n: _layer_fn(module, n) for n in names} | {"embedding": model.encoder.embed}
        images = model.inputs[:INVERSION_IMAGES]
        with torch.enable_grad():
            result = invert_representation(layers, images, steps=5 if ctx.quick else INVERSION_STEPS, seed=ctx.seed)
        out.values[model.name] = {
            **{f"{n} representation error": float(result["representation_error"][n]) for n in layers},
            **{f"{n} image error": float(result["image_error"][n]) for n in layers},
        }
        plt = _plt()
        fig, axes = plt.subplots(
            len(images), len(layers) + 1, figsize=(1.6 * (len(layers) + 1), 1.7 * len(images)), squeeze=False
        )
        for row, image in enumerate(images):
            shown = [image] + [result["reconstruction"][n][row] for n in layers]
            for col, (title, x) in enumerate(zip(["input", *layers], shown)):
                x = x.detach().float()
                x = (x - x.amin()) / (x.amax() - x.amin()).clamp_min(1e-8)
                axes[row, col].imshow(x.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if x.shape[0] == 1 else None)
                axes[row, col].set_xticks([])
                axes[row, col].set_yticks([])
                if row == 0:
                    axes[row, col].set_title(title, fontsize=7)
        out.figures.append(Figure(f"{model.name}: inputs and their reconstructions from each layer", render_png(fig)))


@section(
    "feature_complexity",
    "Feature complexity: iterative feature merging",
    "Going Beyond Neural Network Feature Similarity: The Network Feature Complexity and Its Interpretation Using "
    "Category Theory (arXiv:2310.06756)",
    "Channels of a layer that compute the same feature up to a positive scale (correlation of their activations "
    "over 32 samples and every position >= 0.99) are merged; the share that merges is the layer's redundancy (1 - "
    "its feature complexity per channel). Dead channels are counted apart.",
    needs=("layers",),
)
def _feature_complexity(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.models import layer_redundancy

    fig, axes = _grid(1, 5.0)
    for model in ctx.models:
        layers = {**model.maps, "embedding": model.features[:, :, None]}
        result = layer_redundancy(layers)
        out.values[model.name] = {f"{n} redundancy": float(r["redundancy"]) for n, r in result.items()} | {
            f"{n} dead": int(r["dead"]) for n, r in result.items()
        }
        axes[0].plot(range(len(layers)), [float(r["redundancy"]) for r in result.values()], marker="o", label=model.name)
        axes[0].set_xticks(range(len(layers)), list(layers), rotation=45, ha="right", fontsize=7)
    axes[0].set_ylabel("share of channels merged")
    axes[0].legend(fontsize=7)
    out.figures.append(Figure("redundancy per layer (merged channels / channels)", render_png(fig)))


@section(
    "net2vec",
    "Net2Vec: single filters against filter combinations",
    "Fong & Vedaldi, Net2Vec: Quantifying and Explaining how Concepts are Encoded by Filters in Deep Neural "
    "Networks (CVPR 2018, arXiv:1801.03454)",
    "Each class taken as a concept: how well the best single channel of a layer detects it (average precision) "
    "against a learned weighting of all its channels; a large gap means the concept is distributed over filters.",
    needs=("labels", "layers"),
)
def _net2vec(ctx: AnalysisContext, out: Section) -> None:
    from sklearn.model_selection import train_test_split

    from reprzoo.metrics.analysis.models import net2vec

    concepts = torch.nn.functional.one_hot(ctx.labels - ctx.labels.min()).float()
    train, test = train_test_split(torch.arange(len(concepts)).numpy(), test_size=0.3, random_state=ctx.seed)  # net2vec's
    both = (concepts[train].sum(0) >= 1) & (concepts[test].sum(0) >= 1)  # a concept needs positives on both sides
    concepts = concepts[:, both]
    if concepts.shape[1] == 0:
        out.skipped = "no class has samples on both sides of the 70/30 split: analyse more samples"
        return
    fig, axes = _grid(1, 5.0)
    for model in ctx.models:
        layers = _layer_stack(model)
        results = {n: net2vec(x, concepts, seed=ctx.seed) for n, x in layers.items()}
        out.values[model.name] = {f"{n} single": r["mean_single_ap"] for n, r in results.items()} | {
            f"{n} multi": r["mean_multi_ap"] for n, r in results.items()
        }
        line = axes[0].plot(
            range(len(layers)), [r["mean_multi_ap"] for r in results.values()], marker="o", label=f"{model.name} all filters"
        )[0]
        axes[0].plot(
            range(len(layers)),
            [r["mean_single_ap"] for r in results.values()],
            marker="x",
            ls="--",
            color=line.get_color(),
            label="best single filter",
        )
        axes[0].set_xticks(range(len(layers)), list(layers), rotation=45, ha="right", fontsize=7)
    axes[0].set_ylabel("mean average precision over classes")
    axes[0].legend(fontsize=6)
    out.figures.append(Figure("concept detection per layer: one filter against all", render_png(fig)))


# ------------------------------------------------------------------------------------------------ kinds to come
@section(
    "visual_tokens",
    "The language of visual tokens",
    "Chan et al., Analyzing The Language of Visual Tokens (arXiv:2411.05001)",
    "A discrete tokenizer's output read as a language: Zipf exponent of the token frequencies, unigram entropy and "
    "perplexity, Huffman compression rate, codebook usage and the rate at which new tokens appear.",
    when=_kind("discrete", "needs a discrete tokenizer (a model whose representation is token ids); none is analysed"),
)
def _visual_tokens(ctx: AnalysisContext, out: Section) -> None:
    from reprzoo.metrics.analysis.structure import visual_token_statistics

    for model in ctx.models:
        if model.kind == "discrete":
            tokens = model.features.long()
            out.values[model.name] = _scalars(visual_token_statistics(tokens, vocab_size=int(tokens.max()) + 1))


def _unavailable(key: str, title: str, paper: str, what: str, reason: str) -> None:
    """A section whose inputs no ``reprzoo analyze`` run has yet: listed with the reason; its metric is in
    :mod:`reprzoo.metrics.analysis` and tested there."""
    SECTIONS[key] = SectionSpec(key, title, paper, what, lambda ctx, out: None, (), _never(reason))


_unavailable(
    "slot_dci",
    "Slot-wise disentanglement (DCI after matching)",
    "Dang-Nhu et al., Evaluating Disentanglement of Structured Representations (arXiv:2101.04041)",
    "DCI disentanglement and completeness at the object level and the property level, after matching slots to "
    "objects (reprzoo.metrics.analysis.structure.slot_dci).",
    "needs a slot model and a scenes dataset with per-object factors; neither is in the zoo yet",
)
_unavailable(
    "ideal_words",
    "Ideal words: compositional structure",
    "Trager et al., Linear Spaces of Meanings: Compositional Structures in Vision-Language Models (ICCV 2023, arXiv:2302.14383)",
    "Embeddings of (attribute, object) inputs decomposed as u0 + u_attribute + u_object; residual share and the "
    "decomposed retrieval accuracy (reprzoo.metrics.analysis.structure.ideal_words).",
    "needs data labelled with two factors (attribute x object); the analysed datamodules have one label",
)
_unavailable(
    "class_embedding_lens",
    "Class-embedding lens of a vision transformer",
    "Vilas, Schaumloeffel & Roig, Analyzing Vision Transformers for Image Classification in Class Embedding Space "
    "(NeurIPS 2023, arXiv:2310.18969)",
    "Intermediate tokens read through the final norm and the classifier's class embeddings: the rank of the true "
    "class per layer (reprzoo.metrics.analysis.models.class_embedding_lens).",
    "needs a vision transformer with its trained classifier head; the analysed models are self-supervised encoders",
)
_unavailable(
    "feature_norms",
    "Feature-norm probe of word vectors",
    "Lucy & Gauthier, Are distributional representations ready for the real world? Evaluating word vectors for "
    "grounded perceptual meaning (arXiv:1705.11168)",
    "Per-feature linear classifiers predicting human semantic-norm features (McRae, CSLB) from word vectors "
    "(reprzoo.metrics.analysis.probes.feature_norm_probe).",
    "needs a semantic feature-norm dataset (McRae, CSLB, Binder): none ships with a package that installs offline here",
)
