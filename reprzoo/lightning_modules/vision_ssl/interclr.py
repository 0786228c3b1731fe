"""InterCLR: "Delving into Inter-Image Invariance for Unsupervised Visual Representations" (Xie, Zhan, Liu, Ong &
Loy, IJCV 2022, arXiv:2008.11702)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprzoo.components.memory import MemoryBank
from reprzoo.components.training_set import extract, unaugmented_train_loader
from reprzoo.distributed import gather
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.vision_ssl.moco import MoCoV2
from reprzoo.losses import cluster_means, inter_image_info_nce, kmeans, reassign_small_clusters, sample_inter_image_pairs
from reprzoo.losses.interclr import NegativeSampling


@register_method(
    title="Delving into Inter-Image Invariance for Unsupervised Visual Representations",
    wing="vision-ssl",
    arxiv="2008.11702",
)
class InterCLR(MoCoV2):
    """MoCo v2's intra-image InfoNCE plus an inter-image InfoNCE whose positive is a memory-bank entry with the
    query's pseudo-label and whose negatives, of other pseudo-labels, are drawn semi-hard (uniformly among the
    entries most similar to the query); the positive's cosine gets a margin m = -0.5, a less stringent boundary.
    L = 0.75 L_intra + 0.25 L_inter.

    Pseudo-labels are online: the memory bank (one 128-d entry per training image, keyed by the batches' indices)
    takes each step's momentum keys, the updated entries are relabelled by their nearest centroid, centroids are
    recomputed every ``centroid_interval`` steps, and clusters smaller than ``min_cluster_size`` are dissolved and
    refilled by splitting the largest cluster. At the start of fit the bank holds the features of the unaugmented
    training images and the labels come from k-means (computed on rank zero, broadcast). Bank, labels and centroids
    are training state rebuilt at each fit, not part of the checkpoint.

    Defaults are the paper's ImageNet setting (the authors' mmselfsup config): 10000 clusters of at least 20, 16384
    negatives drawn from the 128000 most similar entries, margin -0.5, loss weights 0.75 / 0.25, memory entries
    replaced by the new keys, centroids every 10 steps; MoCo v2's encoder, queue and optimiser.

    Args:
        num_clusters: number of pseudo-classes k.
        min_cluster_size: clusters below this size are dissolved and refilled.
        inter_negatives: negatives per query in the inter-image loss.
        negative_sampling: ``semihard`` (the paper's), ``hard`` or ``random``.
        semihard_pool: how many nearest memory entries the semi-hard negatives are drawn from.
        inter_margin: cosine margin m subtracted from the inter-image positive's similarity.
        intra_weight: weight of the intra-image (MoCo) loss.
        inter_weight: weight of the inter-image loss.
        memory_momentum: weight of an entry's old value in the memory update (0 replaces it by the new key).
        centroid_interval: steps between centroid updates.
        inter_warmup_epochs: first epochs trained on the intra-image loss alone (weights 1 and 0), while the memory
            and its online labels already follow the keys (the authors' ``InterCLRHook(warmup_epochs)``, 0 in the
            paper's config).
        cluster_seed: seed of k-means and of the cluster splits.
        kwargs: options of :class:`MoCoV2` and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        num_clusters: int = 10000,
        min_cluster_size: int = 20,
        inter_negatives: int = 16384,
        negative_sampling: NegativeSampling = "semihard",
        semihard_pool: int = 128000,
        inter_margin: float = -0.5,
        intra_weight: float = 0.75,
        inter_weight: float = 0.25,
        memory_momentum: float = 0.0,
        centroid_interval: int = 10,
        inter_warmup_epochs: int = 0,
        cluster_seed: int = 0,
        **kwargs,
    ):
        if negative_sampling not in ("semihard", "hard", "random"):
            raise ValueError(f"negative_sampling must be 'semihard', 'hard' or 'random', got {negative_sampling!r}")
        if num_clusters < 2 or centroid_interval < 1:
            raise ValueError(f"need num_clusters >= 2 and centroid_interval >= 1, got {num_clusters}, {centroid_interval}")
        super().__init__(**kwargs)
        self.memory: MemoryBank | None = None
        self.register_buffer("cluster_labels", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("centroids", torch.empty(0), persistent=False)

    @torch.no_grad()
    def on_train_start(self) -> None:
        super().on_train_start()
        hp = self.hparams
        loader = unaugmented_train_loader(self.trainer)
        n = len(loader.dataset)
        if hp.num_clusters * hp.min_cluster_size > n or hp.semihard_pool > n or hp.inter_negatives > n:
            raise ValueError(
                f"{n} training images are too few for num_clusters={hp.num_clusters} x min_cluster_size="
                f"{hp.min_cluster_size}, semihard_pool={hp.semihard_pool}, inter_negatives={hp.inter_negatives}"
            )
        state = None
        if self.trainer.is_global_zero:
            was_training = self.training
            self.eval()
            features = extract(lambda x: F.normalize(self.projector(self.backbone(x)), dim=1), loader, self.device)
            self.train(was_training)
            centroids, labels = kmeans(features, hp.num_clusters, seed=hp.cluster_seed)
            labels, centroids = reassign_small_clusters(features, labels, centroids, hp.min_cluster_size, hp.cluster_seed)
            state = (features.cpu(), labels.cpu(), centroids.cpu())
        features, labels, centroids = self.trainer.strategy.broadcast(state, src=0)
        memory = MemoryBank(n, features.shape[1], hp.memory_momentum).to(self.device)
        memory.register_buffer("embeddings", features.to(self.device), persistent=False)  # rebuilt each fit
        self.memory = memory
        self.cluster_labels, self.centroids = labels.to(self.device), centroids.to(self.device)

    @torch.no_grad()
    def update_memory(self, indices: torch.Tensor, keys: torch.Tensor) -> None:
        """Write the global batch's keys into the bank, relabel those entries, maintain the clusters."""
        hp = self.hparams
        self.memory.update(indices, keys)
        updated = gather(indices)
        bank = self.memory.embeddings
        self.cluster_labels[updated] = (bank[updated] @ self.centroids.T).argmax(dim=1)
        if (self.global_step + 1) % hp.centroid_interval == 0:
            self.centroids = cluster_means(bank, self.cluster_labels, self.centroids)
        self.cluster_labels, self.centroids = reassign_small_clusters(
            bank, self.cluster_labels, self.centroids, hp.min_cluster_size, hp.cluster_seed + self.global_step
        )

    def training_loss(self, views: list[torch.Tensor], labels=None, indices=None) -> TrainingOutput:
        if indices is None:
            raise ValueError("InterCLR needs the samples' indices in the training batches (its memory bank is keyed by them)")
        if self.memory is None:
            raise RuntimeError("InterCLR's memory bank is built at the start of Trainer.fit; train it with a Trainer")
        hp = self.hparams
        intra, f1, q1, k2 = self.intra_image(views)
        if self.current_epoch < hp.inter_warmup_epochs:
            self.update_memory(indices, k2)
            return TrainingOutput(intra, features=f1, embeddings=q1)
        bank = self.memory.embeddings
        positive, negatives, valid = sample_inter_image_pairs(
            q1,
            bank,
            self.cluster_labels,
            self.cluster_labels[indices],
            hp.inter_negatives,
            hp.negative_sampling,
            hp.semihard_pool,
        )
        inter = inter_image_info_nce(q1, bank[positive], bank[negatives], valid, hp.temperature, hp.inter_margin)
        self.log_dict({"train/intra_loss": intra.detach(), "train/inter_loss": inter.detach()}, sync_dist=True)
        self.update_memory(indices, k2)
        return TrainingOutput(hp.intra_weight * intra + hp.inter_weight * inter, features=f1, embeddings=q1)
