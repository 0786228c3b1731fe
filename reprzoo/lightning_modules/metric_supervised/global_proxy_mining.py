"""GPM: "Global Proxy-based Hard Mining for Visual Place Recognition" (Ali-bey, Chaib-draa & Giguère, BMVC 2022,
arXiv:2302.14217)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from reprzoo.components.representation import L2Normalize
from reprzoo.datamodules.samplers import PlaceBatchSampler, dataset_labels
from reprzoo.lightning_modules.metric_supervised.base import SupervisedModule, TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.metric_learning import multi_similarity_loss, nearest_places, place_proxies


@register_method(
    title="Global Proxy-based Hard Mining for Visual Place Recognition",
    wing="metric-and-supervised",
    arxiv="2302.14217",
)
class GlobalProxyMining(SupervisedModule):
    """GPM: a pair-based loss (Multi-Similarity here, as in the paper's main results) whose mini-batches are mined
    globally. A proxy head, a small trainable branch on the backbone's features, gives each image a compact
    L2-normalised descriptor, trained with the same loss as the main embedding; during an epoch the descriptors of
    each place (class) are averaged into one proxy per place; after the epoch a kNN index over the proxies gives
    every place its nearest places, and each batch of the next epoch is one place plus its
    ``places_per_batch - 1`` nearest places, ``samples_per_place`` images each: batches of mutually similar
    places, hence hard negatives, at the cost of one linear layer. The first epoch samples places at random.
    The representation is the L2-normalised embedding that the main loss trains (the proxy head is not exported).

    Batches are chosen by a :class:`~reprzoo.datamodules.samplers.PlaceBatchSampler` that the method hands to its
    datamodule in ``setup("fit")``, before the training loader is built (``datamodule.train_batch_sampler``); a
    datamodule without that hook keeps its random batches (a warning says so), which is GPM without its mining.

    Ours:
        - Places are the classes of an image classification set (digits: 10 classes, or the 5 training classes of
          a zero-shot split) instead of the tens of thousands of places of GSV-Cities; a place is drawn many times
          per epoch (each batch draws ``samples_per_place`` of its images without replacement until its pool runs
          out), where the paper takes each place once per epoch, with its nearest places not yet used.
        - Digits recipe: 3 places x 32 images (the paper: 60 places x 4 images), a 128-d embedding and a 128-d
          proxy head on a small ResNet (the paper: ResNet-50 with NetVLAD/GeM/MixVPR pooling, a 4096-d and larger
          descriptor and a 128-d or 256-d proxy head).
        - The proxy head is a linear layer on the pooled backbone features, trained jointly with weight
          ``proxy_loss_weight`` (1.0): its gradient reaches the backbone, our reading of the paper's "end-to-end
          trainable branch". The kNN index is exact (a similarity matrix), where the paper uses FAISS.
        - The index is rebuilt at every epoch end and not checkpointed: a resumed run samples its first epoch at
          random, as a fresh one does.

    Args:
        proxy_dim: width of the proxy head's descriptor.
        proxy_loss_weight: weight of the proxy head's loss.
        places_per_batch: M, the places of a batch (the anchor and its M-1 nearest).
        samples_per_place: K, the images of each place in a batch (the datamodule's ``batch_size`` should be M*K:
            it sets the learning rate's scaling).
        alpha: MS loss weight of the positive pairs.
        beta: MS loss weight of the negative pairs.
        base: MS loss margin lambda.
        epsilon: MS mining margin.
        embedding_dim: width of the embedding layer.
        normalize: L2-normalise the representation.
        kwargs: :class:`SupervisedModule` options.
    """

    def __init__(
        self,
        proxy_dim: int = 128,
        proxy_loss_weight: float = 1.0,
        places_per_batch: int = 60,
        samples_per_place: int = 4,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float | None = 0.1,
        embedding_dim: int | None = 128,
        normalize: bool = True,
        **kwargs: Any,
    ):
        super().__init__(embedding_dim=embedding_dim, normalize=normalize, **kwargs)
        self.proxy_head = nn.Sequential(nn.Linear(self.feature_dim, proxy_dim), L2Normalize())
        num_places = self.hparams.num_classes
        self.register_buffer("proxy_sums", torch.zeros(num_places, proxy_dim), persistent=False)
        self.register_buffer("proxy_counts", torch.zeros(num_places), persistent=False)
        #: the global index: each place's nearest places, nearest first (None before the first epoch ends)
        self.place_neighbours: torch.Tensor | None = None
        self.batch_sampler: PlaceBatchSampler | None = None

    def build_classifier(self) -> nn.Module | None:
        return None

    # ----------------------------------------------------------------- the batch sampler, handed to the datamodule
    def setup(self, stage: str) -> None:
        # before the training loader is built (configure_optimizers builds it to count the steps)
        super().setup(stage)
        if stage != "fit":
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(type(datamodule), "train_batch_sampler"):
            warnings.warn(
                f"{type(datamodule).__name__} cannot take a batch sampler (no train_batch_sampler): "
                "GlobalProxyMining trains on its random batches, without global hard mining",
                stacklevel=2,
            )
            return
        hp = self.hparams
        labels = datamodule.train_labels() if hasattr(datamodule, "train_labels") else dataset_labels(datamodule._train)
        if getattr(datamodule, "batch_size", None) != hp.places_per_batch * hp.samples_per_place:
            warnings.warn(
                f"batches hold places_per_batch * samples_per_place = {hp.places_per_batch * hp.samples_per_place} "
                f"samples, but the datamodule's batch_size (which scales the learning rate) is {datamodule.batch_size}",
                stacklevel=2,
            )
        seed = datamodule.training_seed() if hasattr(datamodule, "training_seed") else 0
        self.batch_sampler = PlaceBatchSampler(labels, hp.places_per_batch, hp.samples_per_place, seed=seed)
        self.batch_sampler.set_neighbours(self.place_neighbours)
        datamodule.train_batch_sampler = self.batch_sampler

    def on_train_epoch_start(self) -> None:
        self.proxy_sums.zero_()
        self.proxy_counts.zero_()

    def on_train_epoch_end(self) -> None:
        sums, counts = self.proxy_sums, self.proxy_counts
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.clone(), reduce_op="sum")
            counts = self.trainer.strategy.reduce(counts.clone(), reduce_op="sum")
        k = min(self.hparams.places_per_batch, len(counts)) - 1
        self.place_neighbours = nearest_places(sums.float(), counts.float(), k).cpu()
        if self.batch_sampler is not None:
            self.batch_sampler.set_neighbours(self.place_neighbours)

    # ----------------------------------------------------------------- the objective
    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        self.labelled(labels)
        hp = self.hparams
        features = self.backbone(views[0])  # once for both heads; the representation is encoder() on it
        rep = self.represent_features(features)
        descriptors = self.proxy_head(features)
        loss = multi_similarity_loss(rep, labels, hp.alpha, hp.beta, hp.base, hp.epsilon)
        proxy_loss = multi_similarity_loss(descriptors, labels, hp.alpha, hp.beta, hp.base, hp.epsilon)
        self.log("train/proxy_loss", proxy_loss)
        sums, counts = place_proxies(descriptors.detach().to(self.proxy_sums.dtype), labels, len(self.proxy_counts))
        self.proxy_sums += sums
        self.proxy_counts += counts
        return TrainingOutput(loss + hp.proxy_loss_weight * proxy_loss, features=rep, embeddings=rep)


__all__ = ["GlobalProxyMining"]
