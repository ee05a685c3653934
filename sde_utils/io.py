"""Writing outputs: atomic files, and the one conversion of results to JSON.

A file is either the old one or the complete new one, never half.

Everything the project writes that a later run may read (stores, checkpoints, fits,
metrics, registries) goes through :func:`atomic_write`: the content is written to a
temporary name beside the target, flushed to disk, then renamed over it. An interrupted
write leaves the previous file (or none) and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[Any]], Any],
    mode: str = "wb",
    *,
    make_parents: bool = True,
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``mode`` is ``"wb"`` or ``"w"``. The parent folder is created if missing, unless
    ``make_parents=False`` (then a missing parent, e.g. a build folder another process
    renamed away, is a FileNotFoundError). The file gets the permissions the umask gives
    a new file (``0o666 & ~umask``), not ``mkstemp``'s private 0600. The temporary name is
    unique per call, so concurrent writers never share it. Returns ``path``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, make_parents: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text), mode="w", make_parents=make_parents)


class LockTimeout(TimeoutError):
    """Another process held a build lock for longer than the timeout."""


@contextlib.contextmanager
def build_lock(target: str | os.PathLike, *, timeout: float = 3600.0) -> Iterator[None]:
    """Hold an exclusive inter-process lock for building ``target`` (a file or folder).

    The lock file is ``<target>.lock`` beside it (``filelock``; released when the process
    dies, so a killed build never blocks the next one). A second process waits for the
    first; after ``timeout`` seconds it raises :class:`LockTimeout` naming the target and
    the lock file. Callers re-check for a finished result after acquiring, so a waiting
    process reuses what the first one built instead of building it again.
    """
    from filelock import FileLock, Timeout

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + ".lock")
    lock = FileLock(lock_path, mode=0o666 & ~_umask())
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise LockTimeout(
            f"another process has been building {target} for over {timeout:g} s (lock "
            f"{lock_path}); wait for it, or delete the lock file if no such process runs"
        ) from None
    try:
        yield
    finally:
        lock.release()


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


__all__ = ["atomic_write", "atomic_write_text", "to_jsonable", "build_lock", "LockTimeout"]
