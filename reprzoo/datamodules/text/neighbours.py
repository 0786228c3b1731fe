"""Neighbour triplets from a graph embedding, for SciNCL-style training (``reprzoo.lightning_modules.retrieval.scincl``):
documents whose nodes are near in an embedding of a citation-like graph are positives, a controlled band of farther
ones hard negatives.

:class:`GraphNeighbours` uses the shipped Debian packages: the graph is their ``Depends`` relation (undirected,
within the corpus), embedded by DeepWalk (truncated random walks fed to gensim's skip-gram Word2Vec), and a
package's text is its synopsis and long description. Only the training packages enter the graph and the triplets;
evaluation is :class:`~reprzoo.datamodules.text.TextPairs`' ``debian_descriptions`` retrieval on the same held-out
packages (each held-out synopsis against every held-out description), so its numbers compare with the other
retrievers'.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from reprzoo.datamodules.text.sentences import TextPairs


def depends_edges(records: list[dict]) -> list[tuple[int, int]]:
    """Undirected edges ``(i, j)``, ``i < j``, between records whose ``depends`` names another record's package."""
    position = {r["package"]: i for i, r in enumerate(records)}
    edges = set()
    for i, record in enumerate(records):
        for name in record.get("depends") or ():
            j = position.get(name)
            if j is not None and j != i:
                edges.add((min(i, j), max(i, j)))
    return sorted(edges)


def citation_edges(records: list[dict], max_citers: int | None = None, tags: bool = False) -> tuple[int, list[tuple[int, int]]]:
    """The ``Depends`` graph as a citation graph over every package named, in the corpus or not: nodes ``0 ..
    len(records) - 1`` are the records, further nodes the depended-on packages outside the corpus (and, with
    ``tags``, the debtags), an undirected edge from each record to what it depends on (and to its tags). A target
    named by more than ``max_citers`` records (``libc6``, ``python3``: hubs that link everything) is left out.
    Returns ``(number of nodes, edges)``."""
    from collections import Counter

    cited = Counter(t for r in records for t in set(r.get("depends") or ()))
    if tags:
        cited.update(f"tag:{t}" for r in records for t in set(r.get("tags") or ()))
    node = {r["package"]: i for i, r in enumerate(records)}
    edges = set()
    for i, record in enumerate(records):
        targets = set(record.get("depends") or ()) | ({f"tag:{t}" for t in record.get("tags") or ()} if tags else set())
        for name in sorted(targets):
            if max_citers is not None and cited[name] > max_citers:
                continue
            j = node.setdefault(name, len(node))
            if j != i:
                edges.add((min(i, j), max(i, j)))
    return len(node), sorted(edges)


def deepwalk(
    num_nodes: int,
    edges: list[tuple[int, int]],
    dim: int = 64,
    walks_per_node: int = 10,
    walk_length: int = 20,
    window: int = 5,
    epochs: int = 5,
    seed: int = 0,
) -> tuple[list[int], np.ndarray]:
    """DeepWalk (Perozzi et al., 2014): uniform random walks from every node with an edge, embedded by skip-gram
    Word2Vec (gensim, one worker: deterministic for a seed). Returns the embedded nodes and their ``(n, dim)``
    vectors; nodes without an edge have no walk and no vector."""
    from gensim.models import Word2Vec

    adjacency: dict[int, list[int]] = {}
    for a, b in edges:
        adjacency.setdefault(a, []).append(b)
        adjacency.setdefault(b, []).append(a)
    nodes = sorted(adjacency)
    rng = random.Random(seed)
    walks = []
    for _ in range(walks_per_node):
        for start in rng.sample(nodes, len(nodes)):
            walk = [start]
            while len(walk) < walk_length:
                walk.append(rng.choice(adjacency[walk[-1]]))
            walks.append([str(n) for n in walk])
    model = Word2Vec(walks, vector_size=dim, window=window, min_count=1, sg=1, workers=1, seed=seed, epochs=epochs)
    return nodes, np.stack([model.wv[str(n)] for n in nodes])


def neighbour_ranks(vectors: np.ndarray) -> np.ndarray:
    """``(n, n - 1)``: for each node, the other nodes ordered by cosine similarity of their vectors, nearest first."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :-1]


class _Triplets(Dataset):
    """``[anchor, positive, negative]`` token ids of every embedded training document; the positive is drawn from
    its neighbours of ranks ``[0, positives)``, the negative from ranks ``[hard_from, hard_to)`` (or, with
    probability ``1 - hard_share``, any other document: an easy negative), afresh at each access. With
    ``documents``, the positive and the negative are those texts of the documents (the anchor stays ``ids``)."""

    def __init__(
        self,
        ids: list[torch.Tensor],
        ranks: np.ndarray,
        positives: int,
        band: tuple[int, int],
        hard_share: float,
        documents: list[torch.Tensor] | None = None,
        include_self: bool = False,
    ):
        self.ids, self.ranks, self.positives, self.band, self.hard_share = ids, ranks, positives, band, hard_share
        self.documents = ids if documents is None else documents
        if include_self:  # a node is its own nearest neighbour (distance 0): rank 0
            self.ranks = np.concatenate([np.arange(len(ranks))[:, None], ranks], axis=1)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        row = self.ranks[i]
        positive = row[int(torch.randint(self.positives, ()))]
        if float(torch.rand(())) < self.hard_share:
            negative = row[int(torch.randint(self.band[0], self.band[1], ()))]
        else:
            negative = row[int(torch.randint(self.positives, len(row), ()))]
        return [self.ids[i], self.documents[positive], self.documents[negative]], -1


class GraphNeighbours(TextPairs):
    """Triplets ``[anchor, positive, negative]`` of Debian package texts sampled around a DeepWalk embedding of the
    ``Depends`` graph, evaluated as ``debian_descriptions`` retrieval.

    Args:
        positives: a positive is one of the anchor's ``positives`` nearest neighbours in the graph embedding.
        hard_band: ``(from, to)`` ranks of the hard negatives (the paper's controlled margin between positives and
            negatives: ranks between them are never sampled).
        hard_share: share of triplets with a hard negative; the others take a random document.
        graph: ``corpus`` (edges between training packages only) or ``citations`` (every depended-on package a
            node, in the corpus or not, as a citation graph holds papers outside the training set:
            :func:`citation_edges`).
        max_citers: with ``citations``, leave out targets depended on by more packages than this (hubs).
        tag_nodes: with ``citations``, the debtags are nodes too.
        texts: ``package`` (every text is the package's synopsis and long description, as the paper's title and
            abstract) or ``fields`` (the anchor is its synopsis, the positive and the negative their long
            descriptions: the evaluation's query and document sides).
        include_self: with ``fields``, a package is its own nearest neighbour (rank 0, distance 0 in the graph
            embedding): its synopsis and its own description can be a triplet's anchor and positive.
        graph_dim, walks_per_node, walk_length: the DeepWalk embedding.
        kwargs: :class:`TextPairs` options (test_share, max_pairs, tokenizer, vocab_size, max_length, batch_size).
    """

    #: the pairs it always evaluates on (whatever ``source`` is given)
    fixed_source = "debian_descriptions"

    def __init__(
        self,
        positives: int = 5,
        hard_band: tuple[int, int] = (40, 50),
        hard_share: float = 0.5,
        graph: str = "corpus",
        max_citers: int | None = None,
        tag_nodes: bool = False,
        texts: str = "package",
        include_self: bool = False,
        graph_dim: int = 64,
        walks_per_node: int = 10,
        walk_length: int = 20,
        **kwargs,
    ):
        kwargs.pop("source", None)
        super().__init__(source="debian_descriptions", **kwargs)
        hard_band = tuple(hard_band)
        if not (1 <= positives <= hard_band[0] < hard_band[1]) or not 0 <= hard_share <= 1:
            raise ValueError(
                f"need 1 <= positives <= hard_band[0] < hard_band[1] and hard_share in [0, 1], got {positives}, {hard_band}, {hard_share}"
            )
        if graph not in ("corpus", "citations") or texts not in ("package", "fields"):
            raise ValueError(f"graph must be corpus or citations and texts package or fields, got {graph!r}, {texts!r}")
        self.positives, self.hard_band, self.hard_share = positives, hard_band, hard_share
        self.graph, self.max_citers, self.tag_nodes, self.texts = graph, max_citers, tag_nodes, texts
        if include_self and texts != "fields":
            raise ValueError("include_self needs texts='fields' (a package text is not its own positive)")
        self.include_self = include_self
        self.graph_options = {"dim": graph_dim, "walks_per_node": walks_per_node, "walk_length": walk_length}

    def _records(self) -> list[dict]:
        """The packages of :meth:`pairs`, in its order (those with a long description)."""
        from reprzoo.datamodules.text import corpora

        records = [r for r in corpora.debian_packages() if r["description"]]
        return records[: self.max_pairs] if self.max_pairs else records

    def graph_neighbours(self) -> tuple[list[int], np.ndarray]:
        """The embedded training packages (positions in the training split) and their neighbour ranks ``(n, n - 1)``
        (indices into that list), nearest first."""
        records = self._records()
        train, _ = self._split_positions()
        kept = [records[i] for i in train]
        if self.graph == "citations":
            num_nodes, edges = citation_edges(kept, self.max_citers, self.tag_nodes)
        else:
            num_nodes, edges = len(kept), depends_edges(kept)
        nodes, vectors = deepwalk(num_nodes, edges, seed=self.seed or 0, **self.graph_options)
        packages = [k for k, n in enumerate(nodes) if n < len(kept)]  # the walks' other nodes: outside the corpus
        if len(packages) <= self.hard_band[1]:
            raise ValueError(f"the graph has {len(packages)} embedded packages: too few for hard_band {self.hard_band}")
        return [nodes[k] for k in packages], neighbour_ranks(vectors[packages])

    def _splits(self):
        from reprzoo.datamodules.text import corpora

        _, queries = super()._splits()  # the held-out retrieval evaluation, as TextPairs
        records = self._records()
        train, _ = self._split_positions()
        nodes, ranks = self.graph_neighbours()
        self.graph_nodes = len(nodes)
        kept = [records[train[n]] for n in nodes]
        if self.texts == "fields":
            anchors, documents = self.encode([r["synopsis"] for r in kept]), self.encode([r["description"] for r in kept])
        else:
            anchors, documents = self.encode([corpora.package_text(r) for r in kept]), None
        triplets = _Triplets(anchors, ranks, self.positives, self.hard_band, self.hard_share, documents, self.include_self)
        return triplets, queries


__all__ = ["GraphNeighbours", "citation_edges", "deepwalk", "depends_edges", "neighbour_ranks"]


class TaggedPairs(TextPairs):
    """:class:`TextPairs` ``debian_descriptions`` with each training pair's concepts: the package's debtags
    (``corpora.debian_packages()[i]["tags"]``, the tags of at least ``min_tag_count`` training packages), for
    supervised explicit concept spaces (SESA). A training sample is ``[query ids, document ids, concept ids]``, the
    concept ids shifted by one (0 pads) and batched like tokens (``{"input_ids", "attention_mask"}``; a package
    without tags has none). Evaluation is :class:`TextPairs`' held-out retrieval.

    Args:
        min_tag_count: keep the tags of at least this many training packages (the concept space).
        kwargs: :class:`TextPairs` options.
    """

    #: the pairs it always evaluates on (whatever ``source`` is given)
    fixed_source = "debian_descriptions"

    model_args_keys = ("vocab_size", "num_concepts")

    def __init__(self, min_tag_count: int = 5, **kwargs):
        kwargs.pop("source", None)
        super().__init__(source="debian_descriptions", **kwargs)
        if min_tag_count < 1:
            raise ValueError(f"min_tag_count must be >= 1, got {min_tag_count}")
        self.min_tag_count = min_tag_count
        self._concepts: list[str] | None = None

    def _records(self) -> list[dict]:
        from reprzoo.datamodules.text import corpora

        records = [r for r in corpora.debian_packages() if r["description"]]
        return records[: self.max_pairs] if self.max_pairs else records

    def concepts(self) -> list[str]:
        """The concept space: tag names, sorted; dimension i of a concept vector is ``concepts()[i]``."""
        if self._concepts is None:
            from collections import Counter

            records = self._records()
            train, _ = self._split_positions()
            counts = Counter(t for i in train for t in records[i].get("tags") or ())
            self._concepts = sorted(t for t, n in counts.items() if n >= self.min_tag_count)
        return self._concepts

    def model_args(self):
        return {**super().model_args(), "num_concepts": len(self.concepts())}

    def _splits(self):
        training, queries = super()._splits()
        records = self._records()
        train, _ = self._split_positions()
        index = {t: i + 1 for i, t in enumerate(self.concepts())}
        tags = [
            torch.tensor(sorted(index[t] for t in records[i].get("tags") or () if t in index), dtype=torch.long) for i in train
        ]
        training.ids = [[q, d, t] for (q, d), t in zip(training.ids, tags)]
        return training, queries


__all__ += ["TaggedPairs"]
