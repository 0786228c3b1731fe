"""The repository layout shared by the local hub and the Hugging Face Hub, and checks on what is read from it.

A model repository holds three files:

- ``config.json``: format version, architecture (backbone name and kwargs, embedding size, trained prefix sizes),
  the method (registry name and init args), preprocessing, the SHA-256 of the weights, training record, metrics,
  lineage and provenance.
- ``model.safetensors``: the backbone's tensors under their own names (loadable into the bare backbone), and the
  rest of the LightningModule (embedding layers, heads, EMA targets, probe) under the ``method.`` prefix. From
  format 2 on, ``load`` rebuilds the registered method from ``config.json`` and embeds with its ``encoder()``
  (recorded under ``architecture.representation``), so what is loaded is what was trained and measured.
- ``README.md``: the model card.

Nothing here unpickles: weights come only from safetensors, and the file is hashed before it is opened.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from reprzoo.errors import ReprzooError

if TYPE_CHECKING:
    import torch

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
REPO_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
#: major.minor of config.json. 2: ``load`` rebuilds the registered method and embeds with its ``encoder()`` (the
#: representation it was measured on); 1: the bare backbone (still read). Any other major is refused.
FORMAT_VERSION = "2.0"
READABLE_MAJORS = ("1", "2")
METHOD_PREFIX = "method."  # safetensors keys of the LightningModule outside its backbone
BACKBONE_ATTR = "backbone."  # where the encoder lives inside a LightningModule


class IntegrityError(ReprzooError):
    """A file that does not match its recorded SHA-256, or that cannot be parsed."""


#: Names a repository's preprocessing files may have (a tokenizer.json, a vocabulary, a node index): plain file
#: names in the repository's root, never a path, never one of the three repository files.
PREPROCESSING_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(json|txt|model|vocab|npy|safetensors|tsv|csv)$")


def check_preprocessing_name(name: str) -> str:
    """``name`` if it is a valid preprocessing file name (see :data:`PREPROCESSING_FILE`), else an error."""
    if not isinstance(name, str) or not PREPROCESSING_FILE.match(name) or name in REPO_FILES or ".." in name:
        raise ReprzooError(
            f"refusing preprocessing file name {name!r}: a plain file name (letters, digits, _ . -) ending in "
            ".json, .txt, .model, .vocab, .npy, .safetensors, .tsv or .csv"
        )
    return name


def preprocessing_files(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The preprocessing files a config lists (``preprocessing.files``: name -> sha256 and size), names checked."""
    files = ((config.get("preprocessing") or {}).get("files")) or {}
    if not isinstance(files, dict):
        raise IntegrityError("config.json's preprocessing.files must map file names to their sha256 and size")
    return _checked_records(files, check_preprocessing_name, "preprocessing.files")


def _checked_records(files: dict, check_name, key: str) -> dict[str, dict[str, Any]]:
    """``files`` (name -> record) after checking every name with ``check_name`` and that each record has a sha256."""
    for name, record in files.items():
        check_name(name)
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            raise IntegrityError(f"config.json's {key}[{name!r}] records no sha256")
    return files


#: Names of the files a repository carries for another library (a sentence-transformers folder: ``modules.json``
#: at the root, ``0_Transformer/config.json``, ``1_Pooling/config.json``, ...): a plain file name, optionally inside
#: ONE module folder named ``<index>_<Word>``; never ``..``, never a repository or preprocessing file.
INTEROP_FILE = re.compile(r"^(?:[0-9]{1,3}_[A-Za-z]{1,40}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(json|txt|safetensors)$")


def check_interop_name(name: str) -> str:
    """``name`` if it is a valid interop file name (see :data:`INTEROP_FILE`), else an error."""
    if not isinstance(name, str) or not INTEROP_FILE.match(name) or name in REPO_FILES or ".." in name:
        raise ReprzooError(
            f"refusing interop file name {name!r}: a plain file name (letters, digits, _ . -) ending in .json, .txt or "
            ".safetensors, at most inside one module folder such as 0_Transformer/"
        )
    return name


def interop_files(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The files a config lists for other libraries (``interop.files``: name -> sha256 and size), names checked."""
    interop = config.get("interop") or {}
    files = interop.get("files") or {} if isinstance(interop, dict) else None
    if not isinstance(files, dict):
        raise IntegrityError("config.json's interop must be an object whose files map names to their sha256 and size")
    overlap = set(files) & set(preprocessing_files(config))
    if overlap:
        raise IntegrityError(f"config.json lists {sorted(overlap)} both as preprocessing and as interop files")
    return _checked_records(files, check_interop_name, "interop.files")


def repo_files(config: Mapping[str, Any]) -> list[str]:
    """Every file of a repository: the three repository files, its preprocessing files and its interop files."""
    return [*REPO_FILES, *preprocessing_files(config), *interop_files(config)]


def verify_preprocessing_file(folder: Path, config: Mapping[str, Any], name: str) -> Path:
    """The preprocessing file ``name`` of ``folder`` after checking its SHA-256 against ``config``."""
    files = preprocessing_files(config)
    if name not in files:
        raise ReprzooError(f"{folder} records no preprocessing file {name!r} (it has: {sorted(files) or 'none'})")
    path = Path(folder) / name
    if not path.is_file():
        raise IntegrityError(f"{folder} lacks its preprocessing file {name}")
    digest = sha256_file(path)
    if digest != files[name]["sha256"]:
        raise IntegrityError(
            f"{path} has SHA-256 {digest[:16]}... but config.json records {files[name]['sha256'][:16]}...: the file "
            "was modified or corrupted; refusing to use it"
        )
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model folder, checked for a compatible format version."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ReprzooError(f"{folder} is not a reprzoo model: it has no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "format_version" not in config:
        raise IntegrityError(f"{path} is not a reprzoo config (no format_version)")
    check_format_version(str(config["format_version"]), path)
    check_config_fields(config, path)
    preprocessing_files(config)  # file names a hub may not steer: refused before anything is read or written
    interop_files(config)
    return config


def check_config_fields(config: Mapping[str, Any], where: Path | str) -> None:
    """The keys a loader reads, present and of the right type: a malformed config.json is one clear error, not a
    ``KeyError`` or ``AttributeError`` deep inside ``load``."""

    def fail(problem: str) -> None:
        raise IntegrityError(f"{where} is malformed: {problem}")

    def optional(value: Any, kind: type | tuple[type, ...], key: str, expected: str) -> None:
        if value is not None and not isinstance(value, kind):
            fail(f"{key} must be {expected}, not {type(value).__name__}")

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    arch = config.get("architecture")
    if not isinstance(arch, dict):
        fail("'architecture' is missing or not an object")
    if not isinstance(arch.get("backbone"), str) or not arch["backbone"]:
        fail("architecture.backbone must be a backbone name (a string)")
    if not positive_int(arch.get("embedding_dim")):
        fail(f"architecture.embedding_dim must be a positive integer, not {arch.get('embedding_dim')!r}")
    optional(arch.get("backbone_kwargs"), dict, "architecture.backbone_kwargs", "an object")
    optional(arch.get("representation"), dict, "architecture.representation", "an object")
    nested = arch.get("nested_dims")
    if nested is not None and not (isinstance(nested, list) and all(positive_int(d) for d in nested)):
        fail(f"architecture.nested_dims must be a list of positive integers, not {nested!r}")
    weights = config.get("weights")
    if not isinstance(weights, dict) or not isinstance(weights.get("sha256"), str):
        fail("'weights' must be an object recording the sha256 of the weights")
    optional(weights.get("size"), int, "weights.size", "an integer")
    method = config.get("method")
    if method is None and str(config["format_version"]).split(".", 1)[0] != "1":
        fail("'method' is missing (format 2 rebuilds the registered method it names)")
    optional(method, dict, "method", "an object")
    if isinstance(method, dict):
        if not isinstance(method.get("name"), str):
            fail("method.name must be a method name (a string)")
        optional(method.get("class_path"), str, "method.class_path", "a string")
        optional(method.get("init_args"), dict, "method.init_args", "an object")
    for key in ("preprocessing", "metrics", "training", "lineage", "provenance"):
        optional(config.get(key), dict, key, "an object")
    optional(config.get("name"), str, "name", "a string")


def read_card(folder: Path) -> str | None:
    """The model card (README.md) of a model folder as text, ``None`` when there is none; an
    :class:`IntegrityError` when it is not UTF-8."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return None
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise IntegrityError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); the model card is corrupt") from None


def check_format_version(version: str, where: Path | str) -> None:
    major = version.split(".", 1)[0]
    ours = FORMAT_VERSION.split(".", 1)[0]
    if major not in READABLE_MAJORS:
        raise ReprzooError(
            f"{where} has config format {version}, incompatible with this reprzoo (format {FORMAT_VERSION}); "
            f"{'upgrade reprzoo' if major.isdigit() and int(major) > int(ours) else 're-push the model with this version'}"
        )


def verify_weights(folder: Path, config: Mapping[str, Any]) -> Path:
    """The weights file of ``folder`` after checking its size and SHA-256 against ``config``."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise IntegrityError(f"{folder} has no {WEIGHTS_FILE}")
    expected = config.get("weights", {})
    if "size" in expected and path.stat().st_size != expected["size"]:
        raise IntegrityError(
            f"{path} is {path.stat().st_size} bytes but {expected['size']} were recorded: the file is truncated or "
            "was replaced; delete it (or the cached copy) and download again"
        )
    digest = sha256_file(path)
    if digest != expected.get("sha256"):
        raise IntegrityError(
            f"{path} has SHA-256 {digest[:16]}... but config.json records {str(expected.get('sha256'))[:16]}...: "
            "the weights were modified or corrupted; refusing to load them"
        )
    return path


def split_module_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LightningModule's state dict in repository layout: encoder keys bare, the rest under ``method.``."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = key[len(BACKBONE_ATTR) :] if key.startswith(BACKBONE_ATTR) else METHOD_PREFIX + key
        out[name] = value.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
    return out


def module_state(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`split_module_state`: keys of the whole LightningModule."""
    return {
        (key[len(METHOD_PREFIX) :] if key.startswith(METHOD_PREFIX) else BACKBONE_ATTR + key): value
        for key, value in tensors.items()
    }


def read_encoder_state(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Only the encoder's tensors of a repository's safetensors file (heads are not read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys() if not k.startswith(METHOD_PREFIX)}
    except SafetensorError as err:
        raise IntegrityError(f"{path} is not a valid safetensors file ({err})") from None


def read_all_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise IntegrityError(f"{path} is not a valid safetensors file ({err})") from None


def safetensors_complete(path: Path) -> bool:
    """Whether ``path`` is a whole safetensors file: its header parses and the file ends where the last tensor does
    (a truncated or foreign file gives ``False``). Reads the header only."""
    import struct

    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                return False
            header = json.loads(f.read(n))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError):
        return False
    return size == 8 + n + max(ends, default=0)


def torch_file_complete(path: Path) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (a zip archive whose central directory, written last, is
    there and names its pickle). Nothing is unpickled."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_state_checked(module: torch.nn.Module, state: Mapping[str, torch.Tensor], strict: bool, what: str) -> list[str]:
    """``load_state_dict`` that names missing and unexpected keys: an error when ``strict``, else returned."""
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    result = module.load_state_dict({k: v for k, v in state.items() if k not in mismatched}, strict=False)
    problems = []
    if mismatched:
        k = mismatched[0]
        problems.append(
            f"shape mismatches {_short(mismatched)} (e.g. {k}: {tuple(state[k].shape)} in the file, "
            f"{tuple(own[k].shape)} in the model)"
        )
    missing = [k for k in result.missing_keys if k not in mismatched]
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {_short(result.unexpected_keys)}")
    if problems and strict:
        raise ReprzooError(f"weights of {what} do not match its architecture: {'; '.join(problems)} (strict=True)")
    return problems


def _short(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")
