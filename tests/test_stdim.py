"""ST-DIM: the spatial InfoNCE against the paper code's loop over locations, the method's wiring, and the
AtariARI-style state-variable probe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprzoo.datamodules import GeneratedFrames
from reprzoo.lightning_modules import STDIM
from reprzoo.losses import spatial_info_nce, stdim_loss
from reprzoo.metrics import probe_state_variables, state_variable_probe


def loop_spatial_info_nce(queries, keys):
    """The paper's code: for every location (y, x), logits = queries_at(y, x) @ keys[:, y, x].T, cross-entropy
    against the diagonal; the mean over locations."""
    n, locations, _ = keys.shape
    total = 0.0
    for loc in range(locations):
        q = queries if queries.ndim == 2 else queries[:, loc]
        total = total + F.cross_entropy(q @ keys[:, loc].T, torch.arange(n))
    return total / locations


@pytest.mark.parametrize("global_query", [True, False])
def test_spatial_info_nce_matches_the_loop(global_query):
    keys = torch.randn(5, 6, 4)
    queries = torch.randn(5, 4) if global_query else torch.randn(5, 6, 4)
    assert torch.allclose(spatial_info_nce(queries, keys), loop_spatial_info_nce(queries, keys), atol=1e-6)


def test_stdim_loss_terms():
    g, l_next, l_t = torch.randn(4, 8), torch.randn(4, 9, 8), torch.randn(4, 9, 8)
    global_local, local_local = stdim_loss(g, l_next, l_t)
    assert torch.allclose(global_local, loop_spatial_info_nce(g, l_t), atol=1e-6)
    assert torch.allclose(local_local, loop_spatial_info_nce(l_next, l_t), atol=1e-6)
    # aligned features (each frame's local vectors point its own way) score far better than shuffled ones
    aligned = F.normalize(torch.randn(4, 1, 8), dim=2).expand(-1, 9, -1) * 10
    assert spatial_info_nce(aligned, aligned) < 0.01 < spatial_info_nce(aligned[[1, 2, 3, 0]], aligned)


def test_spatial_info_nce_argument_checks():
    with pytest.raises(ValueError, match="keys must be"):
        spatial_info_nce(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="do not match keys"):
        spatial_info_nce(torch.randn(4, 5, 8), torch.randn(4, 6, 8))


SMALL = {
    "in_chans": 3,
    "img_size": 32,
    "channels": (8, 16, 16, 16),
    "kernels": (4, 4, 3, 3),
    "strides": (2, 2, 1, 1),
    "num_features": 32,
}


def test_stdim_trains_encoder_and_both_bilinear_maps():
    model = STDIM(backbone_kwargs=SMALL)
    assert model.global_local.weight.shape == (16, 32) and model.local_local.weight.shape == (16, 16)
    views = [torch.rand(6, 3, 32, 32), torch.rand(6, 3, 32, 32)]
    out = model.training_loss(views)
    out.loss.backward()
    for module in (model.global_local, model.local_local, model.backbone.local, model.backbone.fc):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert out.features.shape == (6, 32) and torch.allclose(out.features, model.backbone(views[0]))


def test_stdim_needs_a_backbone_with_local_features():
    with pytest.raises(ValueError, match="forward_features and forward_head"):
        STDIM(backbone="resnet_tiny_cifar")


def test_probe_reads_informative_features_and_not_noise():
    torch.manual_seed(0)
    values = torch.randint(0, 5, (400,))
    states = {"a": values[:300], "b": torch.zeros(300, dtype=torch.long)}
    test_states = {"a": values[300:], "b": torch.zeros(100, dtype=torch.long)}
    informative = F.one_hot(values, 5).float() + 0.05 * torch.randn(400, 5)
    good = probe_state_variables(informative[:300], states, informative[300:], test_states)
    assert good["a"]["accuracy"] == 1.0 and good["a"]["f1"] == 1.0 and good["b"]["accuracy"] == 1.0
    noise = torch.randn(400, 5)
    bad = probe_state_variables(noise[:300], states, noise[300:], test_states)
    assert bad["a"]["accuracy"] < 0.5
    assert good["mean"]["f1"] == pytest.approx((good["a"]["f1"] + good["b"]["f1"]) / 2)
    with pytest.raises(ValueError, match="same state variables"):
        probe_state_variables(noise[:300], states, noise[300:], {"a": test_states["a"]})
    with pytest.raises(ValueError, match="features must be"):
        probe_state_variables(noise[:300, :2], states, noise[300:], test_states)


def test_state_variable_probe_on_generated_frames():
    data = GeneratedFrames(train_episodes=4, test_episodes=2, episode_length=30)
    model = STDIM(backbone_kwargs=SMALL).train()
    results = state_variable_probe(model, data, max_iter=200)
    assert set(results) == {"ball_x", "ball_y", "left_paddle_y", "right_paddle_y", "mean"}
    assert model.training  # put back in the mode it came in
    # what it probes is the model's representation in evaluation mode: the same probe on embeddings taken here
    from reprzoo.metrics.state_probe import embed_dataset

    model.eval()
    train, test = (embed_dataset(model.embed, split, device=torch.device("cpu")) for split in (data._train, data._test))
    expected = probe_state_variables(train, data.state_variables("train"), test, data.state_variables("test"), max_iter=200)
    assert {k: r["f1"] for k, r in results.items()} == pytest.approx({k: r["f1"] for k, r in expected.items()})
