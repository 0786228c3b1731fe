"""The metric-learning methods and supervised baselines: a few Lightning steps on digits each, the representation
they export, and GPM's batches of mutually close places (sampler and the hook through a datamodule)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader

from reprzoo.datamodules import Digits
from reprzoo.datamodules.samplers import PlaceBatchSampler, dataset_labels
from reprzoo.lightning_modules import (
    ArcFace,
    CosFace,
    GlobalProxyMining,
    HypersphericalEmbedding,
    MultiSimilarity,
    SupCon,
    SupervisedCE,
)
from reprzoo.zoo.recipes import resolve_recipe

METHODS = [SupervisedCE, SupCon, ArcFace, CosFace, MultiSimilarity, HypersphericalEmbedding, GlobalProxyMining]
WITH_CLASSIFIER = {SupervisedCE, ArcFace, CosFace, HypersphericalEmbedding}


def from_recipe(cls, batch_size=32, **overrides):
    recipe = yaml.safe_load(resolve_recipe(f"digits/{cls.__name__.lower()}").read_text())
    # all ten classes (the recipes of the zero-shot protocol train on five): kNN, probe and classifier all run
    args = {k: v for k, v in recipe["data"]["init_args"].items() if k != "class_split"}
    data = Digits(**{**args, "batch_size": batch_size})
    model = cls(num_classes=data.num_classes, **{**recipe["model"]["init_args"], **overrides})
    return model, data


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.__name__)
def test_trains_on_digits_and_exports_its_representation(cls, tiny_trainer_kwargs):
    overrides = {"samples_per_place": 16, "places_per_batch": 2} if cls is GlobalProxyMining else {}
    model, data = from_recipe(cls, **overrides)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and "val/knn_top1" in metrics
    assert ("val/classifier_top1" in metrics) == (cls in WITH_CLASSIFIER)
    assert (model.classifier is not None) == (cls in WITH_CLASSIFIER)
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed)
    if cls in (ArcFace, CosFace, HypersphericalEmbedding):
        assert "classifier.weight" in changed  # the margin / normalised-softmax loss reached the class weights
    x = next(iter(data.val_dataloader()[1]))[0][:6]
    model.eval()
    with torch.no_grad():
        z = model.embed(x)
    assert z.shape == (6, model.representation_dim) == (6, model.embedding_dim)
    if model.hparams.normalize:
        torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
        assert model.representation_dim == 128  # the recipes' embedding layer
    else:
        assert model.representation_dim == model.feature_dim  # the backbone's features


def test_supcon_needs_two_views_and_supervised_methods_need_labels():
    model, _ = from_recipe(SupCon)
    x = torch.randn(4, 3, 32, 32)
    with pytest.raises(ValueError, match="two views"):
        model.training_loss([x], torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="without labels"):
        model.training_loss([x, x], torch.full((4,), -1))
    with pytest.raises(ValueError, match="normalize cannot be off"):
        HypersphericalEmbedding(backbone="resnet_tiny_cifar", num_classes=10, normalize=False)


def test_the_multi_similarity_method_minimises_the_paper_loss():
    """The method's training loss is the MS loss of its representation (the one embed returns)."""
    from reprzoo.losses.metric_learning import multi_similarity_loss

    model, _ = from_recipe(MultiSimilarity)
    model.eval()  # batch norm in inference mode: represent() and embed() see the same statistics
    x, labels = torch.randn(8, 3, 32, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, -1])
    loss = model.training_loss([x], labels).loss
    torch.testing.assert_close(loss, multi_similarity_loss(model.embed(x), labels))


# ----------------------------------------------------------------------------- GPM's batch sampler
def test_place_batches_hold_an_anchor_and_its_nearest_places():
    labels = torch.arange(6).repeat_interleave(10)
    labels[:3] = -1  # unlabelled: never drawn
    sampler = PlaceBatchSampler(labels, places_per_batch=3, samples_per_place=4, seed=0, num_batches=12)
    neighbours = torch.tensor([[1, 2], [0, 3], [5, 4], [1, -1], [2, 3], [4, 0]])
    sampler.set_neighbours(neighbours)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 12
    anchors = []
    for batch in batches:
        indices = [i for i, epoch in batch]
        assert {epoch for _, epoch in batch} == {0} and len(indices) == 12
        places = labels[indices].view(3, 4)  # place by place, K samples each
        assert (places == places[:, :1]).all()
        group = places[:, 0].tolist()
        anchor = group[0]
        expected = [anchor] + [q for q in neighbours[anchor].tolist() if q >= 0]
        assert group[: len(expected)] == expected  # the anchor, then its nearest places in order
        assert len(set(group)) == 3  # place 3 has one neighbour: a random third place fills the batch
        anchors.append(anchor)
    assert sorted(anchors) == sorted(list(range(6)) * 2)  # every place anchors equally often
    assert (labels[[i for b in batches for i, _ in b]] >= 0).all()
    # within an epoch a place's samples come without replacement until its pool runs out
    drawn = [i for b in batches for i, _ in b if labels[i] == 0]
    assert len(set(drawn[:7])) == 7  # place 0 has 7 labelled samples
    assert [e for _, e in next(iter(sampler))][0] == 1  # the next iteration is the next epoch


def test_place_batches_are_random_without_an_index_and_reproducible():
    labels = torch.arange(5).repeat_interleave(20)
    a = PlaceBatchSampler(labels, places_per_batch=2, samples_per_place=8, seed=3)
    b = PlaceBatchSampler(labels, places_per_batch=2, samples_per_place=8, seed=3)
    assert len(a) == 100 // 16
    first, again = list(a), list(b)
    assert first == again
    groups = {tuple(sorted(set(labels[[i for i, _ in batch]].tolist()))) for batch in first + list(a)}
    assert all(len(g) == 2 for g in groups) and len(groups) > 2  # two distinct places, not always the same pair
    assert list(a) != first  # another epoch, another draw
    with pytest.raises(ValueError, match="labelled samples"):
        PlaceBatchSampler(torch.full((5,), -1))


def test_dataset_labels_reads_attributes_or_items():
    data = Digits()
    data.setup()
    labels = dataset_labels(data._train)
    assert labels.shape == (1437,) and labels.tolist() == [data._train[i][1] for i in range(1437)]
    items = [(torch.zeros(1), 2), (torch.zeros(1), None)]
    assert dataset_labels(items).tolist() == [2, -1]


class SamplerDigits(Digits):
    """Digits with the hook proposed for ``EmbeddingDataModule``: a training batch sampler a method may set."""

    train_batch_sampler = None

    def _loader(self, dataset, train):
        if train and self.train_batch_sampler is not None:
            if dataset.seed is None:
                dataset.seed = self.training_seed()
            return DataLoader(dataset, batch_sampler=self.train_batch_sampler, num_workers=0, collate_fn=self._collate_fn())
        return super()._loader(dataset, train)


class RecordLabels(L.Callback):
    """The labels of every training batch, and the method's place index at the start of every epoch."""

    def __init__(self):
        self.batches: list[tuple[int, list[int]]] = []
        self.index: dict[int, torch.Tensor | None] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        index = pl_module.place_neighbours
        self.index[trainer.current_epoch] = None if index is None else index.clone()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((trainer.current_epoch, batch[1].tolist()))


def test_gpm_batches_follow_the_proxy_index_after_the_first_epoch(tiny_trainer_kwargs):
    model, _ = from_recipe(GlobalProxyMining, places_per_batch=2, samples_per_place=16)
    data = SamplerDigits(batch_size=32, augmentation_kwargs={"num_views": 1}, augment_on="device")
    record = RecordLabels()
    trainer = L.Trainer(**{**tiny_trainer_kwargs, "max_epochs": 3, "limit_train_batches": 4}, callbacks=[record])
    trainer.fit(model, datamodule=data)
    assert data.train_batch_sampler is model.batch_sampler
    neighbours = model.place_neighbours
    seen = model.proxy_counts.cpu() > 0  # the places of the last epoch's 4 batches
    assert int(model.proxy_counts.sum()) == 4 * 32
    assert neighbours.shape == (10, 1) and (neighbours[seen] >= 0).all() and (neighbours[~seen] == -1).all()
    # the index is the nearest other seen proxy of each seen place
    proxies = F.normalize(model.proxy_sums / model.proxy_counts.clamp_min(1)[:, None], dim=1).cpu()
    similarity = (proxies @ proxies.T).fill_diagonal_(-2)
    similarity[:, ~seen] = -2
    assert torch.equal(similarity.argmax(1)[seen], neighbours[seen, 0])
    assert record.index[0] is None and record.index[1] is not None
    assert len(record.batches) == 12
    followed = 0
    for epoch, labels in record.batches:
        first, second = labels[:16], labels[16:]
        assert len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]  # 2 places x 16
        index = record.index[epoch]
        if index is not None and index[first[0], 0] >= 0:  # the anchor's nearest place in the last epoch's index
            assert second[0] == index[first[0], 0]
            followed += 1
    assert followed >= 4
