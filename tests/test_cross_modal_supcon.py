"""The label-guided cross-modal SupCon loss against a loop re-derivation and pytorch-metric-learning's SupConLoss, and
the LabelGuidedSupCon method training a few steps on captioned emoji."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from reprzoo.losses.cross_modal_supcon import label_guided_supcon


def loop_label_guided_supcon(image, text, image_labels, text_labels, temperature):
    """The loss written out item by item: for each anchor (image or caption), every other item of its label in either
    modality is a positive; the denominator sums over every other item of both modalities."""
    items = [(F.normalize(v, dim=0), int(y)) for v, y in zip(image, image_labels)]
    items += [(F.normalize(v, dim=0), int(y)) for v, y in zip(text, text_labels)]
    losses = []
    for i, (z_i, y_i) in enumerate(items):
        if y_i < 0:
            continue
        others = [(z, y) for j, (z, y) in enumerate(items) if j != i]
        denominator = sum(torch.exp(torch.dot(z_i, z) / temperature) for z, _ in others)
        positives = [z for z, y in others if y == y_i]
        if not positives:
            continue
        terms = [torch.log(torch.exp(torch.dot(z_i, z_p) / temperature) / denominator) for z_p in positives]
        losses.append(-sum(terms) / len(terms))
    return sum(losses) / len(losses)


def test_matches_a_loop_over_anchors_with_unlabelled_and_lonely_items():
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(6, 5, generator=g), torch.randn(4, 5, generator=g)
    image_labels = torch.tensor([0, 1, 0, 2, -1, 3])  # 3 has no positive anywhere; -1 is never an anchor
    text_labels = torch.tensor([1, 2, -1, 0])
    for temperature in (0.1, 0.5):
        got = label_guided_supcon(image, text, image_labels, text_labels, temperature)
        expected = loop_label_guided_supcon(image, text, image_labels, text_labels, temperature)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_gradients_match_the_loop():
    g = torch.Generator().manual_seed(1)
    image = torch.randn(5, 4, generator=g, requires_grad=True)
    text = torch.randn(5, 4, generator=g, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1, 2])
    got = torch.autograd.grad(label_guided_supcon(image, text, labels, temperature=0.2), (image, text))
    expected = torch.autograd.grad(loop_label_guided_supcon(image, text, labels, labels, 0.2), (image, text))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("views", [1, 2])
def test_is_pml_supcon_on_images_and_captions_concatenated(views):
    """PML's SupConLoss (Khosla et al.'s L^sup_out, cosine similarity, anchors without positives left out) on
    ``[image views; captions]`` with the labels repeated is the same loss."""
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 5, (12,), generator=g)
    image = torch.randn(views * 12, 16, generator=g)
    text = torch.randn(12, 16, generator=g)
    got = label_guided_supcon(image, text, labels.repeat(views), labels, temperature=0.1)
    expected = losses.SupConLoss(temperature=0.1)(torch.cat([image, text]), torch.cat([labels.repeat(views), labels]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_cross_modal_positives_pull_captions_to_their_class():
    """Captions placed on their images' class direction give a lower loss than the same captions swapped between
    classes: captions are positives of the images of their label (inter-modal), not only of each other."""
    image = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    aligned = label_guided_supcon(image, image.clone(), labels, temperature=0.1)
    swapped = label_guided_supcon(image, image.flip(0), labels, temperature=0.1)
    assert aligned < swapped - 1.0


def test_argument_checks():
    x, y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="share a space"):
        label_guided_supcon(x, torch.randn(4, 2), y)
    with pytest.raises(ValueError, match="pass text_labels"):
        label_guided_supcon(x, torch.randn(3, 3), y)
    with pytest.raises(ValueError, match="one label per item"):
        label_guided_supcon(x, x, y[:3], y)
    with pytest.raises(ValueError, match="batch, dim"):
        label_guided_supcon(x[0], x, y)
    with pytest.raises(ValueError, match="temperature"):
        label_guided_supcon(x, x, y, temperature=0.0)
    assert label_guided_supcon(x, x, torch.arange(4) * 0 - 1) == 0.0  # no labelled anchor: zero


def _recipe_model(**overrides):
    import yaml

    from reprzoo.datamodules.emoji import Emoji
    from reprzoo.lightning_modules import LabelGuidedSupCon
    from reprzoo.zoo.recipes import resolve_recipe

    recipe = yaml.safe_load(resolve_recipe("emoji/labelguidedsupcon").read_text())
    data = Emoji(**{**recipe["data"]["init_args"], "batch_size": 32})
    args = {**data.model_args(), **recipe["model"]["init_args"], **overrides}
    return LabelGuidedSupCon(num_classes=data.num_classes, **args), data


def test_trains_a_few_steps_on_captioned_emoji(tiny_trainer_kwargs):
    model, data = _recipe_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = L.Trainer(**tiny_trainer_kwargs)
    trainer.fit(model, datamodule=data)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert "val/knn_top1" in trainer.callback_metrics
    after = model.state_dict()
    for prefix in ("backbone.", "text_backbone.", "image_projection.", "text_projection."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix)), f"{prefix} did not train"
    # the exported representation is the image tower's backbone features
    x = next(iter(data.val_dataloader()[-1]))[0][:4]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), model.backbone(x))
        assert model.embed_text(data.encode(["grinning face"])).shape == (1, model.hparams.projection_dim)


def test_refuses_batches_without_captions(tiny_trainer_kwargs):
    from reprzoo.datamodules.emoji import Emoji
    from reprzoo.lightning_modules.metric_supervised.label_guided_supcon import MissingCaptionsError

    model, _ = _recipe_model()
    with pytest.raises(MissingCaptionsError, match="captions"):
        L.Trainer(**tiny_trainer_kwargs).fit(model, datamodule=Emoji(batch_size=32))
    with pytest.raises(MissingCaptionsError, match="vocab_size"):
        _recipe_model(vocab_size=None)
