"""Zoo models as distillation teachers: ``zoo:NAME`` becomes a local safetensors file of NAME's backbone.

Methods take ``teacher_weights`` as a plain file path and know no hub; the CLI resolves ``zoo:`` references with
:func:`resolve_teacher_weights` before the model is built, and Python users call :func:`teacher_weights`.
"""

from __future__ import annotations

from pathlib import Path

from reprzoo.errors import ReprzooError

ZOO_PREFIX = "zoo:"


def teacher_weights(name: str, backbone: str | None = None, revision: str | None = None) -> Path:
    """The encoder of zoo model ``name`` (what its ``load(name).embed`` computes: a DINO model's teacher, say) as
    a safetensors state dict of its bare backbone, cached under ``$REPRZOO_HOME/teachers``. A model whose
    representation is more than a backbone (an embedding layer on top, a concatenation) is refused.

    Args:
        name: anything :func:`reprzoo.load` accepts (``simsiam-tinyresnet-digits``, ``name@rev``, ``hf://org/repo``).
        backbone: the teacher backbone the caller will build; a different backbone in the model's config raises.
        revision: pin a revision.
    """
    from safetensors.torch import save_file

    from reprzoo.atomic import atomic_write_once
    from reprzoo.zoo.api import resolve
    from reprzoo.zoo.local_hub import default_home
    from reprzoo.zoo.repo import read_config, safetensors_complete, verify_weights

    res = resolve(name, revision)
    config = read_config(res.folder)
    stored = config["architecture"]["backbone"]
    if backbone is not None and backbone != stored:
        raise ReprzooError(f"teacher {name!r} is a {stored} but teacher_backbone is {backbone!r}; set it to {stored!r}")
    weights = verify_weights(res.folder, config)
    digest = config["weights"]["sha256"][:16]
    # named by the weights' hash only: nothing a hub writes (its config's name) steers where the file goes
    path = default_home() / "teachers" / f"teacher-{digest}.safetensors"

    def write(tmp: Path) -> None:
        save_file(
            {k: v.detach().contiguous().clone() for k, v in _encoder_state(name, revision, config, weights).items()}, str(tmp)
        )

    # every DDP rank may resolve the same teacher at once: one writes (unique temporary file, rename), the others
    # wait for it and reuse its file
    return atomic_write_once(path, write, is_complete=safetensors_complete)


def _encoder_state(name: str, revision: str | None, config: dict, weights: Path) -> dict:
    """The state dict of the model's representation as a bare backbone of ``architecture.backbone``."""
    from reprzoo.backbones import build_backbone
    from reprzoo.zoo.api import load
    from reprzoo.zoo.classes import check_backbone_kwargs
    from reprzoo.zoo.repo import read_encoder_state

    if str(config["format_version"]).split(".", 1)[0] == "1":  # format 1: the representation is the backbone
        return read_encoder_state(weights)
    arch = config["architecture"]
    encoder = load(name, revision=revision).encoder
    reference = build_backbone(arch["backbone"], **check_backbone_kwargs(arch.get("backbone_kwargs") or {})).state_dict()
    state = encoder.state_dict()
    if set(state) != set(reference) or any(state[k].shape != reference[k].shape for k in reference):
        raise ReprzooError(
            f"{name}'s representation ({type(encoder).__name__}) is more than a {arch['backbone']} backbone; a "
            "distillation teacher must be a bare backbone"
        )
    return state


def resolve_teacher_weights(value: str | None, backbone: str | None = None) -> str | None:
    """``zoo:NAME`` -> the path from :func:`teacher_weights`; any other value unchanged."""
    if isinstance(value, str) and value.startswith(ZOO_PREFIX):
        return str(teacher_weights(value[len(ZOO_PREFIX) :], backbone=backbone))
    return value
