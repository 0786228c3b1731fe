"""SE-DSI (arXiv:2305.15115): constrained beam search against brute-force scoring of every docid, the docid loss
against a loop, the semantic docids, and the exported towers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reprzoo.lightning_modules.retrieval.sedsi import (
    BOS,
    DIGITS,
    EOS,
    PAD,
    DocidDecoder,
    DocidTrie,
    constrained_beam_search,
    docid_log_probs,
    hierarchical_docids,
)
from reprzoo.losses.generative_retrieval import constrained_log_softmax, docid_sequence_loss


def tiny_index():
    paths = [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1, 0], [1, 1, 1], [2, 0]]  # variable depth, as k-means gives
    docids = torch.zeros(len(paths), 5, dtype=torch.long)
    for i, p in enumerate(paths):
        docids[i, : len(p) + 1] = torch.tensor([DIGITS + d for d in p] + [EOS])
    return docids


def test_docid_sequence_loss_equals_a_loop():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, dtype=torch.float64)
    targets = torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0], [3, 3, 3, 2]])
    terms = [-torch.log_softmax(logits[i, t], -1)[targets[i, t]] for i in range(3) for t in range(4) if targets[i, t] != PAD]
    torch.testing.assert_close(docid_sequence_loss(logits, targets), torch.stack(terms).mean())
    with pytest.raises(ValueError):
        docid_sequence_loss(logits, torch.zeros(3, 4, dtype=torch.long))


def test_constrained_log_softmax_renormalises_over_allowed_tokens():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    allowed = torch.tensor([[False, True, False, True]])
    out = constrained_log_softmax(logits, allowed)
    expected = torch.tensor(
        [-math.inf, 2 - math.log(math.exp(2) + math.exp(4)), -math.inf, 4 - math.log(math.exp(2) + math.exp(4))]
    )
    torch.testing.assert_close(out[0], expected)


def _tiny_step(seed=0):
    torch.manual_seed(seed)
    vocab, hidden = DIGITS + 3, 16
    decoder = DocidDecoder(hidden, vocab, max_length=5, layers=1, heads=2, dropout=0.0).eval()
    memory = torch.randn(2, 4, hidden)
    padding = torch.tensor([[False, False, True, True], [False, False, False, False]])

    def step_for(q):
        def step(prefixes, k):
            n = len(prefixes)
            return decoder(prefixes, memory[q : q + 1].expand(n, -1, -1), padding[q : q + 1].expand(n, -1))[:, -1]

        return step

    def batched(prefixes, k):
        return decoder(prefixes, memory.repeat_interleave(k, 0), padding.repeat_interleave(k, 0))[:, -1]

    return vocab, step_for, batched


@torch.no_grad()
def test_constrained_beam_search_matches_brute_force_scoring_of_every_docid():
    docids = tiny_index()
    trie = DocidTrie(docids)
    vocab, step_for, batched = _tiny_step()
    seqs, scores = constrained_beam_search(batched, trie, 2, beam=len(docids), steps=docids.shape[1], vocab=vocab)
    for q in range(2):
        brute = docid_log_probs(step_for(q), trie, docids, vocab)
        torch.testing.assert_close(brute.exp().sum(), torch.tensor(1.0))  # a distribution over the valid docids
        found = {trie.slot[tuple(t for t in row[1:] if t != PAD)]: s for row, s in zip(seqs[q].tolist(), scores[q].tolist())}
        assert sorted(found) == list(range(len(docids)))  # a beam as wide as the corpus finds every docid
        torch.testing.assert_close(torch.tensor([found[i] for i in range(len(docids))]), brute, rtol=1e-5, atol=1e-5)
        # a narrow beam: valid docids, scored exactly, best first; its best is the brute-force best here
        seqs3, scores3 = constrained_beam_search(step_for(q), trie, 1, beam=3, steps=docids.shape[1], vocab=vocab)
        slots3 = [trie.slot[tuple(t for t in row[1:] if t != PAD)] for row in seqs3[0].tolist()]
        torch.testing.assert_close(scores3[0], brute[slots3], rtol=1e-5, atol=1e-5)
        assert scores3[0].tolist() == sorted(scores3[0].tolist(), reverse=True)
        assert slots3[0] == int(brute.argmax())


def test_trie_allows_only_valid_continuations():
    trie = DocidTrie(tiny_index())
    prefixes = torch.tensor([[BOS, PAD, PAD], [BOS, DIGITS + 1, PAD], [BOS, DIGITS + 2, DIGITS + 0], [BOS, DIGITS + 0, EOS]])
    mask, finished = trie.allowed_mask(prefixes, DIGITS + 3)
    assert mask[0].nonzero().flatten().tolist() == [DIGITS, DIGITS + 1, DIGITS + 2]
    assert mask[1].nonzero().flatten().tolist() == [DIGITS, DIGITS + 1]
    assert mask[2].nonzero().flatten().tolist() == [EOS]
    assert finished.tolist() == [False, False, False, True] and mask[3].nonzero().flatten().tolist() == [PAD]


def test_hierarchical_docids_are_unique_and_share_prefixes_within_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 10
    points = np.concatenate([c + rng.normal(size=(20, 8)) for c in centres])
    paths = hierarchical_docids(points, k=3, leaf_size=10, seed=0)
    assert len({tuple(p) for p in paths}) == len(points)
    for group in range(3):  # the documents of one well-separated cluster share the first digit
        assert len({paths[i][0] for i in range(group * 20, group * 20 + 20)}) == 1
    duplicates = hierarchical_docids(np.ones((25, 4)), k=3, leaf_size=10)
    assert len({tuple(p) for p in duplicates}) == 25
