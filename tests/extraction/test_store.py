"""Tests of sde_utils.extraction.store: the layout a build leaves, reading it back, split
views, transitions, and the reader's errors on damaged stores.

Every store is built under ``tmp_path`` (never the real data/ folder) from the fake
sequences of ``store_cases.py``; comparisons are exact (float32 casts of known draws).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from store_cases import LENGTHS, PARAMS, D, build, expected_states, make_items

from sde_utils.extraction.store import (
    CorruptStoreError,
    TrajectoryStore,
    load_store,
    store_root,
)
from sde_utils.extraction.store_build import build_store
from sde_utils.paths import TRAJECTORIES_DIR

# --- round trip ---------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = build(tmp_path, meta={"note": "fixture run"})
    assert path == tmp_path / "run"
    # no partial left behind; the lock file of build_lock stays (empty, harmless)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.lock"]
    assert sorted(p.name for p in path.iterdir()) == [
        "embeddings.npy",
        "meta.json",
        "sequences.parquet",
    ]
    store = load_store("run", root=tmp_path)
    items = make_items()

    assert len(store) == len(items)
    assert isinstance(store.embeddings, np.memmap)
    assert store.embeddings.dtype == np.float32
    assert store.embeddings.shape == (sum(LENGTHS), D)
    for i, item in enumerate(items):
        # float32 storage of float64 draws: exactly the float32 cast
        np.testing.assert_array_equal(store.trajectory(i), expected_states(item).astype(np.float32))

    seqs = store.sequences
    assert list(seqs["seq_id"]) == list(range(len(items)))
    assert list(seqs["pair_id"]) == [it["pair_id"] for it in items]
    assert list(seqs["conv_id"]) == [it["conv_id"] for it in items]
    assert list(seqs["split"]) == [it["split"] for it in items]
    assert list(seqs["length"]) == LENGTHS
    assert list(seqs["offset"]) == list(np.cumsum(LENGTHS) - LENGTHS)
    assert list(seqs["prompt"]) == [it["prompt"] for it in items]
    # item fields and embed_fn's extra scalars are passed through as columns
    assert list(seqs["n"]) == LENGTHS
    assert list(seqs["sample_index"]) == [it["sample_index"] for it in items]
    assert list(seqs["temperature"]) == [0.7] * len(items)
    assert list(seqs["score"]) == [n / 2 for n in LENGTHS]
    for i, n in enumerate(LENGTHS):
        assert list(seqs["token_ids"][i]) == list(range(100, 100 + n))
        assert list(seqs["tokens"][i]) == [f"tok{k}" for k in range(n)]
        np.testing.assert_array_equal(seqs["entropy"][i], np.linspace(0.0, 1.0, n))
        np.testing.assert_array_equal(seqs["logprob"][i], -np.arange(n, dtype=np.float64))

    meta = store.meta
    assert meta["params"] == PARAMS
    assert (meta["source"], meta["model"], meta["layer"], meta["seed"]) == (
        "fixture",
        "fake",
        "input",
        0,
    )
    assert meta["note"] == "fixture run"
    assert (meta["n_sequences"], meta["n_tokens"], meta["dim"]) == (11, sum(LENGTHS), D)
    assert meta["split_sizes"]["val"] == {"sequences": 2, "tokens": LENGTHS[4] + LENGTHS[5]}
    assert "numpy" in meta["package_versions"]
    h = hashlib.sha256((path / "embeddings.npy").read_bytes())
    h.update((path / "sequences.parquet").read_bytes())
    assert meta["content_hash"] == "sha256:" + h.hexdigest()


def test_store_without_step_fields_or_pair_ids(tmp_path):
    """A plain teacher-forced run: no entropy/logprob columns; pair_id optional."""
    items = [{k: v for k, v in it.items() if k != "pair_id"} for it in make_items()[:4]]

    def embed(chunk):
        return [
            {"states": np.ones((it["n"], 2)), "token_ids": [1] * it["n"], "tokens": ["a"] * it["n"]}
            for it in chunk
        ]

    store = load_store(build(tmp_path, embed, items=items))
    assert "entropy" not in store.sequences and "logprob" not in store.sequences
    assert store.sequences["pair_id"].isna().all()
    assert store.dim == 2


def test_load_by_path_and_repr(tmp_path):
    path = build(tmp_path)
    store = load_store(path)
    assert store.path == path
    assert "11 sequences" in repr(store)
    with pytest.raises(IndexError, match="out of range for 11"):
        store.trajectory(11)
    with pytest.raises(TypeError, match="sequence index must be an int"):
        store.trajectory(1.0)
    np.testing.assert_array_equal(store.trajectory(np.int64(-1)), store.trajectory(10))


def test_store_root_defaults_to_the_trajectories_folder(tmp_path):
    assert store_root(None) == TRAJECTORIES_DIR
    assert store_root(tmp_path) == tmp_path
    assert store_root(str(tmp_path)) == tmp_path


# --- splits and transitions ---------------------------------------------------------------------


def test_split_views_share_no_conversation(tmp_path):
    store = load_store(build(tmp_path))
    views = {s: store.split(s) for s in ("train", "val", "test")}
    assert sum(len(v) for v in views.values()) == len(store)
    convs = {s: set(v.sequences["conv_id"]) for s, v in views.items()}
    assert not convs["train"] & convs["val"]
    assert not convs["train"] & convs["test"]
    assert not convs["val"] & convs["test"]
    for s, v in views.items():
        assert set(v.sequences["split"]) == {s}
        for i in range(len(v)):
            item = next(it for it in make_items() if it["pair_id"] == v.sequences["pair_id"][i])
            np.testing.assert_array_equal(v.trajectory(i), expected_states(item).astype(np.float32))
    with pytest.raises(ValueError, match=r"split='dev' is not allowed; choose one of \['train'"):
        store.split("dev")


def test_empty_split_is_an_error(tmp_path):
    items = [it for it in make_items() if it["split"] != "test"]
    store = load_store(build(tmp_path, items=items))
    with pytest.raises(ValueError, match="split 'test' is empty"):
        store.split("test")


def reference_transitions(store: TrajectoryStore, dt: float, max_len):
    """Loop over sequences: (x_k, k*dt, x_{k+1}) for k < min(L, max_len) - 1."""
    x0, t0, x1 = [], [], []
    for i in range(len(store)):
        traj = np.asarray(store.trajectory(i))
        if max_len is not None:
            traj = traj[:max_len]
        for k in range(len(traj) - 1):
            x0.append(traj[k])
            t0.append(k * dt)
            x1.append(traj[k + 1])
    return np.array(x0), np.array(t0), np.array(x1)


@pytest.mark.parametrize("split", [None, "train", "val", "test"])
@pytest.mark.parametrize("max_len", [None, 2, 3])
def test_transitions_match_a_loop_and_never_cross_sequences(tmp_path, split, max_len):
    store = load_store(build(tmp_path))
    view = store if split is None else store.split(split)
    x0, t0, x1, index = store.transitions(split, dt=0.5, max_len=max_len, return_index=True)
    r0, rt, r1 = reference_transitions(view, 0.5, max_len)
    assert x0.dtype == x1.dtype == t0.dtype == np.float32
    assert x0.shape == x1.shape == (len(r0), D)
    capped = view.sequences["length"].clip(upper=max_len or 10**9)
    assert len(t0) == int((capped - 1).sum())
    np.testing.assert_array_equal(x0, r0)
    np.testing.assert_array_equal(x1, r1)
    np.testing.assert_array_equal(t0, rt)  # k * 0.5 is exact in float32
    # each pair lies inside one sequence: x1 is the next state of x0's own sequence
    for (row, k), a, b in zip(index, x0, x1, strict=True):
        traj = view.trajectory(int(row))
        assert k + 1 < len(traj)
        np.testing.assert_array_equal(a, traj[k])
        np.testing.assert_array_equal(b, traj[k + 1])


def test_transitions_bad_arguments(tmp_path):
    store = load_store(build(tmp_path))
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        store.transitions(dt=0.0)
    with pytest.raises(ValueError, match="max_len must be an int >= 2, got 1"):
        store.transitions(max_len=1)
    with pytest.raises(TypeError, match="max_len must be an int >= 2, got 2.0"):
        store.transitions(max_len=2.0)
    with pytest.raises(TypeError, match="dt must be a finite number > 0, got '1'"):
        store.transitions(dt="1")
    one = [it | {"n": 1} for it in make_items()[:3]]
    with pytest.raises(ValueError, match="fewer than 2 states"):
        load_store(build(tmp_path / "ones", items=one)).transitions()


def test_load_missing_store_lists_the_available_ones(tmp_path):
    build(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no trajectory store at .*nope.*\['run'\]"):
        load_store("nope", root=tmp_path)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: (p / "meta.json").unlink(), "meta.json missing or unreadable"),
        (lambda p: (p / "meta.json").write_text("[1, 2"), "meta.json missing or unreadable"),
        (lambda p: (p / "embeddings.npy").unlink(), "embeddings.npy missing"),
        (lambda p: (p / "embeddings.npy").write_bytes(b"garbage"), "embeddings.npy missing"),
        (
            lambda p: np.save(p / "embeddings.npy", np.zeros((3, D), np.float32)),
            "meta.json says float32",
        ),
        (
            lambda p: (p / "sequences.parquet").write_bytes(b"PAR1 truncated"),
            "sequences.parquet missing or unreadable",
        ),
        (
            lambda p: (
                pd.read_parquet(p / "sequences.parquet")
                .iloc[:-1]
                .to_parquet(p / "sequences.parquet")
            ),
            "sequences.parquet has 10 rows",
        ),
        (
            lambda p: (
                pd.read_parquet(p / "sequences.parquet")
                .assign(offset=0)
                .to_parquet(p / "sequences.parquet")
            ),
            "do not tile",
        ),
    ],
)
def test_corrupt_store_errors(tmp_path, damage, match):
    path = build(tmp_path)
    damage(path)
    with pytest.raises(CorruptStoreError, match=match):
        load_store(path)


def test_meta_is_valid_json_with_sorted_keys(tmp_path):
    text = (build(tmp_path) / "meta.json").read_text()
    meta = json.loads(text)
    assert list(meta) == sorted(meta)


def test_states_of_a_view_are_its_own_tokens(tmp_path):
    rng = np.random.default_rng(0)
    items = [
        {"pair_id": f"p{i}", "conv_id": f"c{i}", "split": s}
        for i, s in enumerate(["train", "val", "train", "test", "train"])
    ]
    lengths = [3, 4, 2, 5, 3]
    states = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]

    def embed(chunk):
        return [
            {"states": states[int(it["pair_id"][1:])], "token_ids": [0] * lengths[int(it["pair_id"][1:])],
             "tokens": ["a"] * lengths[int(it["pair_id"][1:])]}
            for it in chunk
        ]  # fmt: skip

    store = load_store(build_store("v", items, embed, params={}, root=tmp_path, progress=False))
    np.testing.assert_array_equal(store.states(), np.concatenate(states))
    np.testing.assert_array_equal(
        store.split("train").states(), np.concatenate([states[0], states[2], states[4]])
    )
    np.testing.assert_array_equal(store.split("val").states(), states[1])
