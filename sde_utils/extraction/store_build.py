"""Building a trajectory store (the format is in :mod:`sde_utils.extraction.store`).

:func:`build_store` works chunk by chunk in ``<root>/<run_id>.partial/``: every finished
chunk is one file written under a temporary name and renamed, so an interrupted build
(an exception, Ctrl-C, a killed process) resumes without redoing finished chunks and never
leaves a half-written file; the final files are assembled there, the chunk files and
manifest removed, and the folder is renamed into place.

Reliability rules:

- The whole build holds :func:`sde_utils.io.build_lock` on the store folder (lock file
  ``<root>/<run_id>.lock``). A second process building the same store waits, then finds
  the finished store and reuses it; temporary names are never shared.
- A store is reused only after it loads (sizes, ``split_sizes``, finite states) and its
  files' sha256 match meta.json; otherwise the warning names the damaged file and the
  store is rebuilt from the items (a store is replaced only when it is damaged or was built
  from other params/items, never while it is complete and matching).
- On resume every chunk already in ``.partial`` is re-read: a truncated, unreadable,
  inconsistent or non-finite one is named in a warning, deleted and redone.

The pieces (:func:`plan_build`, :func:`reuse_or_prepare`, :func:`build_chunks`,
:func:`finish_build`) are public so that a sharded build runs the same code.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from sde_utils.checks import check_int
from sde_utils.extraction.store import (
    FORMAT_VERSION,
    SPLITS,
    STEP_FIELDS,
    CorruptStoreError,
    NonFiniteStatesError,
    hash_files,
    load_store,
    store_root,
)
from sde_utils.extraction.store_chunks import chunk_path, read_chunk, write_chunk
from sde_utils.extraction.store_inputs import (
    check_items,
    check_outputs,
    dumps,
    items_hash,
    normalise_params,
)
from sde_utils.io import atomic_write, build_lock

logger = logging.getLogger(__name__)

_HOISTED_PARAMS = ("source", "model", "embedding_kind", "layer", "seed")
_META_KEYS = frozenset(
    {
        "run_id",
        "format_version",
        "params",
        "items_hash",
        "n_sequences",
        "n_tokens",
        "dim",
        "dtype",
        "split_sizes",
        "columns",
        "package_versions",
        "content_hash",
        "file_sha256",
    }
)
_VERSIONED_PACKAGES = ("numpy", "pandas", "pyarrow", "torch", "transformers", "datasets")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

EmbedFn = Callable[[list[dict]], list[Mapping[str, Any]]]


def _package_versions() -> dict[str, str]:
    import sde_utils

    out = {"sde_utils": sde_utils.__version__}
    for name in _VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise ValueError(
            f"run_id must be a non-empty name of letters, digits, '_', '.', '-' (starting "
            f"with a letter or digit), got {run_id!r}"
        )
    if run_id.endswith((".partial", ".lock")) or ".stale-" in run_id:
        raise ValueError(f"run_id {run_id!r} clashes with the store's temporary folder names")
    return run_id


def _mismatch(stored: Mapping[str, Any], want: Mapping[str, Any]) -> str | None:
    """Why a stored meta/manifest does not match the requested build (None: it matches)."""
    if stored.get("format_version") != FORMAT_VERSION:
        return f"format_version {stored.get('format_version')!r} != {FORMAT_VERSION}"
    sp, wp = stored.get("params"), want["params"]
    if sp != wp:
        if isinstance(sp, dict):
            keys = sorted(k for k in set(sp) | set(wp) if sp.get(k, ...) != wp.get(k, ...))
            diff = ", ".join(
                f"{k}: stored {sp.get(k, '<absent>')!r} -> {wp.get(k, '<absent>')!r}" for k in keys
            )
            return f"params differ ({diff})"
        return f"stored params {sp!r} are not a mapping"
    if stored.get("items_hash") != want["items_hash"]:
        return (
            f"the items differ ({stored.get('n_sequences', stored.get('n_items'))} stored, "
            f"{want['n_items']} requested, different content)"
        )
    if "chunk_size" in want and stored.get("chunk_size") != want["chunk_size"]:
        return f"chunk_size {stored.get('chunk_size')!r} -> {want['chunk_size']!r}"
    return None


# --- building ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    """A checked build request (:func:`plan_build`): what a one-process build and a sharded
    one (:mod:`sde_utils.extraction.distributed`) share. Chunk ``k`` holds
    ``items[k * chunk_size : (k + 1) * chunk_size]``."""

    run_id: str
    items: list[dict]
    want: dict
    user_meta: dict
    chunk_size: int
    final: Path
    partial: Path

    @property
    def n_chunks(self) -> int:
        return math.ceil(len(self.items) / self.chunk_size)


def plan_build(
    run_id: str,
    items: Iterable[Mapping[str, Any]],
    *,
    params: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    chunk_size: int = 64,
    root: str | os.PathLike | None = None,
) -> BuildPlan:
    """Check a build request (arguments as for :func:`build_store`); touches no file."""
    run_id = _check_run_id(run_id)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    user_meta = dict(meta or {})
    clash = sorted(_META_KEYS & set(user_meta))
    if clash:
        raise ValueError(f"meta keys {clash} are reserved for the store; rename them")
    dumps(user_meta)  # fail early if meta cannot be written
    items = check_items(items)
    want = {
        "format_version": FORMAT_VERSION,
        "params": normalise_params(params),
        "items_hash": items_hash(items),
        "n_items": len(items),
    }
    root = store_root(root)
    return BuildPlan(
        run_id, items, want, user_meta, chunk_size, root / run_id, root / f"{run_id}.partial"
    )


def build_store(
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
    """Build (or reuse, or resume) the store ``<root>/<run_id>/`` and return its path.

    ``items``: one dict per sequence with at least ``conv_id`` and ``split`` (one of
    ``train/val/test``; a conversation in two splits is an error), usually ``pair_id`` and
    ``prompt``; every field is kept as a column. ``embed_fn(items_of_one_chunk)`` returns one
    dict per item with ``states`` ((L, d) array or tensor, finite), ``token_ids`` and
    ``tokens`` (length L), optionally ``entropy`` and ``logprob`` (length L) and extra
    scalar fields. ``params``: everything that determines the numbers (JSON
    serialisable); an existing store, or partial build, is reused only if its ``params``
    and items match and (for a store) its files still have their recorded sha256, otherwise
    it is recomputed (and the reason, naming a damaged file, logged). ``meta``: extra
    descriptive fields for ``meta.json``. The build holds ``<root>/<run_id>.lock``; a
    concurrent call for the same store waits and then reuses it
    (:class:`sde_utils.io.LockTimeout` after an hour).

    Raises :class:`NonFiniteStatesError` naming the sequences (their ``pair_id``) whose states
    hold NaN or inf; chunks finished before it are kept for the next run.
    """
    run_id = _check_run_id(run_id)
    if not callable(embed_fn):
        raise TypeError(f"embed_fn must be callable, got {embed_fn!r}")
    plan = plan_build(run_id, items, params=params, meta=meta, chunk_size=chunk_size, root=root)
    with build_lock(plan.final):  # one builder at a time; the others wait, then reuse
        done = reuse_or_prepare(plan)
        if done is not None:
            return done
        build_chunks(plan, embed_fn, progress=progress)
        return finish_build(plan)


def reuse_or_prepare(plan: BuildPlan) -> Path | None:
    """The finished store of ``plan`` if it can be reused; else None, with the ``.partial``
    folder ready for chunks (a matching partial build kept). Call it holding
    ``build_lock(plan.final)``."""
    final, partial, want = plan.final, plan.partial, plan.want
    for stale in final.parent.glob(f"{plan.run_id}.stale-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if _reusable(final, want):
        _remove_build_files(final)  # a store written before finished stores dropped them
        return final
    if (partial / "meta.json").exists() and _reusable(partial, want):
        _swap_into_place(partial, final, _stale_path(plan))  # assembled; rename interrupted
        return final
    _prepare_partial(partial, {**want, "chunk_size": plan.chunk_size})
    return None


def finish_build(plan: BuildPlan) -> Path:
    """Assemble the store from the chunks of ``plan.partial`` (all there and sound, after
    :func:`build_chunks` of every chunk), rename it into place and return its path. Call
    it holding ``build_lock(plan.final)``."""
    out_meta = _assemble(plan)
    _remove_build_files(plan.partial)
    _swap_into_place(plan.partial, plan.final, _stale_path(plan))
    n_seq, n_tok, dim = (out_meta[k] for k in ("n_sequences", "n_tokens", "dim"))
    logger.info("wrote store %s: %d sequences, %d tokens, d=%d", plan.final, n_seq, n_tok, dim)
    return plan.final


def _stale_path(plan: BuildPlan) -> Path:
    return plan.final.parent / f"{plan.run_id}.stale-{os.getpid()}"


def _remove_build_files(folder: Path) -> None:
    """Delete the chunk files and manifest of a build (meta.json, written last, stays)."""
    for path in folder.glob("chunk_*.npz"):
        path.unlink()
    (folder / "manifest.json").unlink(missing_ok=True)


def _reusable(final: Path, want: Mapping[str, Any]) -> bool:
    """Whether the finished store ``final`` exists, loads, matches the request and its
    files still have their recorded sha256 (else it is rebuilt; the reason is logged)."""
    if final.exists():
        try:
            stored = load_store(final, verify=True).meta
        except (CorruptStoreError, FileNotFoundError) as err:
            logger.warning("store %s is unreadable (%s); recomputing it", final, err)
        else:
            reason = _mismatch(stored, want)
            if reason is None:
                logger.info("reusing store %s (params and items match)", final)
                return True
            logger.warning("store %s does not match the request: %s; recomputing", final, reason)
    return False


def _prepare_partial(partial: Path, manifest: Mapping[str, Any]) -> None:
    """Keep a partial build that matches ``manifest`` (discard one that does not), remove
    its leftover temporary files and write the manifest of a new one."""
    if partial.exists():
        try:
            stored_manifest = json.loads((partial / "manifest.json").read_text())
            reason = _mismatch(stored_manifest, manifest)
        except (OSError, ValueError) as err:
            reason = f"its manifest is unreadable ({err})"
        if reason is not None:
            logger.warning("discarding partial build %s: %s", partial, reason)
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    for tmp in partial.glob(".*.tmp"):  # left by a killed build (we hold the lock)
        tmp.unlink()
    if not (partial / "manifest.json").exists():
        write = lambda f: f.write(dumps(manifest))  # noqa: E731
        atomic_write(partial / "manifest.json", write, "w", make_parents=False)


def build_chunks(
    plan: BuildPlan,
    embed_fn: EmbedFn,
    chunks: Iterable[int] | None = None,
    *,
    progress: bool = True,
) -> None:
    """Run ``embed_fn`` on every chunk of ``chunks`` (default: all) not yet soundly in
    ``plan.partial`` and write each one; a damaged chunk file is named, deleted and redone.

    Several processes may run it at once on disjoint ``chunks`` of one prepared build
    (:func:`reuse_or_prepare`), e.g. the ranks of a sharded build: each chunk is one file
    written under a unique temporary name and renamed."""
    partial, items, chunk_size, n_chunks = plan.partial, plan.items, plan.chunk_size, plan.n_chunks
    wanted = list(range(n_chunks)) if chunks is None else sorted(set(chunks))
    todo, dim = [], None
    for k in wanted:
        path = chunk_path(partial, k)
        if not path.exists():
            todo.append(k)
            continue
        n_items = len(items[k * chunk_size : (k + 1) * chunk_size])
        chunk, reason = read_chunk(path, n_items, dim)
        if reason is None:
            dim = int(chunk["dim"])
            continue
        logger.warning("chunk file %s of the partial build is %s; redoing it", path, reason)
        path.unlink()
        todo.append(k)
    if len(todo) < len(wanted):
        logger.info(
            "resuming %s: %d of %d chunks already done",
            plan.run_id,
            len(wanted) - len(todo),
            len(wanted),
        )
    with tqdm(
        total=len(wanted),
        initial=len(wanted) - len(todo),
        desc=f"store {plan.run_id}",
        unit="chunk",
        disable=not progress,
    ) as bar:
        for k in todo:
            first = k * chunk_size
            chunk = items[first : first + chunk_size]
            outputs = embed_fn([dict(it) for it in chunk])
            try:
                states, lengths, records = check_outputs(outputs, chunk, first, dim)
            except NonFiniteStatesError as err:
                raise NonFiniteStatesError(
                    f"{err} (chunk {k} of {n_chunks}; finished chunks are kept in {partial})"
                ) from None
            dim = states.shape[1]
            write_chunk(chunk_path(partial, k), states, lengths, records)
            bar.update(1)


def _swap_into_place(partial: Path, final: Path, stale: Path) -> None:
    """Rename the finished ``partial`` folder to ``final``, replacing an older store."""
    if final.exists():
        os.replace(final, stale)
        os.replace(partial, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(partial, final)


def _assemble(plan: BuildPlan) -> dict:
    """Write embeddings.npy, sequences.parquet, then meta.json in ``partial`` from its chunks
    (each re-checked as it is read: a chunk damaged since it was written stops the build)."""
    partial, run_id, items, chunk_size = plan.partial, plan.run_id, plan.items, plan.chunk_size
    n_chunks, want, user_meta = plan.n_chunks, plan.want, plan.user_meta

    def chunk(k: int, dim: int | None) -> dict:
        n_items = len(items[k * chunk_size : (k + 1) * chunk_size])
        out, reason = read_chunk(chunk_path(partial, k), n_items, dim)
        if reason is not None:
            raise CorruptStoreError(
                f"chunk file {chunk_path(partial, k)} is {reason}; rerun the build to redo it"
            )
        return out

    lengths, dim = [], None
    for k in range(n_chunks):
        z = chunk(k, dim)
        lengths.append(z["lengths"])
        dim = int(z["dim"])
    length = np.concatenate(lengths)
    if len(length) != len(items):
        raise CorruptStoreError(
            f"chunks in {partial} hold {len(length)} sequences, expected {len(items)}"
        )
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    n_tokens = int(length.sum())

    records: list[dict] = []
    tmp_emb = partial / f".embeddings.npy.{os.getpid()}.tmp"
    emb = np.lib.format.open_memmap(tmp_emb, mode="w+", dtype=np.float32, shape=(n_tokens, dim))
    pos = 0
    for k in range(n_chunks):
        z = chunk(k, dim)
        emb[pos : pos + len(z["states"])] = z["states"]
        pos += len(z["states"])
        records.extend(z["records"])
    emb.flush()
    del emb
    os.replace(tmp_emb, partial / "embeddings.npy")

    table = _sequence_table(items, records, offset, length)
    write_table = lambda f: pq.write_table(table, f)  # noqa: E731
    atomic_write(partial / "sequences.parquet", write_table, make_parents=False)

    file_sha256, content_hash = hash_files(partial)
    splits = np.array([it["split"] for it in items])
    split_sizes = {
        s: {"sequences": int((splits == s).sum()), "tokens": int(length[splits == s].sum())}
        for s in SPLITS
    }
    hoisted = {k: want["params"][k] for k in _HOISTED_PARAMS if k in want["params"]}
    out_meta = {
        **hoisted,
        **user_meta,
        "run_id": run_id,
        "format_version": FORMAT_VERSION,
        "params": want["params"],
        "items_hash": want["items_hash"],
        "n_sequences": len(items),
        "n_tokens": n_tokens,
        "dim": dim,
        "dtype": "float32",
        "split_sizes": split_sizes,
        "columns": table.column_names,
        "package_versions": _package_versions(),
        "content_hash": content_hash,
        "file_sha256": file_sha256,
    }
    write_meta = lambda f: f.write(dumps(out_meta, indent=2))  # noqa: E731
    atomic_write(partial / "meta.json", write_meta, "w", make_parents=False)
    return out_meta


def _sequence_table(
    items: list[dict], records: list[dict], offset: np.ndarray, length: np.ndarray
) -> pa.Table:
    n = len(items)
    cols: dict[str, pa.Array] = {
        "seq_id": pa.array(np.arange(n, dtype=np.int64)),
        "pair_id": pa.array(
            [str(it["pair_id"]) if "pair_id" in it else None for it in items], pa.string()
        ),
        "conv_id": pa.array([str(it["conv_id"]) for it in items], pa.string()),
        "split": pa.array([it["split"] for it in items], pa.string()),
        "offset": pa.array(offset, pa.int64()),
        "length": pa.array(length, pa.int64()),
        "prompt": pa.array([it.get("prompt") for it in items], pa.string()),
        "token_ids": pa.array([r["token_ids"] for r in records], pa.list_(pa.int64())),
        "tokens": pa.array([r["tokens"] for r in records], pa.list_(pa.string())),
    }
    for field in STEP_FIELDS:
        if any(field in r for r in records):
            cols[field] = pa.array([r.get(field) for r in records], pa.list_(pa.float64()))
    item_keys = list(dict.fromkeys(k for it in items for k in it))
    extra_keys = list(dict.fromkeys(k for r in records for k in r["extra"]))
    sources = [(k, [it.get(k) for it in items]) for k in item_keys if k not in cols]
    sources += [(k, [r["extra"].get(k) for r in records]) for k in extra_keys]
    for key, values in sources:
        try:
            cols[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise TypeError(f"column {key!r} mixes types that parquet cannot store: {err}") from err
    return pa.table(cols)


__all__ = [
    "EmbedFn",
    "BuildPlan",
    "plan_build",
    "build_store",
    "reuse_or_prepare",
    "build_chunks",
    "finish_build",
]
