"""A deterministic content hash of samples of any common type, for the provenance fingerprint of a dataset.

The same data gives the same hash in every process and on every machine: tensors and arrays hash by dtype, shape and
bytes, strings, bytes and numbers by value, mappings by their sorted keys, sequences element by element and PIL
images by mode, size and pixels. Anything else is refused with an error naming where it sits in the sample; nothing
is hashed through ``id`` or a ``repr`` holding a memory address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from reprzoo.errors import ReprzooError


class UnhashableSampleError(ReprzooError, TypeError):
    """A sample holds an object whose content has no deterministic hash."""


def update_hash(h, value: Any, where: str = "sample") -> None:
    """Feed ``value``'s content into the ``hashlib`` object ``h``; each part is tagged with its type, so that ``1``,
    ``1.0``, ``"1"`` and ``[1]`` hash differently.

    Raises:
        UnhashableSampleError: ``value`` holds an object of a type this function does not know (``where`` says which).
    """
    if isinstance(value, (np.ndarray, np.generic)):  # before numbers: np.float64 is a float
        _update_array(h, np.asarray(value), where)
    elif value is None or isinstance(value, (bool, int, float, complex)):  # bool before int: True is not 1 here
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(f"str:{len(data)}:".encode() + data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        h.update(f"bytes:{len(data)}:".encode() + data)
    elif isinstance(value, torch.Tensor):
        _update_tensor(h, value)
    elif isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: _key_order(kv[0], where))
        h.update(f"map:{len(items)}:".encode())
        for key, item in items:
            update_hash(h, key, f"{where} key")
            update_hash(h, item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        h.update(f"{'list' if isinstance(value, list) else 'tuple'}:{len(value)}:".encode())
        for i, item in enumerate(value):
            update_hash(h, item, f"{where}[{i}]")
    elif _is_pil_image(value):
        h.update(f"pil:{value.mode}:{value.size}:".encode())
        h.update(value.tobytes())
    else:
        raise UnhashableSampleError(
            f"cannot fingerprint {where}: a {type(value).__module__}.{type(value).__qualname__} has no deterministic "
            "content hash (supported: tensors, numpy arrays, numbers, strings, bytes, None, PIL images, and dicts, "
            "lists and tuples of them); return one of these from the dataset or override fingerprint()"
        )


def _update_tensor(h, value: torch.Tensor) -> None:
    t = value.detach()
    if t.is_sparse or t.layout != torch.strided:
        t = t.to_dense()
    t = t.cpu().contiguous()
    h.update(f"tensor:{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _update_array(h, value: np.ndarray, where: str) -> None:
    if value.dtype.hasobject:  # an array of Python objects: hash its elements, never their addresses
        h.update(f"objects:{value.shape}:".encode())
        for i, item in enumerate(value.reshape(-1).tolist()):
            update_hash(h, item, f"{where}.flat[{i}]")
        return
    h.update(f"array:{value.dtype.str}:{value.shape}:".encode())
    h.update(np.ascontiguousarray(value).tobytes())


def _key_order(key: Any, where: str) -> tuple[str, str]:
    if key is None or isinstance(key, (str, bytes, bool, int, float)):
        return type(key).__name__, repr(key)
    raise UnhashableSampleError(f"cannot fingerprint {where}: its key {key!r} is not a string, number or bytes")


def _is_pil_image(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - torchvision depends on Pillow
        return False
    return isinstance(value, Image.Image)
