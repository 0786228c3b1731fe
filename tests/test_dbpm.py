"""DBPM: the per-pair NT-Xent, the historical loss, the bad-pair rule and re-weighting, the memory and the method."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm

from reprzoo.lightning_modules import DBPM
from reprzoo.lightning_modules.vision_ssl.dbpm import PairLossMemory
from reprzoo.losses import find_bad_pairs, gaussian_weights, historical_loss, nt_xent, nt_xent_per_sample


def naive_pair_losses(z1, z2, temperature):
    """Loop over the pairs: -log exp(s(a, p)/T) / sum_{k != a} exp(s(a, k)/T) for both anchors, averaged."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    out = []
    for i in range(n):
        terms = []
        for a, p in ((i, i + n), (i + n, i)):
            denominator = sum(math.exp(float(z[a] @ z[k]) / temperature) for k in range(2 * n) if k != a)
            terms.append(-math.log(math.exp(float(z[a] @ z[p]) / temperature) / denominator))
        out.append(sum(terms) / 2)
    return torch.tensor(out)


def test_nt_xent_per_sample_matches_the_formula_and_nt_xent():
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    per_pair = nt_xent_per_sample(z1, z2, temperature=0.2)
    assert torch.allclose(per_pair, naive_pair_losses(z1, z2, 0.2), atol=1e-5)
    assert torch.allclose(per_pair.mean(), nt_xent(z1, z2, temperature=0.2), atol=1e-6)


def test_nt_xent_per_sample_argument_checks():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent_per_sample(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="temperature must be positive"):
        nt_xent_per_sample(torch.randn(4, 8), torch.randn(4, 8), temperature=0.0)


def test_historical_loss_weights_later_epochs_and_skips_unseen():
    nan = float("nan")
    history = torch.tensor([[1.0, 2.0, 3.0], [4.0, nan, 6.0], [nan, nan, nan]])
    max_epochs = 10
    expected = []
    for row in history.tolist():  # the authors' mean(v * (1 + e) / max_epochs) over the epochs seen
        seen = [(e, v) for e, v in enumerate(row) if not math.isnan(v)]
        expected.append(sum(v * (e + 1) / max_epochs for e, v in seen) / len(seen) if seen else nan)
    out = historical_loss(history, max_epochs)
    assert torch.allclose(out[:2], torch.tensor(expected[:2])) and out[2].isnan()
    with pytest.raises(ValueError, match="num_pairs, epochs"):
        historical_loss(torch.ones(3), 10)
    with pytest.raises(ValueError, match="max_epochs must be positive"):
        historical_loss(history, 0)


def test_find_bad_pairs_flags_outliers_on_both_sides():
    values = torch.cat([torch.full((50,), 1.0) + 0.01 * torch.randn(50), torch.tensor([0.0, 2.0, float("nan")])])
    noisy, faulty, mu, sigma = find_bad_pairs(values, beta_noisy=2.0, beta_faulty=3.0)
    seen = values[:-1]
    assert mu == pytest.approx(seen.mean().item()) and sigma == pytest.approx(seen.std(unbiased=False).item(), rel=1e-5)
    assert noisy.nonzero().flatten().tolist() == [50] and faulty.nonzero().flatten().tolist() == [51]
    # the thresholds: mu - beta_np sigma and mu + beta_fp sigma (a stricter beta flags nothing here)
    assert not find_bad_pairs(values, beta_noisy=10.0, beta_faulty=10.0)[0].any()
    none = find_bad_pairs(torch.full((4,), float("nan")))
    assert not none[0].any() and not none[1].any()
    with pytest.raises(ValueError, match="non-negative"):
        find_bad_pairs(values, beta_noisy=-1.0)


def test_gaussian_weights_are_the_density_for_flagged_pairs_only():
    loss = torch.tensor([0.5, 1.0, 2.5, 4.0], requires_grad=True)
    flagged = torch.tensor([True, False, True, False])
    weights = gaussian_weights(loss, flagged, mu=2.0, sigma=0.7)
    expected = torch.tensor([norm(2.0, 0.7).pdf(0.5), 1.0, norm(2.0, 0.7).pdf(2.5), 1.0], dtype=torch.float32)
    assert torch.allclose(weights, expected, atol=1e-6) and not weights.requires_grad
    assert torch.equal(gaussian_weights(loss, torch.zeros(4, dtype=torch.bool), float("nan"), float("nan")), torch.ones(4))
    with pytest.raises(ValueError, match="differ in shape"):
        gaussian_weights(loss, flagged[:2], 2.0, 0.7)
    with pytest.raises(ValueError, match="sigma must be positive"):
        gaussian_weights(loss, flagged, 2.0, 0.0)


def test_memory_grows_and_keeps_each_epoch():
    memory = PairLossMemory()
    memory.record(torch.tensor([0, 3]), torch.tensor([1.0, 2.0]), epoch=0)
    memory.record(torch.tensor([5, 0]), torch.tensor([3.0, 4.0]), epoch=2)
    assert memory.history.shape == (6, 3)
    assert memory.history[0].tolist() == [1.0, pytest.approx(float("nan"), nan_ok=True), 4.0]
    assert memory.before(2).shape == (6, 2) and memory.before(5).shape == (6, 5)
    assert memory.before(5)[:, 3:].isnan().all()


def tiny_dbpm(**kwargs) -> DBPM:
    return DBPM(backbone="conv1d_tiny", backbone_kwargs={"in_chans": 2}, proj_hidden_dim=16, proj_output_dim=8, **kwargs)


def test_dbpm_reweights_only_flagged_pairs():
    torch.manual_seed(0)
    model = tiny_dbpm(mining_start_epoch=2).eval()  # eval: deterministic batch norm, no memory writes
    history = 1.0 + 0.05 * torch.randn(80, 3)
    history[3] = 0.1  # noisy positive pair (too easy)
    history[7] = 3.0  # faulty positive pair (too hard)
    model.memory.history = history.clone()
    model.mine_bad_pairs(epoch=1, max_epochs=10)
    assert model.noisy is None  # before mining_start_epoch the memory is only filled
    model.mine_bad_pairs(epoch=3, max_epochs=10)
    assert model.noisy.nonzero().flatten().tolist() == [3] and model.faulty.nonzero().flatten().tolist() == [7]

    views = [torch.randn(8, 2, 64), torch.randn(8, 2, 64)]
    indices = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    out = model.training_loss(views, indices=indices)
    with torch.no_grad():
        pair_loss = nt_xent_per_sample(*(model.projector(model.backbone(v)) for v in views), temperature=0.2)
    density = torch.tensor(norm(model.mu, model.sigma).pdf(pair_loss.numpy()), dtype=torch.float32)
    weights = torch.ones(8)
    weights[[3, 7]] = density[[3, 7]]
    assert torch.allclose(out.loss, (weights * pair_loss).mean(), atol=1e-5)
    assert not torch.allclose(out.loss, pair_loss.mean())
    # without sample identities DBPM is its SimCLR base
    assert torch.allclose(model.training_loss(views).loss, pair_loss.mean(), atol=1e-6)


def test_dbpm_training_writes_the_memory_and_checkpoints_it():
    model = tiny_dbpm().train()
    views = [torch.randn(4, 2, 32), torch.randn(4, 2, 32)]
    model.training_loss(views, indices=torch.tensor([9, 2, 4, 0]))
    assert model.memory.history.shape == (10, 1) and (~model.memory.history.isnan()).sum() == 4
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    fresh = tiny_dbpm()
    fresh.on_load_checkpoint(checkpoint)
    assert torch.equal(fresh.memory.history.nan_to_num(-1), model.memory.history.nan_to_num(-1))
    # the memory is not in the state dict: an exported model loads strictly without knowing the dataset
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_dbpm_argument_checks():
    with pytest.raises(ValueError, match="mining_start_epoch must be non-negative"):
        tiny_dbpm(mining_start_epoch=-1)
