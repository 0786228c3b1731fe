"""The learned sparse retrievers (SPLADE, SPLADE v2, SPLADE++, uniCOIL, UHD): their towers, BM25 mining, the
FLOPS regulariser's effect on real pairs, and the training phases."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from reprzoo.datamodules import TextPairs
from reprzoo.lightning_modules import SPLADE, UHD, SPLADEPlusPlus, SPLADEv2, UniCOIL
from reprzoo.lightning_modules.retrieval.sparse import BinaryBag, mine_bm25_negatives
from tests.conftest import quiet_trainer_kwargs

TINY = {"backbone": "bert_tiny", "backbone_kwargs": {"max_length": 64}}


@pytest.fixture(scope="module")
def pairs():
    data = TextPairs(source="debian_descriptions", max_pairs=400, vocab_size=1000, max_length=64, batch_size=16)
    data.setup()
    return data


def first_batch(data):
    return next(iter(data.train_dataloader()))


def fit(model, data, steps: int, tmp_path):
    trainer = L.Trainer(**quiet_trainer_kwargs(tmp_path, limit_train_batches=steps, limit_val_batches=0))
    trainer.fit(model, datamodule=data)
    return trainer


def test_binary_bag_marks_the_query_terms_only():
    batch = {
        "input_ids": torch.tensor([[2, 7, 9, 7, 3, 0], [2, 5, 3, 0, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]),
    }
    bag = BinaryBag(12)(batch)
    assert bag.shape == (2, 12)
    assert bag[0].nonzero().flatten().tolist() == [7, 9] and bag[1].nonzero().flatten().tolist() == [5]
    assert bag.max() == 1.0


def test_bm25_mining_skips_the_own_document_and_its_copies():
    documents = [[10, 11, 12], [10, 11, 12], [10, 13], [20, 21], [11, 12, 22]]
    queries = [[11, 12], [20], [13], [21], [22]]
    negatives = mine_bm25_negatives(queries, documents, depth=3)
    assert 0 not in negatives[0] and 1 not in negatives[0]  # its document and an exact copy of it
    assert negatives[0][0] == 4  # the other document sharing both query terms
    assert all(i not in row for i, row in enumerate(negatives))


@pytest.mark.parametrize("cls", [SPLADE, SPLADEv2, SPLADEPlusPlus, UniCOIL, UHD])
def test_representations_are_non_negative_and_vocabulary_sized(cls, pairs):
    torch.manual_seed(0)
    model = cls(vocab_size=pairs.model_args()["vocab_size"], **TINY).eval()
    (queries, documents), *_ = first_batch(pairs)
    with torch.no_grad():
        d, q = model.embed(documents), model.embed_query(queries)
    width = model.embedding_dim
    assert d.shape == (len(documents["input_ids"]), width) and q.shape[1] == width
    assert (d >= 0).all() and (q >= 0).all() and (d > 0).any()
    assert model.representation_kind == "sparse" and model.retrieval_similarity == "dot"


def test_unicoil_weights_only_the_text_terms_and_sums_repeats(pairs):
    torch.manual_seed(0)
    model = UniCOIL(vocab_size=pairs.model_args()["vocab_size"], **TINY).eval()
    batch = {"input_ids": torch.tensor([[2, 7, 9, 7, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        weights = torch.relu(model.impact(model.backbone.token_states(batch))).squeeze(-1)[0]
        got = model.embed(batch)[0]
    assert set(got.nonzero().flatten().tolist()) <= {7, 9}
    torch.testing.assert_close(got[7], weights[1] + weights[3])
    torch.testing.assert_close(got[9], weights[2])


def test_flops_makes_documents_sparser_on_debian_pairs(pairs, tmp_path):
    torch.manual_seed(0)
    options = dict(TINY, lr=0.02, warmup_epochs=0.0, lambda_warmup_steps=0, pooling="max")
    model = SPLADE(vocab_size=pairs.model_args()["vocab_size"], lambda_q=1.0, lambda_d=1.0, **options)
    free = copy.deepcopy(model)
    free.hparams.lambda_q = free.hparams.lambda_d = 0.0
    (_, documents), *_ = first_batch(pairs)

    def nonzeros(m) -> float:
        m.eval()
        with torch.no_grad():
            count = float((m.embed(documents) > 0).sum(1).float().mean())
        m.train()
        return count

    start = nonzeros(model)
    fit(model, pairs, 8, tmp_path / "flops")
    fit(free, pairs, 8, tmp_path / "free")
    sparse, dense = nonzeros(model), nonzeros(free)
    print(f"document non-zeros: {start:.0f} at init, {sparse:.0f} after 8 steps with FLOPS, {dense:.0f} without")
    assert sparse < 0.5 * start and sparse < dense


def test_splade_v2_document_only_queries_are_binary_bags_and_distillation_trains(pairs, tmp_path):
    torch.manual_seed(0)
    model = SPLADEv2(vocab_size=pairs.model_args()["vocab_size"], document_only=True, teacher_epochs=0.5, **TINY)
    teacher = copy.deepcopy(model.teacher.state_dict())
    trainer = fit(model, pairs, 4, tmp_path)
    (queries, _), *_ = first_batch(pairs)
    torch.testing.assert_close(model.embed_query(queries), BinaryBag(model.vocab_size)(queries))
    assert "train/margin_mse" in trainer.callback_metrics  # the student phase ran after the teacher's
    assert any(not torch.equal(v, teacher[k]) for k, v in model.teacher.state_dict().items())


def test_splade_plus_plus_runs_mlm_teacher_and_distillation_phases(pairs, tmp_path):
    torch.manual_seed(0)
    vocab = pairs.model_args()["vocab_size"]
    model = SPLADEPlusPlus(vocab_size=vocab, mlm_epochs=0.3, teacher_epochs=0.3, distillation="both", **TINY)
    phases = []
    original = model.training_loss

    def recording(views, labels=None, indices=None):
        phases.append(model.phase())
        return original(views, labels, indices)

    model.training_loss = recording
    pairs_batches = len(pairs.train_dataloader())
    trainer = fit(model, pairs, pairs_batches, tmp_path)
    assert phases[0] == "mlm" and "teacher" in phases and phases[-1] == "student"
    assert {"train/mlm_loss", "train/teacher_loss", "train/margin_mse", "train/kl"} <= set(trainer.callback_metrics)
    assert model.__dict__["_negatives"] is not None  # BM25 negatives were mined at fit start
    # an MLM-pretrained start from a saved state dict
    path = tmp_path / "mlm.pt"
    torch.save(model.state_dict(), path)
    started = SPLADEPlusPlus(vocab_size=vocab, mlm_checkpoint=str(path), **TINY)
    torch.testing.assert_close(started.mlm_head.bias, model.mlm_head.bias)
