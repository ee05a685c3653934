"""What goes into a trajectory store, checked and normalised: the items, the ``params``
that key a build, and the outputs of ``embed_fn`` (see
:func:`sde_utils.extraction.store_build.build_store`); plus the store's one JSON encoding
(sorted keys, no NaN), so that hashes of equal content are equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sde_utils.extraction.store import SPLITS, STEP_FIELDS, NonFiniteStatesError

OUTPUT_FIELDS = ("states", "token_ids", "tokens", *STEP_FIELDS)
"""Keys of an ``embed_fn`` result that the store reads itself (the rest are extra columns)."""
RESERVED_ITEM_KEYS = frozenset({"seq_id", "offset", "length", *OUTPUT_FIELDS})
"""Keys an item may not carry: the store sets them."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{obj!r} ({type(obj).__name__}) is not JSON serialisable")


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default, allow_nan=False, **kw)


def normalise_params(params: Any) -> dict:
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    try:
        return json.loads(dumps(dict(params)))
    except (TypeError, ValueError) as err:
        raise TypeError(f"params must be JSON serialisable (no NaN): {err}") from err


def items_hash(items: list[dict]) -> str:
    h = hashlib.sha256()
    for item in items:
        try:
            h.update(dumps(item, separators=(",", ":")).encode("utf-8"))
        except (TypeError, ValueError) as err:
            raise TypeError(f"every item must be JSON serialisable: {err}") from err
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def check_items(items: Any) -> list[dict]:
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
        reserved = sorted(RESERVED_ITEM_KEYS & set(item))
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


def check_outputs(
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
            if key in OUTPUT_FIELDS:
                continue
            if key in item or key in RESERVED_ITEM_KEYS:
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


__all__ = [
    "OUTPUT_FIELDS",
    "RESERVED_ITEM_KEYS",
    "dumps",
    "normalise_params",
    "items_hash",
    "check_items",
    "check_outputs",
]
