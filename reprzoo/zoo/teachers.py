"""Zoo models as distillation teachers: ``zoo:NAME`` becomes a local safetensors file of NAME's backbone.

Methods take ``teacher_weights`` as a plain file path and know no hub; the CLI resolves ``zoo:`` references with
:func:`resolve_teacher_weights` before the model is built, and Python users call :func:`teacher_weights`.
"""

from __future__ import annotations

from pathlib import Path

from reprzoo.errors import ReprzooError

ZOO_PREFIX = "zoo:"


def teacher_weights(name: str, backbone: str | None = None, revision: str | None = None) -> Path:
    """The backbone state dict of zoo model ``name`` as a safetensors file, cached under ``$REPRZOO_HOME/teachers``.

    Args:
        name: anything :func:`reprzoo.load` accepts (``simsiam-tinyresnet-digits``, ``name@rev``, ``hf://org/repo``).
        backbone: the teacher backbone the caller will build; a different backbone in the model's config raises.
        revision: pin a revision.
    """
    from safetensors.torch import save_file

    from reprzoo.atomic import atomic_write_once
    from reprzoo.zoo.api import resolve
    from reprzoo.zoo.local_hub import default_home
    from reprzoo.zoo.repo import read_config, read_encoder_state, safetensors_complete, verify_weights

    res = resolve(name, revision)
    config = read_config(res.folder)
    stored = config["architecture"]["backbone"]
    if backbone is not None and backbone != stored:
        raise ReprzooError(f"teacher {name!r} is a {stored} but teacher_backbone is {backbone!r}; set it to {stored!r}")
    weights = verify_weights(res.folder, config)
    digest = config["weights"]["sha256"][:16]
    path = default_home() / "teachers" / f"{config.get('name') or 'model'}-{digest}.safetensors"

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in read_encoder_state(weights).items()}, str(tmp))

    # every DDP rank may resolve the same teacher at once: one writes (unique temporary file, rename), the others
    # wait for it and reuse its file
    return atomic_write_once(path, write, is_complete=safetensors_complete)


def resolve_teacher_weights(value: str | None, backbone: str | None = None) -> str | None:
    """``zoo:NAME`` -> the path from :func:`teacher_weights`; any other value unchanged."""
    if isinstance(value, str) and value.startswith(ZOO_PREFIX):
        return str(teacher_weights(value[len(ZOO_PREFIX) :], backbone=backbone))
    return value
