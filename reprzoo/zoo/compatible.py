"""Zoo models as old models of compatible successors: ``zoo:NAME`` becomes a local checkpoint of NAME's module.

Compatible methods (``reprzoo.lightning_modules.compatible.base``) take ``old_model`` as a local checkpoint or run
directory and know no hub; the CLI resolves ``zoo:NAME`` with :func:`resolve_old_model` before the model is built
and records ``NAME@REVISION`` as ``old_model_name`` (the successor's lineage: ``compatible_with`` in its config).
"""

from __future__ import annotations

from pathlib import Path

from reprzoo.errors import ReprzooError

ZOO_PREFIX = "zoo:"


def old_model_checkpoint(name: str, revision: str | None = None) -> tuple[Path, str]:
    """``(checkpoint, "name@revision")``: zoo model ``name`` as a checkpoint :func:`load_old_model` reads, cached
    under ``$REPRZOO_HOME/old_models``.

    The checkpoint holds the whole module's tensors (``state_dict``), its init args (``hyper_parameters``) and its
    registered method name (``reprzoo_method``); it is written with ``torch.save`` of tensors and plain values only,
    so it loads with ``weights_only=True``.
    """
    import torch

    from reprzoo.atomic import atomic_write_once
    from reprzoo.lightning_modules.registry import without_local_args
    from reprzoo.zoo.api import resolve
    from reprzoo.zoo.classes import check_init_args, method_class
    from reprzoo.zoo.local_hub import default_home
    from reprzoo.zoo.names import parse_source
    from reprzoo.zoo.repo import module_state, read_all_tensors, read_config, torch_file_complete, verify_weights

    res = resolve(name, revision)
    config = read_config(res.folder)
    method = config["method"]
    cls = method_class(method.get("class_path") or method["name"])  # refuses classes that are not registered
    init_args = check_init_args(without_local_args(dict(method.get("init_args") or {})))
    weights = verify_weights(res.folder, config)
    src = parse_source(name, revision)
    label = f"{src.target if src.kind in ('name', 'hf') else res.source}@{res.revision or '-'}"
    digest = config["weights"]["sha256"][:16]
    # named by the registered class and the weights' hash only: nothing a hub writes steers where the file goes
    path = default_home() / "old_models" / f"{cls.__name__.lower()}-{digest}.ckpt"

    def write(tmp: Path) -> None:
        state = module_state(read_all_tensors(weights))
        torch.save({"state_dict": state, "hyper_parameters": init_args, "reprzoo_method": cls.__name__, "zoo_model": label}, tmp)

    # every DDP rank resolves zoo:NAME at once: one writes (unique temporary file, rename), the others wait for it
    # and reuse its file
    atomic_write_once(path, write, is_complete=torch_file_complete)
    return path, label


def resolve_old_model(value: str | None) -> tuple[str | None, str | None]:
    """``zoo:NAME[@REV]`` -> ``(local checkpoint, "NAME@REV")``; any other value -> ``(value, None)``."""
    if not (isinstance(value, str) and value.startswith(ZOO_PREFIX)):
        return value, None
    spec = value[len(ZOO_PREFIX) :]
    if not spec:
        raise ReprzooError("old_model 'zoo:' names no model; write zoo:NAME or zoo:NAME@REVISION")
    path, label = old_model_checkpoint(spec)
    return str(path), label
