"""Sharded store builds on ``torch.distributed``: every rank computes a shard of the chunks.

Every rank runs the same program on the same items. The store's chunks are dealt round
robin: rank ``r`` of ``W`` computes chunks ``r, r + W, r + 2W, ...`` (a deterministic shard
that balances long and short chunks) and writes them into the one ``<run_id>.partial``
folder, which every rank must see (one machine, or a shared file system). Rank 0 holds the
store's build lock throughout, prepares the folder (or finds the finished store and
reuses it), and after the other ranks are done re-checks every chunk, redoes a missing or
damaged one itself and assembles the store with the one-process code
(:mod:`sde_utils.extraction.store_build`). A chunk's numbers depend only on its items (for
sampling, on ``(seed, prompt position, temperature, sample)``), so the store is identical,
file for file, to a one-process build with the same torch threads per process.

Without an initialised process group :func:`build_store_sharded` is :func:`build_store`;
the command line that starts ranks is :mod:`sde_utils.extraction.distributed`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist

from sde_utils.checks import check_int
from sde_utils.extraction.store_build import (
    EmbedFn,
    build_chunks,
    build_store,
    finish_build,
    plan_build,
    reuse_or_prepare,
)
from sde_utils.io import build_lock


def shard(n_chunks: int, rank: int, world_size: int) -> list[int]:
    """The chunks rank ``rank`` of ``world_size`` computes: ``rank, rank + W, ...``."""
    n_chunks = check_int("n_chunks", n_chunks, minimum=0)
    world_size = check_int("world_size", world_size, minimum=1)
    rank = check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size={world_size}, got {rank}")
    return list(range(rank, n_chunks, world_size))


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _agree(error: BaseException | None, what: str) -> None:
    """Every rank learns whether any rank failed (a collective, so none waits forever)."""
    errors: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, None if error is None else f"{type(error).__name__}: {error}")
    failed = {r: e for r, e in enumerate(errors) if e is not None}
    if failed and error is None:
        raise RuntimeError(f"{what} failed on rank(s) {sorted(failed)}: {failed}")
    if error is not None:
        raise error


def build_store_sharded(
    run_id: str,
    items: Iterable[Mapping[str, Any]],
    embed_fn: EmbedFn,
    *,
    params: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    chunk_size: int = 64,
    root: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """:func:`sde_utils.extraction.store_build.build_store`, shared by the ranks of the
    process group (every rank calls it with the same arguments; each returns the path).

    Each rank computes its :func:`shard` of the chunks; rank 0 assembles. A rank that
    fails makes every rank raise (naming it); finished chunks stay for the next run.
    """
    rank, world = rank_and_world()
    if world == 1:
        return build_store(
            run_id, items, embed_fn, params=params, meta=meta, chunk_size=chunk_size,
            root=root, progress=progress,
        )  # fmt: skip
    if not callable(embed_fn):
        raise TypeError(f"embed_fn must be callable, got {embed_fn!r}")
    plan = plan_build(run_id, items, params=params, meta=meta, chunk_size=chunk_size, root=root)
    if rank == 0:
        with build_lock(plan.final):  # held while the others write chunks
            return _lead(plan, embed_fn, world, progress)
    news = _hear_from_rank0()
    if news[0] == "build":
        _compute_shard(plan, embed_fn, rank, world)
        news = _hear_from_rank0()
    if news[0] == "error":
        raise RuntimeError(f"rank 0 failed on store {run_id}: {news[1]}")
    return Path(news[1])


def _tell_others(what: str, value: Any = None) -> None:
    """Rank 0's news: ``("build", None)``, ``("path", store)`` or ``("error", message)``
    (plain strings, so pickling can never fail and leave the others waiting)."""
    dist.broadcast_object_list([(what, None if value is None else str(value))], src=0)


def _hear_from_rank0() -> tuple[str, str | None]:
    news: list[Any] = [None]
    dist.broadcast_object_list(news, src=0)
    return news[0]


def _lead(plan, embed_fn: EmbedFn, world: int, progress: bool) -> Path:
    try:
        done = reuse_or_prepare(plan)
    except BaseException as err:  # the others must not wait forever
        _tell_others("error", f"{type(err).__name__}: {err}")
        raise
    if done is not None:
        _tell_others("path", done)
        return done
    _tell_others("build")
    _compute_shard(plan, embed_fn, 0, world, progress)
    try:
        build_chunks(plan, embed_fn, progress=False)  # re-check all; redo any missing
        path = finish_build(plan)
    except BaseException as err:
        _tell_others("error", f"{type(err).__name__}: {err}")
        raise
    _tell_others("path", path)
    return path


def _compute_shard(plan, embed_fn: EmbedFn, rank: int, world: int, progress=False) -> None:
    error = None
    try:
        build_chunks(plan, embed_fn, shard(plan.n_chunks, rank, world), progress=progress)
    except Exception as err:  # noqa: BLE001 - reported to every rank by _agree
        error = err
    _agree(error, f"building the chunks of {plan.run_id}")


__all__ = ["shard", "rank_and_world", "build_store_sharded"]
