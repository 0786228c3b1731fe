"""PreciseBatchNorm: running statistics recomputed as plain averages over training batches, against an independent
computation; layers the embedding does not reach keep their statistics; the callback fires on the last batch."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from reprzoo.lightning_modules import SimSiam
from reprzoo.training.callbacks import PreciseBatchNorm, batchnorms, recalibrate_batchnorm


def tiny_simsiam() -> SimSiam:
    return SimSiam(backbone="resnet_tiny_cifar", num_classes=10, proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=8)


def test_recalibrated_statistics_are_the_average_of_batch_statistics():
    torch.manual_seed(0)
    model = tiny_simsiam()
    first = batchnorms(model.backbone)[0]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [([torch.randn(8, 3, 32, 32) * (1 + i), torch.randn(8, 3, 32, 32)], torch.zeros(8)) for i in range(3)]
    inputs = []  # what the first BatchNorm sees, captured in a separate training-mode pass
    hook = first.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    with torch.no_grad():
        model.train()
        for views, _ in batches:
            model.embed(views[0])
    hook.remove()
    means = [x.mean(dim=(0, 2, 3)) for x in inputs]
    variances = [x.var(dim=(0, 2, 3), unbiased=True) for x in inputs]  # BatchNorm keeps the unbiased variance
    model.eval()
    assert recalibrate_batchnorm(model, batches, num_batches=10) == 3
    assert torch.allclose(first.running_mean, sum(means) / 3, atol=1e-5)
    assert torch.allclose(first.running_var, sum(variances) / 3, atol=1e-4)
    assert not model.training and first.momentum == 0.1  # mode and momentum restored
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # the weights did not change


def test_layers_the_embedding_does_not_reach_keep_their_statistics():
    model = tiny_simsiam()
    extra = torch.nn.BatchNorm1d(4)
    extra.running_mean.fill_(3.0)
    model.backbone.unused = extra  # inside the backbone, never run by embed
    recalibrate_batchnorm(model, [([torch.randn(4, 3, 32, 32)], torch.zeros(4))], num_batches=1)
    assert torch.equal(extra.running_mean, torch.full((4,), 3.0))
    assert recalibrate_batchnorm(model, [], num_batches=5) == 0
    with pytest.raises(ValueError, match="num_batches"):
        PreciseBatchNorm(num_batches=0)


def test_callback_recalibrates_after_the_last_training_batch(tiny_trainer_kwargs):
    from reprzoo.datamodules import Digits

    L.seed_everything(0)
    model, precise = tiny_simsiam(), PreciseBatchNorm(num_batches=3)
    kwargs = {**tiny_trainer_kwargs, "max_epochs": 2, "limit_train_batches": 2, "callbacks": [precise]}
    L.Trainer(**kwargs).fit(model, datamodule=Digits(batch_size=16))
    assert precise.batches_used == 3  # once, from a fresh loader of the datamodule
    assert int(batchnorms(model.backbone)[0].num_batches_tracked) == 3


def test_callback_with_max_steps_recalibrates_once_at_the_last_step(tiny_trainer_kwargs, monkeypatch):
    import reprzoo.training.callbacks as callbacks
    from reprzoo.datamodules import Digits

    calls = []
    original = callbacks.recalibrate_batchnorm
    monkeypatch.setattr(callbacks, "recalibrate_batchnorm", lambda *a, **k: calls.append(1) or original(*a, **k))
    L.seed_everything(0)
    model, precise = tiny_simsiam(), PreciseBatchNorm(num_batches=2)
    kwargs = {**tiny_trainer_kwargs, "max_epochs": -1, "max_steps": 3, "limit_train_batches": 2, "callbacks": [precise]}
    L.Trainer(**kwargs).fit(model, datamodule=Digits(batch_size=16))
    assert len(calls) == 1 and precise.batches_used == 2  # not at the end of epoch 0 (max_epochs -1: unbounded)
