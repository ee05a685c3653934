"""Writing outputs: atomic files, and the one conversion of results to JSON.

A file is either the old one or the complete new one, never half.

Everything the project writes that a later run may read (stores, checkpoints, fits,
metrics, registries) goes through :func:`atomic_write`: the content is written to a
temporary name beside the target, flushed to disk, then renamed over it. An interrupted
write leaves the previous file (or none) and no temporary file behind.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[Any]], Any], mode: str = "wb"
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``mode`` is ``"wb"`` or ``"w"``. The parent folder is created if missing. Returns ``path``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def to_jsonable(value: Any, *, keep_non_finite: bool = False) -> Any:
    """Results -> strict-JSON Python objects (the one conversion the project uses).

    Mappings become dicts with string keys, tuples lists, numpy arrays and torch tensors
    (nested) lists, numpy scalars Python numbers, complex numbers ``[real, imag]`` pairs,
    paths strings. Non-finite floats (NaN, inf) become ``None``, since strict JSON has no
    such values; a reader sees ``null`` where a number could not be computed.
    ``keep_non_finite=True`` keeps them as floats (to find them before they are written).
    """
    keep = keep_non_finite
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, keep_non_finite=keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, keep_non_finite=keep) for v in value]
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            value = np.stack([value.real, value.imag], axis=-1)
        return to_jsonable(value.tolist(), keep_non_finite=keep)
    if isinstance(value, (complex, np.complexfloating)):
        return [
            to_jsonable(float(value.real), keep_non_finite=keep),
            to_jsonable(float(value.imag), keep_non_finite=keep),
        ]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value) and not keep:
        return None
    if isinstance(value, Path):
        return str(value)
    return value


__all__ = ["atomic_write", "atomic_write_text", "to_jsonable"]
