"""One chunk file of a store build (``<run_id>.partial/chunk_<k>.npz``): write and re-check.

A chunk holds the outputs of ``embed_fn`` for ``chunk_size`` consecutive items: ``states``
(float32 ``(sum lengths, d)``), ``lengths``, ``dim`` and the per-item JSON ``records``.
Every chunk is written under a temporary name and renamed (:func:`sde_utils.io.atomic_write`),
so several writers (the ranks of a sharded build) can fill one ``.partial`` folder.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sde_utils.extraction.store_inputs import dumps
from sde_utils.io import atomic_write

CHUNK_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def chunk_path(partial: Path, k: int) -> Path:
    """The file of chunk ``k`` in the build folder ``partial``."""
    return partial / f"chunk_{k:06d}.npz"


def write_chunk(path: Path, states: np.ndarray, lengths: np.ndarray, records: list) -> None:
    """Write one chunk atomically (its folder must exist: it may not vanish under us)."""
    blob = np.frombuffer(dumps(records, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)

    def write(f: Any) -> None:
        np.savez(f, states=states, lengths=lengths, dim=np.int64(states.shape[1]), records=blob)

    atomic_write(path, write, make_parents=False)


def read_chunk(path: Path, n_items: int, dim: int | None) -> tuple[dict, str | None]:
    """The arrays of chunk file ``path`` and why it is unusable (None: it is sound).

    Sound means: readable, ``n_items`` sequences, states ``(sum lengths, dim)`` float32 and
    finite, one JSON record per sequence (``dim=None``: any dimension)."""
    try:
        with np.load(path) as z:
            chunk = {key: z[key] for key in ("states", "lengths", "dim", "records")}
        records = json.loads(chunk["records"].tobytes().decode("utf-8"))
    except CHUNK_READ_ERRORS as err:
        return {}, f"unreadable ({type(err).__name__}: {err})"
    states, lengths = chunk["states"], chunk["lengths"]
    chunk["records"] = records
    want_dim = int(chunk["dim"]) if dim is None else dim
    if (
        len(lengths) != n_items
        or len(records) != n_items
        or states.dtype != np.float32
        or states.shape != (int(lengths.sum()), want_dim)
        or int(chunk["dim"]) != want_dim
    ):
        return chunk, (
            f"inconsistent: {len(lengths)} lengths, {len(records)} records for {n_items} "
            f"items, states {states.dtype} {states.shape}, dim {int(chunk['dim'])} "
            f"(expected {want_dim})"
        )
    if not np.isfinite(states).all():
        row = int(np.flatnonzero(~np.isfinite(states).all(axis=1))[0])
        return chunk, f"holds a non-finite state (row {row} of the chunk)"
    return chunk, None


__all__ = ["CHUNK_READ_ERRORS", "chunk_path", "write_chunk", "read_chunk"]
