"""Sentence-embedding losses against sentence-transformers' implementations of the same losses."""

from __future__ import annotations

import pytest
import torch

from reprzoo.losses.text_contrastive import multiple_negatives_ranking_loss


class _Identity(torch.nn.Module):
    """A stand-in SentenceTransformer whose "sentence embedding" is the feature dict's tensor."""

    def forward(self, features):
        return {"sentence_embedding": features["x"]}


def test_mnrl_matches_sentence_transformers():
    st_losses = pytest.importorskip("sentence_transformers.losses")
    g = torch.Generator().manual_seed(0)
    queries, documents = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    negatives = torch.randn(6, 8, generator=g)
    theirs = st_losses.MultipleNegativesRankingLoss(_Identity(), scale=20.0)
    expected = theirs([{"x": queries}, {"x": documents}], labels=None)
    assert multiple_negatives_ranking_loss(queries, documents, 20.0).item() == pytest.approx(expected.item(), rel=1e-6)
    # hard negatives: sentence-transformers appends them as extra candidate documents, as ours takes them
    expected = theirs([{"x": queries}, {"x": documents}, {"x": negatives}], labels=None)
    ours = multiple_negatives_ranking_loss(queries, torch.cat([documents, negatives]), 20.0)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-6)


def test_mnrl_refuses_missing_positives():
    with pytest.raises(ValueError, match="positive per query"):
        multiple_negatives_ranking_loss(torch.zeros(4, 3), torch.zeros(3, 3))
