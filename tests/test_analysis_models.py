"""Inversion, the class-embedding lens, iterative feature merging and Net2Vec on tiny modules, against loops /
networkx / sklearn, and the property each paper states."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from reprzoo.metrics.analysis.models import (
    class_embedding_lens,
    invert_representation,
    iterative_feature_merging,
    layer_redundancy,
    net2vec,
    total_variation,
)


def smooth_images(batch: int = 1, size: int = 12) -> torch.Tensor:
    grid = torch.linspace(0, 1, size)
    image = torch.stack([grid[:, None] * grid[None], grid[:, None].expand(size, size), 1 - grid[None].expand(size, size)])
    return image.expand(batch, -1, -1, -1).clone()


def test_total_variation_matches_a_loop():
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.double)
    for beta in (1.0, 2.0):
        expected = sum(
            ((x[b, c, i, j + 1] - x[b, c, i, j]) ** 2 + (x[b, c, i + 1, j] - x[b, c, i, j]) ** 2) ** (beta / 2)
            for b in range(2)
            for c in range(3)
            for i in range(4)
            for j in range(5)
        )
        assert total_variation(x, beta).item() == pytest.approx(expected.item())


def test_inverting_the_identity_recovers_the_image():
    images = smooth_images()
    result = invert_representation({"identity": lambda x: x}, images, steps=150)
    curve = result["error_curve"]["identity"]
    assert len(curve) == 151 and curve[-1] < 0.02 * curve[0]
    assert result["image_error"]["identity"] == pytest.approx(result["representation_error"]["identity"])
    assert result["image_error"]["identity"] < 0.02


def test_inverting_conv_layers_lowers_the_representation_error_and_leaves_the_model_alone():
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, stride=2)
    layers = {"conv1": lambda x: torch.relu(conv1(x)), "conv2": lambda x: torch.relu(conv2(torch.relu(conv1(x))))}
    result = invert_representation(layers, smooth_images(2), steps=100)
    for name in layers:
        curve = result["error_curve"][name]
        assert curve[-1] < 0.2 * curve[0], name
        assert result["reconstruction"][name].shape == (2, 3, 12, 12)
    assert conv1.weight.grad is None and conv2.weight.grad is None


class TinyViT(nn.Module):
    def __init__(self, dim: int = 16, classes: int = 5, depth: int = 3):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        states = []
        for block in self.blocks:
            h = block(h)
            states.append(h)
        return self.head(self.norm(h[:, 0])), torch.stack(states)


def test_class_embedding_lens_last_layer_is_the_classifier_accuracy():
    torch.manual_seed(0)
    model = TinyViT().eval()
    tokens, labels = torch.randn(40, 6, 16), torch.randint(0, 5, (40,))
    with torch.no_grad():
        logits, states = model(tokens)
    result = class_embedding_lens(states, labels, model.head, model.norm)
    assert result["cls_top1"][-1] == pytest.approx((logits.argmax(1) == labels).double().mean().item())
    assert len(result["image_rank"]) == 3
    # ranks against a loop that sorts each token's logits
    ranks = []
    with torch.no_grad():
        for n in range(40):
            for t in range(1, 7):
                order = model.head(model.norm(states[1, n, t])).argsort(descending=True).tolist()
                ranks.append(order.index(int(labels[n])) + 1)
    assert result["image_rank"][1] == pytest.approx(np.mean(ranks))
    assert result["image_top1"][1] == pytest.approx(np.mean(np.array(ranks) == 1))
    assert result["image_identifiability"][1] == pytest.approx(np.mean([1 - (r - 1) / 4 for r in ranks]))
    assert "cls_rank" not in class_embedding_lens(states, labels, model.head, cls_index=None)


def test_iterative_feature_merging_counts_scaled_duplicates():
    g = torch.Generator().manual_seed(0)
    base = torch.relu(torch.randn(6, 200, generator=g))
    copies = base[[0, 0, 3, 5]] * torch.tensor([[2.0], [0.5], [3.0], [0.1]])
    layer = torch.cat([base, copies, torch.zeros(1, 200)])  # 4 scaled duplicates and one dead channel
    result = iterative_feature_merging(layer)
    assert result["merged"] == 4 and result["dead"] == 1 and result["channels"] == 11
    assert sorted(sorted(group) for group in result["groups"] if len(group) > 1) == [[0, 6, 7], [3, 8], [5, 9]]
    random = iterative_feature_merging(torch.randn(32, 200, generator=g))
    assert random["merged"] == 0 and random["redundancy"] == 0.0
    # networkx reference: with only exact duplicates, merging leaves one feature per connected component
    unit = torch.nn.functional.normalize(layer[:10].double(), dim=1)
    graph = nx.Graph()
    graph.add_nodes_from(range(10))
    graph.add_edges_from((i, j) for i in range(10) for j in range(i + 1, 10) if unit[i] @ unit[j] > 0.99)
    assert result["merged"] == 10 - nx.number_connected_components(graph)


def test_layer_redundancy_of_a_conv_layer_with_duplicated_filters():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, bias=False)
    with torch.no_grad():
        conv.weight[4:] = conv.weight[:4] * torch.tensor([1.5, 0.2, 4.0, 1.0])[:, None, None, None]
    result = layer_redundancy({"conv": torch.relu(conv(torch.randn(10, 3, 8, 8)))})["conv"]
    assert result["merged"] == 4 and result["redundancy"] == 0.5


def test_net2vec_against_a_hand_average_precision_and_a_distributed_concept():
    g = torch.Generator().manual_seed(0)
    activations = torch.randn(400, 6, generator=g)
    concepts = torch.stack([(activations[:, 1] + activations[:, 2] > 0), (activations[:, 4] > 0.3)], dim=1).long()
    result = net2vec(activations, concepts)
    assert result["best_filter"][0] in (1, 2) and result["best_filter"][1] == 4
    assert result["multi_ap"][0] > result["single_ap"][0] + 0.1 and result["multi_ap"][0] > 0.95
    assert result["single_ap"][1] > 0.95  # a concept one filter carries needs no others
    from sklearn.model_selection import train_test_split

    _, test = train_test_split(np.arange(400), test_size=0.3, random_state=0)
    y, score = concepts[test, 0].numpy(), activations[test, int(result["best_filter"][0])].numpy()
    hits = y[np.argsort(-score)]
    hand_ap = np.mean([hits[: i + 1].mean() for i in np.flatnonzero(hits)])
    assert result["single_ap"][0].item() == pytest.approx(hand_ap)
    assert result["similarity"].shape == (2, 2) and result["similarity"][0, 0] == pytest.approx(1.0)
    spatial = net2vec(activations[:, :, None, None].expand(-1, -1, 2, 2), concepts)
    assert torch.allclose(spatial["multi_ap"], result["multi_ap"])
