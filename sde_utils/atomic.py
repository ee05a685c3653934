"""Atomic file writes: a file is either the old one or the complete new one, never half.

Everything the project writes that a later run may read (stores, checkpoints, fits,
metrics, registries) goes through :func:`atomic_write`: the content is written to a
temporary name beside the target, flushed to disk, then renamed over it. An interrupted
write leaves the previous file (or none) and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


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


__all__ = ["atomic_write", "atomic_write_text"]
