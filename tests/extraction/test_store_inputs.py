"""Tests of sde_utils.extraction.store_inputs: the store's JSON encoding, the params and
items hashes, and the checks of items and ``embed_fn`` outputs called directly (their
errors through ``build_store`` are in ``test_store_build.py``). Exact comparisons only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from sde_utils.extraction.store import NonFiniteStatesError
from sde_utils.extraction.store_inputs import (
    RESERVED_ITEM_KEYS,
    check_items,
    check_outputs,
    dumps,
    items_hash,
    normalise_params,
)


def test_dumps_sorts_keys_and_converts_numpy_and_paths():
    text = dumps({"b": np.float32(0.5), "a": np.arange(3), "c": Path("/x/y")})
    assert text == '{"a": [0, 1, 2], "b": 0.5, "c": "/x/y"}'
    with pytest.raises(ValueError):  # NaN is refused: it is not JSON
        dumps({"x": float("nan")})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        dumps({"x": {1, 2}})


def test_normalise_params_is_the_json_round_trip():
    assert normalise_params({"t": (0.5, 1.0), "n": np.int64(3)}) == {"t": [0.5, 1.0], "n": 3}
    with pytest.raises(TypeError, match="params must be a mapping"):
        normalise_params([1, 2])


def test_items_hash_is_sha256_of_one_compact_json_line_per_item():
    items = [{"b": 1, "a": "x"}, {"a": "y"}]
    expected = hashlib.sha256(b'{"a":"x","b":1}\n{"a":"y"}\n').hexdigest()
    assert items_hash(items) == "sha256:" + expected
    assert items_hash([{"a": "x", "b": 1}, {"a": "y"}]) == items_hash(items)  # key order
    assert items_hash(items[::-1]) != items_hash(items)  # item order matters


def test_check_items_keeps_dicts_and_refuses_reserved_keys():
    items = ({"conv_id": 1, "split": "train"}, {"conv_id": 2, "split": "test"})
    assert check_items(items) == [dict(it) for it in items]
    assert {"seq_id", "offset", "length", "states", "entropy"} <= RESERVED_ITEM_KEYS
    with pytest.raises(ValueError, match="reserved keys \\['offset'\\]"):
        check_items([{"conv_id": 1, "split": "train", "offset": 0}])


def test_check_outputs_stacks_states_and_records_per_sequence():
    items = [{"pair_id": "p0"}, {"pair_id": "p1"}]
    a = np.arange(6, dtype=np.float64).reshape(3, 2)
    b = -np.ones((1, 2))
    outputs = [
        {"states": a, "token_ids": np.array([1, 2, 3]), "tokens": ["x", "y", "z"], "s": 1.5},
        {"states": b, "token_ids": [4], "tokens": ["w"], "entropy": [0.25], "s": None},
    ]
    states, lengths, records = check_outputs(outputs, items, 0, None)
    assert states.dtype == np.float32
    np.testing.assert_array_equal(states, np.concatenate([a, b]).astype(np.float32))
    np.testing.assert_array_equal(lengths, [3, 1])
    assert records[0] == {"token_ids": [1, 2, 3], "tokens": ["x", "y", "z"], "extra": {"s": 1.5}}
    assert records[1]["entropy"] == [0.25] and records[1]["extra"] == {"s": None}
    json.dumps(records)  # records are written as JSON inside the chunk file
    bad = [{"states": np.array([[np.inf, 0.0]]), "token_ids": [1], "tokens": ["x"]}]
    with pytest.raises(NonFiniteStatesError, match="'p0'"):
        check_outputs(bad, items[:1], 0, None)
