"""The modality seams: a method on text and one on a graph go through the unchanged base and zoo.

Each toy method is a plain :class:`EmbeddingModule` subclass on a registered in-house backbone (``mean_pooled_embeddings``
for token ids, ``embedding_table`` for node ids), trained with ``lightning.Trainer`` on real data shipped offline
(docstrings of installed packages labelled by package; Zachary's karate club labelled by club), validated (kNN when
labels exist), pushed to a temporary local hub and loaded back by name. The toy classes are registered only for
the duration of a test (``METHODS`` and the zoo's datamodule lookup are patched), never in the package.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, default_collate

import reprzoo.datamodules
from reprzoo.backbones import BACKBONES, build_backbone, list_backbones, register_backbone
from reprzoo.datamodules import EmbeddingDataModule
from reprzoo.errors import ReprzooError, UnknownNameError
from reprzoo.lightning_modules import METHODS, EmbeddingModule, MethodInfo, TrainingOutput
from reprzoo.losses import nt_xent
from reprzoo.training.runs import data_config, save_run

# ------------------------------------------------------------------------------------------------ text
#: (label, module, which attributes): real sentences from the docstrings of installed packages.
TEXT_SOURCES = (
    ("torch.nn", "torch.nn", inspect.isclass),
    ("numpy", "numpy", lambda obj: callable(obj) and not inspect.isclass(obj)),
    ("torch.distributions", "torch.distributions", inspect.isclass),
)
WORD = re.compile(r"[a-z]+")


def tokenize(text: str, vocab_size: int, max_length: int) -> torch.Tensor:
    """Lower-cased words hashed into ``1 .. vocab_size - 1`` (0 is padding): no vocabulary file to ship."""
    words = WORD.findall(text.lower())[:max_length]
    return torch.tensor([zlib.crc32(w.encode()) % (vocab_size - 1) + 1 for w in words], dtype=torch.long)


def docstring_corpus(per_source: int) -> list[tuple[str, int]]:
    """``(first paragraph of a docstring, package index)``, in a fixed order."""
    out = []
    for label, (_, module_name, keep) in enumerate(TEXT_SOURCES):
        module = importlib.import_module(module_name)
        texts = []
        for name in sorted(n for n in dir(module) if not n.startswith("_")):
            obj = getattr(module, name)
            doc = inspect.getdoc(obj) if keep(obj) else None
            paragraph = doc.strip().split("\n\n")[0] if doc else ""
            if len(WORD.findall(paragraph.lower())) >= 4 and paragraph not in texts:
                texts.append(paragraph)
        out += [(text, label) for text in texts[:per_source]]
    return out


class TokenIds(Dataset):
    """``(token ids, label)``: variable-length ``LongTensor`` samples; label ``None`` when unlabelled."""

    def __init__(self, items: list[tuple[torch.Tensor, int | None]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


class TokenDropout:
    """Two views of a token sequence, each token dropped with probability ``p`` (at least one kept)."""

    def __init__(self, p: float = 0.2, num_views: int = 2):
        self.p, self.num_views = p, num_views

    def __call__(self, ids: torch.Tensor) -> list[torch.Tensor]:
        views = []
        for _ in range(self.num_views):
            keep = torch.rand(len(ids)) >= self.p
            keep[torch.randint(len(ids), (1,))] = True
            views.append(ids[keep])
        return views


def pad_token_ids(samples: list, padding_idx: int = 0):
    """``default_collate``, except that variable-length 1-d integer tensors become ``{"input_ids", "attention_mask"}``
    padded to the longest: a training item ``(views, label, index)`` gives ``[[view dicts], labels, indices]``."""
    first = samples[0]
    if isinstance(first, torch.Tensor) and first.ndim == 1 and not first.is_floating_point():
        ids = nn.utils.rnn.pad_sequence(list(samples), batch_first=True, padding_value=padding_idx)
        mask = nn.utils.rnn.pad_sequence([torch.ones_like(s) for s in samples], batch_first=True, padding_value=0)
        return {"input_ids": ids, "attention_mask": mask}
    if isinstance(first, (list, tuple)):
        return [pad_token_ids(list(group), padding_idx) for group in zip(*samples)]
    return default_collate(samples)


class DocstringTopics(EmbeddingDataModule):
    """First paragraphs of the docstrings of ``torch.nn`` classes, ``numpy`` functions and ``torch.distributions``
    classes, labelled by package; every ``test_every``-th text of a package is a query, the rest train."""

    def __init__(
        self,
        per_source: int = 60,
        vocab_size: int = 4096,
        max_length: int = 48,
        token_dropout: float = 0.2,
        test_every: int = 5,
        labelled: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int | None = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=False, seed=seed)
        self.per_source, self.vocab_size, self.max_length = per_source, vocab_size, max_length
        self.test_every, self.labelled = test_every, labelled
        self.num_classes = len(TEXT_SOURCES) if labelled else None
        self.train_transform = TokenDropout(token_dropout)
        self.eval_transform = None

    def _splits(self):
        train, test = [], []
        for i, (text, label) in enumerate(docstring_corpus(self.per_source)):
            item = (tokenize(text, self.vocab_size, self.max_length), label if self.labelled else None)
            (test if i % self.test_every == 0 else train).append(item)
        return TokenIds(train), TokenIds(test)

    def collate(self, samples):
        return pad_token_ids(samples)

    def preprocessing(self):
        return {
            "modality": "text",
            "tokenizer": "lowercase words, crc32 mod (vocab_size - 1) + 1",
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "padding_idx": 0,
        }


class SeamText(EmbeddingModule):
    """Mean-pooled token embeddings, a linear projector and NT-Xent between two token-dropout views."""

    def __init__(self, proj_dim: int = 32, temperature: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.projector = nn.Linear(self.feature_dim, proj_dim)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        f1, f2 = self.backbone(views[0]), self.backbone(views[1])
        z1 = self.projector(f1)
        return TrainingOutput(nt_xent(z1, self.projector(f2), self.hparams.temperature), features=f1, embeddings=z1)


# ------------------------------------------------------------------------------------------------ graph
class NodeIds(Dataset):
    def __init__(self, nodes: list[int], labels: list[int]):
        self.nodes, self.labels = nodes, labels

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index: int):
        node = self.nodes[index]
        return node, self.labels[node]


class NeighbourPair:
    """A node and one of its neighbours drawn at random: the two "views" of a skip-gram pair on an edge."""

    def __init__(self, neighbours: list[list[int]]):
        self.neighbours = neighbours

    def __call__(self, node: int) -> list[torch.Tensor]:
        around = self.neighbours[node]
        return [torch.tensor(node), torch.tensor(around[int(torch.randint(len(around), ()))])]


class KarateClub(EmbeddingDataModule):
    """Zachary's karate club (networkx): samples are node ids, labels the club each member joined; every
    ``test_every``-th node is a query. Transductive: the queries' nodes are in the training graph."""

    def __init__(self, test_every: int = 4, batch_size: int = 8, num_workers: int = 0, seed: int | None = 0):
        import networkx as nx

        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=False, seed=seed)
        graph = nx.karate_club_graph()
        nodes = sorted(graph.nodes)
        clubs = sorted({graph.nodes[n]["club"] for n in nodes})
        self.labels = [clubs.index(graph.nodes[n]["club"]) for n in nodes]
        self.num_nodes, self.num_classes, self.test_every = len(nodes), len(clubs), test_every
        self.train_transform = NeighbourPair([sorted(graph.neighbors(n)) for n in nodes])
        self.eval_transform = None

    def _splits(self):
        nodes = list(range(self.num_nodes))
        test = nodes[:: self.test_every]
        return NodeIds([n for n in nodes if n not in test], self.labels), NodeIds(test, self.labels)

    def preprocessing(self):
        return {"modality": "graph", "graph": "networkx.karate_club_graph", "num_nodes": self.num_nodes}


class SeamGraph(EmbeddingModule):
    """A node embedding table trained with skip-gram and negative sampling on edges (LINE's first order)."""

    def __init__(self, num_negatives: int = 5, **kwargs):
        super().__init__(**kwargs)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        u, v = views[0], views[1]
        num_nodes = self.backbone.embedding.num_embeddings
        negatives = torch.randint(num_nodes, (u.shape[0], self.hparams.num_negatives), device=u.device)
        eu, ev, en = self.backbone(u), self.backbone(v), self.backbone(negatives)
        positive = F.logsigmoid((eu * ev).sum(-1))
        negative = F.logsigmoid(-(eu.unsqueeze(1) * en).sum(-1)).sum(-1)
        return TrainingOutput(-(positive + negative).mean(), features=eu, embeddings=eu)


# ------------------------------------------------------------------------------------------------ helpers
def write_run(run_dir: Path, trainer: L.Trainer, model: EmbeddingModule, data: EmbeddingDataModule, data_args: dict) -> Path:
    """A run folder as ``reprzoo fit`` writes it (``reprzoo.training.runs.save_run``)."""
    return save_run(run_dir, trainer, model, data_config(data, data_args))


@pytest.fixture
def toy_classes(monkeypatch):
    """Register the toy methods and datamodules for one test (the zoo rebuilds registered classes only)."""
    for cls, modality in ((SeamText, "text"), (SeamGraph, "graph")):
        info = MethodInfo(cls.__name__, cls, title=f"toy {modality} seam", wing="seams", modality=modality)
        monkeypatch.setitem(METHODS, cls.__name__, info)
    for cls in (DocstringTopics, KarateClub):
        monkeypatch.setattr(reprzoo.datamodules, cls.__name__, cls, raising=False)
    yield
    # monkeypatch undoes both on teardown


def test_toy_classes_do_not_stay_registered():
    assert not {"SeamText", "SeamGraph"} & set(METHODS)
    assert not hasattr(reprzoo.datamodules, "DocstringTopics") and not hasattr(reprzoo.datamodules, "KarateClub")


def train_push_load(model, data, data_args, name, tiny_trainer_kwargs, tmp_path):
    """Fit a few steps, validate, push to the per-test local hub, load back; returns (metrics, model, loaded, config)."""
    from reprzoo.zoo.api import load, push

    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    metrics = dict(trainer.callback_metrics)
    assert torch.isfinite(metrics["train/loss"])
    assert any(not torch.equal(v, before[k]) for k, v in model.backbone.state_dict().items()), "no backbone weight changed"
    config = push(write_run(tmp_path / "run", trainer, model, data, data_args), name).config
    return metrics, model.eval(), load(name), config


# ------------------------------------------------------------------------------------------------ the seams
def test_text_method_trains_validates_pushes_and_loads(toy_classes, tiny_trainer_kwargs, tmp_path):
    data_args = {"per_source": 40, "batch_size": 16}
    data = DocstringTopics(**data_args)
    data.setup()
    assert len(data._train) >= 80 and len(data._test) >= 20
    views, labels, indices = next(iter(data.train_dataloader()))  # the collate hook: padded dicts, one per view
    assert len(views) == 2 and set(views[0]) == {"input_ids", "attention_mask"}
    assert views[0]["input_ids"].shape == views[0]["attention_mask"].shape and labels.shape == indices.shape == (16,)
    lengths = views[0]["attention_mask"].sum(1)
    assert lengths.min() < lengths.max(), "variable-length samples"

    model = SeamText(
        backbone="mean_pooled_embeddings",
        backbone_kwargs={"vocab_size": data.vocab_size, "dim": 32},
        num_classes=data.num_classes,
        optimizer="adamw",
        lr=0.01,
        lr_reference_batch=None,
        weight_decay=0.0,
        knn_k=5,
    )
    metrics, model, loaded, config = train_push_load(
        model, data, data_args, "seamtext-meanpooled-docstrings.test", tiny_trainer_kwargs, tmp_path
    )
    assert 0.0 <= float(metrics["val/knn_top1"]) <= 1.0 and "val/probe_top1" in metrics
    assert config["preprocessing"]["modality"] == "text" and config["architecture"]["embedding_dim"] == 32
    assert loaded.card.data.pipeline_tag == "feature-extraction" and "text input: tokenizer" in loaded.card.text
    assert config["provenance"]["data_fingerprint"] == DocstringTopics(**data_args).fingerprint()
    x, _ = next(iter(data.val_dataloader()[1]))
    assert isinstance(x, dict)
    with torch.no_grad():
        expected = model.embed(x)
        got = loaded.embed(x)
    assert got.shape == expected.shape == (len(x["input_ids"]), 32)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_unlabelled_text_trains_and_measures_what_needs_no_labels(tiny_trainer_kwargs):
    data = DocstringTopics(per_source=20, batch_size=8, labelled=False)
    assert data.num_classes is None
    model = SeamText(
        backbone="mean_pooled_embeddings",
        backbone_kwargs={"vocab_size": data.vocab_size, "dim": 16},
        num_classes=data.num_classes,
        optimizer="adamw",
        lr=0.01,
        lr_reference_batch=None,
        weight_decay=0.0,
    )
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and "val/feature_std" in metrics
    assert "val/knn_top1" not in metrics and "val/probe_top1" not in metrics
    _, labels = next(iter(data.val_dataloader()[1]))
    assert (labels == -1).all()  # a None label is -1 in batches


def test_graph_method_trains_validates_pushes_and_loads(toy_classes, tiny_trainer_kwargs, tmp_path):
    pytest.importorskip("networkx")
    data_args = {"batch_size": 8}
    data = KarateClub(**data_args)
    model = SeamGraph(
        backbone="embedding_table",
        backbone_kwargs={"num_embeddings": data.num_nodes, "dim": 16},
        num_classes=data.num_classes,
        optimizer="adamw",
        lr=0.05,
        lr_reference_batch=None,
        weight_decay=0.0,
        knn_k=3,
    )
    views, labels, _ = next(iter(data.train_dataloader()))
    assert [v.dtype for v in views] == [torch.long, torch.long] and views[0].shape == labels.shape == (8,)
    metrics, model, loaded, config = train_push_load(
        model, data, data_args, "seamgraph-table-karate.test", tiny_trainer_kwargs, tmp_path
    )
    assert 0.0 <= float(metrics["val/knn_top1"]) <= 1.0
    assert config["preprocessing"]["modality"] == "graph" and config["architecture"]["backbone"] == "embedding_table"
    assert "graph input: graph" in loaded.card.text
    nodes, _ = next(iter(data.val_dataloader()[1]))
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(nodes), model.embed(nodes), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ backbones
def test_backbones_register_by_name_and_modules_pass_through(monkeypatch):
    assert {"resnet18_cifar", "resnet_tiny_cifar", "mean_pooled_embeddings", "embedding_table"} <= set(BACKBONES)
    assert build_backbone("resnet_tiny_cifar").num_features == 128
    assert build_backbone("resnet18").num_features == 512  # timm names still work

    class Bag(nn.Module):
        def __init__(self, width: int = 8):
            super().__init__()
            self.num_features = width

    monkeypatch.setitem(BACKBONES, "seam_bag", None)  # remembered as absent: removed again on teardown
    del BACKBONES["seam_bag"]
    assert register_backbone("seam_bag")(Bag) is Bag
    assert build_backbone("seam_bag", width=3).num_features == 3 and "seam_bag" in list_backbones("seam_*")
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone("seam_bag")(lambda **kw: Bag(**kw))

    built = Bag(5)
    assert build_backbone(built) is built
    with pytest.raises(ReprzooError, match="num_features"):
        build_backbone(nn.Linear(2, 2))
    with pytest.raises(ReprzooError, match="not to a module"):
        build_backbone(built, width=3)
    with pytest.raises(UnknownNameError, match="backbone"):
        build_backbone("no_such_backbone_xyz")


def test_a_method_takes_a_backbone_module():
    table = build_backbone("embedding_table", num_embeddings=10, dim=4)
    model = SeamGraph(backbone=table, num_classes=None)
    assert model.backbone is table and model.embedding_dim == 4
    assert model.embed(torch.tensor([1, 2])).shape == (2, 4)


def test_text_encoder_masks_padding():
    encoder = build_backbone("mean_pooled_embeddings", vocab_size=50, dim=6)
    ids = torch.tensor([[3, 4, 0, 0], [3, 4, 7, 9]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    out = encoder(batch)
    torch.testing.assert_close(out[0], encoder.embedding.weight[[3, 4]].mean(0))
    torch.testing.assert_close(encoder(ids), out)  # a bare id tensor: padding read from padding_idx
    assert encoder({"input_ids": torch.zeros(1, 3, dtype=torch.long)}).abs().sum() == 0


def test_cli_embedding_moves_dict_and_tuple_batches_to_the_device():
    """``reprzoo embed``/``compat`` embed batches that are dicts (token ids and mask) or tuples, not only tensors."""
    from reprzoo.zoo.embedding import embed_split as _embed_split
    from reprzoo.zoo.embedding import to_device as _to_device

    encoder = build_backbone("mean_pooled_embeddings", vocab_size=20, dim=4)
    ids = torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6]])
    dataset = [({"input_ids": i, "attention_mask": (i != 0).long()}, label) for i, label in zip(ids, (0, 1, 1))]
    features, labels = _embed_split(type("E", (), {"embed": staticmethod(encoder)})(), dataset, 2, "cpu")
    torch.testing.assert_close(features, encoder(ids).detach())
    assert labels.tolist() == [0, 1, 1]
    moved = _to_device((ids, [ids]), torch.device("cpu"))
    assert isinstance(moved, tuple) and torch.equal(moved[1][0], ids)


# ------------------------------------------------------------------------------------------------ environment
ISOLATION_CHECK = "PYTEST_REPRZOO_ISOLATION_CHECK"


def test_the_user_environment_does_not_reach_a_test(tmp_path):
    """Inside a test: a fresh zoo home under the test's tmp_path, no offline flag, token or endpoint from outside."""
    assert Path(os.environ["REPRZOO_HOME"]).is_relative_to(tmp_path)
    assert Path(os.environ["HF_HOME"]).is_relative_to(tmp_path)
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT", "HF_HUB_CACHE"):
        assert name not in os.environ
    from huggingface_hub import constants

    from reprzoo.zoo import hf
    from reprzoo.zoo.local_hub import default_home

    assert not hf.is_offline() and Path(constants.HF_HUB_CACHE).is_relative_to(tmp_path)
    assert default_home().is_relative_to(tmp_path)
    if os.environ.get(ISOLATION_CHECK):
        return
    # the same test run by a pytest whose shell exports a zoo, an offline flag, a Hugging Face home and a token
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "REPRZOO_HOME", "HF_"))}
    env.update(
        {
            ISOLATION_CHECK: "1",
            "REPRZOO_HOME": "/nonexistent/x",
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": "/nonexistent/y",
            "HF_TOKEN": "hf_from_the_user_shell",
        }
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-q",
            f"{__file__}::test_the_user_environment_does_not_reach_a_test",
        ],
        env=env,
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
