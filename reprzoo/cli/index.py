"""``reprzoo index`` and ``reprzoo search``: a persistent index of a zoo model's document representations
(:mod:`reprzoo.index`), and ranked document ids for a query text.

- ``reprzoo index NAME --data debian|FILE.jsonl|FILE.txt --out DIR [--kind auto|dense|ivfpq|ivfflat|sparse|maxsim]
  [--chunk-size N] [--nlist N --m M --nbits B --nprobe P] [--no-resume]``: documents are the shipped Debian
  package descriptions (``debian``: id = package name, text = its long description), a JSON-lines file of
  ``{"id", "text"}`` objects, or a text file of one document per line (id = its line number). An interrupted
  build resumes when run again.
- ``reprzoo search DIR "query text" [-k 10] [--model NAME] [--json]``: the query embedded by the model that built
  the index (or ``--model``, which must be that model or a compatible successor of it), the top k ids and scores.

``register(subparsers)`` adds both to the ``reprzoo`` parser (``reprzoo.cli.main.EXTRA_COMMANDS``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reprzoo.errors import ReprzooError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="build a persistent search index of documents embedded by a zoo model")
    p.add_argument("name", help="zoo name, hf://org/repo[@rev], local:PATH or a directory")
    p.add_argument("--data", default="debian", help="debian (the shipped package descriptions), FILE.jsonl or FILE.txt")
    p.add_argument("--out", required=True, help="the index folder")
    p.add_argument("--revision", default=None)
    p.add_argument("--kind", default="auto", choices=("auto", "dense", "ivfpq", "ivfflat", "sparse", "maxsim"))
    p.add_argument("--chunk-size", type=int, default=1024, help="documents embedded per resumable step")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--nlist", type=int, default=None, help="ivfpq/ivfflat: inverted lists (default about 4 sqrt(n))")
    p.add_argument("--m", type=int, default=None, help="ivfpq: sub-quantisers (must divide the dimension)")
    p.add_argument("--nbits", type=int, default=None, help="ivfpq: bits per sub-quantiser code (default 8)")
    p.add_argument("--nprobe", type=int, default=None, help="ivfpq/ivfflat: lists searched per query (default 8)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming an unfinished build")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_index)

    p = subparsers.add_parser("search", help="ranked document ids of a query text in an index")
    p.add_argument("folder", metavar="DIR", help="what `reprzoo index` wrote")
    p.add_argument("query", nargs="+", help="the query text (several: one search each)")
    p.add_argument("-k", type=int, default=10, help="documents returned per query")
    p.add_argument("--model", default=None, help="embed the query with this model (a compatible successor of the index's)")
    p.add_argument("--revision", default=None, help="the --model's revision")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)


def read_documents(data: str) -> tuple[list[str], list[str]]:
    """``(texts, ids)`` of ``--data``: ``debian``, a ``.jsonl`` file of ``{"id", "text"}``, or a text file."""
    if data == "debian":
        from reprzoo.datamodules.text.corpora import debian_packages

        records = [r for r in debian_packages() if r["description"]]
        return [r["description"] for r in records], [r["package"] for r in records]
    path = Path(data)
    if not path.is_file():
        raise ReprzooError(f'--data {data!r} is neither \'debian\' nor a file (FILE.jsonl of {{"id", "text"}} or FILE.txt)')
    texts, ids = [], []
    with open(path, encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ReprzooError(f"{path}:{number} is not JSON ({err.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "id" not in record:
                    raise ReprzooError(f'{path}:{number} must be an object with "id" and "text" (a string)')
                texts.append(record["text"])
                ids.append(str(record["id"]))
        else:
            for number, line in enumerate(f, 1):
                if line.strip():
                    texts.append(line.rstrip("\n"))
                    ids.append(str(number))
    if not texts:
        raise ReprzooError(f"{path} holds no documents")
    return texts, ids


def cmd_index(args: argparse.Namespace) -> int:
    from reprzoo.index import build_index
    from reprzoo.zoo.api import load

    texts, ids = read_documents(args.data)
    options = {"nlist": args.nlist, "m": args.m, "nbits": args.nbits, "nprobe": args.nprobe}
    if args.kind not in ("ivfpq", "ivfflat", "auto") and any(v is not None for v in options.values()):
        raise ReprzooError(f"--nlist, --m, --nbits and --nprobe apply to --kind ivfpq/ivfflat, not {args.kind}")
    encoder = load(args.name, revision=args.revision, device=args.device)
    encode = encoder.encode

    class _Batched:  # the encoder, embedding with --batch-size
        def __getattr__(self, name):
            return getattr(encoder, name)

        def encode(self, texts, query=False):
            return encode(texts, batch_size=args.batch_size, query=query).cpu()

    index = build_index(
        _Batched(), texts, ids, args.out, kind=args.kind, chunk_size=args.chunk_size, resume=not args.no_resume, **options
    )
    print(
        f"indexed {len(index)} documents with {index.model['name']}@{index.model['revision'] or '-'} into {args.out} "
        f'({index.kind}, {index.similarity}, {index.size_bytes:,} bytes); search it: reprzoo search {args.out} "QUERY"'
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from reprzoo.index import Index
    from reprzoo.zoo.api import load

    index = Index.load(args.folder)
    if args.model is not None:
        encoder = load(args.model, revision=args.revision)
    else:
        ref = index.model.get("source") or index.model.get("name")
        if not ref:
            raise ReprzooError(f"{args.folder}'s manifest names no model to embed the query; pass --model NAME")
        encoder = load(ref, revision=index.model.get("revision"))
    results = index.search(args.query, k=args.k, encoder=encoder)
    if args.json:
        print(json.dumps([{"query": q, "ids": ids, "scores": scores} for q, (ids, scores) in zip(args.query, results)], indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for query, (ids, scores) in zip(args.query, results):
        table = Table(title=f"{query}  ({index.kind}, {index.similarity})")
        table.add_column("rank", justify="right")
        table.add_column("id", overflow="fold")
        table.add_column("score", justify="right")
        for rank, (doc, score) in enumerate(zip(ids, scores), 1):
            table.add_row(str(rank), doc, f"{score:.4f}")
        console.print(table)
    return 0


__all__ = ["cmd_index", "cmd_search", "read_documents", "register"]
