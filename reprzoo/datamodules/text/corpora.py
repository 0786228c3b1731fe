"""Offline text corpora for the text wing: evaluation sets shipped inside the gensim wheel, and WordNet 3.0 glosses.

Every loader reads local files only; nothing is downloaded.

* gensim's ``gensim/test/test_data/`` (needs ``pip install gensim``; found through :func:`gensim_data_dir`):
  :func:`lee_background` (300 documents), :func:`lee_test` (50 documents and the 50x50 human similarity matrix),
  :func:`word_similarity` (``"wordsim353"``: 353 pairs, ``"simlex999"``: 999 pairs), :func:`analogies`
  (19,544 questions in 14 sections) and :func:`mini_newsgroups` (200 posts, alt.atheism and sci.space).
* WordNet 3.0: :func:`wordnet_glosses` and :func:`wordnet_corpus` parse the ``data.{noun,verb,adj,adv}`` files of a
  WordNet ``dict`` folder (Debian's ``wordnet-base`` puts them in ``/usr/share/wordnet``), or, without a path, the
  fixture shipped in ``data/`` (89,578 of the 117,659 synsets: proper names and the noun.animal/noun.plant
  taxonomy left out to fit ~2.6 MB; ``scripts/make_text_fixtures.py`` regenerates it and documents the rule).

:data:`SOURCES` records where each corpus comes from and under which terms it may be used.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import io
import lzma
import pickle
import re
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from reprzoo.errors import ReprzooError

__all__ = [
    "SOURCES",
    "WORDNET_FIXTURE",
    "analogies",
    "gensim_data_dir",
    "gloss_line",
    "lee_background",
    "lee_test",
    "mini_newsgroups",
    "parse_wordnet_data",
    "read_wordnet_tsv",
    "simple_tokenize",
    "word_similarity",
    "wordnet_corpus",
    "wordnet_glosses",
    "write_wordnet_tsv",
]

_GENSIM_TERMS = (
    "shipped in the gensim wheel (gensim is LGPL-2.1); the data keep their authors' research terms: "
    "free for research use, cite the paper below, no explicit redistribution licence"
)

SOURCES: dict[str, dict[str, str]] = {
    "lee": {
        "description": "Lee corpus: 300 background news documents (lee_background.cor) and 50 test documents "
        "(lee.cor) with the mean of human similarity judgments for their 1,225 pairs (similarities0-1.txt, an "
        "upper-triangular 50x50 matrix on a 0-1 scale)",
        "licence": _GENSIM_TERMS + " (Lee, Pincombe & Welsh 2005, 'An empirical evaluation of models of text "
        "document similarity', CogSci); provided to gensim by Michael D. Lee",
        "origin": "gensim/test/test_data/{lee_background.cor,lee.cor,similarities0-1.txt}",
    },
    "wordsim353": {
        "description": "WordSimilarity-353: 353 word pairs with the mean human relatedness score (0-10)",
        "licence": _GENSIM_TERMS + " (Finkelstein et al. 2002, 'Placing search in context'); "
        "http://www.cs.technion.ac.il/~gabr/resources/data/wordsim353/",
        "origin": "gensim/test/test_data/wordsim353.tsv",
    },
    "simlex999": {
        "description": "SimLex-999: 999 word pairs with the mean human similarity score (0-10)",
        "licence": _GENSIM_TERMS + " (Hill, Reichart & Korhonen 2015, 'SimLex-999'); https://www.cl.cam.ac.uk/~fh295/simlex.html",
        "origin": "gensim/test/test_data/simlex999.txt",
    },
    "analogies": {
        "description": "Google word-analogy questions a:b :: c:d, 19,544 in 14 sections (5 semantic, 9 syntactic)",
        "licence": "shipped in the gensim wheel (gensim is LGPL-2.1); released with word2vec under the "
        "Apache-2.0 licence (Mikolov et al. 2013, 'Efficient estimation of word representations in vector space')",
        "origin": "gensim/test/test_data/questions-words.txt",
    },
    "mini_newsgroups": {
        "description": "200 posts of 20 Newsgroups (100 alt.atheism, 100 sci.space), a zlib-compressed pickled "
        "scikit-learn Bunch; loaded with a restricted unpickler, RFC-822 headers stripped",
        "licence": _GENSIM_TERMS + " (20 Newsgroups, collected by Ken Lang, 'NewsWeeder', ICML 1995; "
        "http://qwone.com/~jason/20Newsgroups/: no licence stated, used freely for research)",
        "origin": "gensim/test/test_data/mini_newsgroup",
    },
    "wordnet": {
        "description": "WordNet 3.0 synsets: lemmas, part of speech, gloss (definition) and the quoted usage "
        "examples; 117,659 synsets (82,115 nouns, 13,767 verbs, 18,156 adjectives, 3,621 adverbs); the shipped "
        "fixture data/wordnet30_glosses.tsv.xz holds 89,578 of them (no proper names, no noun.animal/noun.plant)",
        "licence": "WordNet 3.0 licence (permissive, BSD-like): use, copy, modify and distribute for any purpose "
        "without fee, keeping Princeton's copyright notice and disclaimer on all copies (shipped as "
        "data/WORDNET_LICENSE and in the fixture's header). WordNet 3.0 Copyright 2006 by Princeton University.",
        "origin": "Debian package wordnet-base (1:3.0-37), /usr/share/wordnet/data.{noun,verb,adj,adv}; "
        "https://wordnet.princeton.edu",
    },
}

DATA_DIR = Path(__file__).resolve().parent / "data"
WORDNET_FIXTURE = DATA_DIR / "wordnet30_glosses.tsv.xz"

# ----------------------------------------------------------------------------------------------- tokenizing
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def simple_tokenize(text: str) -> list[str]:
    """Lowercase word tokens of ``text``: runs of letters and digits, with apostrophes kept inside a word.

    Like gensim's ``simple_preprocess`` (lowercase, no punctuation) but it keeps 1-character tokens, has no maximum
    token length, keeps digits and keeps inner apostrophes (``"don't"`` stays one token, a leading or trailing
    quote is dropped). Letters are Unicode letters; underscores and hyphens split words. Used for every word-level
    method of the text wing.

    >>> simple_tokenize("I don't think U.S. rates rose 2.5% in 'Q3'")
    ['i', "don't", 'think', 'u', 's', 'rates', 'rose', '2', '5', 'in', 'q3']
    """
    return _TOKEN.findall(text.lower())


# ----------------------------------------------------------------------------------------------- gensim test data
def gensim_data_dir() -> Path:
    """The ``gensim/test/test_data`` folder of the installed gensim wheel (found without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ReprzooError(
            "the text evaluation sets (Lee, WordSim-353, SimLex-999, analogies, mini 20 Newsgroups) are read from "
            "the gensim wheel, which is not installed: pip install gensim"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"
    if not path.is_dir():
        raise ReprzooError(f"gensim is installed but has no test data folder {path}; reinstall it: pip install gensim")
    return path


def _gensim_file(name: str) -> Path:
    path = gensim_data_dir() / name
    if not path.is_file():
        raise ReprzooError(f"{path} is missing from the gensim wheel; reinstall it: pip install --force-reinstall gensim")
    return path


def _read_lines(name: str) -> list[str]:
    """Non-empty lines of a gensim test file, decoded as latin-1 (as gensim's own Lee test does: lee.cor has a £)."""
    text = _gensim_file(name).read_bytes().decode("latin-1")
    return [line.strip() for line in text.splitlines() if line.strip()]


def lee_background() -> list[str]:
    """The 300 background documents of the Lee corpus (one news article per line), for training."""
    return _read_lines("lee_background.cor")


def lee_test() -> tuple[list[str], np.ndarray]:
    """The 50 Lee test documents and their 50x50 human similarity matrix (symmetric, ones on the diagonal).

    The file holds the upper triangle of the mean human judgments rescaled to 0-1; the lower triangle is mirrored
    here. Score a model the way gensim and Lee et al. do: Pearson correlation between the model's cosine similarities
    and the human values over the 1,225 pairs ``numpy.triu_indices(50, 1)`` (LSI on log-entropy gets ~0.6).
    """
    docs = _read_lines("lee.cor")
    upper = np.loadtxt(_gensim_file("similarities0-1.txt"))
    if upper.shape != (len(docs), len(docs)) or np.any(np.tril(upper, -1)):
        raise ReprzooError(f"unexpected Lee similarity file: shape {upper.shape} for {len(docs)} documents")
    sims = np.triu(upper) + np.triu(upper, 1).T
    return docs, sims


_WORD_SIMILARITY_FILES = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def word_similarity(name: str) -> list[tuple[str, str, float]]:
    """Word pairs with the mean human score (0-10), lowercased: ``"wordsim353"`` (353) or ``"simlex999"`` (999)."""
    if name not in _WORD_SIMILARITY_FILES:
        raise ValueError(f"unknown word-similarity set {name!r}; known: {', '.join(sorted(_WORD_SIMILARITY_FILES))}")
    pairs = []
    for line in _read_lines(_WORD_SIMILARITY_FILES[name]):
        if line.startswith("#"):
            continue
        a, b, score = line.split("\t")
        pairs.append((a.lower(), b.lower(), float(score)))
    return pairs


def analogies() -> list[tuple[str, str, str, str, str]]:
    """The Google analogy questions as ``(section, a, b, c, d)`` (``a:b :: c:d``), lowercased: 19,544 in 14 sections.

    Sections whose name starts with ``gram`` are syntactic, the other five semantic.
    """
    out: list[tuple[str, str, str, str, str]] = []
    section = ""
    for line in _read_lines("questions-words.txt"):
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        a, b, c, d = line.lower().split()
        out.append((section, a, b, c, d))
    return out


class _BunchUnpickler(pickle.Unpickler):
    """Unpickles the old scikit-learn ``Bunch`` of ``mini_newsgroup`` into plain dicts and arrays; nothing else loads."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("copy_reg", "_reconstructor"):
            return lambda cls, base, state: dict(state)
        if (module, name) in {("sklearn.datasets.base", "Bunch"), ("__builtin__", "dict")}:
            return dict
        if (module, name) == ("numpy.core.multiarray", "_reconstruct"):
            return np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own, wherever this numpy keeps it
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"mini_newsgroup: refusing to load {module}.{name}")


def _strip_headers(post: str) -> str:
    """Drop the RFC-822 header block: everything up to and including the first blank line."""
    head, sep, body = post.partition("\n\n")
    return body.strip() if sep else post.strip()


def mini_newsgroups() -> tuple[list[str], list[int], list[str]]:
    """200 posts of 20 Newsgroups (100 ``alt.atheism``, 100 ``sci.space``) with headers stripped.

    Returns ``(texts, labels, label_names)``; ``labels[i]`` indexes ``label_names``. Quoted replies and signatures are
    kept (only the header block goes).
    """
    raw = zlib.decompress(_gensim_file("mini_newsgroup").read_bytes())
    bunch = _BunchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    texts = [_strip_headers(str(post)) for post in bunch["data"]]
    labels = [int(t) for t in bunch["target"]]
    names = [str(n) for n in bunch["target_names"]]
    return texts, labels, names


# ----------------------------------------------------------------------------------------------- WordNet
@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while building ~100k small dicts (acyclic): 5x faster loading."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_WORDNET_POS_FILES = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # syntactic markers on adjective lemmas: "galore(ip)"


def _split_gloss(gloss: str) -> tuple[str, list[str]]:
    """Split a WordNet gloss into the definition and the quoted examples.

    Parts are separated by ``;`` outside double quotes; a part that starts with a quote is an example (its quotes
    removed, text after the closing quote such as ``- Shakespeare`` dropped), the others join into the definition.
    """
    parts: list[str] = []
    current: list[str] = []
    for piece in gloss.split(";"):
        current.append(piece)
        joined = ";".join(current)
        if joined.strip().startswith('"') and joined.count('"') % 2 == 1:
            continue  # a ';' inside a quoted example
        parts.append(joined.strip())
        current = []
    if current:
        parts.append(";".join(current).strip())
    definition, examples = [], []
    for part in parts:
        if not part:
            continue
        if part.startswith('"'):
            end = part.find('"', 1)
            example = (part[1:end] if end > 0 else part[1:]).strip()
            if example:
                examples.append(example)
        else:
            definition.append(part)
    return "; ".join(definition), examples


@_gc_paused()
def parse_wordnet_data(path: str | Path) -> list[dict]:
    """Parse one WordNet ``data.<pos>`` file into synset records (see :func:`wordnet_glosses`).

    A data line is ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [pointers] [frames] | gloss``
    (``w_cnt`` hexadecimal); licence lines start with two spaces and are skipped. Adjective satellites (``s``) are
    given ``pos`` ``"a"``.
    """
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  ") or not line.strip():
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, ss_type, w_cnt = fields[0], fields[2], int(fields[3], 16)
            pos = "a" if ss_type == "s" else ss_type
            words = [_ADJ_MARKER.sub("", w).replace("_", " ") for w in fields[4 : 4 + 2 * w_cnt : 2]]
            definition, examples = _split_gloss(gloss.strip())
            records.append(
                {"words": words, "pos": pos, "definition": definition, "examples": examples, "synset": f"{offset}-{pos}"}
            )
    return records


def write_wordnet_tsv(records: list[dict], path: str | Path, header: list[str] = ()) -> None:
    """Write synset records as an xz-compressed TSV: ``synset pos words definition examples`` (lists joined by ``|``).

    ``header`` lines are written first as ``#`` comments, then ``# synsets: N``.
    """
    with lzma.open(path, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as f:
        for line in header:
            f.write(f"# {line}".rstrip() + "\n")
        f.write(f"# synsets: {len(records)}\n")
        f.write("synset\tpos\twords\tdefinition\texamples\n")
        for r in records:
            cells = [r["synset"], r["pos"], "|".join(r["words"]), r["definition"], "|".join(r["examples"])]
            if any("\t" in c or "\n" in c for c in cells) or any("|" in w for w in r["words"] + r["examples"]):
                raise ValueError(f"synset {r['synset']} has a tab, newline or '|' in a field")
            f.write("\t".join(cells) + "\n")


@_gc_paused()
def read_wordnet_tsv(path: str | Path) -> list[dict]:
    """Read a TSV written by :func:`write_wordnet_tsv`; checks the recorded synset count."""
    records, expected = [], None
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                if line.startswith("# synsets:"):
                    expected = int(line.split(":")[1])
                continue
            if line.startswith("synset\t"):
                continue
            synset, pos, words, definition, examples = line.split("\t")
            records.append(
                {
                    "words": words.split("|"),
                    "pos": pos,
                    "definition": definition,
                    "examples": examples.split("|") if examples else [],
                    "synset": synset,
                }
            )
    if expected is not None and expected != len(records):
        raise ReprzooError(f"{path}: header says {expected} synsets, found {len(records)}; regenerate it")
    return records


@lru_cache(maxsize=1)
def _fixture_glosses() -> tuple[dict, ...]:
    if not WORDNET_FIXTURE.is_file():
        raise ReprzooError(f"the WordNet fixture {WORDNET_FIXTURE} is missing; run scripts/make_text_fixtures.py")
    return tuple(read_wordnet_tsv(WORDNET_FIXTURE))


@_gc_paused()
def wordnet_glosses(path: str | Path | None = None) -> list[dict]:
    """WordNet synsets as dicts: ``words`` (lemmas, underscores as spaces, case kept), ``pos`` (``n``, ``v``, ``a``
    with satellites, ``r``), ``definition``, ``examples`` (the quoted usage examples of the gloss) and ``synset``
    (``"<8-digit offset>-<pos>"``, e.g. ``"00001740-v"``).

    ``path``: a WordNet ``dict`` folder holding ``data.noun``, ``data.verb``, ``data.adj`` and ``data.adv`` (e.g.
    ``/usr/share/wordnet``): all synsets (117,659 for WordNet 3.0), in file order (nouns, verbs, adjectives, adverbs).
    Without it, the shipped fixture: 89,578 WordNet 3.0 synsets in the same order, every synset except proper-name
    synsets (all lemmas capitalized) and the nouns of ``noun.animal`` and ``noun.plant`` (the full set compresses to
    ~3.4 MB, over the fixture budget). Returns fresh dicts: callers may modify them.
    """
    if path is None:
        return [{**r, "words": list(r["words"]), "examples": list(r["examples"])} for r in _fixture_glosses()]
    folder = Path(path)
    missing = [f"data.{p}" for p in _WORDNET_POS_FILES if not (folder / f"data.{p}").is_file()]
    if missing:
        raise ReprzooError(f"{folder} is not a WordNet dict folder: missing {', '.join(missing)}")
    records = []
    for p in _WORDNET_POS_FILES:
        records.extend(parse_wordnet_data(folder / f"data.{p}"))
    return records


def gloss_line(record: dict) -> str:
    """One synset as a line of text: ``"lemma1 lemma2 ... : definition ; example ; example"``."""
    return " ; ".join([" ".join(record["words"]) + " : " + record["definition"], *record["examples"]])


def wordnet_corpus(path: str | Path | None = None) -> list[str]:
    """One line per WordNet synset (see :func:`gloss_line`): the training corpus for word-embedding tests.

    The full WordNet 3.0 gives 117,659 lines and 1,769,237 :func:`simple_tokenize` tokens; the shipped fixture
    (``path=None``) 89,578 lines and about 1.3M tokens.
    """
    return [gloss_line(r) for r in wordnet_glosses(path)]


# ----------------------------------------------------------------------------------------------- Debian packages
SOURCES["debian"] = {
    "description": "Debian package descriptions: package name, section, one-line synopsis, long description, "
    "Depends (with Pre-Depends) and debtags, from the archive's Packages and Translation-en lists (bookworm main: "
    "63,440 amd64 packages); the shipped fixture data/debian_packages.jsonl.xz holds a seeded sample of 5,000",
    "licence": "each package description is part of its package and is distributed under that package's copyright "
    "(debian/copyright); every package of Debian's main archive is free software under the Debian Free Software "
    "Guidelines (DFSG), so its description may be copied, modified and redistributed (shipped as "
    "data/DEBIAN_NOTICE and in the fixture's header)",
    "origin": "apt lists of the Debian archive, bookworm, bookworm-updates and bookworm-security, main, amd64 "
    "(/var/lib/apt/lists/*_Packages*, *_Translation-en* after `apt-get -o Acquire::Languages=en update`); "
    "https://www.debian.org/social_contract",
}

DEBIAN_FIXTURE = DATA_DIR / "debian_packages.jsonl.xz"
_DEBIAN_FIELDS = ("package", "section", "synopsis", "description", "depends", "tags")


def _open_list(path: str | Path) -> io.TextIOBase:
    """A Debian list file as text, decompressed by its suffix: ``.lz4`` (the ``lz4`` module if installed, else the
    ``lz4`` command apt itself relies on), ``.xz``/``.lzma``, ``.gz``, ``.bz2``, ``.zst`` (the ``zstd`` command), or
    plain."""
    import bz2
    import gzip
    import shutil
    import subprocess

    path = Path(path)
    suffix = path.suffix
    if suffix in (".xz", ".lzma"):
        return lzma.open(path, "rt", encoding="utf-8", errors="replace")
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    if suffix in (".lz4", ".zst"):
        if suffix == ".lz4" and importlib.util.find_spec("lz4") is not None:
            import lz4.frame

            return lz4.frame.open(path, "rt", encoding="utf-8", errors="replace")
        tool = "lz4" if suffix == ".lz4" else "zstd"
        if shutil.which(tool) is None:
            raise ReprzooError(f"{path} is {tool}-compressed and the {tool} command is missing: apt-get install {tool}")
        raw = subprocess.run([tool, "-dc", str(path)], check=True, capture_output=True).stdout
        return io.StringIO(raw.decode("utf-8", errors="replace"))
    return open(path, encoding="utf-8", errors="replace")


def read_deb822(path: str | Path):
    """The paragraphs of a Debian control-format file (``Packages``, ``Translation-en``; compressed or not) as dicts
    of field -> value; a multi-line value keeps its continuation lines (each with its leading space) after a
    newline."""
    with _open_list(path) as f:
        fields: dict[str, str] = {}
        last = None
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if fields:
                    yield fields
                fields, last = {}, None
            elif line[0] in " \t":
                if last is not None:
                    fields[last] += "\n" + line
            elif ":" in line:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        if fields:
            yield fields


def long_description(lines: list[str]) -> str:
    """The extended description of a ``Description`` field (its continuation lines) as text, following Debian
    policy 5.6.13: lines starting with one space are wrapped text (joined with spaces), lines with two or more are
    verbatim (kept on their own line), a line ``" ."`` separates paragraphs (a blank line in the result)."""
    paragraphs, current = [], []
    for line in lines:
        body = line[1:] if line.startswith(" ") else line
        if body.strip() == ".":
            if current:
                paragraphs.append("".join(current).strip())
            current = []
        elif body.startswith((" ", "\t")):  # verbatim
            current.append(("\n" if current and not current[-1].endswith("\n") else "") + body.rstrip() + "\n")
        else:
            current.append(("" if not current or current[-1].endswith("\n") else " ") + body.strip())
    if current:
        paragraphs.append("".join(current).strip())
    return "\n\n".join(p for p in paragraphs if p)


def parse_depends(value: str) -> list[str]:
    """Package names of a relationship field (``Depends``), in order, each once: version constraints, architecture
    qualifiers (``:any``) and restrictions dropped, every alternative of ``a | b`` kept."""
    names: list[str] = []
    for group in value.split(","):
        for alternative in group.split("|"):
            name = re.split(r"[\s(\[<:]", alternative.strip(), maxsplit=1)[0]
            if name and name not in names:
                names.append(name)
    return names


def _version_part(text: str) -> tuple:
    """A comparison key of an upstream version or revision, dpkg's ``verrevcmp``: alternating non-digit parts
    (compared character by character, ``~`` before the end, letters before other characters) and numbers; each
    non-digit part ends in 0 and the whole in an end marker, so that ``1.0~rc1 < 1.0 < 1.0a < 1.0.1``."""
    key = []
    for letters, digits in re.findall(r"(\D*)(\d*)", text):
        if not letters and not digits:
            continue
        order = [-1 if c == "~" else ord(c) if c.isalpha() else ord(c) + 256 for c in letters]
        key.append((tuple(order) + (0,), int(digits or 0)))
    return tuple(key) + (((0,), 0),)


def debian_version_key(version: str) -> tuple:
    """A sort key that orders Debian version strings as ``dpkg --compare-versions`` does (epoch, upstream version,
    revision)."""
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return (int(epoch or 0), _version_part(upstream), _version_part(revision))


def _section(value: str) -> str:
    """A package's section without its archive area: ``contrib/games`` -> ``games``."""
    return value.rpartition("/")[2] or "unknown"


def _list_files(folder: Path, marker: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and marker in p.name and not p.name.endswith((".diff", ".gpg")))


def parse_debian_lists(packages: list[str | Path], translations: list[str | Path] = ()) -> list[dict]:
    """Package records (see :func:`debian_packages`) from ``Packages`` lists and ``Translation-en`` lists.

    A package in several lists (suites such as bookworm, bookworm-updates and bookworm-security, or several
    architectures) keeps its highest version (:func:`debian_version_key`). Its long description is the one of the
    ``Translation-en`` entry with its ``Description-md5`` (or, failing that, of its name), else the extended part of
    its ``Description`` field when the Packages list carries one; without either it is empty. Records are sorted by
    package name.
    """
    english: dict[tuple[str, str], str] = {}
    by_name: dict[str, str] = {}
    for path in translations:
        for entry in read_deb822(path):
            text = entry.get("Description-en", "")
            if "Package" in entry and text:
                english[(entry["Package"], entry.get("Description-md5", ""))] = text
                by_name.setdefault(entry["Package"], text)
    best: dict[str, dict[str, str]] = {}
    for path in packages:
        for entry in read_deb822(path):
            name, version = entry.get("Package"), entry.get("Version", "0")
            if not name or "Description" not in entry and "Description-en" not in entry:
                continue
            if name in best and debian_version_key(version) <= debian_version_key(best[name].get("Version", "0")):
                continue
            best[name] = entry
    records = []
    for name in sorted(best):
        entry = best[name]
        own = entry.get("Description", entry.get("Description-en", ""))
        text = english.get((name, entry.get("Description-md5", "")), "")
        if not text and "\n" not in own:
            text = by_name.get(name, "")
        text = text or own
        synopsis, *rest = text.split("\n")
        depends = parse_depends(", ".join(v for v in (entry.get("Pre-Depends"), entry.get("Depends")) if v))
        tags = [t.strip() for t in entry.get("Tag", "").replace("\n", " ").split(",") if t.strip()]
        records.append(
            {
                "package": name,
                "section": _section(entry.get("Section", "")),
                "synopsis": synopsis.strip(),
                "description": long_description(rest),
                "depends": depends,
                "tags": tags,
            }
        )
    return records


def write_debian_jsonl(records: list[dict], path: str | Path, header: list[str] = ()) -> None:
    """Write package records as xz-compressed JSON lines, after ``#`` header lines and ``# packages: N``."""
    import json

    with lzma.open(path, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as f:
        for line in header:
            f.write(f"# {line}".rstrip() + "\n")
        f.write(f"# packages: {len(records)}\n")
        for r in records:
            f.write(json.dumps({k: r[k] for k in _DEBIAN_FIELDS}, ensure_ascii=False, separators=(",", ":")) + "\n")


def read_debian_jsonl(path: str | Path) -> list[dict]:
    """Read a file written by :func:`write_debian_jsonl`; checks the recorded package count."""
    import json

    records, expected = [], None
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                if line.startswith("# packages:"):
                    expected = int(line.split(":")[1])
                continue
            if line.strip():
                records.append(json.loads(line))
    if expected is not None and expected != len(records):
        raise ReprzooError(f"{path}: header says {expected} packages, found {len(records)}; regenerate it")
    return records


@lru_cache(maxsize=1)
def _fixture_packages() -> tuple[dict, ...]:
    if not DEBIAN_FIXTURE.is_file():
        raise ReprzooError(f"the Debian fixture {DEBIAN_FIXTURE} is missing; run scripts/make_text_fixtures.py --debian")
    return tuple(read_debian_jsonl(DEBIAN_FIXTURE))


def debian_packages(path: str | Path | None = None, translations: list[str | Path] | None = None) -> list[dict]:
    """Debian package records: ``package``, ``section`` (without its archive area: ``games``, ``libs``, ...),
    ``synopsis`` (the one-line description), ``description`` (the long description as text, paragraphs separated
    by blank lines; empty where the lists carry none), ``depends`` (package names of ``Pre-Depends`` and
    ``Depends``, alternatives included) and ``tags`` (debtags, e.g. ``"role::program"``; empty where absent).

    ``path``: an apt lists folder (``/var/lib/apt/lists`` after ``apt-get -o Acquire::Languages=en update``): every
    ``*Packages*`` and ``*Translation-en*`` file in it; or one ``Packages`` file (``Packages``, ``.xz``, ``.gz``,
    ``.lz4``, ...) with ``translations`` its ``Translation-en`` files. All packages, sorted by name (bookworm's main,
    -updates and -security lists for amd64: 63,697). Without ``path``, the shipped fixture: a seeded sample of 5,000
    bookworm packages with a long description (``scripts/make_text_fixtures.py --debian``). Returns fresh dicts:
    callers may modify them.
    """
    if path is None:
        return [{**r, "depends": list(r["depends"]), "tags": list(r["tags"])} for r in _fixture_packages()]
    path = Path(path)
    if path.is_dir():
        packages = _list_files(path, "Packages")
        translations = _list_files(path, "Translation-en") if translations is None else translations
        if not packages:
            raise ReprzooError(f"{path} holds no *Packages* list: run apt-get update, or point at a Packages file")
    elif path.is_file():
        packages = [path]
    else:
        raise ReprzooError(f"{path} is neither an apt lists folder nor a Packages file")
    return parse_debian_lists(packages, translations or [])


def package_text(record: dict) -> str:
    """A package as one text: ``"synopsis. long description"`` (the labelled texts of the section evaluation)."""
    return f"{record['synopsis']}. {record['description']}".strip()


__all__ += [
    "DEBIAN_FIXTURE",
    "debian_packages",
    "debian_version_key",
    "long_description",
    "package_text",
    "parse_debian_lists",
    "parse_depends",
    "read_deb822",
    "read_debian_jsonl",
    "write_debian_jsonl",
]
