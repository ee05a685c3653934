"""The trajectory store: its on-disk contract and the reader (a store is built by
:func:`sde_utils.extraction.store_build.build_store`).

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
  and ``content_hash`` (sha256 of ``embeddings.npy`` then ``sequences.parquet``), plus
  ``file_sha256`` (the sha256 of each of those two files on its own, to name a damaged one).

A finished store holds only these three files: the chunk files and ``manifest.json`` of its
build are removed before the folder is renamed into place (stores written before this
contract may still carry them; they load as before and a rebuild's reuse removes them).
``FORMAT_VERSION`` is unchanged by that and by ``file_sha256``: the arrays and
``content_hash`` are defined as before, so older stores load and are verified through
``content_hash`` alone.

Checks on reading (:func:`load_store`): meta.json's sizes and ``split_sizes`` must agree
with the arrays and the parquet, and every state must be finite (the error names the store,
split and row). :func:`verify_content` (used before a store is reused) recomputes the
hashes and names the file that no longer matches.

One store holds the states of **one kind** (``embedding_kind``: ``input``, ``layer:N`` or
``hidden``) of **one LLM** (``model``). A layer sweep writes one store per kind, all from
one forward pass per batch (:func:`sde_utils.extraction.layers.extract_layers`), and
:func:`sde_utils.extraction.layers.check_store_llm` refuses a store built by another LLM.

Time along a sequence is ``t_k = k * dt`` for its k-th state (k = 0, 1, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sde_utils import paths
from sde_utils.checks import check_choice, check_dt, check_int

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
STEP_FIELDS = ("entropy", "logprob")  # optional per-step outputs of embed_fn
HASHED_FILES = ("embeddings.npy", "sequences.parquet")  # in content_hash order
_FINITE_BLOCK_BYTES = 1 << 26  # 64 MiB of states scanned at a time for non-finite values


class CorruptStoreError(ValueError):
    """A store folder exists but its files are missing, unreadable or inconsistent."""


class NonFiniteStatesError(ValueError):
    """``embed_fn`` returned NaN or inf states; the message names the sequences."""


def store_root(root: str | os.PathLike | None) -> Path:
    """The folder holding the stores: ``root``, or ``paths.TRAJECTORIES_DIR`` when None."""
    return Path(root) if root is not None else paths.TRAJECTORIES_DIR


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
        i = check_int("sequence index", i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence index {i} out of range for {len(self)} sequences")
        row = self.sequences.iloc[i]
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
        check_choice("split", name, SPLITS)
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
        dt = check_dt(dt)
        length = view.sequences["length"].to_numpy(np.int64)
        if max_len is not None:
            max_len = check_int("max_len", max_len, minimum=2)  # at least one transition
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
    path_or_run_id: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    verify: bool = False,
) -> TrajectoryStore:
    """Open a store: a folder path, or a run id under ``root`` (default TRAJECTORIES_DIR).

    Raises ``FileNotFoundError`` when there is none (saying if only a partial build exists)
    and :class:`CorruptStoreError` (a ``ValueError``) when its files are missing or disagree
    with meta.json (sizes, ``split_sizes``) or hold a non-finite state. ``verify=True`` also
    recomputes the files' sha256 (:func:`verify_content`; reads every byte once).
    """
    p = Path(path_or_run_id)
    if not p.is_dir() and not isinstance(path_or_run_id, Path) and os.sep not in str(p):
        p = store_root(root) / str(path_or_run_id)
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
    _check_split_sizes(p, meta, seqs)
    _check_finite(p, emb, seqs)
    store = TrajectoryStore(p, meta, emb, seqs)
    if verify:
        verify_content(store)
    return store


def _check_split_sizes(p: Path, meta: dict, seqs: pd.DataFrame) -> None:
    """meta.json's ``split_sizes`` must be what the parquet holds (absent: not checked)."""
    recorded = meta.get("split_sizes")
    if recorded is None:
        return
    split = seqs["split"].to_numpy()
    length = seqs["length"].to_numpy(np.int64)
    actual = {
        s: {"sequences": int((split == s).sum()), "tokens": int(length[split == s].sum())}
        for s in SPLITS
    }
    if recorded != actual:
        raise CorruptStoreError(
            f"store {p}: meta.json split_sizes {recorded} disagree with sequences.parquet "
            f"{actual}; the store was edited or damaged: delete the folder {p} and rebuild it"
        )


def _check_finite(p: Path, emb: np.ndarray, seqs: pd.DataFrame) -> None:
    """Every state must be finite; the error names the store, split and row of the first bad one."""
    rows = max(1, _FINITE_BLOCK_BYTES // max(1, emb.shape[1] * emb.itemsize))
    for start in range(0, emb.shape[0], rows):
        block = np.asarray(emb[start : start + rows])
        bad_rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if len(bad_rows) == 0:
            continue
        token = start + int(bad_rows[0])
        offsets = seqs["offset"].to_numpy(np.int64)
        i = int(np.searchsorted(offsets, token, side="right") - 1)
        row = seqs.iloc[i]
        split_row = int((seqs["split"].to_numpy()[:i] == row["split"]).sum())
        raise CorruptStoreError(
            f"store {p}: non-finite state (NaN or inf) at embeddings row {token}: split "
            f"{row['split']!r}, row {split_row} of that split (seq_id {int(row['seq_id'])}, "
            f"pair_id {row['pair_id']!r}, step {token - int(row['offset'])}); the file is "
            f"damaged: delete the folder {p} and rebuild it"
        )


def hash_files(folder: Path) -> tuple[dict[str, str], str]:
    """sha256 of each of :data:`HASHED_FILES` in ``folder`` and the ``content_hash`` (one
    sha256 over them in order), each as ``"sha256:<hex>"``; every file is read once."""
    total = hashlib.sha256()
    each = {}
    for name in HASHED_FILES:
        h = hashlib.sha256()
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                total.update(block)
        each[name] = "sha256:" + h.hexdigest()
    return each, "sha256:" + total.hexdigest()


def verify_content(store: TrajectoryStore) -> None:
    """Recompute the hashes of ``store``'s files; raise :class:`CorruptStoreError` naming the
    file whose bytes no longer match meta.json (a store without ``file_sha256``, written
    before it was recorded, is checked through ``content_hash`` alone)."""
    p, meta = store.path, store.meta
    try:
        each, total = hash_files(p)
    except OSError as err:
        raise CorruptStoreError(f"store {p}: cannot read its files to verify them ({err})") from err
    recorded = meta.get("file_sha256")
    if isinstance(recorded, dict):
        damaged = [n for n in HASHED_FILES if recorded.get(n) != each[n]]
    elif meta.get("content_hash") != total:
        damaged = [" or ".join(HASHED_FILES)]
    else:
        damaged = []
    if not damaged and meta.get("content_hash") != total:
        damaged = ["meta.json (its content_hash)"]
    if damaged:
        raise CorruptStoreError(
            f"store {p}: {', '.join(damaged)} changed since the store was written (its "
            f"sha256 differs from meta.json); delete the folder {p} and rebuild it"
        )


__all__ = [
    "SPLITS",
    "FORMAT_VERSION",
    "STEP_FIELDS",
    "CorruptStoreError",
    "NonFiniteStatesError",
    "store_root",
    "TrajectoryStore",
    "load_store",
    "HASHED_FILES",
    "hash_files",
    "verify_content",
]
