"""Nested (Matryoshka) embeddings: the losses against explicit per-prefix sums, the nested layers (SortedNet,
Maestro) against sliced copies, NestedKNN against per-prefix KNNAccuracy, AdANNS against brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprzoo.losses import nt_xent
from reprzoo.losses.matryoshka import (
    check_nested_dims,
    doubling_dims,
    embedding_kl,
    matryoshka_loss,
    nested_logits,
    two_d_matryoshka_loss,
)


# ------------------------------------------------------------------------------------------------ losses
def test_doubling_dims_follow_the_paper():
    assert doubling_dims(2048) == (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    assert doubling_dims(128) == (8, 16, 32, 64, 128)
    assert doubling_dims(96) == (8, 16, 32, 64, 96)
    assert doubling_dims(8) == (8,) and doubling_dims(5) == (5,)


def test_check_nested_dims_refuses_bad_sizes():
    with pytest.raises(ValueError, match="strictly increasing"):
        check_nested_dims([16, 8], 32)
    with pytest.raises(ValueError, match=r"lie in \[1, 32\]"):
        check_nested_dims([8, 64], 32)
    with pytest.raises(ValueError, match="empty"):
        check_nested_dims([], 32)


def test_matryoshka_cross_entropy_equals_explicit_weighted_sum():
    z, y = torch.randn(10, 32), torch.randint(0, 5, (10,))
    dims, weights = (4, 8, 32), (0.5, 1.0, 2.0)
    heads = [torch.nn.Linear(m, 5) for m in dims]
    got = matryoshka_loss(z, lambda i, zi: F.cross_entropy(heads[i](zi), y), dims, weights)
    expected = 0.0
    for m, c, head in zip(dims, weights, heads):  # each prefix on its own, written out
        logits = z[:, :m] @ head.weight.T + head.bias
        expected = expected + c * -(logits.log_softmax(1)[torch.arange(10), y]).mean()
    assert torch.allclose(got, expected, atol=1e-6)


def test_weight_tied_head_uses_the_first_columns():
    z, w, b = torch.randn(6, 16), torch.randn(3, 16), torch.randn(3)
    for m in (4, 16):
        expected = torch.stack(
            [torch.tensor([sum(z[r, j] * w[c, j] for j in range(m)) + b[c] for c in range(3)]) for r in range(6)]
        )
        assert torch.allclose(nested_logits(z, w, b, m), expected, atol=1e-5)


def test_matryoshka_contrastive_slices_every_view_alike():
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    got = matryoshka_loss((z1, z2), lambda i, a, b: nt_xent(a, b, 0.5), (4, 16))
    assert torch.allclose(got, nt_xent(z1[:, :4], z2[:, :4], 0.5) + nt_xent(z1, z2, 0.5))
    with pytest.raises(ValueError, match="2 weights for 3"):
        matryoshka_loss(z1, lambda i, a: a.sum(), (2, 4, 8), (1.0, 1.0))
    with pytest.raises(ValueError, match="last dimension"):
        matryoshka_loss((z1, z2[:, :8]), lambda i, a, b: a.sum(), (4,))


def test_embedding_kl_against_the_formula():
    s, t, temp = torch.randn(5, 7), torch.randn(5, 7), 0.3
    p_t = torch.softmax(t / temp, 1)
    expected = (
        sum(sum(p_t[r, j] * (math.log(p_t[r, j]) - torch.log_softmax(s / temp, 1)[r, j]) for j in range(7)) for r in range(5))
        / 5
        * temp**2
    )
    assert torch.allclose(embedding_kl(s, t, temp), torch.as_tensor(expected, dtype=torch.float32), atol=1e-5)
    assert embedding_kl(t, t).abs() < 1e-6


def test_two_d_matryoshka_loss_is_the_four_terms_plus_alignment():
    last = [torch.randn(8, 12), torch.randn(8, 12)]
    shallow = [torch.randn(8, 12, requires_grad=True), torch.randn(8, 12)]
    base = lambda a, b: nt_xent(a, b, 0.5)  # noqa: E731
    got = two_d_matryoshka_loss(last, shallow, base, sampled_dim=4, kl_weight=0.7, shallow_weight=0.5)
    expected = (
        base(last[0], last[1])
        + base(last[0][:, :4], last[1][:, :4])
        + 0.5 * (base(shallow[0], shallow[1]) + base(shallow[0][:, :4], shallow[1][:, :4]))
        + 0.7 * (embedding_kl(shallow[0], last[0]) + embedding_kl(shallow[1], last[1])) / 2
    )
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="sampled_dim"):
        two_d_matryoshka_loss(last, shallow, base, sampled_dim=13)


# ------------------------------------------------------------------------------------------------ evaluation
def test_nested_knn_equals_knn_on_each_prefix():
    from reprzoo.metrics import KNNAccuracy, NestedKNN

    bank, bank_y = torch.randn(60, 16), torch.randint(0, 3, (60,))
    query, query_y = torch.randn(20, 16), torch.randint(0, 3, (20,))
    nested = NestedKNN(3, (4, 8), k=7)
    nested.update(bank, bank_y, bank=True)
    nested.update(query, query_y)
    full = nested.compute()
    assert set(nested.prefix_accuracies) == {4, 8, 16}
    for m in (4, 8, 16):
        plain = KNNAccuracy(3, k=7)
        plain.update(bank[:, :m], bank_y, bank=True)
        plain.update(query[:, :m], query_y)
        assert torch.equal(nested.prefix_accuracies[m], plain.compute())
    assert torch.equal(full, nested.prefix_accuracies[16])


# ------------------------------------------------------------------------------------------------ methods
def test_mrl_heads_and_defaults():
    from reprzoo.lightning_modules import MRL

    model = MRL(backbone="resnet_tiny_cifar", num_classes=4, knn_k=5)
    assert model.nested_dims == (8, 16, 32, 64, 128)  # the paper's doubling, up to the tiny ResNet's width
    assert [h.in_features for h in model.classifier.heads] == [8, 16, 32, 64, 128]
    tied = MRL(backbone="resnet_tiny_cifar", num_classes=4, nested_dims=[16, 128], efficient=True)
    assert tied.classifier.tied.weight.shape == (4, 128) and not hasattr(tied.classifier, "heads")
    z = torch.randn(3, 128)
    assert torch.allclose(
        tied.classifier(z[:, :16], 0), z[:, :16] @ tied.classifier.tied.weight[:, :16].T + tied.classifier.tied.bias
    )
    with pytest.raises(ValueError, match="end with the feature size 128"):
        MRL(backbone="resnet_tiny_cifar", num_classes=4, nested_dims=[8, 16])
    with pytest.raises(ValueError, match="num_classes is required"):
        MRL(backbone="resnet_tiny_cifar")


def test_mrl_loss_is_the_sum_over_prefixes():
    from reprzoo.lightning_modules import MRL

    model = MRL(
        backbone="resnet_tiny_cifar", num_classes=4, nested_dims=[8, 32, 128], loss_weights=[1.0, 0.5, 2.0], label_smoothing=0.0
    ).eval()
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 4, (6,))
    out = model.training_loss([x], y)
    f = model.backbone(x)
    expected = sum(
        c * F.cross_entropy(head(f[:, :m]), y) for m, c, head in zip((8, 32, 128), (1.0, 0.5, 2.0), model.classifier.heads)
    )
    assert torch.allclose(out.loss, expected, atol=1e-5)


def test_matryoshka_simclr_has_a_projector_per_prefix():
    from reprzoo.lightning_modules import MatryoshkaSimCLR

    model = MatryoshkaSimCLR(backbone="resnet_tiny_cifar", nested_dims=[16, 128], proj_hidden_dim=32, proj_output_dim=8).eval()
    assert not hasattr(model, "projector") and [p.layers[0].in_features for p in model.projectors] == [16, 128]
    x1, x2 = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)
    f1, f2 = model.backbone(x1), model.backbone(x2)
    expected = sum(nt_xent(p(f1[:, :m]), p(f2[:, :m]), model.hparams.temperature) for m, p in zip((16, 128), model.projectors))
    assert torch.allclose(model.training_loss([x1, x2]).loss, expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------ hub round trip
MRL_NAME = "mrl-tinyresnet-digits.test"


@pytest.fixture(scope="module")
def mrl_run(tmp_path_factory):
    """Two steps of the digits/mrl recipe through the CLI, into a run directory."""
    from reprzoo.cli.training import cli_main

    root = tmp_path_factory.mktemp("mrl-run")
    cli_main(
        [
            "fit",
            "--config=digits/mrl",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2",
            "--trainer.check_val_every_n_epoch=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--data.init_args.batch_size=32",
            f"--trainer.logger.init_args.save_dir={root}",
        ]
    )
    (run_dir,) = [p.parent for p in root.rglob("metrics.json")]
    return run_dir


def test_mrl_push_load_truncates_to_trained_prefixes(mrl_run, tmp_path, monkeypatch):
    import json

    import reprzoo
    from reprzoo.errors import ReprzooError

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    metrics = json.loads((mrl_run / "metrics.json").read_text())
    assert {f"val/knn_top1@{m}" for m in (8, 16, 32, 64, 128)} <= set(metrics)
    reprzoo.zoo.push(mrl_run, MRL_NAME)
    full = reprzoo.load(MRL_NAME)
    assert full.config["architecture"]["nested_dims"] == [8, 16, 32, 64, 128]
    x = torch.randn(4, 3, 32, 32)
    expected = full.embed(x)
    assert expected.shape == (4, 128)
    for m in (8, 32, 64):
        enc = reprzoo.load(MRL_NAME, dim=m)
        assert enc.dim == m and torch.equal(enc.embed(x), expected[:, :m])
    with pytest.raises(ReprzooError, match=r"dim=24: its trained prefix sizes are \[8, 16, 32, 64, 128\]"):
        reprzoo.load(MRL_NAME, dim=24)
    card = full.card.content
    assert "### Nested (Matryoshka) embeddings" in card and "| dim | `val/knn_top1` |" in card
    assert f"| 16 | {metrics['val/knn_top1@16']:.4f} |" in card


def test_export_records_no_nested_dims_for_plain_methods():
    from reprzoo.lightning_modules import SimCLR
    from reprzoo.zoo.export import _nested_dims

    assert _nested_dims(SimCLR(backbone="resnet_tiny_cifar")) is None


# ------------------------------------------------------------------------------------------------ components
def test_sorted_mlp_sub_networks_are_prefixes():
    from reprzoo.lightning_modules.nested.layers import SortedMLP

    mlp = SortedMLP([12, 20, 16, 5], width_fractions=(0.25, 0.5, 1.0), norm=True).eval()
    x = torch.randn(4, 12)
    for fraction in (0.25, 0.5, 1.0):
        h1, h2 = mlp.hidden_widths(fraction)
        small = torch.nn.Sequential(  # the sub-network built on its own from sliced weights
            torch.nn.Linear(12, h1),
            torch.nn.LayerNorm(h1, elementwise_affine=False),
            torch.nn.ReLU(),
            torch.nn.Linear(h1, h2),
            torch.nn.LayerNorm(h2, elementwise_affine=False),
            torch.nn.ReLU(),
            torch.nn.Linear(h2, 5),
        )
        with torch.no_grad():
            for layer, (a, b) in zip([small[0], small[3], small[6]], [(h1, 12), (h2, h1), (5, h2)]):
                big = mlp.layers[[small[0], small[3], small[6]].index(layer)]
                layer.weight.copy_(big.weight[:a, :b]), layer.bias.copy_(big.bias[:a])
        assert torch.allclose(mlp(x, width=fraction), small(x), atol=1e-5)
    assert mlp.hidden_widths(0.25) == [5, 4]
    mlp.train()
    widths = {mlp(x).shape[1] for _ in range(5)}
    assert widths == {5}
    with pytest.raises(ValueError, match="width_fractions"):
        SortedMLP([4, 4], width_fractions=(0.0,))


def test_sorted_linear_refuses_oversized_sub_layers():
    from reprzoo.lightning_modules.nested.layers import SortedLinear

    layer = SortedLinear(8, 6)
    x = torch.randn(2, 3)
    assert torch.allclose(layer(x, 2), x @ layer.weight[:2, :3].T + layer.bias[:2])
    with pytest.raises(ValueError, match="exceeds"):
        layer(torch.randn(2, 9))


def test_maestro_truncation_and_ordered_dropout():
    from reprzoo.lightning_modules.nested.layers import OrderedLowRankLinear

    linear = torch.nn.Linear(10, 7)
    full = OrderedLowRankLinear.from_linear(linear).eval()
    x = torch.randn(5, 10)
    assert full.rank == 7 and torch.allclose(full(x), linear(x), atol=1e-5)
    for r in (1, 3):
        w = sum(full.s[j] * torch.outer(full.u[:, j], full.v[j]) for j in range(r))  # sum of r rank-one terms
        assert torch.allclose(full.truncate(r)(x), x @ w.T + full.bias, atol=1e-5)
        assert torch.allclose(full(x, rank=r), full.truncate(r)(x), atol=1e-6)
    # SVD order: the rank-r truncation is the best rank-r approximation (Eckart-Young)
    errors = [torch.linalg.matrix_norm(linear.weight - full.weight(r)).item() for r in range(1, 8)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-4
    layer = OrderedLowRankLinear(10, 7, rank=6, min_rank=2).train()
    ranks = set()
    for _ in range(60):
        layer(x)
        ranks.add(layer.last_rank)
    assert ranks == {2, 3, 4, 5, 6}  # ordered dropout: a rank cut drawn per step
    layer.eval()(x)
    assert layer.last_rank == 6
    with pytest.raises(ValueError, match="min_rank"):
        OrderedLowRankLinear(4, 4, rank=2, min_rank=3)


def test_adanns_probing_every_list_is_exact_search():
    from reprzoo.metrics.adaptive_search import AdaptiveIVF, exact_search, recall_at_k

    g = torch.Generator().manual_seed(0)
    database, queries = torch.randn(300, 32, generator=g), torch.randn(20, 32, generator=g)
    index = AdaptiveIVF.build(database, cluster_dim=8, num_lists=10)
    assert index.centroids.shape == (10, 8) and index.assignments.shape == (300,)
    reference = exact_search(queries, database, k=5)
    assert torch.equal(index.search(queries, k=5, probes=10), reference)  # every list probed: brute force
    assert recall_at_k(index.search(queries, k=5, probes=10, search_dim=16), exact_search(queries, database, 5, dim=16)) == 1.0
    partial = recall_at_k(index.search(queries, k=5, probes=2), reference)
    assert 0.0 < partial < 1.0
    # a query's candidates are exactly the members of its probed lists
    found = index.search(queries[:1], k=300, probes=1)
    lists = torch.cdist(queries[:1, :8], index.centroids).argmin()
    assert set(found[found >= 0].tolist()) == set(torch.nonzero(index.assignments == lists).flatten().tolist())
    with pytest.raises(ValueError, match="search_dim"):
        index.search(queries, k=5, search_dim=64)


def _tiny_vit_2dmse(**kwargs):
    from reprzoo.lightning_modules import TwoDMatryoshka

    vit = dict(img_size=16, patch_size=4, depth=3, embed_dim=24, num_heads=2, class_token=False, global_pool="avg", fc_norm=False)
    return TwoDMatryoshka(backbone="vit_tiny_patch16_224", backbone_kwargs=vit, nested_dims=[8, 16, 24], **kwargs).eval()


def test_two_d_matryoshka_last_layer_is_the_exported_embedding():
    model = _tiny_vit_2dmse()
    x = torch.randn(4, 3, 16, 16)
    layers = model.layer_embeddings(x)
    assert len(layers) == 3 and all(e.shape == (4, 24) for e in layers)
    assert torch.allclose(layers[-1], model.embed(x), atol=1e-6)
    with pytest.raises(ValueError, match="min_layer"):
        _tiny_vit_2dmse(min_layer=3)


def test_two_d_matryoshka_step_is_the_sampled_layer_and_dim(monkeypatch):
    import random as random_module

    from reprzoo.losses.matryoshka import two_d_matryoshka_loss

    model = _tiny_vit_2dmse(temperature=0.2, kl_weight=0.5)
    x1, x2 = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)
    monkeypatch.setattr(random_module, "randint", lambda a, b: 2)  # layer i = 2 of 3
    monkeypatch.setattr(random_module, "choice", lambda seq: 8)
    got = model.training_loss([x1, x2]).loss
    l1, l2 = model.layer_embeddings(x1), model.layer_embeddings(x2)
    expected = two_d_matryoshka_loss([l1[2], l2[2]], [l1[1], l2[1]], lambda a, b: nt_xent(a, b, 0.2), 8, kl_weight=0.5)
    assert torch.allclose(got, expected, atol=1e-5)
