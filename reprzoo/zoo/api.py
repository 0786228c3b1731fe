"""``load``, ``load_method``, ``list_models``, ``model_info`` and ``push``: the zoo in a few functions.

A bare name resolves through the registry of zoo entries, searched in order: the local hub under
``$REPRZOO_HOME`` (what you pushed), the models shipped inside the package (read-only), then names recorded by
pushes to the Hugging Face Hub (``$REPRZOO_HOME/registry.json``). ``hf://org/repo[@rev]`` and ``local:PATH`` (or a
directory) name a source explicitly.
"""

from __future__ import annotations

import fnmatch
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprzoo.errors import ReprzooError, UnknownNameError
from reprzoo.zoo.local_hub import LocalHub, default_home
from reprzoo.zoo.names import Source, check_hf_repo, check_name, parse_source
from reprzoo.zoo.repo import IntegrityError, load_state_checked, read_config, repo_files, verify_weights

if TYPE_CHECKING:
    import torch

BUILTIN_DIR = Path(__file__).parent / "builtin"
REGISTRY_FILE = "registry.json"


def home_hub() -> LocalHub:
    root = default_home() / "hub"
    return LocalHub(root, writable=True, label=str(root))


def builtin_hub() -> LocalHub:
    return LocalHub(BUILTIN_DIR, writable=False, label="the models shipped with reprzoo")


def local_hubs() -> list[LocalHub]:
    return [home_hub(), builtin_hub()]


def remote_entries() -> dict[str, str]:
    """Names recorded by pushes to the Hugging Face Hub: name -> ``hf://org/repo``."""
    path = default_home() / REGISTRY_FILE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReprzooError(f"{path} is not valid JSON ({err}); fix or delete it") from None
    if not isinstance(entries, dict):
        raise ReprzooError(
            f"{path} holds a {type(entries).__name__}, not an object mapping names to hf:// addresses; fix or delete it"
        )
    return {k: v for k, v in entries.items() if isinstance(v, str) and v.startswith("hf://")}


def _record_remote(name: str, target: str) -> None:
    from reprzoo.atomic import atomic_write_text

    entries = remote_entries()
    entries[name] = target
    atomic_write_text(default_home() / REGISTRY_FILE, json.dumps(dict(sorted(entries.items())), indent=2) + "\n")


@dataclass
class ZooEntry:
    """A registered name and where it resolves."""

    name: str
    source: str  # "local", "builtin" or an hf:// address
    hub: LocalHub | None = None
    config: dict[str, Any] = field(default_factory=dict)


def entries() -> dict[str, ZooEntry]:
    """Every name the registry knows, the first hub holding a name winning."""
    out: dict[str, ZooEntry] = {}
    for hub, label in zip(local_hubs(), ("local", "builtin")):
        for name in hub.names():
            out.setdefault(name, ZooEntry(name, label, hub))
    for name, target in remote_entries().items():
        out.setdefault(name, ZooEntry(name, target))
    return dict(sorted(out.items()))


def list_models(pattern: str = "*") -> list[str]:
    """Names of the zoo entries matching a shell-style ``pattern`` (``"*simsiam*"``), sorted."""
    return [n for n in entries() if fnmatch.fnmatch(n, pattern or "*")]


@dataclass(frozen=True)
class Resolved:
    """A model located on disk: ``folder`` holds the repository files of one revision."""

    folder: Path
    source: str
    revision: str | None
    hub: str


def resolve(spec: str, revision: str | None = None) -> Resolved:
    """Find (downloading from the Hugging Face Hub if needed) the files of a model reference."""
    src = parse_source(spec, revision)
    if src.kind == "hf":
        from reprzoo.zoo import hf

        folder, commit = hf.download(src.target, src.revision)
        return Resolved(folder, str(Source("hf", src.target)), commit, "huggingface")
    if src.kind == "local":
        return _resolve_folder(Path(src.target), src.revision)
    holders = [hub for hub in local_hubs() if hub.has(src.target)]
    if holders:
        errors = []
        for hub in holders:  # a pinned revision may live in either hub (a name you re-pushed over a shipped one)
            try:
                folder = hub.find_revision(src.target, src.revision)
                return Resolved(folder, src.target, folder.name, hub.label)
            except IntegrityError:  # a tampered revision is refused, never replaced by another hub's
                raise
            except ReprzooError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else ReprzooError("; ".join(map(str, errors)))
    remote = remote_entries().get(src.target)
    if remote:
        res = resolve(remote, src.revision)
        return Resolved(res.folder, src.target, res.revision, res.hub)
    raise UnknownNameError("model", src.target, list_models())


def _resolve_folder(path: Path, revision: str | None) -> Resolved:
    try:
        path.stat()
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:  # a name too long for the file system, an embedded NUL
        raise ReprzooError(
            f"local model folder {str(path)[:60]!r}... is not a usable path ({err.__class__.__name__}: "
            f"{getattr(err, 'strerror', None) or err})"
        ) from None
    if (path / "refs" / "main").is_file():  # a repository inside a local hub
        folder = LocalHub(path.parent, writable=False).find_revision(path.name, revision)
        return Resolved(folder, f"local:{path}", folder.name, str(path.parent))
    if not path.is_dir():
        raise ReprzooError(f"local model folder {path} does not exist")
    if revision is not None:
        raise ReprzooError(f"{path} is a plain folder and has no revisions; drop revision={revision!r}")
    return Resolved(path, f"local:{path}", None, "folder")


def load(
    name: str,
    revision: str | None = None,
    device: "str | torch.device | None" = None,
    dim: int | None = None,
    strict: bool = True,
):
    """A pretrained encoder by name, in eval mode: ``enc.embed(x)``, ``enc.transform``, ``enc.card``, ``enc.config``.

    Args:
        name: a zoo name (``simsiam-tinyresnet-digits``), ``hf://org/repo[@rev]``, ``local:PATH`` or a directory.
        revision: pin a revision (a local revision id or unique prefix, or a Hub branch, tag or commit).
        device: where to place the model.
        dim: truncate embeddings to this size; only sizes the model was trained for (``nested_dims``) are allowed.
        strict: refuse weights with missing or unexpected keys (otherwise they are reported as a warning).
    """
    from reprzoo.zoo.encoder import Encoder

    res = resolve(name, revision)
    config = read_config(res.folder)
    out_dim = _check_dim(config, dim)
    if str(config["format_version"]).split(".", 1)[0] == "1":
        module = _legacy_backbone(res, config, strict)
    else:  # the encoder contract: the registered method, rebuilt, embeds with its encoder()
        method = _build_method(res, config, strict)
        module = method.encoder()
        _check_embedding_dim(res, config, int(method.embedding_dim))
    encoder = Encoder(module, config, res.folder, res.source, res.revision, out_dim).eval()
    return encoder.to(device) if device is not None else encoder


def _check_embedding_dim(res: Resolved, config: dict, dim: int) -> None:
    recorded = int(config["architecture"]["embedding_dim"])
    if dim != recorded:
        raise ReprzooError(
            f"{res.source}: config.json records embedding_dim {recorded} but its method embeds in {dim} dimensions; "
            "the config is inconsistent"
        )


def _legacy_backbone(res: Resolved, config: dict, strict: bool):
    """Format 1 models: the bare backbone (all of them were methods whose representation is their backbone)."""
    from reprzoo.backbones import build_backbone
    from reprzoo.zoo.classes import check_backbone_kwargs
    from reprzoo.zoo.repo import read_encoder_state

    arch = config["architecture"]
    kwargs = check_backbone_kwargs(arch.get("backbone_kwargs") or {})
    try:
        backbone = build_backbone(arch["backbone"], **kwargs)
    except (TypeError, ValueError) as err:  # an argument the backbone does not take
        if isinstance(err, ReprzooError):
            raise
        raise ReprzooError(f"{res.source}: cannot build backbone {arch['backbone']} with {kwargs} ({err})") from None
    if getattr(backbone, "num_features", arch["embedding_dim"]) != arch["embedding_dim"]:
        raise ReprzooError(
            f"{res.source}: config.json records embedding_dim {arch['embedding_dim']} but backbone {arch['backbone']} "
            f"with {arch.get('backbone_kwargs')} gives {backbone.num_features}; the config is inconsistent"
        )
    state = read_encoder_state(verify_weights(res.folder, config))
    problems = load_state_checked(backbone, state, strict, what=f"{res.source} (backbone {arch['backbone']})")
    if problems:
        import warnings

        warnings.warn(f"{res.source}: loaded with {'; '.join(problems)} (strict=False)", stacklevel=3)
    return backbone


def _build_method(res: Resolved, config: dict, strict: bool, **overrides: Any):
    """The registered method a config names, built from its init args (plain values only; local files never
    followed) and loaded from the verified safetensors file: no class from a dotted path, nothing unpickled."""
    from reprzoo.lightning_modules.registry import without_local_args
    from reprzoo.zoo.classes import check_init_args, method_class
    from reprzoo.zoo.repo import module_state, read_all_tensors

    method = config.get("method") or {}
    cls = method_class(method.get("class_path") or method.get("name", ""))
    if cls.__name__ != method.get("name"):
        raise ReprzooError(
            f"{res.source}: config names method {method.get('name')!r} but class path {method.get('class_path')!r}"
        )
    init_args = check_init_args({**without_local_args(method.get("init_args") or {}), **overrides})
    arch = config.get("architecture") or {}
    try:
        module = cls(**init_args)
    except (TypeError, ValueError, KeyError) as err:  # an argument the class or its backbone does not take
        if isinstance(err, ReprzooError):
            raise
        raise ReprzooError(f"{res.source}: cannot build {cls.__name__} from config.json's init args ({err})") from None
    built = dict(zip(("backbone", "backbone_kwargs"), getattr(module, "backbone_spec", (None, None))))
    for key in ("backbone", "backbone_kwargs"):  # the card and `reprzoo info` show the architecture: it must be true
        value = built.get(key) if built.get("backbone") else init_args.get(key)  # what the method built
        if key in arch and (arch[key] or None) != (value or None):
            raise ReprzooError(
                f"{res.source}: config.json's architecture names {key} {arch[key]!r} but its method is built with "
                f"{value!r}; the config is inconsistent"
            )
    tensors = read_all_tensors(verify_weights(res.folder, config))
    problems = load_state_checked(module, module_state(tensors), strict, what=f"{res.source} ({cls.__name__})")
    if problems:
        import warnings

        warnings.warn(f"{res.source}: loaded with {'; '.join(problems)} (strict=False)", stacklevel=3)
    module.zoo_config = config
    return module.eval()


def _check_dim(config: dict, dim: int | None) -> int:
    full = int(config["architecture"]["embedding_dim"])
    if dim is None or dim == full:
        return full
    nested = config["architecture"].get("nested_dims") or []
    if dim not in nested:
        trained = (
            f"its trained prefix sizes are {sorted(nested)}"
            if nested
            else "it was not trained with nested (Matryoshka) embeddings"
        )
        raise ReprzooError(f"cannot truncate {config.get('name')} to dim={dim}: {trained}; its full size is {full}")
    return int(dim)


def load_method(
    name: str, revision: str | None = None, device: "str | torch.device | None" = None, strict: bool = True, **overrides: Any
):
    """The full LightningModule (heads, targets, probe) of a zoo model, in train mode, ready to fine-tune.

    ``overrides`` replace init args of the stored config (e.g. ``lr=0.01``).
    """
    res = resolve(name, revision)
    config = read_config(res.folder)
    module = _build_method(res, config, strict, **overrides).train()  # base weights, old models: replaced or not followed
    return module.to(device) if device is not None else module


@dataclass(frozen=True)
class PushResult:
    name: str
    target: str
    revision: str
    config: dict[str, Any]
    load_ref: str

    def __str__(self) -> str:
        return f"{self.name} -> {self.target} @ {self.revision}"


def push(
    run: str | Path,
    name: str,
    to: str | None = None,
    private: bool = False,
    base_model: str | None = None,
    license: str = "apache-2.0",
    force: bool = False,
) -> PushResult:
    """Export a finished run and push it as a new revision of ``name``.

    Args:
        run: a run directory (``runs/simsiam/version_0``) or a checkpoint inside one.
        name: the zoo name, ``method-backbone-dataset[.tag]``.
        to: ``None`` for the local hub, ``hf://org/repo`` for the Hugging Face Hub, ``local:DIR`` for another local
            hub folder.
        private: create the Hugging Face repository as private.
        base_model: the model this one was fine-tuned from, if the run does not record it.
        license: the card's license.
        force: push a name the package ships a model under (the pushed one shadows it); refused otherwise.
    """
    from reprzoo.zoo.export import export_run

    check_name(name)
    if to is None or to.startswith("local:"):
        if private:
            raise ReprzooError("--private applies only to hf:// targets; a local hub is private already")
        if to is not None and not to[len("local:") :].strip():
            raise ReprzooError("--to local: needs a hub folder, e.g. --to local:./my-hub (refusing the current directory)")
        hub = home_hub() if to is None else LocalHub(Path(to[len("local:") :]).expanduser())
        shipped = hub.root.resolve() == BUILTIN_DIR.resolve()  # building the package's own models
        if to is None and builtin_hub().has(name) and not force:
            raise ReprzooError(
                f"{name!r} is a model shipped with reprzoo: pushing it to the local hub would shadow the shipped one "
                "for every load of that name; choose another name (e.g. a .tag) or pass --force (force=True)"
            )
        load_ref = name if to is None or shipped else f"local:{hub.root / name}"
        with tempfile.TemporaryDirectory(prefix="reprzoo-push-") as tmp:
            config = export_run(run, name, Path(tmp), base_model=base_model, license=license, load_ref=load_ref)
            rev = hub.push(name, Path(tmp), message=f"push {name} from {Path(run).name}")
        return PushResult(name, f"local hub {hub.root / name}", rev, config, load_ref)
    if not to.startswith("hf://"):
        raise ReprzooError(f"unknown push target {to!r}: use hf://org/repo or local:DIR (or nothing for the local hub)")
    from reprzoo.zoo import hf

    repo_id = check_hf_repo(to[len("hf://") :])
    if name in entries() and entries()[name].source == "builtin" and not force:
        raise ReprzooError(
            f"{name!r} is a model shipped with reprzoo: recording it for hf://{repo_id} would not be loaded by that "
            "name (the shipped one wins); choose another name or pass --force (force=True)"
        )
    with tempfile.TemporaryDirectory(prefix="reprzoo-push-") as tmp:
        config = export_run(run, name, Path(tmp), base_model=base_model, license=license, load_ref=f"hf://{repo_id}")
        rev = hf.upload(Path(tmp), repo_id, private=private, message=f"reprzoo push {name}")
    _record_remote(name, f"hf://{repo_id}")
    return PushResult(name, f"hf://{repo_id}", rev, config, name)


def model_info(name: str, revision: str | None = None) -> dict[str, Any]:
    """What ``reprzoo info`` shows: source, revision, files with sizes and hashes, revisions, metrics, card."""
    from reprzoo.zoo.repo import read_card, sha256_file

    res = resolve(name, revision)
    config = read_config(res.folder)
    files = []
    for filename in repo_files(config):
        path = res.folder / filename
        if path.is_file():
            files.append({"file": filename, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return {
        "name": config.get("name"),
        "source": res.source,
        "hub": res.hub,
        "revision": res.revision,
        "revisions": _revisions(name, res),
        "files": files,
        "metrics": config.get("metrics", {}),
        "config": config,
        "card": read_card(res.folder),
    }


def _revisions(spec: str, res: Resolved) -> list[dict]:
    src = parse_source(spec)
    if res.hub == "huggingface":
        from reprzoo.zoo import hf

        address = spec if src.kind == "hf" else remote_entries()[src.target]
        return hf.revisions(parse_source(address).target)
    if src.kind == "name":
        out = []
        for hub in local_hubs():
            if hub.has(src.target):
                head = hub.head(src.target)
                out += [
                    {"id": r.id, "created": r.created, "message": r.message, "main": r.id == head, "hub": hub.label}
                    for r in hub.revisions(src.target)
                ]
        return out
    return [{"id": res.revision}] if res.revision else []
