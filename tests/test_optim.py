"""Optimiser construction, LR scaling across device layouts, schedules and EMA."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from reprzoo.components.ema import copy_as_target, cosine_tau, ema_update
from reprzoo.lightning_modules import SimSiam
from reprzoo.training.optim import (
    build_optimizer,
    build_scheduler,
    cosine_schedule,
    global_batch_size,
    scaled_lr,
    split_weight_decay,
    warmup_cosine,
)


@pytest.mark.parametrize("devices,nodes,expected_batch", [(1, 1, 128), (2, 1, 256), (2, 2, 512)])
def test_lr_and_steps_scale_with_layout(devices, nodes, expected_batch):
    """The base module reads devices x nodes from the trainer: LR and steps per epoch follow the global batch."""
    model = SimSiam(backbone="resnet_tiny_cifar", proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=8, lr=0.05)
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(batch_size=128), num_devices=devices, num_nodes=nodes, accumulate_grad_batches=1
    )
    model.trainer = trainer  # type: ignore[assignment]
    assert model.global_batch_size() == expected_batch
    assert model.effective_lr() == pytest.approx(0.05 * expected_batch / 256)
    dataset_size = 50_000
    assert dataset_size // global_batch_size(128, devices, nodes) == dataset_size // expected_batch


def test_scaled_lr_reference_and_absolute():
    assert scaled_lr(0.03, 512) == pytest.approx(0.06)
    assert scaled_lr(0.03, 512, reference_batch=None) == 0.03
    assert global_batch_size(64, devices=4, num_nodes=2, accumulate=2) == 1024


def test_warmup_cosine_shape():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100, min_ratio=0.1) == pytest.approx(0.1)


def test_split_weight_decay_excludes_bias_and_norm():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    groups = split_weight_decay(net.named_parameters(), 0.1, name="net")
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(net[0].weight)}
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["name"] == "net/no_decay"


@pytest.mark.parametrize("name", ["sgd", "lars", "adamw"])
def test_build_optimizer_and_fixed_lr_group(name):
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt = build_optimizer(name, [{"params": list(a.parameters())}, {"params": list(b.parameters()), "fixed_lr": True}], lr=1.0)
    sched = build_scheduler(opt, "warmup_cosine", warmup_steps=0, total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    assert opt.param_groups[1]["lr"] == pytest.approx(1.0)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("adagrad", [{"params": [torch.nn.Parameter(torch.ones(1))]}], lr=1.0)


def test_simsiam_predictor_lr_is_fixed_by_default():
    model = SimSiam(backbone="resnet_tiny_cifar", proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=8)
    groups = {g["name"]: g for g in model.param_groups()}
    assert groups["predictor"]["fixed_lr"] is True
    names = {n for n, _ in groups["encoder"]["params"]}
    assert not any(n.startswith(("predictor.", "probe.")) for n in names)


def test_one_cosine_schedule_behind_lr_ema_and_weight_decay():
    assert cosine_schedule(0, 10, 0.04, 0.4) == pytest.approx(0.04) and cosine_schedule(10, 10, 0.04, 0.4) == pytest.approx(0.4)
    assert cosine_schedule(5, 10, 0.04, 0.4) == pytest.approx(0.22)
    assert cosine_schedule(20, 10, 0.04, 0.4) == cosine_schedule(10, 10, 0.04, 0.4)  # held at the end
    assert cosine_schedule(3, 0, 0.04, 0.4) == 0.04  # no steps: the start value
    for step in range(0, 120, 7):  # the LR multiplier after warmup and BYOL's tau are the same curve
        assert cosine_tau(step, 100, 0.99, 1.0) == cosine_schedule(step, 100, 0.99, 1.0)
        if step >= 10:
            assert warmup_cosine(step, 10, 100, 0.1) == cosine_schedule(step - 10, 90, 1.0, 0.1)


def test_cosine_tau_schedule_matches_byol():
    assert cosine_tau(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_tau(100, 100, 0.996) == pytest.approx(1.0)
    assert cosine_tau(50, 100, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 2) + 1) / 2)


def test_ema_update_formula_and_frozen_target():
    online = torch.nn.Linear(3, 3)
    target = copy_as_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    before = target.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    ema_update(target, online, tau=0.9)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * online.weight)


def test_fused_optimizer_only_when_asked_or_on_cuda():
    params = [torch.nn.Parameter(torch.randn(3))]
    assert not build_optimizer("sgd", [{"params": params}], 0.1).defaults.get("fused")  # CPU parameters: plain loop
    fused = build_optimizer("adamw", [{"params": params}], 0.1, fused=True)
    assert fused.defaults["fused"] is True


def test_compile_option_compiles_the_backbone_in_place(tiny_trainer_kwargs):
    """``compile=True`` compiles the backbone's forward when fit starts; parameter names and the trained result's
    state dict keys stay those of the plain model (checkpoints and zoo exports do not change)."""
    from reprzoo.datamodules import Digits
    from reprzoo.lightning_modules import SimSiam

    L.seed_everything(0)
    model = SimSiam(
        backbone="resnet_tiny_cifar",
        num_classes=10,
        proj_hidden_dim=32,
        proj_output_dim=16,
        pred_hidden_dim=8,
        compile=True,
        compile_kwargs={"backend": "eager"},
    )  # eager: no C++ toolchain needed in the test
    keys = set(model.state_dict())
    L.Trainer(**tiny_trainer_kwargs).fit(model, datamodule=Digits(batch_size=16))
    assert model.backbone._compiled_call_impl is not None
    assert set(model.state_dict()) == keys


def test_channels_last_is_automatic_on_cuda_and_cpu(tiny_trainer_kwargs):
    """``channels_last=None`` (the default) converts every 4-d weight, EMA targets included, when the trainer's
    device is CUDA or the CPU (oneDNN), not on other devices; ``False`` keeps it off everywhere."""
    from reprzoo.datamodules import Digits
    from reprzoo.lightning_modules import BYOL

    def byol(**kwargs):
        return BYOL(backbone="resnet_tiny_cifar", num_classes=10, proj_hidden_dim=32, proj_output_dim=16, **kwargs)

    def conv_weights(model):
        return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    for setting, expected in ((None, True), (False, False)):  # a CPU fit
        cpu = byol(channels_last=setting)
        L.Trainer(**tiny_trainer_kwargs).fit(cpu, datamodule=Digits(batch_size=16))
        assert cpu.channels_last_active is expected
        weights = [w for w in conv_weights(cpu) if w.shape[-1] > 1]
        assert all(w.is_contiguous(memory_format=torch.channels_last) is expected for w in weights)

    for device, setting, expected in (("cuda", None, True), ("cuda", False, False), ("mps", None, False)):
        model = byol(channels_last=setting)
        model._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device, 0)))  # read alone
        model.configure_model()
        assert model.channels_last_active is expected
        weights = conv_weights(model)
        assert len(weights) > len(conv_weights(model.backbone))  # the target network's convolutions too
        assert all(w.is_contiguous(memory_format=torch.channels_last) is expected for w in weights if w.shape[-1] > 1)
        assert model._format(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last) is expected


def test_channels_last_step_matches_the_contiguous_step():
    """The CPU default (channels-last) trains the same model: one SimSiam step from the same weights on the same
    views gives the same loss, gradients and updated weights as the contiguous format, to float32 rounding."""
    from reprzoo.lightning_modules import SimSiam

    def model(channels_last):
        torch.manual_seed(0)
        m = SimSiam(backbone="resnet18", proj_hidden_dim=64, proj_output_dim=32, pred_hidden_dim=16, channels_last=channels_last)
        return m.train()

    views = [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    results = []
    for channels_last in (False, None):
        m = model(channels_last)
        assert m.default_memory_format("cpu") is (channels_last is None)
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        loss = m.training_loss([m._format(v) for v in views]).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        optimizer.step()
        results.append((loss.detach(), grads, {n: p.detach().clone() for n, p in m.named_parameters()}))
    (loss_a, grads_a, weights_a), (loss_b, grads_b, weights_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        scale = grads_a[name].abs().max().clamp_min(1e-6)
        torch.testing.assert_close(grads_a[name] / scale, grads_b[name] / scale, rtol=1e-3, atol=1e-3, msg=name)
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], rtol=1e-4, atol=1e-5, msg=name)


def test_cli_defaults_to_bf16_only_where_the_gpu_supports_it(monkeypatch):
    from reprzoo.cli.training import default_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_precision() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert default_precision() is None  # e.g. a V100: float32 unless asked
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert default_precision() == "bf16-mixed"
