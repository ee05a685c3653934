"""The trajectory store: per-token states of many sequences, written atomically, read mmapped.

Layout of ``<root>/<run_id>/`` (``root`` defaults to ``paths.TRAJECTORIES_DIR``):

- ``embeddings.npy``: ``(N_tokens, d)`` float32, the states of all sequences stacked in
  sequence order; read it with ``np.load(..., mmap_mode="r")``.
- ``sequences.parquet``: one row per sequence: ``seq_id`` (0..n-1), ``pair_id``,
  ``conv_id``, ``split`` (``train/val/test``), ``offset``, ``length`` (the states of
  sequence i are ``embeddings[offset_i : offset_i + length_i]``), ``prompt``, ``token_ids``
  (list of int), ``tokens`` (list of str), for sampled runs ``entropy`` and ``logprob``
  (lists of float, one per step), then every other field of the items (e.g.
  ``temperature``, ``sample_index``, ``response``) and the extra scalar fields ``embed_fn``
  returned.
- ``meta.json``: ``params`` (decide reuse), ``items_hash``, the sizes (``n_sequences``,
  ``n_tokens``, ``dim``, ``split_sizes``), ``source / model / embedding_kind / layer / seed``
  (copied from ``params`` when present there) plus the caller's ``meta``, package versions
  and ``content_hash`` (sha256 of ``embeddings.npy`` then ``sequences.parquet``).

:func:`build_store` works chunk by chunk in ``<root>/<run_id>.partial/``: every finished
chunk is one file written under a temporary name and renamed, so an interrupted build
(an exception, Ctrl-C, a killed process) resumes without redoing finished chunks and never
leaves a half-written file; the final files are assembled there and the folder is renamed
into place. Time along a sequence is ``t_k = k * dt`` for its k-th state (k = 0, 1, ...).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from sde_utils import paths
from sde_utils.io import atomic_write

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
STEP_FIELDS = ("entropy", "logprob")  # optional per-step outputs of embed_fn
_OUTPUT_FIELDS = ("states", "token_ids", "tokens", *STEP_FIELDS)
_RESERVED_ITEM_KEYS = frozenset({"seq_id", "offset", "length", *_OUTPUT_FIELDS})
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
    }
)
_VERSIONED_PACKAGES = ("numpy", "pandas", "pyarrow", "torch", "transformers", "datasets")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CHUNK_RE = re.compile(r"^chunk_(\d{6})\.npz$")

EmbedFn = Callable[[list[dict]], list[Mapping[str, Any]]]


class CorruptStoreError(ValueError):
    """A store folder exists but its files are missing, unreadable or inconsistent."""


class NonFiniteStatesError(ValueError):
    """``embed_fn`` returned NaN or inf states; the message names the sequences."""


# --- helpers -----------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{obj!r} ({type(obj).__name__}) is not JSON serialisable")


def _dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default, allow_nan=False, **kw)


def _normalise_params(params: Any) -> dict:
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    try:
        return json.loads(_dumps(dict(params)))
    except (TypeError, ValueError) as err:
        raise TypeError(f"params must be JSON serialisable (no NaN): {err}") from err


def _items_hash(items: list[dict]) -> str:
    h = hashlib.sha256()
    for item in items:
        try:
            h.update(_dumps(item, separators=(",", ":")).encode("utf-8"))
        except (TypeError, ValueError) as err:
            raise TypeError(f"every item must be JSON serialisable: {err}") from err
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def _file_sha256(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def _package_versions() -> dict[str, str]:
    import sde_utils

    out = {"sde_utils": sde_utils.__version__}
    for name in _VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else paths.TRAJECTORIES_DIR


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise ValueError(
            f"run_id must be a non-empty name of letters, digits, '_', '.', '-' (starting "
            f"with a letter or digit), got {run_id!r}"
        )
    if run_id.endswith(".partial") or ".stale-" in run_id:
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


def _check_items(items: Any) -> list[dict]:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise TypeError(f"items must be a list of dicts, got {type(items).__name__}")
    items = list(items)
    if not items:
        raise ValueError("items is empty: nothing to build")
    out = []
    conv_split: dict[str, str] = {}
    clashes: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"item {i} must be a dict, got {type(item).__name__}")
        item = dict(item)
        missing = [k for k in ("conv_id", "split") if k not in item]
        if missing:
            raise ValueError(f"item {i} lacks {missing}; it has keys {sorted(item)}")
        reserved = sorted(_RESERVED_ITEM_KEYS & set(item))
        if reserved:
            raise ValueError(f"item {i} uses reserved keys {reserved} (the store sets them)")
        if item["split"] not in SPLITS:
            raise ValueError(f"item {i} has split {item['split']!r}; allowed: {list(SPLITS)}")
        conv = str(item["conv_id"])
        if conv_split.setdefault(conv, item["split"]) != item["split"]:
            clashes.append(conv)
        out.append(item)
    if clashes:
        shown = sorted(set(clashes))
        raise ValueError(
            f"{len(shown)} conversations appear in two splits (split by conversation, never "
            f"by token), e.g. {shown[:5]}"
        )
    pair_ids = [it["pair_id"] for it in out if "pair_id" in it]
    if len(set(map(str, pair_ids))) != len(pair_ids):
        raise ValueError("pair_id values must be unique across items")
    return out


def _label(item: Mapping[str, Any], index: int) -> str:
    return str(item["pair_id"]) if "pair_id" in item else f"seq_id={index}"


def _as_states(states: Any) -> np.ndarray:
    if hasattr(states, "detach"):  # a torch tensor, without importing torch here
        states = states.detach().to("cpu").float().numpy()
    with np.errstate(over="ignore"):  # values beyond float32 become inf, caught as non-finite
        return np.asarray(states, dtype=np.float32)


def _check_outputs(
    outputs: Any, chunk_items: list[dict], first: int, dim: int | None
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Validate one chunk of ``embed_fn`` outputs -> (states (sum L, d), lengths, records)."""
    if isinstance(outputs, Mapping) or not isinstance(outputs, Iterable):
        raise TypeError(f"embed_fn must return a list of dicts, got {type(outputs).__name__}")
    outputs = list(outputs)
    if len(outputs) != len(chunk_items):
        raise ValueError(
            f"embed_fn returned {len(outputs)} results for {len(chunk_items)} items "
            f"(seq_id {first}..{first + len(chunk_items) - 1})"
        )
    states_list, records, bad = [], [], []
    for j, (out, item) in enumerate(zip(outputs, chunk_items, strict=True)):
        label = _label(item, first + j)
        if not isinstance(out, Mapping):
            raise TypeError(f"embed_fn result for {label} must be a dict, got {type(out)}")
        missing = [k for k in ("states", "token_ids", "tokens") if k not in out]
        if missing:
            raise ValueError(f"embed_fn result for {label} lacks {missing}; has {sorted(out)}")
        states = _as_states(out["states"])
        if states.ndim != 2 or states.shape[0] == 0:
            raise ValueError(f"states of {label} must be (L >= 1, d), got shape {states.shape}")
        dim = states.shape[1] if dim is None else dim
        if states.shape[1] != dim:
            raise ValueError(f"states of {label} have d={states.shape[1]}, earlier ones d={dim}")
        n = states.shape[0]
        record: dict[str, Any] = {
            "token_ids": [int(t) for t in np.asarray(out["token_ids"]).reshape(-1)],
            "tokens": [str(t) for t in out["tokens"]],
        }
        for field in STEP_FIELDS:
            if out.get(field) is not None:
                record[field] = [float(v) for v in np.asarray(out[field]).reshape(-1)]
        for field in ("token_ids", "tokens", *STEP_FIELDS):
            if field in record and len(record[field]) != n:
                raise ValueError(
                    f"{field} of {label} has length {len(record[field])}, its states L={n}"
                )
        extra = {}
        for key, value in out.items():
            if key in _OUTPUT_FIELDS:
                continue
            if key in item or key in _RESERVED_ITEM_KEYS:
                raise ValueError(
                    f"embed_fn result key {key!r} for {label} collides with an item field or "
                    f"a store column; rename it"
                )
            if isinstance(value, np.generic):
                value = value.item()
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise TypeError(
                    f"extra field {key!r} of {label} must be a scalar, got {type(value).__name__}"
                )
            extra[key] = value
        record["extra"] = extra
        if not np.isfinite(states).all():
            bad.append(label)
        states_list.append(states)
        records.append(record)
    if bad:
        raise NonFiniteStatesError(
            f"non-finite values (NaN or inf) in the states of {len(bad)} sequences: {bad}"
        )
    lengths = np.array([s.shape[0] for s in states_list], dtype=np.int64)
    return np.concatenate(states_list, axis=0), lengths, records


def _chunk_path(partial: Path, k: int) -> Path:
    return partial / f"chunk_{k:06d}.npz"


def _write_chunk(path: Path, states: np.ndarray, lengths: np.ndarray, records: list) -> None:
    blob = np.frombuffer(_dumps(records, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)

    def write(f: Any) -> None:
        np.savez(f, states=states, lengths=lengths, dim=np.int64(states.shape[1]), records=blob)

    atomic_write(path, write)


# --- building ----------------------------------------------------------------------------------


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
    and items match, otherwise it is recomputed (and the reason logged). ``meta``: extra
    descriptive fields for ``meta.json``.

    Raises :class:`NonFiniteStatesError` naming the sequences (their ``pair_id``) whose states
    hold NaN or inf; chunks finished before it are kept for the next run.
    """
    run_id = _check_run_id(run_id)
    if not callable(embed_fn):
        raise TypeError(f"embed_fn must be callable, got {embed_fn!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_size must be an int, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    user_meta = dict(meta or {})
    clash = sorted(_META_KEYS & set(user_meta))
    if clash:
        raise ValueError(f"meta keys {clash} are reserved for the store; rename them")
    _dumps(user_meta)  # fail early if meta cannot be written
    items = _check_items(items)
    want = {
        "format_version": FORMAT_VERSION,
        "params": _normalise_params(params),
        "items_hash": _items_hash(items),
        "n_items": len(items),
    }
    root = _root(root)
    final = root / run_id
    partial = root / f"{run_id}.partial"
    for stale in root.glob(f"{run_id}.stale-*"):
        shutil.rmtree(stale, ignore_errors=True)

    if final.exists():
        try:
            stored = load_store(final).meta
        except (CorruptStoreError, FileNotFoundError) as err:
            logger.warning("store %s is unreadable (%s); recomputing it", final, err)
        else:
            reason = _mismatch(stored, want)
            if reason is None:
                logger.info("reusing store %s (params and items match)", final)
                return final
            logger.warning("store %s does not match the request: %s; recomputing", final, reason)

    manifest = {**want, "chunk_size": int(chunk_size)}
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
    for tmp in partial.glob(".*.tmp"):
        tmp.unlink()
    if not (partial / "manifest.json").exists():
        atomic_write(partial / "manifest.json", lambda f: f.write(_dumps(manifest)), "w")

    n_chunks = math.ceil(len(items) / chunk_size)
    todo = [k for k in range(n_chunks) if not _chunk_path(partial, k).exists()]
    if len(todo) < n_chunks:
        logger.info(
            "resuming %s: %d of %d chunks already done", run_id, n_chunks - len(todo), n_chunks
        )
    dim = _partial_dim(partial, n_chunks)
    with tqdm(
        total=n_chunks,
        initial=n_chunks - len(todo),
        desc=f"store {run_id}",
        unit="chunk",
        disable=not progress,
    ) as bar:
        for k in todo:
            first = k * chunk_size
            chunk = items[first : first + chunk_size]
            outputs = embed_fn([dict(it) for it in chunk])
            try:
                states, lengths, records = _check_outputs(outputs, chunk, first, dim)
            except NonFiniteStatesError as err:
                raise NonFiniteStatesError(
                    f"{err} (chunk {k} of {n_chunks}; finished chunks are kept in {partial})"
                ) from None
            dim = states.shape[1]
            _write_chunk(_chunk_path(partial, k), states, lengths, records)
            bar.update(1)

    out_meta = _assemble(partial, run_id, items, n_chunks, want, user_meta)
    if final.exists():
        stale = root / f"{run_id}.stale-{os.getpid()}"
        os.replace(final, stale)
        os.replace(partial, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(partial, final)
    logger.info(
        "wrote store %s: %d sequences, %d tokens, d=%d",
        final,
        out_meta["n_sequences"],
        out_meta["n_tokens"],
        out_meta["dim"],
    )
    return final


def _partial_dim(partial: Path, n_chunks: int) -> int | None:
    for k in range(n_chunks):
        path = _chunk_path(partial, k)
        if path.exists():
            with np.load(path) as z:
                return int(z["dim"])
    return None


def _assemble(
    partial: Path,
    run_id: str,
    items: list[dict],
    n_chunks: int,
    want: Mapping[str, Any],
    user_meta: Mapping[str, Any],
) -> dict:
    """Write embeddings.npy, sequences.parquet and meta.json in ``partial`` from its chunks."""
    lengths, dims = [], set()
    for k in range(n_chunks):
        with np.load(_chunk_path(partial, k)) as z:
            lengths.append(z["lengths"])
            dims.add(int(z["dim"]))
    if len(dims) != 1:
        raise CorruptStoreError(f"chunks in {partial} disagree on the state dimension: {dims}")
    dim = dims.pop()
    length = np.concatenate(lengths)
    if len(length) != len(items):
        raise CorruptStoreError(
            f"chunks in {partial} hold {len(length)} sequences, expected {len(items)}"
        )
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    n_tokens = int(length.sum())

    records: list[dict] = []
    tmp_emb = partial / ".embeddings.npy.tmp"
    emb = np.lib.format.open_memmap(tmp_emb, mode="w+", dtype=np.float32, shape=(n_tokens, dim))
    pos = 0
    for k in range(n_chunks):
        with np.load(_chunk_path(partial, k)) as z:
            states = z["states"]
            emb[pos : pos + len(states)] = states
            pos += len(states)
            records.extend(json.loads(z["records"].tobytes().decode("utf-8")))
    emb.flush()
    del emb
    os.replace(tmp_emb, partial / "embeddings.npy")

    table = _sequence_table(items, records, offset, length)
    atomic_write(partial / "sequences.parquet", lambda f: pq.write_table(table, f))

    h = hashlib.sha256()
    _file_sha256(h, partial / "embeddings.npy")
    _file_sha256(h, partial / "sequences.parquet")
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
        "content_hash": "sha256:" + h.hexdigest(),
    }
    atomic_write(partial / "meta.json", lambda f: f.write(_dumps(out_meta, indent=2)), "w")
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


# --- reading -----------------------------------------------------------------------------------


class TrajectoryStore:
    """A loaded store, or a view of one split of it.

    ``embeddings``: ``(N_tokens, d)`` float32, memory-mapped (shared by every view);
    ``sequences``: DataFrame, one row per sequence of this view (index 0..len-1);
    ``meta``: the parsed ``meta.json``; ``path``: the store folder.
    """

    def __init__(self, path: Path, meta: dict, embeddings: np.ndarray, sequences: pd.DataFrame):
        self.path = path
        self.meta = meta
        self.embeddings = embeddings
        self.sequences = sequences

    @property
    def dim(self) -> int:
        """State dimension d."""
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.sequences)

    def __repr__(self) -> str:
        splits = sorted(set(self.sequences["split"]))
        return (
            f"TrajectoryStore({self.path.name!r}, {len(self)} sequences, "
            f"{int(self.sequences['length'].sum())} tokens, d={self.dim}, splits={splits})"
        )

    def trajectory(self, i: int) -> np.ndarray:
        """States of the i-th sequence of this view: ``(L_i, d)`` float32 (a memmap slice)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"sequence index must be an int, got {i!r}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence index {i} out of range for {len(self)} sequences")
        row = self.sequences.iloc[int(i)]
        start = int(row["offset"])
        return self.embeddings[start : start + int(row["length"])]

    def states(self) -> np.ndarray:
        """Every state of this view's sequences, stacked in order: ``(sum L_i, d)`` float32.

        Unlike ``embeddings`` (the whole store, shared by every view) this holds only the
        view's own tokens, e.g. ``store.split("train").states()`` to fit a PCA.
        """
        offsets = self.sequences["offset"].to_numpy(np.int64)
        lengths = self.sequences["length"].to_numpy(np.int64)
        if len(offsets) and np.all(offsets[1:] == offsets[:-1] + lengths[:-1]):
            start = int(offsets[0])  # contiguous: one slice, no copy of the index
            return np.asarray(self.embeddings[start : start + int(lengths.sum())])
        idx = np.concatenate([np.arange(o, o + n) for o, n in zip(offsets, lengths, strict=True)])
        return np.asarray(self.embeddings[idx])

    def split(self, name: str) -> TrajectoryStore:
        """A view holding only the sequences of split ``name`` (``train``, ``val``, ``test``)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {name!r}")
        mask = (self.sequences["split"] == name).to_numpy()
        if not mask.any():
            present = sorted(set(self.sequences["split"]))
            raise ValueError(f"split {name!r} is empty in {self.path}; present: {present}")
        view = self.sequences.loc[mask].reset_index(drop=True)
        return TrajectoryStore(self.path, self.meta, self.embeddings, view)

    def transitions(
        self,
        split: str | None = None,
        dt: float = 1.0,
        max_len: int | None = None,
        return_index: bool = False,
    ) -> tuple[np.ndarray, ...]:
        """One-step transitions ``(x0, t0, x1)`` of every sequence, never across sequences.

        For each sequence (of ``split``, or of this view when None) with states
        ``X_0..X_{L-1}`` (only the first ``max_len`` when given, ``max_len >= 2``):
        ``x0 = X_k``, ``t0 = k * dt``, ``x1 = X_{k+1}`` for ``k = 0..L-2``. Returns ``x0``
        ``(N, d)`` float32, ``t0`` ``(N,)`` float32, ``x1`` ``(N, d)`` float32, with N the
        sum of ``L - 1``; with ``return_index`` also ``index`` ``(N, 2)`` int64 holding
        (row of the sequence in this view's ``sequences``, k).
        """
        view = self if split is None else self.split(split)
        if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating)):
            raise TypeError(f"dt must be a number, got {dt!r}")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {dt}")
        length = view.sequences["length"].to_numpy(np.int64)
        if max_len is not None:
            if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)):
                raise TypeError(f"max_len must be an int or None, got {max_len!r}")
            if max_len < 2:
                raise ValueError(f"max_len must be >= 2 (one transition), got {max_len}")
            length = np.minimum(length, max_len)
        steps = np.maximum(length - 1, 0)
        n = int(steps.sum())
        if n == 0:
            raise ValueError(f"no transitions: every sequence of {view!r} has fewer than 2 states")
        row = np.repeat(np.arange(len(steps)), steps)
        k = np.arange(n) - np.repeat(np.cumsum(steps) - steps, steps)
        idx = view.sequences["offset"].to_numpy(np.int64)[row] + k
        x0 = np.asarray(view.embeddings[idx], dtype=np.float32)
        x1 = np.asarray(view.embeddings[idx + 1], dtype=np.float32)
        t0 = (k * float(dt)).astype(np.float32)
        if return_index:
            return x0, t0, x1, np.stack([row, k], axis=1).astype(np.int64)
        return x0, t0, x1


def load_store(
    path_or_run_id: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> TrajectoryStore:
    """Open a store: a folder path, or a run id under ``root`` (default TRAJECTORIES_DIR).

    Raises ``FileNotFoundError`` when there is none (saying if only a partial build exists)
    and :class:`CorruptStoreError` (a ``ValueError``) when its files are missing or disagree.
    """
    p = Path(path_or_run_id)
    if not p.is_dir() and not isinstance(path_or_run_id, Path) and os.sep not in str(p):
        p = _root(root) / str(path_or_run_id)
    if not p.is_dir():
        partial = p.with_name(p.name + ".partial")
        if partial.is_dir():
            raise FileNotFoundError(
                f"store {p} is incomplete: only the partial build {partial} exists; rerun "
                f"build_store with the same arguments to resume it"
            )
        parent = p.parent
        known = (
            sorted(d.name for d in parent.iterdir() if (d / "meta.json").is_file())
            if parent.is_dir()
            else []
        )
        raise FileNotFoundError(f"no trajectory store at {p}; stores in {parent}: {known}")
    try:
        meta = json.loads((p / "meta.json").read_text())
        n_seq, n_tok, dim = int(meta["n_sequences"]), int(meta["n_tokens"]), int(meta["dim"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorruptStoreError(f"store {p}: meta.json missing or unreadable ({err!r})") from err
    try:
        emb = np.load(p / "embeddings.npy", mmap_mode="r")
    except (OSError, ValueError) as err:
        raise CorruptStoreError(f"store {p}: embeddings.npy missing or unreadable ({err})") from err
    if emb.shape != (n_tok, dim) or emb.dtype != np.float32:
        raise CorruptStoreError(
            f"store {p}: embeddings.npy is {emb.dtype} {emb.shape}, meta.json says float32 "
            f"({n_tok}, {dim})"
        )
    try:
        seqs = pd.read_parquet(p / "sequences.parquet")
    except (OSError, ValueError, pa.ArrowException) as err:
        raise CorruptStoreError(
            f"store {p}: sequences.parquet missing or unreadable ({err})"
        ) from err
    need = {"seq_id", "pair_id", "conv_id", "split", "offset", "length", "token_ids", "tokens"}
    if len(seqs) != n_seq or not need <= set(seqs.columns):
        raise CorruptStoreError(
            f"store {p}: sequences.parquet has {len(seqs)} rows and columns "
            f"{list(seqs.columns)}; meta.json says {n_seq} rows with {sorted(need)}"
        )
    length = seqs["length"].to_numpy(np.int64)
    offset = seqs["offset"].to_numpy(np.int64)
    if (
        (length < 1).any()
        or (offset != np.cumsum(length) - length).any()
        or int(length.sum()) != n_tok
    ):
        raise CorruptStoreError(f"store {p}: offsets/lengths do not tile {n_tok} tokens")
    return TrajectoryStore(p, meta, emb, seqs)


__all__ = [
    "SPLITS",
    "FORMAT_VERSION",
    "CorruptStoreError",
    "NonFiniteStatesError",
    "TrajectoryStore",
    "build_store",
    "load_store",
]
