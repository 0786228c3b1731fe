"""Teacher-student family: multi-crop views, DINO, OBoW and MobileVOS's contrastive distillation, against naive
computations of the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from reprzoo.datamodules import Digits, MultiCropTransform
from reprzoo.datamodules.transforms import AUGMENTATIONS


# ----------------------------------------------------------------------------------------------- multi-crop views
def _ops(view, cls):
    return [t for t in view.transforms if isinstance(t, cls)]


def _applied_prob(view, cls) -> float:
    """p of the RandomApply wrapping ``cls`` (blur), or p of ``cls`` itself (solarize); 0 when absent."""
    for t in view.transforms:
        if isinstance(t, v2.RandomApply) and any(isinstance(inner, cls) for inner in t.transforms):
            return t.p
        if isinstance(t, cls):
            return t.p
    return 0.0


def test_multicrop_views_global_first_with_dino_asymmetry():
    t = MultiCropTransform(size=32, num_global=3, num_local=4)
    assert AUGMENTATIONS["multicrop"] is MultiCropTransform and len(t.transforms) == 7
    crops = [_ops(view, v2.RandomResizedCrop)[0] for view in t.transforms]
    assert [c.size for c in crops] == [(32, 32)] * 3 + [(14, 14)] * 4  # local side 96/224 of 32
    assert all(c.scale == (0.4, 1.0) for c in crops[:3]) and all(c.scale == (0.05, 0.4) for c in crops[3:])
    blur = [_applied_prob(view, v2.GaussianBlur) for view in t.transforms]
    solarize = [_applied_prob(view, v2.RandomSolarize) for view in t.transforms]
    assert blur == [1.0, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5]  # the third global crop reuses the last value
    assert solarize == [0.0, 0.2, 0.2, 0.0, 0.0, 0.0, 0.0]
    out = t(torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8))
    assert [tuple(x.shape) for x in out] == [(3, 32, 32)] * 3 + [(3, 14, 14)] * 4


def test_multicrop_batches_come_as_two_sizes():
    data = Digits(batch_size=8, augmentation="multicrop", augmentation_kwargs={"num_local": 3, "local_size": 16})
    views, labels, indices = next(iter(data.train_dataloader()))
    assert [tuple(v.shape) for v in views] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 3
    assert labels.shape == indices.shape == (8,)


def test_multicrop_argument_checks():
    with pytest.raises(ValueError, match="num_global >= 1"):
        MultiCropTransform(size=32, num_global=0)
    with pytest.raises(ValueError, match="at least one value"):
        MultiCropTransform(size=32, blur_probs=())
    with pytest.raises(ValueError, match="sets blur_prob per crop"):
        MultiCropTransform(size=32, blur_prob=0.0)


# ----------------------------------------------------------------------------------------------- DINO
from reprzoo.losses import dino_loss, update_center  # noqa: E402
from reprzoo.losses.dino import teacher_temperature_at  # noqa: E402
from reprzoo.training.optim import cosine_schedule  # noqa: E402


def test_dino_loss_matches_loop_over_view_pairs():
    n, k, tau_s, tau_t = 3, 5, 0.1, 0.04
    student = [torch.randn(n, k) for _ in range(4)]  # 2 global + 2 local views
    teacher = [torch.randn(n, k) for _ in range(2)]
    center = torch.randn(1, k)
    total, pairs = 0.0, 0
    for i in range(2):
        for v in range(4):
            if v == i:
                continue
            for b in range(n):
                t = [float(teacher[i][b, j] - center[0, j]) / tau_t for j in range(k)]
                s = [float(student[v][b, j]) / tau_s for j in range(k)]
                zt, zs = sum(math.exp(x) for x in t), sum(math.exp(x) for x in s)
                total += -sum(math.exp(t[j]) / zt * (s[j] - math.log(zs)) for j in range(k)) / n
            pairs += 1
    assert torch.allclose(dino_loss(student, teacher, center, tau_s, tau_t), torch.tensor(total / pairs), atol=1e-4)


def test_dino_loss_gradient_reaches_student_only():
    student = [torch.randn(2, 4, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(2, 4, requires_grad=True) for _ in range(2)]
    dino_loss(student, teacher, torch.zeros(1, 4)).backward()
    assert all(s.grad is not None for s in student) and all(t.grad is None for t in teacher)


def test_dino_center_and_schedules():
    center, logits = torch.randn(1, 4), torch.randn(6, 4)
    expected = 0.9 * center + 0.1 * torch.stack([logits[:, j].mean() for j in range(4)])[None]
    assert torch.allclose(update_center(center, logits, 0.9), expected, atol=1e-6)
    temps = [teacher_temperature_at(e, 0.04, 0.07, 30) for e in (0, 15, 29, 30, 100)]
    assert temps[0] == 0.04 and temps[2] == pytest.approx(0.07) and temps[3] == temps[4] == 0.07
    assert temps[1] == pytest.approx(0.04 + 0.03 * 15 / 29)
    assert cosine_schedule(0, 10, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_schedule(10, 10, 0.04, 0.4) == pytest.approx(0.4)
    assert cosine_schedule(5, 10, 0.04, 0.4) == pytest.approx(0.22)


def test_dino_loss_argument_checks():
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match=">= 2 student views"):
        dino_loss([x], [x], torch.zeros(4))
    with pytest.raises(ValueError, match="same \\(batch, K\\) shape"):
        dino_loss([x, torch.randn(2, 5)], [x], torch.zeros(4))
    with pytest.raises(ValueError, match="temperatures must be positive"):
        dino_loss([x, x], [x], torch.zeros(4), teacher_temperature=0.0)
    with pytest.raises(ValueError, match="center momentum"):
        update_center(torch.zeros(1, 4), x, 1.5)


def _tiny_dino(**kwargs):
    from reprzoo.lightning_modules import DINO

    return DINO(backbone="resnet_tiny_cifar", hidden_dim=32, bottleneck_dim=8, out_dim=64, num_classes=10, **kwargs)


def test_dino_head_last_layer_is_weight_normalised_with_g_one():
    head = _tiny_dino().head
    g = head.last_layer.parametrizations.weight.original0
    v = head.last_layer.parametrizations.weight.original1
    assert not g.requires_grad and torch.all(g == 1)
    x = torch.randn(5, 128)
    logits, z = head(x)
    assert torch.allclose(logits, F.normalize(z, dim=1) @ F.normalize(v, dim=1).T, atol=1e-5)


def test_dino_freezes_last_layer_first_epoch_and_schedules_weight_decay(tiny_trainer_kwargs):
    import lightning as L

    model = _tiny_dino(weight_decay=0.04, weight_decay_end=0.4)
    data = Digits(batch_size=16, augmentation="multicrop", augmentation_kwargs={"num_local": 2, "local_size": 16})
    last = model.head.last_layer.parametrizations.weight.original1.detach().clone()
    first = model.head.mlp.layers[0].weight.detach().clone()
    trainer = L.Trainer(**{**tiny_trainer_kwargs, "limit_train_batches": 3})
    trainer.fit(model, datamodule=data)
    assert torch.equal(model.head.last_layer.parametrizations.weight.original1, last)  # frozen in epoch 0
    assert not torch.equal(model.head.mlp.layers[0].weight, first)
    assert model.center.abs().sum() > 0
    assert not any(name.startswith("teacher_") for g in model.param_groups() for name, _ in g["params"])
    decays = {g["name"]: g["weight_decay"] for g in trainer.optimizers[0].param_groups}
    assert decays["student"] == pytest.approx(cosine_schedule(2, 3, 0.04, 0.4)) and decays["student/no_decay"] == 0.0
    assert trainer.callback_metrics["train/teacher_temperature"].item() == pytest.approx(0.04)  # epoch 0 of warmup


# ----------------------------------------------------------------------------------------------- OBoW
from reprzoo.components.feature_maps import stage_channels, stage_maps  # noqa: E402
from reprzoo.losses import bow_from_distances, bow_logits, bow_prediction_loss, squared_distances  # noqa: E402


def test_squared_distances_and_bow_targets_match_loops():
    feats, words, inv_delta, mmd = torch.rand(2, 3, 2, 3), torch.rand(4, 3), 15.0, 0.3
    d = squared_distances(feats, words)
    for b in range(2):
        for k in range(4):
            for i in range(2):
                for j in range(3):
                    assert d[b, k, i, j] == pytest.approx(float(((feats[b, :, i, j] - words[k]) ** 2).sum()), abs=1e-5)
    for pool in ("max", "avg"):
        bow = bow_from_distances(d, inv_delta, mmd, pool)
        for b in range(2):
            codes = []
            for i in range(2):
                for j in range(3):
                    e = [math.exp(-inv_delta / mmd * float(d[b, k, i, j])) for k in range(4)]
                    codes.append([x / sum(e) for x in e])
            pooled = [max(c[k] for c in codes) if pool == "max" else sum(c[k] for c in codes) / 6 for k in range(4)]
            expected = torch.tensor([p / sum(pooled) for p in pooled])
            assert torch.allclose(bow[b], expected, atol=1e-5)


def test_bow_logits_and_loss_match_formula():
    z, w, kappa = torch.randn(6, 5), torch.randn(4, 5), 8.0
    cos = bow_logits(z, w, kappa)
    raw = bow_logits(z, w, kappa, normalize_features=False)
    for i in range(6):
        for k in range(4):
            dot = float(z[i] @ w[k]) / float(w[k].norm())
            assert cos[i, k] == pytest.approx(kappa * dot / float(z[i].norm()), abs=1e-4)
            assert raw[i, k] == pytest.approx(kappa * dot, abs=1e-4)
    targets = F.normalize(torch.rand(3, 4), p=1, dim=1)  # 3 images, 2 crops each (crop-major rows)
    expected = 0.0
    for row in range(6):
        log_z = math.log(sum(math.exp(float(cos[row, k])) for k in range(4)))
        expected += -sum(float(targets[row % 3, k]) * (float(cos[row, k]) - log_z) for k in range(4)) / 6
    assert bow_prediction_loss(cos, targets) == pytest.approx(expected, abs=1e-5)


def test_obow_argument_checks():
    with pytest.raises(ValueError, match="same c"):
        squared_distances(torch.rand(1, 3, 2, 2), torch.rand(4, 2))
    with pytest.raises(ValueError, match="pool must be"):
        bow_from_distances(torch.rand(1, 4, 2, 2), pool="sum")
    with pytest.raises(ValueError, match="crops x targets"):
        bow_prediction_loss(torch.randn(5, 4), torch.rand(2, 4))
    with pytest.raises(ValueError, match="asked for the last 5"):
        _tiny_obow(bow_levels=5)


def _tiny_obow(**kwargs):
    from reprzoo.lightning_modules import OBoW

    return OBoW(backbone="resnet_tiny_cifar", num_words=64, num_classes=10, **kwargs)


def test_stage_maps_of_tinyresnet_and_timm_resnet():
    from reprzoo.backbones import build_backbone

    x = torch.randn(2, 3, 32, 32)
    for name, expected in (("resnet_tiny_cifar", [(64, 8), (128, 4)]), ("resnet18_cifar", [(256, 8), (512, 4)])):
        backbone = build_backbone(name).eval()
        maps = stage_maps(backbone, x, 2)
        assert [(m.shape[1], m.shape[-1]) for m in maps] == expected
        assert stage_channels(backbone, 2) == [c for c, _ in expected]
        assert torch.allclose(maps[-1].mean(dim=(2, 3)), backbone(x), atol=1e-5)  # the last map pools to the features


def test_obow_vocabulary_queues_local_averages_and_targets_are_distributions():
    model = _tiny_obow(distance_momentum=0.9)
    vocab = model.vocabularies[0]
    assert torch.all(vocab.queue.embeddings >= 0)  # rectified initial words
    feats = torch.rand(3, 64, 8, 8)
    targets = vocab.targets(feats)
    assert torch.allclose(targets.sum(1), torch.ones(3), atol=1e-5)
    inner = feats[:, :, 1:-1, 1:-1]
    assert int(vocab.num_batches) == 1 and vocab.mean_min_distance > 0  # set from this first batch
    local = F.avg_pool2d(inner, 3, stride=1).flatten(2)  # (3, 64, 16)
    words = vocab.queue.embeddings[:3]
    for b in range(3):  # each image gave one 3x3 local average of its own map
        assert any(torch.allclose(words[b], local[b, :, j], atol=1e-6) for j in range(local.shape[2]))


def test_obow_student_learns_teacher_does_not():
    model = _tiny_obow()
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.randn(4, 3, 16, 16)]
    out = model.training_loss(views)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.features.shape == (4, 128)
    assert all(p.grad is None for p in model.teacher_backbone.parameters())
    assert all(p.grad is not None for p in model.generators.parameters())
    assert model.backbone.stem[0].weight.grad is not None
    assert model.momentum_pairs == [(model.backbone, model.teacher_backbone)]
    with pytest.raises(ValueError, match="at least one student view"):
        model.training_loss(views[:1])


# ----------------------------------------------------------------------------------------------- MobileVOS
from reprzoo.losses import contrastive_distillation  # noqa: E402


def _naive_distillation(s, t, labels, temp):
    s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    n, total = s.shape[0], 0.0
    for i in range(n):
        denom = sum(math.exp(float(s[i] @ t[j]) / temp) for j in range(n))
        pos = [p for p in range(n) if p == i or (labels is not None and labels[i] >= 0 and labels[p] == labels[i])]
        total += -sum(math.log(math.exp(float(s[i] @ t[p]) / temp) / denom) for p in pos) / len(pos)
    return total / n


def test_contrastive_distillation_matches_loop():
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    for labels in (None, torch.tensor([0, 1, 0, -1, 1, 2])):
        expected = _naive_distillation(s, t, labels, 0.1)
        assert contrastive_distillation(s, t, labels, 0.1) == pytest.approx(expected, abs=1e-4)


def test_contrastive_distillation_gradient_and_checks():
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    contrastive_distillation(s, t, torch.tensor([0, 0, 1, 1])).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="of one shape"):
        contrastive_distillation(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="labels must be"):
        contrastive_distillation(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be positive"):
        contrastive_distillation(torch.randn(4, 3), torch.randn(4, 3), temperature=0)


def _tiny_mobilevos(**kwargs):
    from reprzoo.lightning_modules import MobileVOS

    return MobileVOS(backbone="resnet_tiny_cifar", teacher_backbone="resnet_tiny_cifar", num_classes=10, **kwargs)


def test_mobilevos_teacher_loads_safetensors_and_stays_frozen(tmp_path):
    from safetensors.torch import save_file

    from reprzoo.backbones import build_backbone

    source = build_backbone("resnet_tiny_cifar")
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = _tiny_mobilevos(teacher_weights=str(path)).train()
    assert not model.teacher.training and not any(p.requires_grad for p in model.teacher.parameters())
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.teacher.state_dict().items())
    assert not any(name.startswith("teacher.") for g in model.param_groups() for name, _ in g["params"])
    with pytest.raises(ValueError, match="resolved by the reprzoo CLI"):
        _tiny_mobilevos(teacher_weights="zoo:simsiam-tinyresnet-digits")
    with pytest.raises(ValueError, match="level must be"):
        _tiny_mobilevos(level="patch")


@pytest.mark.parametrize("level", ["embedding", "pixel"])
def test_mobilevos_levels_and_task_loss(level):
    model = _tiny_mobilevos(level=level, task_weight=0.5, pixels_per_image=4)
    labels = torch.tensor([0, 1, 0, -1])
    out = model.training_loss([torch.randn(4, 3, 32, 32)], labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.features.shape == (4, 128)
    assert model.task_head.weight.grad is not None and model.backbone.stem[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_sample_pixels_picks_locations():
    from reprzoo.lightning_modules.vision_ssl.distillation import sample_pixels

    maps, picks = torch.randn(2, 3, 4, 5), torch.tensor([[0, 7], [19, 3]])
    out = sample_pixels(maps, picks)
    assert torch.equal(out[1], maps[0, :, 1, 2]) and torch.equal(out[2], maps[1, :, 3, 4]) and out.shape == (4, 3)


def test_zoo_teacher_resolves_to_the_models_backbone(tmp_path, monkeypatch):
    import reprzoo
    from reprzoo.cli.training import cli_main
    from reprzoo.errors import ReprzooError
    from reprzoo.zoo import teacher_weights

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    path = teacher_weights("simsiam-tinyresnet-digits")
    assert path.is_file() and path.suffix == ".safetensors" and path.is_relative_to(tmp_path / "home")
    with pytest.raises(ReprzooError, match="is a resnet_tiny_cifar"):
        teacher_weights("simsiam-tinyresnet-digits", backbone="resnet18_cifar")
    args = ["--config", "digits/mobilevos", "--model.init_args.teacher_weights", "zoo:simsiam-tinyresnet-digits"]
    cli = cli_main(args, run=False)
    assert cli.model.hparams.teacher_weights == str(path)
    reference = reprzoo.load("simsiam-tinyresnet-digits")
    encoder_state = reference.encoder.state_dict()
    for key, value in cli.model.teacher.state_dict().items():
        assert torch.equal(value, encoder_state[key]), key


def test_ema_updates_once_per_optimiser_step_under_gradient_accumulation(tmp_path, monkeypatch):
    """With ``accumulate_grad_batches=2`` the targets move once per optimiser step, with the same tau schedule as
    ``k=1`` on half as many (doubled) batches: not tau^k per step."""
    import lightning as L

    import reprzoo.lightning_modules.base as base
    from tests.test_methods import build_from_recipe

    def taus(accumulate: int, batches: int, batch_size: int) -> list[float]:
        calls: list[float] = []
        monkeypatch.setattr(base, "ema_update", lambda target, online, tau: calls.append(tau))
        model, data, _ = build_from_recipe("BYOL", batch_size=batch_size)
        L.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_train_batches=batches,
            accumulate_grad_batches=accumulate,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(tmp_path),
        ).fit(model, datamodule=data)
        pairs = len(model.momentum_pairs)
        return calls[::pairs]

    accumulated, doubled = taus(2, 4, 16), taus(1, 2, 32)
    assert len(accumulated) == 2 and accumulated == doubled


def test_a_zoo_teacher_is_the_representation_the_model_was_measured_with(tmp_path, monkeypatch, tiny_trainer_kwargs):
    """``zoo:NAME`` as a distillation teacher gives NAME's encoder: a DINO model's teacher backbone (not its
    student), and a model whose representation is more than a backbone (CoReS: + embedding layer) is refused.
    The cached file is named by the weights' hash, not by anything the hub's config says."""
    import lightning as L
    from safetensors.torch import load_file

    import reprzoo
    from reprzoo.errors import ReprzooError
    from reprzoo.zoo import teacher_weights
    from reprzoo.zoo.api import push
    from tests.test_methods import build_from_recipe, write_run

    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "home"))
    for method in ("DINO", "CoReS"):
        model, data, recipe = build_from_recipe(method)
        trainer = L.Trainer(**{**tiny_trainer_kwargs, "limit_val_batches": 0})
        trainer.fit(model, datamodule=data)
        push(write_run(tmp_path / method, trainer, model, recipe), f"{method.lower()}-tinyresnet-digits.teacher")
    path = teacher_weights("dino-tinyresnet-digits.teacher")
    assert path.parent == tmp_path / "home" / "teachers" and path.name.startswith("teacher-")
    stored = load_file(str(path))
    dino = reprzoo.load_method("dino-tinyresnet-digits.teacher")
    assert stored.keys() == dino.teacher_backbone.state_dict().keys()
    for key, value in dino.teacher_backbone.state_dict().items():
        assert torch.equal(stored[key], value), key
    student = dino.backbone.state_dict()
    assert any(not torch.equal(stored[k], v) for k, v in student.items() if v.is_floating_point())  # not the student
    with pytest.raises(ReprzooError, match="more than a resnet_tiny_cifar backbone"):
        teacher_weights("cores-tinyresnet-digits.teacher")
