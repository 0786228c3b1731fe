"""Cross-encoder methods (DSE, Trans-Encoder): the pair inputs (against the tokenizer's own pair template), the
cross-encoder and Siamese heads, the distillation losses (against loops and sentence-transformers' losses), and each
method's phases (which parameters a step trains, which pseudo-labels it uses)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from reprzoo.backbones.text import TransformerEncoder
from reprzoo.components.cross_encoder import CrossEncoder, SiamesePairHead, pair_inputs
from reprzoo.datamodules.text.sentences import pad_ids
from reprzoo.datamodules.text.tokenizers import train_tokenizer
from reprzoo.lightning_modules.text.cross_encoders import DSE, TransEncoder, epochs_done
from reprzoo.losses.distillation_text import cosine_regression_loss, dse_loss, logit_distillation_loss, soft_label_bce
from reprzoo.losses.text_contrastive import multiple_negatives_ranking_loss

TEXTS = [
    "the cat sat on the mat",
    "a dog barked at the postman all morning long",
    "birds fly south in winter",
    "rain",
    "a financial institution that accepts deposits and lends money",
    "sloping land beside a body of water",
] * 4


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, "wordpiece", 200)


def batch(tokenizer, texts):
    return pad_ids([torch.tensor(e.ids) for e in tokenizer.encode_batch(texts)])


# ----------------------------------------------------------------------------------------------- pair inputs
@pytest.mark.parametrize("max_length", [None, 12, 7])
def test_pair_inputs_match_the_tokenizers_pair_template(tokenizer, max_length):
    """``[CLS] a [SEP] b [SEP]`` with segments 0/1, truncated longest-first: what the tokenizer itself gives for
    the pair (Hugging Face's ``longest_first``)."""
    first, second = TEXTS[:6] + TEXTS[:2], TEXTS[1:7] + TEXTS[:2]  # the last two: equal lengths
    got = pair_inputs(batch(tokenizer, first), batch(tokenizer, second), max_length)
    tokenizer = train_tokenizer(TEXTS, "wordpiece", 200)
    if max_length:
        tokenizer.enable_truncation(max_length, strategy="longest_first")
    try:
        for i, encoding in enumerate(tokenizer.encode_batch(list(zip(first, second)))):
            n = len(encoding.ids)
            assert got["input_ids"][i, :n].tolist() == encoding.ids
            assert got["token_type_ids"][i, :n].tolist() == encoding.type_ids
            assert got["attention_mask"][i].tolist() == [1] * n + [0] * (got["input_ids"].shape[1] - n)
            assert got["input_ids"][i, n:].eq(0).all()
    finally:
        tokenizer.no_truncation()


def test_pair_inputs_check_their_arguments(tokenizer):
    a, a_one = batch(tokenizer, TEXTS[:3]), batch(tokenizer, TEXTS[:1])
    with pytest.raises(ValueError, match="differ in size"):
        pair_inputs(a, batch(tokenizer, TEXTS[:2]))
    with pytest.raises(ValueError, match="max_length must be >= 5"):
        pair_inputs(a, a, 4)
    with pytest.raises(ValueError, match=r"\[CLS\] and \[SEP\]"):
        pair_inputs({"input_ids": torch.tensor([[2, 0]]), "attention_mask": torch.tensor([[1, 0]])}, a_one)


# ----------------------------------------------------------------------------------------------- heads
def test_cross_encoder_scores_the_cls_state_of_the_joined_pair(tokenizer):
    torch.manual_seed(0)
    encoder = TransformerEncoder(tokenizer.get_vocab_size(), layers=1, hidden=16, heads=2, intermediate=32, max_length=32)
    model = CrossEncoder(encoder).eval()
    a, b = batch(tokenizer, TEXTS[:4]), batch(tokenizer, TEXTS[2:6])
    logits = model(a, b)
    inputs = pair_inputs(a, b, 32)
    states = encoder.model(**inputs).last_hidden_state
    torch.testing.assert_close(logits, states[:, 0] @ model.head.weight[0] + model.head.bias[0])
    # segment ids reach the model: swapping them changes the scores
    swapped = encoder.model(**{**inputs, "token_type_ids": 1 - inputs["token_type_ids"]}).last_hidden_state
    assert not torch.allclose(model.head(swapped[:, 0]).squeeze(-1), logits)
    assert set(map(id, encoder.parameters())) <= set(map(id, model.parameters()))  # shared, not copied
    with pytest.raises(ValueError, match="TransformerEncoder"):
        CrossEncoder(torch.nn.Linear(2, 2))


def test_siamese_pair_head_reads_u_v_product_and_difference():
    torch.manual_seed(0)
    u, v = torch.randn(5, 8), torch.randn(5, 8)
    head = SiamesePairHead(8, (16,), "concat")
    first, second = head.mlp[0], head.mlp[2]
    expected = torch.stack(
        [second(torch.relu(first(torch.cat([u[i], v[i], u[i] * v[i], (u[i] - v[i]).abs()])))).squeeze() for i in range(5)]
    )
    torch.testing.assert_close(head(u, v), expected)
    torch.testing.assert_close(SiamesePairHead(8, kind="dot")(u, v), torch.einsum("nd,nd->n", u, v))
    with pytest.raises(ValueError, match="concat' or 'dot"):
        SiamesePairHead(8, kind="bilinear")


# ----------------------------------------------------------------------------------------------- losses
def test_logit_distillation_is_the_authors_squared_error():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    loop = sum(sum((student[i, j] - teacher[i, j]) ** 2 for j in range(3)) for i in range(6)) / 6
    torch.testing.assert_close(logit_distillation_loss(student, teacher), loop)
    torch.testing.assert_close(logit_distillation_loss(student[:, 0], teacher[:, 0]), F.mse_loss(student[:, 0], teacher[:, 0]))
    with pytest.raises(ValueError, match="differ in shape"):
        logit_distillation_loss(student, teacher[:, :2])
    with pytest.raises(ValueError, match=r"\(n,\) or \(n, k\)"):
        logit_distillation_loss(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2))


def test_dse_loss_mixes_the_task_and_distillation_terms():
    torch.manual_seed(0)
    student, teacher = torch.randn(8), torch.randn(8)
    labels = torch.tensor([1.0, 0, 1, 0, 1, 0, 0, 1])
    bce = -sum(y * torch.log(torch.sigmoid(s)) + (1 - y) * torch.log(1 - torch.sigmoid(s)) for s, y in zip(student, labels)) / 8
    squared = sum((s - t) ** 2 for s, t in zip(student, teacher)) / 8
    for a in (0.0, 0.3, 0.5, 1.0):
        torch.testing.assert_close(dse_loss(student, teacher, labels, a), (1 - a) * bce + a * squared)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        dse_loss(student, teacher, labels, 1.5)
    with pytest.raises(ValueError, match="student logits and labels"):
        dse_loss(student, teacher, labels[:3])


def test_soft_label_bce_and_cosine_regression_against_formulas():
    torch.manual_seed(0)
    logits, targets = torch.randn(7), torch.rand(7)
    naive = -(targets * F.logsigmoid(logits) + (1 - targets) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(soft_label_bce(logits, targets), naive)
    with pytest.raises(ValueError, match=r"soft labels must lie in \[0, 1\]"):
        soft_label_bce(logits, targets - 1)
    u, v = torch.randn(7, 5), torch.randn(7, 5)
    cosines = torch.stack([u[i] @ v[i] / (u[i].norm() * v[i].norm()) for i in range(7)])
    torch.testing.assert_close(cosine_regression_loss(u, v, targets), ((cosines - targets) ** 2).mean())
    with pytest.raises(ValueError, match="one target a pair"):
        cosine_regression_loss(u, v, targets[:3])
    with pytest.raises(ValueError, match=r"two \(n, d\) embeddings"):
        cosine_regression_loss(u, v[:, :3], targets)


def test_cosine_regression_is_sentence_transformers_cosine_similarity_loss():
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    torch.manual_seed(0)
    u, v, targets = torch.randn(9, 6), torch.randn(9, 6), torch.rand(9)
    theirs = CosineSimilarityLoss(model=None).compute_loss_from_embeddings([u, v], targets)
    torch.testing.assert_close(cosine_regression_loss(u, v, targets), theirs)


def test_pair_losses_are_sentence_transformers_cross_encoder_losses(tokenizer, tmp_path):
    """sentence-transformers' cross-encoder ``MSELoss`` (one logit a pair: DSE's distillation term) and
    ``BinaryCrossEntropyLoss`` (Trans-Encoder's soft-label step) on a tiny local cross-encoder's logits."""
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MSELoss
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    specials = {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "mask_token": "[MASK]"}
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials).save_pretrained(tmp_path)
    model = STCrossEncoder(str(tmp_path), num_labels=1, device="cpu").eval()
    first, second, labels = TEXTS[:5], TEXTS[1:6], torch.tensor([0.1, 0.9, 0.5, 0.0, 1.0])
    with torch.no_grad():
        logits = model(model.preprocess(list(zip(first, second))))["scores"].view(-1)
        torch.testing.assert_close(MSELoss(model)([first, second], labels), logit_distillation_loss(logits, labels))
        torch.testing.assert_close(BinaryCrossEntropyLoss(model)([first, second], labels), soft_label_bce(logits, labels))


# ----------------------------------------------------------------------------------------------- methods
class _Fit:
    """A Trainer stand-in for ``epochs_done``: ``batches`` per epoch, no accumulation."""

    def __init__(self, batches: int):
        self.num_training_batches, self.accumulate_grad_batches = batches, 1


def _at_step(model, step: int, batches: int = 4, monkeypatch=None):
    model._trainer = _Fit(batches)
    model.log = lambda *args, **kwargs: None  # no Lightning loop to log to
    monkeypatch.setattr(type(model), "global_step", property(lambda self: step))


def _views(tokenizer):
    return [batch(tokenizer, TEXTS[:6]), batch(tokenizer, TEXTS[6:12][::-1])]


SMALL = {"backbone": "bert_tiny", "backbone_kwargs": {"max_length": 32, "hidden": 16, "heads": 2, "layers": 1}}


def _grads(module):
    return [p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()]


def test_dse_trains_the_teacher_then_only_the_student(tokenizer, monkeypatch):
    L.seed_everything(0)
    model = DSE(vocab_size=tokenizer.get_vocab_size(), teacher_epochs=0.5, negatives=2, **SMALL)
    views = _views(tokenizer)
    _at_step(model, 1, monkeypatch=monkeypatch)  # 0.25 epochs: the teacher's phase
    assert epochs_done(model) == 0.25
    model.training_loss(views).loss.backward()
    assert all(_grads(model.teacher)) and not any(_grads(model.backbone)) and not any(_grads(model.pair_head))
    model.zero_grad(set_to_none=True)
    _at_step(model, 2, monkeypatch=monkeypatch)  # 0.5 epochs: the student's
    out = model.training_loss(views)
    out.loss.backward()
    assert not any(_grads(model.teacher)) and all(_grads(model.pair_head)) and any(_grads(model.backbone))
    assert model.teacher.training  # labelling in eval mode left the teacher's mode as it was
    # the loss is dse_loss on the pairs (i, i) labelled 1 and (i, i + k) labelled 0
    queries, documents, labels = model.pairs(6)
    assert labels.tolist() == [1.0] * 6 + [0.0] * 12
    assert documents.tolist() == list(range(6)) + [1, 2, 3, 4, 5, 0] + [2, 3, 4, 5, 0, 1]
    model.eval()
    with torch.no_grad():
        q, d = views
        teacher = model.teacher({k: v[queries] for k, v in q.items()}, {k: v[documents] for k, v in d.items()})
        student = model.pair_head(model.backbone(q)[queries], model.backbone(d)[documents])
        torch.testing.assert_close(model.training_loss(views).loss, dse_loss(student, teacher, labels, 0.5))
    assert model.embed(q).shape == (6, 16)
    with pytest.raises(ValueError, match="negatives >= 1"):
        DSE(vocab_size=50, negatives=0, **SMALL)


def test_trans_encoder_alternates_forms_and_pseudo_labels(tokenizer, monkeypatch):
    L.seed_everything(0)
    model = TransEncoder(
        vocab_size=tokenizer.get_vocab_size(), simcse_epochs=0.5, cross_encoder_epochs=0.5, bi_encoder_epochs=1.0, **SMALL
    )
    assert model.cross_encoder.encoder is model.backbone  # one transformer, two forms
    views = _views(tokenizer)
    phases = []
    for step in range(10):  # 4 batches an epoch: 2 SimCSE steps, then cycles of 2 cross steps and 4 bi steps
        _at_step(model, step, monkeypatch=monkeypatch)
        phases.append(model.phase())
    assert phases == ["simcse"] * 2 + ["cross"] * 2 + ["bi"] * 4 + ["cross"] * 2

    _at_step(model, 0, monkeypatch=monkeypatch)
    model.training_loss(views).loss.backward()  # SimCSE: the bi-encoder alone
    assert not any(_grads(model.cross_encoder.head)) and any(_grads(model.backbone))
    model.zero_grad(set_to_none=True)
    model.hparams.simcse_epochs = 0.0  # from here on: the cycles

    _at_step(model, 0, monkeypatch=monkeypatch)
    model.training_loss(views).loss.backward()  # (a): the cross-encoder (transformer + head) learns
    assert all(_grads(model.cross_encoder.head)) and any(_grads(model.backbone))
    labeller = model.labeller("cross")  # a frozen copy of the bi-encoder
    assert labeller is not model.backbone and not any(p.requires_grad for p in labeller.parameters())
    with torch.no_grad():  # the frozen copy still holds the weights of the phase's start
        for p in model.backbone.parameters():
            p.add_(1.0)
    assert model.labeller("cross") is labeller
    torch.testing.assert_close(next(labeller.parameters()) + 1.0, next(model.backbone.parameters()))

    model.zero_grad(set_to_none=True)
    _at_step(model, 2, monkeypatch=monkeypatch)
    assert model.labeller("bi") is not labeller  # a new phase: a new snapshot, of the current weights
    torch.testing.assert_close(next(model.labeller("bi").encoder.parameters()), next(model.backbone.parameters()))
    model.training_loss(views).loss.backward()  # (b): only the bi-encoder learns
    assert not any(_grads(model.cross_encoder.head)) and any(_grads(model.backbone))
    with pytest.raises(ValueError, match="positive lengths"):
        TransEncoder(vocab_size=50, cross_encoder_epochs=0, **SMALL)


def test_trans_encoder_targets_are_the_other_forms_scores(tokenizer, monkeypatch):
    """SimCSE is in-batch ranking of each text's dropout copies; step (a) regresses the frozen bi-encoder's clipped
    cosines, step (b) the frozen cross-encoder's sigmoid."""
    L.seed_everything(0)
    model = TransEncoder(
        vocab_size=tokenizer.get_vocab_size(), simcse_epochs=0, cross_encoder_epochs=1.0, bi_encoder_epochs=1.0,
        both_orders=False,
        shuffled_pairs=False, backbone_kwargs={**SMALL["backbone_kwargs"], "dropout": 0.0}, backbone="bert_tiny",
    )  # fmt: skip
    model.cross_encoder.dropout.p = 0.0
    a, b = _views(tokenizer)
    _at_step(model, 0, monkeypatch=monkeypatch)
    with torch.no_grad():
        model.hparams.simcse_epochs = 1.0
        u, v = model.backbone(a), model.backbone(b)  # no dropout: each copy is the text's own embedding
        expected = (multiple_negatives_ranking_loss(u, u) + multiple_negatives_ranking_loss(v, v)) / 2
        torch.testing.assert_close(model.training_loss([a, b]).loss, expected)
        model.hparams.simcse_epochs = 0.0
        cosines = F.cosine_similarity(model.backbone(a), model.backbone(b)).clamp(0, 1)
        torch.testing.assert_close(model.training_loss([a, b]).loss, soft_label_bce(model.cross_encoder(a, b), cosines))
        _at_step(model, 4, monkeypatch=monkeypatch)
        scores = torch.sigmoid(model.cross_encoder(a, b))
        expected = cosine_regression_loss(model.backbone(a), model.backbone(b), scores)
        torch.testing.assert_close(model.training_loss([a, b]).loss, expected)


def test_trans_encoder_with_separate_transformers_passes_only_pseudo_labels(tokenizer, monkeypatch):
    L.seed_everything(0)
    model = TransEncoder(vocab_size=tokenizer.get_vocab_size(), simcse_epochs=0, shared=False, **SMALL)
    assert model.cross_encoder.encoder is not model.backbone
    _at_step(model, 0, monkeypatch=monkeypatch)
    model.training_loss(_views(tokenizer)).loss.backward()  # (a): the bi-encoder only labels
    assert all(_grads(model.cross_encoder)) and not any(_grads(model.backbone))
