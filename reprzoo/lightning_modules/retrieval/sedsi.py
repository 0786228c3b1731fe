"""SE-DSI: "Semantic-Enhanced Differentiable Search Index Inspired by Learning Strategies" (Tang, Zhang, Guo, Chen,
Zhu, Wang, Yin & Cheng, KDD 2023, arXiv:2305.15115).

A Differentiable Search Index (Tay et al., 2022) is one seq2seq model that *is* the index: trained to write a
document's identifier from the document's text (indexing) and from a query (retrieval), it retrieves by decoding
docids, constrained to the valid ones by a prefix trie. SE-DSI's two additions, from learning strategies:

- elaboration: docids that mean something, so that similar documents share a prefix (here DSI's semantically
  structured identifiers: hierarchical k-means of the documents' embeddings, ``k`` clusters a level, leaves of at
  most ``leaf_size`` documents numbered in order; :func:`hierarchical_docids`);
- rehearsal: fine-grained contents of each document (its key sentences) as extra indexing inputs next to the whole
  document, so the model memorises the association from several views of the document.

What it measures with, and what it exports, is the ranked docid list of constrained beam search. The exported
``encoder()`` is a :class:`~reprzoo.components.retrieval.DualEncoder` over the indexed docid *slots* (one per indexed
document, ``num_docs`` of them, ``representation_kind = "sparse"``, ``retrieval_similarity = "dot"``):

- the query tower decodes the query with constrained beam search (``beam_size`` beams) and returns a ``(B,
  num_docs)`` score matrix: ``P(docid | query)`` for each docid the beam found (probabilities renormalised over the
  trie's valid continuations, so they sum to at most one), 0 for the docids the beam did not reach;
- the document tower is the index's lookup table: a document that was indexed is the one-hot vector of its docid's
  slot (found by its token ids), a document never indexed is all zeros, because a DSI cannot retrieve what it has
  not memorised.

So ``dot(query, document) = P(docid(document) | query)``: ranking by it is exactly ranking by beam-search
log-probability, which is how DSI ranks; ``reprzoo.load(name)`` reproduces the ranking, and an inverted index over
the slots serves it. The encoder's pooled output is not exported: nothing ranks documents by it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import torch
from torch import nn

from reprzoo.components.pooling import pool_tokens
from reprzoo.components.representation import Represent
from reprzoo.components.retrieval import DualEncoder
from reprzoo.lightning_modules.base import TrainingOutput
from reprzoo.lightning_modules.registry import register_method
from reprzoo.lightning_modules.text.base import TextEncoderModule
from reprzoo.losses.generative_retrieval import constrained_log_softmax, docid_sequence_loss

PAD, BOS, EOS, DIGITS = 0, 1, 2, 3  # docid token ids: digit d is the token DIGITS + d


# ----------------------------------------------------------------------------- docids
def hierarchical_docids(embeddings: np.ndarray, k: int = 10, leaf_size: int = 100, seed: int = 0) -> list[list[int]]:
    """DSI's semantic identifiers: k-means of the documents into ``k`` clusters, recursively until a cluster has at
    most ``leaf_size`` documents, whose members are then numbered; a docid is the path of cluster numbers then the
    position (digits, without the end token). Documents that k-means cannot separate (duplicates) are split in
    order into ``k`` chunks."""
    from sklearn.cluster import KMeans

    if k < 2 or leaf_size < 1:
        raise ValueError(f"need k >= 2 and leaf_size >= 1, got k={k}, leaf_size={leaf_size}")
    docids: list[list[int]] = [[] for _ in range(len(embeddings))]

    def split(members: np.ndarray, prefix: list[int]) -> None:
        if len(members) <= leaf_size:
            for position, m in enumerate(members):
                docids[m] = prefix + [position]
            return
        labels = KMeans(k, n_init=1, random_state=seed).fit_predict(embeddings[members])
        if len(np.unique(labels)) < 2:  # identical points: chunk them in order
            labels = np.arange(len(members)) * k // len(members)
        for c in range(k):
            if (labels == c).any():
                split(members[labels == c], prefix + [c])

    split(np.arange(len(embeddings)), [])
    return docids


def document_key(ids: list[int]) -> int:
    """A 63-bit key of a document's token ids (padding removed): how the index's lookup table finds a document."""
    digest = hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def batch_keys(batch: dict[str, torch.Tensor]) -> list[int]:
    ids, mask = batch["input_ids"], batch.get("attention_mask")
    mask = ids.ne(0) if mask is None else mask.bool()
    return [document_key(row[m].tolist()) for row, m in zip(ids.cpu(), mask.cpu())]


class DocidTrie:
    """The valid docids as a prefix tree: ``allowed(prefix)`` lists the tokens that continue ``prefix`` (a tuple
    starting with BOS) to a valid docid; after EOS only PAD (free) follows."""

    def __init__(self, docids: torch.Tensor):
        self.children: dict[tuple[int, ...], set[int]] = {}
        self.slot: dict[tuple[int, ...], int] = {}
        for i, row in enumerate(docids.tolist()):
            seq = [BOS] + [t for t in row if t != PAD]
            for t in range(1, len(seq)):
                self.children.setdefault(tuple(seq[:t]), set()).add(seq[t])
            self.slot.setdefault(tuple(seq[1:]), i)

    def allowed_mask(self, prefixes: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, vocab)`` allowed next tokens of ``(n, t)`` prefixes and ``(n,)`` finished flags (ended or dead)."""
        mask = torch.zeros(len(prefixes), vocab, dtype=torch.bool)
        finished = torch.zeros(len(prefixes), dtype=torch.bool)
        for i, row in enumerate(prefixes.tolist()):
            nxt = self.children.get(tuple(t for t in row if t != PAD))  # an ended docid has no children
            if nxt is None:
                finished[i] = True
                mask[i, PAD] = True
            else:
                mask[i, list(nxt)] = True
        return mask, finished


# ----------------------------------------------------------------------------- the seq2seq model
class DocidDecoder(nn.Module):
    """A Transformer decoder over docid tokens, cross-attending to the text encoder's token states."""

    def __init__(self, hidden: int, vocab: int, max_length: int, layers: int = 2, heads: int = 2, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden, padding_idx=PAD)
        self.position = nn.Embedding(max_length + 1, hidden)
        layer = nn.TransformerDecoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, prefix: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor) -> torch.Tensor:
        """``(n, t)`` decoder inputs -> ``(n, t, vocab)`` next-token logits."""
        t = prefix.shape[1]
        h = self.embed(prefix) + self.position(torch.arange(t, device=prefix.device))
        causal = torch.triu(torch.full((t, t), float("-inf"), device=prefix.device), diagonal=1)
        return self.head(self.decoder(h, memory, tgt_mask=causal, memory_key_padding_mask=memory_padding))


def constrained_beam_search(step, trie: DocidTrie, batch: int, beam: int, steps: int, vocab: int, device=None):
    """Beam search over the trie's docids. ``step(prefixes (batch * k, t), k) -> (batch * k, vocab)`` next-token
    logits. Returns ``(batch, beam, steps + 1)`` sequences (BOS first) and their ``(batch, beam)`` log-probabilities
    (``-inf`` for empty beams): the highest-scoring valid docids found, best first."""
    prefixes = torch.full((batch, 1, 1), BOS, dtype=torch.long, device=device)
    scores = torch.zeros(batch, 1, device=device)
    for _ in range(steps):
        k = prefixes.shape[1]
        flat = prefixes.reshape(batch * k, -1)
        allowed, finished = trie.allowed_mask(flat.cpu(), vocab)
        allowed, finished = allowed.to(flat.device), finished.to(flat.device)
        logp = constrained_log_softmax(step(flat, k).float(), allowed)
        logp[finished] = torch.where(allowed[finished], 0.0, float("-inf"))  # ended (or dead) beams pad for free
        total = (scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        scores, best = total.topk(min(beam, k * vocab), dim=1)
        origin, token = best // vocab, best % vocab
        prefixes = torch.cat([prefixes.gather(1, origin[..., None].expand(-1, -1, flat.shape[1])), token[..., None]], -1)
    return prefixes, scores


def docid_log_probs(step, trie: DocidTrie, docids: torch.Tensor, vocab: int) -> torch.Tensor:
    """Brute force: the constrained log-probability of every docid ``(num_docs, t)`` for one input, token by token
    (teacher forcing). ``step(prefixes (n, t), n) -> (n, vocab)``."""
    targets = torch.cat([docids, torch.full((len(docids), 1), PAD, dtype=torch.long)], 1)
    total = torch.zeros(len(docids))
    prefix = torch.full((len(docids), 1), BOS, dtype=torch.long)
    for t in range(targets.shape[1]):
        allowed, finished = trie.allowed_mask(prefix, vocab)
        logp = constrained_log_softmax(step(prefix, len(docids)).float(), allowed)
        gained = logp.gather(1, targets[:, t : t + 1]).squeeze(1)
        total = total + torch.where(finished, torch.zeros_like(gained), gained)
        prefix = torch.cat([prefix, targets[:, t : t + 1]], 1)
    return total


# ----------------------------------------------------------------------------- the method
@register_method(
    title="Semantic-Enhanced Differentiable Search Index Inspired by Learning Strategies",
    wing="text-and-retrieval",
    modality="text",
    arxiv="2305.15115",
)
class SEDSI(TextEncoderModule):
    """SE-DSI: a text encoder (the backbone) and a docid decoder trained on document -> docid and key sentence ->
    docid (indexing, every document of the corpus: the training and the held-out ones, as a DSI indexes its whole
    corpus) and query -> docid (retrieval, the training queries only), with semantic hierarchical docids. Retrieval
    decodes with constrained beam search; see the module docstring for the exported representation.

    Ours:
        - Semantic docids from hierarchical k-means (DSI's structured identifiers, ``k`` 10, leaves of 100) instead
          of SE-DSI's Elaborative Descriptions (pseudo-queries from a pretrained DocT5Query: there is no pretrained
          query generator offline). The documents are embedded for the k-means by TF-IDF + truncated SVD (LSA,
          ``cluster_dim``) of their texts (DSI used BERT embeddings; there are no pretrained ones here).
        - Rehearsal contents: the document's ``rehearsal_sentences`` sentences closest to the whole document by
          TF-IDF cosine (a centrality selection), each an indexing input of its own; the paper's selection of
          passages and sentences is approximated by this.
        - A small encoder-decoder from scratch: ``bert_tiny`` as the encoder and a 2-layer Transformer decoder over
          docid tokens (paper: T5-base, pretrained). ``indexing_batch`` indexing inputs drawn from the corpus per
          step next to the batch's own documents and queries (the paper mixes the two tasks in its data).
        - The exported query scores are probabilities over the beam's docids (0 beyond the beam): Recall@100 is
          bounded by ``beam_size``.
        - The index is built from the datamodule at ``setup`` (TextPairs: every document of the source);
          ``num_docs`` is then recorded in the hyperparameters so that a pushed model rebuilds the same slots.

    Args:
        num_clusters: k of the hierarchical k-means.
        leaf_size: most documents in a leaf cluster.
        cluster_dim: LSA dimensions of the k-means embeddings.
        rehearsal_sentences: key sentences per document used as extra indexing inputs.
        indexing_batch: corpus items (documents and key sentences) indexed per training step.
        beam_size: beams of constrained decoding (docids scored per query).
        decoder_layers: layers of the docid decoder.
        decoder_heads: its attention heads.
        max_docid_length: longest docid in tokens, the end token included.
        num_docs: indexed documents (``None``: set from the data at setup).
        kwargs: :class:`~reprzoo.lightning_modules.text.base.TextEncoderModule` options (``vocab_size``, backbone).
    """

    retrieval_similarity = "dot"
    representation_kind = "sparse"

    def __init__(
        self,
        num_clusters: int = 10,
        leaf_size: int = 100,
        cluster_dim: int = 64,
        rehearsal_sentences: int = 2,
        indexing_batch: int = 32,
        beam_size: int = 20,
        decoder_layers: int = 2,
        decoder_heads: int = 2,
        max_docid_length: int = 8,
        num_docs: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.vocab = DIGITS + max(num_clusters, leaf_size)
        self.decoder = DocidDecoder(self.feature_dim, self.vocab, max_docid_length, decoder_layers, decoder_heads)
        n = int(num_docs or 0)
        self.register_buffer("docids", torch.zeros(n, max_docid_length, dtype=torch.long))
        self.register_buffer("doc_keys", torch.zeros(n, dtype=torch.long))
        self.register_buffer("indexed", torch.tensor(False))
        self._trie: DocidTrie | None = None
        self._slots: dict[int, int] | None = None
        self.corpus: list[torch.Tensor] = []  # token ids of the indexing inputs (documents, key sentences)
        self.corpus_slots: list[int] = []

    # ----------------------------------------------------------------- the index
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "pairs"):
            if not bool(self.indexed):
                raise ValueError("SEDSI indexes the documents of a TextPairs datamodule: train it with one")
            return
        documents = list(dict.fromkeys(d for _, d in dm.pairs()))  # every document of the corpus, once
        encoded = dm.encode(documents)
        keys = [document_key(ids[ids.ne(0)].tolist()) for ids in encoded]
        if not bool(self.indexed):
            self._build_index(documents, keys)
        slots = self.slots()
        if any(key not in slots for key in keys):
            raise ValueError("the data holds documents this index never indexed: train a new SEDSI on it")
        doc_slots = [slots[key] for key in keys]
        sentences = [(s, slot) for doc, slot in zip(documents, doc_slots) for s in self._key_sentences(doc)]
        self.corpus = list(encoded) + list(dm.encode([s for s, _ in sentences]) if sentences else [])
        self.corpus_slots = doc_slots + [slot for _, slot in sentences]

    def _build_index(self, documents: list[str], keys: list[int]) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        hp = self.hparams
        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(documents)
        dim = max(1, min(hp.cluster_dim, tfidf.shape[1] - 1, len(documents) - 1))
        embeddings = normalize(TruncatedSVD(dim, random_state=0).fit_transform(tfidf))
        paths = hierarchical_docids(embeddings, hp.num_clusters, hp.leaf_size, seed=0)
        longest = max(len(p) for p in paths) + 1
        if longest > hp.max_docid_length:
            raise ValueError(f"docids need {longest} tokens, max_docid_length is {hp.max_docid_length}")
        if hp.num_docs is not None and hp.num_docs != len(documents):
            raise ValueError(f"num_docs={hp.num_docs} but the data has {len(documents)} documents")
        docids = torch.zeros(len(documents), hp.max_docid_length, dtype=torch.long)
        for i, path in enumerate(paths):
            docids[i, : len(path) + 1] = torch.tensor([DIGITS + d for d in path] + [EOS])
        device = self.docids.device
        self.docids, self.doc_keys = docids.to(device), torch.tensor(keys, dtype=torch.long, device=device)
        self.indexed = torch.tensor(True, device=device)
        self.hparams.num_docs = len(documents)  # recorded: a pushed model rebuilds the slots
        self._trie = self._slots = None

    def _key_sentences(self, document: str) -> list[str]:
        n = self.hparams.rehearsal_sentences
        sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", document) if len(s.split()) >= 4]
        if n <= 0 or len(sentences) <= 1:
            return []
        words = set(document.lower().split())
        overlap = [len(words & set(s.lower().split())) / (len(s.split()) ** 0.5) for s in sentences]
        order = sorted(range(len(sentences)), key=lambda i: -overlap[i])[:n]
        return [sentences[i] for i in sorted(order)]

    def docid_steps(self) -> int:
        """Tokens of the longest docid (its end token included): the decoding steps."""
        return max(1, int(self.docids.ne(PAD).sum(1).max())) if len(self.docids) else 1

    def trie(self) -> DocidTrie:
        if self._trie is None:
            self._trie = DocidTrie(self.docids.cpu())
        return self._trie

    def slots(self) -> dict[int, int]:
        if self._slots is None:
            self._slots = {}
            for i, key in enumerate(self.doc_keys.tolist()):
                self._slots.setdefault(key, i)
        return self._slots

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._trie = self._slots = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------- the two towers
    def memory(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.backbone.token_states(batch)
        ids, mask = self.backbone._inputs(batch)
        return states, mask.eq(0)

    def score_queries(self, batch) -> torch.Tensor:
        """``(B, num_docs)``: ``P(docid | query)`` of the docids constrained beam search finds, 0 elsewhere."""
        states, padding = self.memory(batch)

        def step(prefixes, k):
            return self.decoder(prefixes, states.repeat_interleave(k, 0), padding.repeat_interleave(k, 0))[:, -1]

        trie, slots = self.trie(), self.trie().slot
        hp = self.hparams
        seqs, logp = constrained_beam_search(
            step, trie, len(states), hp.beam_size, hp.max_docid_length, self.vocab, states.device
        )
        out = torch.zeros(len(states), len(self.docids), device=states.device)
        for b, (rows, scores) in enumerate(zip(seqs.tolist(), logp.tolist())):
            for row, score in zip(rows, scores):
                if score > float("-inf"):
                    slot = slots[tuple(t for t in row[1:] if t != PAD)]
                    out[b, slot] = max(float(np.exp(score)), 1e-30)
        return out

    def lookup_documents(self, batch) -> torch.Tensor:
        """``(B, num_docs)``: the one-hot slot of each indexed document; zeros for a document never indexed."""
        slots = self.slots()
        out = torch.zeros(len(batch["input_ids"]), len(self.docids), device=self.docids.device)
        for i, key in enumerate(batch_keys(batch)):
            if key in slots:
                out[i, slots[key]] = 1.0
        return out

    def encoder(self) -> nn.Module:
        n = len(self.docids)
        return DualEncoder(Represent(self, SEDSI.lookup_documents, n), Represent(self, SEDSI.score_queries, n))

    # ----------------------------------------------------------------- training
    def _docid_loss(self, batch, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced docid loss of a batch of texts, and their mean-pooled token states (monitoring)."""
        width = self.docid_steps()
        targets = self.docids[slots][:, :width]
        inputs = torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], 1)
        states, padding = self.memory(batch)
        loss = docid_sequence_loss(self.decoder(inputs, states, padding), targets, PAD)
        return loss, pool_tokens(states.detach(), (~padding).long(), "mean")

    def _corpus_batch(self, n: int, device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        picks = torch.randint(len(self.corpus), (n,)).tolist()
        items = [self.corpus[i] for i in picks]
        ids = torch.zeros(n, max(len(x) for x in items), dtype=torch.long)
        for i, x in enumerate(items):
            ids[i, : len(x)] = x
        batch = {"input_ids": ids.to(device), "attention_mask": ids.ne(0).long().to(device)}
        return batch, torch.tensor([self.corpus_slots[i] for i in picks], device=device)

    def training_loss(self, views, labels=None, indices=None) -> TrainingOutput:
        if not self.corpus:
            raise ValueError("SEDSI has no corpus to index: it is built at setup from a TextPairs datamodule")
        queries, documents = views[0], views[1]
        slots = self.slots()
        found = [(i, slots[k]) for i, k in enumerate(batch_keys(documents)) if k in slots]
        rows = torch.tensor([i for i, _ in found], device=self.device)
        targets = torch.tensor([s for _, s in found], device=self.device)
        pick = {key: v[rows] for key, v in queries.items() if isinstance(v, torch.Tensor)}
        retrieval, features = self._docid_loss(pick, targets)
        own = {key: v[rows] for key, v in documents.items() if isinstance(v, torch.Tensor)}
        extra, extra_slots = self._corpus_batch(self.hparams.indexing_batch, self.device)
        indexing = 0.5 * (self._docid_loss(own, targets)[0] + self._docid_loss(extra, extra_slots)[0])
        self.log("train/indexing_loss", indexing.detach())
        self.log("train/retrieval_loss", retrieval.detach())
        return TrainingOutput(retrieval + indexing, features=features)


__all__ = ["DocidDecoder", "DocidTrie", "SEDSI", "constrained_beam_search", "docid_log_probs", "hierarchical_docids"]
