"""The catalogue of methods: each LightningModule registers with its paper's exact title, wing and modality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from reprzoo.errors import UnknownNameError

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    cls: type
    title: str
    wing: str
    modality: str
    arxiv: str | None = None
    #: what of the method is the project's own where the paper is silent; shown wherever the method is listed
    #: (``reprzoo methods``, the catalogue, a pushed model's card)
    note: str | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "class_path": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "title": self.title,
            "wing": self.wing,
            "modality": self.modality,
            "arxiv": self.arxiv,
            "note": self.note,
        }


METHODS: dict[str, MethodInfo] = {}

#: Init args that point at files on the machine that trains (an old model, a teacher's or a base model's weights,
#: a stage-1 model): a rebuilt method never follows them (its weights come from elsewhere) and a pushed config never
#: carries them. One list for the zoo's export and load and for old models rebuilt from checkpoints.
LOCAL_ONLY_ARGS = ("old_model", "base_weights", "teacher_weights", "independent_model")


def without_local_args(init_args: dict) -> dict:
    """``init_args`` with every :data:`LOCAL_ONLY_ARGS` present set to ``None``."""
    return {k: (None if k in LOCAL_ONLY_ARGS else v) for k, v in init_args.items()}


def register_method(
    *, title: str, wing: str, modality: str = "image", arxiv: str | None = None, note: str | None = None
) -> Callable[[T], T]:
    """Class decorator adding a method to the catalogue under its class name."""

    def decorate(cls: T) -> T:
        name = cls.__name__
        if name in METHODS and METHODS[name].cls is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = MethodInfo(name, cls, title, wing, modality, arxiv, note)
        return cls

    return decorate


def get_method(name: str) -> type:
    """The registered LightningModule class called ``name``; unknown names raise with near matches."""
    _import_all()
    if name not in METHODS:
        raise UnknownNameError("method", name, METHODS)
    return METHODS[name].cls


def list_methods() -> list[MethodInfo]:
    _import_all()
    return sorted(METHODS.values(), key=lambda m: (m.wing, m.name))


def _import_all() -> None:
    import reprzoo.lightning_modules  # noqa: F401  (registers every method)
