"""MLC: "Unsupervised Manifold Linearizing and Clustering" (Ding, Tong, Chan, Dai, Ma, Haeffele; ICCV 2023,
arXiv:2301.01805)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from reprzoo.components.heads import ProjectionHead
from reprzoo.distributed import gather
from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.mcr2 import doubly_stochastic_membership, mlc_loss, total_coding_rate_loss
from reprzoo.metrics.evaluators import ClusteringEvaluator


class MLCHead(ProjectionHead):
    """MLC's feature head and cluster head: "a few affine layers with non-linearities ... followed by a projection
    layer to respect the unit sphere" (arXiv:2301.01805, Sec. 3.1); the cluster head has "layers of the same type".
    Widths follow the authors' code (4096 hidden, d = 128); the unit-sphere projection is applied by the caller."""

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 128):
        super().__init__(
            [
                (in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), True),
                (hidden_dim, out_dim, None, None, True),
            ]
        )


class _Collected(Metric):
    """Every rank's cluster-head outputs and labels of the evaluation queries, gathered at ``compute``."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("outputs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, outputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.outputs.append(outputs.detach().float())
        self.labels.append(labels.detach().long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.outputs), dim_zero_cat(self.labels)


def spectral_clusters(membership: torch.Tensor, num_clusters: int, seed: int = 0) -> torch.Tensor:
    """Cluster ids from spectral clustering of the symmetrised membership (arXiv:2301.01805, Alg. 1, line 10)."""
    from sklearn.cluster import spectral_clustering

    affinity = ((membership + membership.T) / 2).double().cpu().numpy()
    labels = spectral_clustering(affinity, n_clusters=num_clusters, random_state=seed)
    return torch.as_tensor(labels, device=membership.device)


@register_method(title="Unsupervised Manifold Linearizing and Clustering", wing="vision-ssl", arxiv="2301.01805")
class MLC(EmbeddingModule):
    """Features Z (feature head, unit sphere) and a doubly stochastic point-point membership
    Gamma = Sinkhorn_eta(C C^T) (cluster head C, unit sphere) jointly maximise the rate reduction
    R(Z) - R_c(Z, Gamma) with R_c = 1/(2n) sum_j logdet(I + d/eps^2 Z^T Diag(Gamma_j) Z) (Eq. 4). Views are combined
    as Z = normalise(mean_a Z^(a)), Gamma = mean_a Gamma^(a) (Eq. 6). Algorithm 1: the first ``tcr_epochs`` train
    the features with the total coding rate (Eq. 5); then the feature head is copied into the cluster head (the
    one-shot initialisation Gamma = Sinkhorn(Z Z^T)) and MLC runs. Validation clusters the queries by spectral
    clustering of Gamma and logs ``cluster_acc`` and ``cluster_nmi``.

    Defaults: d = 128, 4096-d heads, eps^2 = 0.1, Sinkhorn eta = 0.175 with 5 iterations, as in the authors'
    follow-up code (CPP, arXiv:2306.05272; the MLC appendix was not available to us). TCR's invariance weight is
    ours: lambda = 10 on the batch mean (see :func:`~reprzoo.losses.mcr2.total_coding_rate_loss`); much larger
    values let the near-collapsed features of a random encoder stay collapsed. ``tcr_epochs=0`` starts MLC at once
    (the paper initialises from a separately pre-trained encoder; set the backbone's weights first in that case).

    Args:
        proj_hidden_dim: hidden width of the feature and cluster heads.
        proj_output_dim: d, the feature (and cluster-head) dimension.
        eps_sq: squared distortion epsilon^2 of the coding rates.
        sinkhorn_eta: entropic regularisation eta of the doubly stochastic projection.
        sinkhorn_iterations: unrolled row/column normalisations.
        tcr_epochs: epochs of TCR feature initialisation before MLC.
        tcr_invariance_weight: lambda of TCR's augmentation-invariance term (mean over the batch).
        num_clusters: clusters of the validation spectral clustering (default: ``num_classes``).
        cluster_eval_samples: at most this many queries are clustered (a seeded subset), bounding the n x n work.
        kwargs: shared options of :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 128,
        eps_sq: float = 0.1,
        sinkhorn_eta: float = 0.175,
        sinkhorn_iterations: int = 5,
        tcr_epochs: int = 0,
        tcr_invariance_weight: float = 10.0,
        num_clusters: int | None = None,
        cluster_eval_samples: int = 10000,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.feature_head = MLCHead(self.feature_dim, proj_hidden_dim, proj_output_dim)
        self.cluster_head = MLCHead(self.feature_dim, proj_hidden_dim, proj_output_dim)
        self.register_buffer("clustering_started", torch.zeros((), dtype=torch.bool))
        self.num_clusters = num_clusters or self.hparams.num_classes
        self.cluster_outputs = _Collected()

    @torch.no_grad()
    def start_clustering(self) -> None:
        """Gamma's one-shot initialisation: copy the feature head into the cluster head (Sec. 3.2)."""
        self.cluster_head.load_state_dict(self.feature_head.state_dict())
        self.clustering_started.fill_(True)

    def on_train_epoch_start(self) -> None:
        if not self.clustering_started and self.current_epoch >= self.hparams.tcr_epochs:
            self.start_clustering()

    def features(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.feature_head(f), dim=1)

    def cluster_outputs_of(self, f: torch.Tensor) -> torch.Tensor:
        # before MLC starts the cluster head is a copy-to-be of the feature head: use the feature head
        head = self.cluster_head if self.clustering_started else self.feature_head
        return F.normalize(head(f), dim=1)

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        hp = self.hparams
        backbone_features = [self.backbone(x) for x in views]
        zs = [gather(self.features(f)) for f in backbone_features]  # the global batch: one n x n membership
        if not self.clustering_started:
            loss = total_coding_rate_loss(zs[0], zs[1], hp.eps_sq, hp.tcr_invariance_weight)
            self._log_train("train/tcr_loss", loss)
            return TrainingOutput(loss, features=backbone_features[0], embeddings=zs[0])
        memberships = [
            doubly_stochastic_membership(gather(self.cluster_outputs_of(f)), hp.sinkhorn_eta, hp.sinkhorn_iterations)
            for f in backbone_features
        ]
        z = F.normalize(torch.stack(zs).mean(0), dim=1)
        loss = mlc_loss(z, torch.stack(memberships).mean(0), hp.eps_sq)
        self._log_train("train/rate_reduction", -loss)
        return TrainingOutput(loss, features=backbone_features[0], embeddings=z)

    def _log_train(self, name: str, value: torch.Tensor) -> None:
        if self._trainer is not None:  # training_loss also runs outside a Trainer (tests, notebooks)
            self.log(name, value)

    # evaluation: kNN/probe from the base, plus spectral clustering of the queries' membership
    def cluster(self, outputs: torch.Tensor, num_clusters: int) -> torch.Tensor:
        """Cluster ids of cluster-head ``outputs`` by spectral clustering of their doubly stochastic membership."""
        hp = self.hparams
        return spectral_clusters(doubly_stochastic_membership(outputs, hp.sinkhorn_eta, hp.sinkhorn_iterations), num_clusters)

    def build_evaluators(self):
        clustering = ClusteringEvaluator(
            self.cluster_outputs,
            assign=self.cluster,
            num_clusters=self.num_clusters,
            outputs=self.cluster_outputs_of,  # of the features: the backbone's (MLC's encoder), the heads' input
            max_samples=self.hparams.cluster_eval_samples,
        )
        return [*super().build_evaluators(), clustering]
