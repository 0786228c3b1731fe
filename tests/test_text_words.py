"""The word-level text stack: vocabulary, window batches, word2vec's objectives (against loops), the word-vector
evaluators (against gensim's own ``evaluate_word_pairs`` / ``evaluate_word_analogies``) and the word2vec-format
export gensim reads."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprzoo.datamodules.text.vocab import Vocabulary
from reprzoo.datamodules.text.words import WindowBatches
from reprzoo.errors import ReprzooError
from reprzoo.losses.word2vec import full_softmax_loss, hierarchical_softmax_loss, huffman_tree, negative_sampling_loss
from reprzoo.metrics.text import analogy_accuracy, document_similarity_pearson, word_pair_spearman

SENTENCES = [["the", "cat", "sat", "on", "the", "mat"], ["the", "dog", "sat"], ["a", "cat", "and", "a", "dog"]]


# ----------------------------------------------------------------------------------------------- vocabulary
def test_vocabulary_counts_orders_and_prunes():
    vocab = Vocabulary.build(SENTENCES, min_count=2)
    assert vocab.words == ["the", "a", "cat", "dog", "sat"]  # by count, ties alphabetical
    assert vocab.counts.tolist() == [3, 2, 2, 2, 2]
    assert vocab.encode(["the", "mat", "dog"]) == [0, 3]
    assert Vocabulary.from_json(vocab.to_json()).words == vocab.words
    with pytest.raises(Exception, match="lower min_count"):
        Vocabulary.build(SENTENCES, min_count=10)


def test_subsampling_and_noise_follow_word2vec_formulas():
    counts = [1000, 100, 10, 1]
    vocab = Vocabulary(["a", "b", "c", "d"], counts)
    total, sample = sum(counts), 1e-2
    for c, p in zip(counts, vocab.keep_probabilities(sample)):  # word2vec.c: (sqrt(f/(s T)) + 1) (s T) / f
        ran = (math.sqrt(c / (sample * total)) + 1) * (sample * total) / c
        assert p == pytest.approx(min(ran, 1.0))
    noise = vocab.noise_distribution(0.75)
    expected = [c**0.75 / sum(x**0.75 for x in counts) for c in counts]
    assert noise.tolist() == pytest.approx(expected, rel=1e-5)


def test_window_batches_stay_in_their_sentence_and_window():
    tokens = np.arange(20)
    sentences = np.repeat([0, 1], 10)
    batches = WindowBatches(tokens, sentences, np.ones(20), window=3, batch_size=8, seed=1)
    views, labels, centres = batches[(0, 0)]
    batch = views[0]
    for row in range(8):
        c = int(batch["center"][row])
        for slot, ok in enumerate(batch["context_mask"][row].tolist()):
            offset = [-3, -2, -1, 1, 2, 3][slot]
            if ok:  # a real context word: same sentence, within the window, the right word
                assert int(batch["context"][row, slot]) == c + offset and (c + offset) // 10 == c // 10
    again = batches[(0, 0)][0][0]
    assert all(torch.equal(again[k], batch[k]) for k in batch)  # deterministic in (seed, epoch, batch)
    other = batches[(0, 1)][0][0]
    assert not torch.equal(other["center"], batch["center"])


def test_subsampling_drops_frequent_words_at_the_expected_rate():
    tokens = np.array([0] * 9000 + [1] * 1000)
    keep = np.array([0.2, 1.0])
    batches = WindowBatches(tokens, np.zeros(10000, dtype=int), keep, window=2, batch_size=100, seed=0)
    batches._stream(0)
    kept = np.bincount(batches._kept_tokens, minlength=2)
    assert kept[1] == 1000 and abs(kept[0] - 1800) < 150


# ----------------------------------------------------------------------------------------------- losses
def test_negative_sampling_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    h, pos, neg = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(4, 2, 3, generator=g)
    expected = 0.0
    for i in range(4):
        expected -= math.log(torch.sigmoid(h[i] @ pos[i]))
        for k in range(2):
            expected -= math.log(torch.sigmoid(-(h[i] @ neg[i, k])))
    assert negative_sampling_loss(h, pos, neg).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="shapes"):
        negative_sampling_loss(h, pos[:3], neg)


def test_hierarchical_softmax_loss_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    h, nodes = torch.randn(3, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    codes = torch.randint(0, 2, (3, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    expected = 0.0
    for i in range(3):
        for j in range(5):
            if mask[i, j]:  # word2vec.c: label 1 - code, f = sigmoid(h . node)
                f = torch.sigmoid(h[i] @ nodes[i, j]).item()
                expected -= math.log(f if codes[i, j] == 0 else 1 - f)
    assert hierarchical_softmax_loss(h, nodes, codes, mask).item() == pytest.approx(expected, rel=1e-5)


def test_full_softmax_loss_is_the_summed_cross_entropy():
    g = torch.Generator().manual_seed(2)
    h, w, t = torch.randn(5, 3, generator=g), torch.randn(7, 3, generator=g), torch.tensor([0, 6, 2, 2, 1])
    expected = -sum(torch.log_softmax(h[i] @ w.T, 0)[t[i]].item() for i in range(5))
    assert full_softmax_loss(h, w, t).item() == pytest.approx(expected, rel=1e-5)


def test_huffman_tree_is_an_optimal_prefix_code():
    counts = np.array([45, 13, 12, 16, 9, 5, 1, 1])
    points, codes, lengths = huffman_tree(counts)
    words = ["".join(map(str, codes[w, : lengths[w]])) for w in range(len(counts))]
    assert len(set(words)) == len(words)
    assert not any(a != b and b.startswith(a) for a in words for b in words)  # prefix-free
    heap = list(counts.tolist())  # the optimal cost: the sum of the merged weights (independent of tie-breaking)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    assert int((counts * lengths).sum()) == cost
    assert (points[:, 0] == len(counts) - 2).all()  # every path starts at the root
    # words sharing a prefix of codes share the inner nodes along it
    for a in range(len(counts)):
        for b in range(len(counts)):
            n = 0
            while n < min(lengths[a], lengths[b]) and codes[a, n] == codes[b, n]:
                n += 1
            assert (points[a, : n + 1] == points[b, : n + 1]).all() if n < min(lengths[a], lengths[b]) else True


# ----------------------------------------------------------------------------------------------- evaluators vs gensim
@pytest.fixture(scope="module")
def keyed_vectors():
    gensim = pytest.importorskip("gensim")
    from reprzoo.datamodules.text import corpora

    words = sorted(
        {w for a, b, _ in corpora.word_similarity("wordsim353") for w in (a, b)}
        | {w for q in corpora.analogies()[:3000] for w in q[1:]}
    )
    words = words[: len(words) - 40]  # some words unknown, as in any real vocabulary
    vectors = np.random.default_rng(0).normal(size=(len(words), 16)).astype(np.float32)
    kv = gensim.models.KeyedVectors(16)
    kv.add_vectors(words, vectors)
    return kv, words, vectors


def test_word_similarity_matches_gensim(keyed_vectors, tmp_path):
    from reprzoo.datamodules.text import corpora

    kv, words, vectors = keyed_vectors
    pairs = corpora.word_similarity("wordsim353")
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    pearson, spearman, oov = kv.evaluate_word_pairs(str(path), delimiter="\t", case_insensitive=False)
    ours_spearman, ours_pearson, ours_oov = word_pair_spearman(vectors, {w: i for i, w in enumerate(words)}, pairs)
    assert ours_spearman == pytest.approx(spearman.statistic, abs=1e-5)
    assert ours_pearson == pytest.approx(pearson.statistic, abs=1e-5)
    assert ours_oov * 100 == pytest.approx(oov, abs=1e-6)
    assert 0 < ours_oov < 1


def test_analogy_accuracy_matches_gensim(keyed_vectors, tmp_path):
    from reprzoo.datamodules.text import corpora

    kv, words, vectors = keyed_vectors
    questions = corpora.analogies()[:3000]
    path = tmp_path / "questions.txt"
    lines, section = [], None
    for sec, a, b, c, d in questions:
        if sec != section:
            lines.append(f": {sec}")
            section = sec
        lines.append(f"{a} {b} {c} {d}")
    path.write_text("\n".join(lines) + "\n")
    score, _ = kv.evaluate_word_analogies(str(path), restrict_vocab=len(words), case_insensitive=False)
    ours, coverage = analogy_accuracy(vectors, {w: i for i, w in enumerate(words)}, [q[1:] for q in questions], None)
    assert ours == pytest.approx(score, abs=1e-9)
    assert 0 < coverage < 1


def test_document_similarity_is_pearson_over_the_upper_triangle():
    g = np.random.default_rng(3)
    features, human = g.normal(size=(6, 4)), g.random((6, 6))
    human = (human + human.T) / 2
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    model = [unit[i] @ unit[j] for i, j in pairs]
    ref = np.corrcoef(model, [human[i, j] for i, j in pairs])[0, 1]
    assert document_similarity_pearson(features, human) == pytest.approx(ref, abs=1e-9)


def test_word_vectors_export_in_the_word2vec_format_gensim_reads(tmp_path):
    gensim = pytest.importorskip("gensim")
    from reprzoo.datamodules.text.preprocess import WordLookup
    from reprzoo.zoo.encoder import Encoder

    vocab = Vocabulary(["cat", "dog", "sat"], [3, 2, 1])
    table = torch.nn.Embedding(3, 4)
    encoder = Encoder(_Table(table), {"name": "w", "preprocessing": {"modality": "text"}}, tmp_path, "test", None, 4)
    encoder._tokenizer = WordLookup(vocab)
    path = encoder.save_word2vec_format(tmp_path / "vectors.txt")
    kv = gensim.models.KeyedVectors.load_word2vec_format(str(path))
    assert kv.index_to_key == vocab.words
    np.testing.assert_allclose(kv["dog"], table.weight[1].detach().numpy(), rtol=1e-5)
    got = encoder.encode(["dog", "cat sat"])
    torch.testing.assert_close(got[0], table.weight[1].detach())
    torch.testing.assert_close(got[1], table.weight[[0, 2]].mean(0).detach())
    with pytest.raises(ReprzooError, match="did you mean dog"):
        encoder.encode(["dgo"])
    with pytest.raises(ReprzooError, match="empty"):
        encoder.encode([""])


class _Table(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        from reprzoo.backbones.embeddings import EmbeddingTable

        self.inner = EmbeddingTable(table.num_embeddings, table.embedding_dim)
        self.inner.embedding = table

    def forward(self, x):
        return self.inner(x)


def test_cbow_hidden_is_the_mean_of_the_real_context_words():
    from reprzoo.lightning_modules.text.word2vec import Word2Vec

    model = Word2Vec(vocab_size=6, dim=4, architecture="cbow", sparse=False)
    batch = {
        "center": torch.tensor([0, 1]),
        "context": torch.tensor([[2, 3, 0, 0], [4, 0, 0, 5]]),
        "context_mask": torch.tensor([[True, True, False, False], [True, False, False, True]]),
    }
    hidden, targets = model.hidden_and_targets(batch)
    w = model.word_vectors
    torch.testing.assert_close(hidden, torch.stack([w[[2, 3]].mean(0), w[[4, 5]].mean(0)]))
    assert targets.tolist() == [0, 1]
    skip = Word2Vec(vocab_size=6, dim=4, architecture="skipgram", sparse=False)
    hidden, targets = skip.hidden_and_targets(batch)
    assert targets.tolist() == [2, 3, 4, 5] and hidden.shape == (4, 4)
    torch.testing.assert_close(hidden[2], F.embedding(torch.tensor(1), skip.word_vectors))


def test_grouped_negative_sampling_is_the_expected_per_pair_loss():
    """With every word as a shared noise word, weighted k q_j, the grouped loss is the expectation of the paper's
    per-pair loss over its k draws from q (computed here by a loop over pairs and words)."""
    from reprzoo.losses.word2vec import grouped_negative_sampling_loss

    g = torch.Generator().manual_seed(4)
    vocab, d, k = 6, 3, 5
    out = torch.randn(vocab, d, generator=g)
    q = torch.rand(vocab, generator=g)
    q = q / q.sum()
    hidden = torch.randn(2, d, generator=g)
    targets = torch.tensor([[1, 2, 0], [3, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    expected = 0.0
    for c in range(2):
        for p in range(3):
            if mask[c, p]:
                expected -= math.log(torch.sigmoid(hidden[c] @ out[targets[c, p]]))
                expected -= k * sum(q[j] * math.log(torch.sigmoid(-(hidden[c] @ out[j]))) for j in range(vocab))
    got = grouped_negative_sampling_loss(hidden, out[targets], mask, out, k * q)
    assert got.item() == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="weights"):
        grouped_negative_sampling_loss(hidden, out[targets], mask, out, q[:3])


def _word2phrase_scorer(worda_count, wordb_count, bigram_count, len_vocab, min_count, corpus_word_count):
    """word2phrase.c's score, as a gensim scorer: scaled by the corpus' word count."""
    return (bigram_count - min_count) / (worda_count * wordb_count) * corpus_word_count


def test_phrases_match_gensim_with_the_authors_scorer():
    gensim = pytest.importorskip("gensim")
    from reprzoo.datamodules.text import corpora
    from reprzoo.datamodules.text.phrases import apply_phrases, learn_phrases

    sentences = [corpora.simple_tokenize(t) for t in corpora.lee_background()]
    ours = learn_phrases(sentences, min_count=5, threshold=100.0)
    theirs = gensim.models.Phrases(sentences, min_count=5, threshold=100.0, scoring=_word2phrase_scorer)
    assert len(ours) > 20  # real phrases of the Lee corpus
    assert ("new", "york") in ours or ("prime", "minister") in ours
    for sentence in sentences:
        assert apply_phrases(sentence, ours) == theirs[sentence]
