"""Tests of sde_utils.extraction.store: the store's layout, reuse, resume, errors, transitions.

Every store is built under ``tmp_path`` (never the real data/ folder). States come from a
fake ``embed_fn`` that draws them from a generator seeded by the pair id, so the expected
trajectories are known exactly; float32 storage of those float64 draws is compared with
the float32 cast, exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd
import pytest

from sde_utils.extraction import store as tr
from sde_utils.extraction.store import (
    CorruptStoreError,
    NonFiniteStatesError,
    TrajectoryStore,
    build_store,
    load_store,
)

D = 5  # state dimension of the fake embeddings
PARAMS = {"source": "fixture", "model": "fake", "layer": "input", "seed": 0, "n_pairs": 11}
SPLIT_OF_CONV = ["train", "train", "val", "train", "test", "train"]
LENGTHS = [4, 1, 6, 3, 2, 5, 7, 2, 3, 4, 5]  # includes a length-1 sequence (no transition)


def make_items() -> list[dict]:
    """11 sequences from 6 conversations (two pairs per conversation but the last)."""
    items = []
    for i, n in enumerate(LENGTHS):
        conv = i // 2
        items.append(
            {
                "pair_id": f"p{i}",
                "conv_id": f"c{conv}",
                "split": SPLIT_OF_CONV[conv],
                "prompt": f"prompt {i}",
                "n": n,
                "temperature": 0.7,
                "sample_index": i % 3,
            }
        )
    return items


def expected_states(item: dict) -> np.ndarray:
    seed = int(hashlib.sha256(item["pair_id"].encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal((item["n"], D))  # float64


class FakeEmbed:
    """Deterministic embed_fn that records the pair ids of every call.

    ``fail_on_call``: raise RuntimeError on that call (1-based), simulating an interruption.
    ``bad``: pair_id -> value (nan / inf) written into that sequence's states.
    ``scale``: multiply every state (to tell two builds apart).
    """

    def __init__(self, fail_on_call=None, bad=None, scale=1.0):
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call
        self.bad = bad or {}
        self.scale = scale

    def __call__(self, items):
        self.calls.append([it["pair_id"] for it in items])
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("simulated interruption")
        out = []
        for it in items:
            states = expected_states(it) * self.scale
            if it["pair_id"] in self.bad:
                states[-1, 0] = self.bad[it["pair_id"]]
            n = it["n"]
            out.append(
                {
                    "states": states,
                    "token_ids": list(range(100, 100 + n)),
                    "tokens": [f"tok{k}" for k in range(n)],
                    "entropy": np.linspace(0.0, 1.0, n),
                    "logprob": -np.arange(n, dtype=np.float64),
                    "score": float(n) / 2,
                }
            )
        return out


def must_not_be_called(items):
    raise AssertionError(f"embed_fn must not be called, got {len(items)} items")


def build(root, embed=None, params=PARAMS, items=None, chunk_size=3, **kw):
    return build_store(
        "run",
        make_items() if items is None else items,
        embed or FakeEmbed(),
        params=params,
        chunk_size=chunk_size,
        root=root,
        progress=False,
        **kw,
    )


FILES = ("embeddings.npy", "sequences.parquet", "meta.json")


def read_files(path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in FILES}


# --- round trip ---------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = build(tmp_path, meta={"note": "fixture run"})
    assert path == tmp_path / "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial left behind
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
    with pytest.raises(ValueError, match="split must be one of"):
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
    with pytest.raises(ValueError, match="max_len must be >= 2"):
        store.transitions(max_len=1)
    one = [it | {"n": 1} for it in make_items()[:3]]
    with pytest.raises(ValueError, match="fewer than 2 states"):
        load_store(build(tmp_path / "ones", items=one)).transitions()


# --- reuse, recompute, resume -------------------------------------------------------------------


def test_matching_store_is_reused_without_calling_embed_fn(tmp_path, caplog):
    path = build(tmp_path)
    before = read_files(path)
    mtimes = {n: (path / n).stat().st_mtime_ns for n in FILES}
    with caplog.at_level(logging.INFO, logger="sde_utils.extraction.store"):
        again = build(tmp_path, must_not_be_called, params=dict(reversed(PARAMS.items())))
    assert again == path
    assert read_files(path) == before
    assert {n: (path / n).stat().st_mtime_ns for n in FILES} == mtimes
    assert "reusing store" in caplog.text


def test_mismatched_params_are_recomputed(tmp_path, caplog):
    path = build(tmp_path)
    embed = FakeEmbed(scale=2.0)
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store"):
        build(tmp_path, embed, params={**PARAMS, "layer": "hidden"})
    assert sum(len(c) for c in embed.calls) == len(LENGTHS)  # every sequence recomputed
    assert "params differ" in caplog.text and "layer" in caplog.text
    store = load_store(path)
    assert store.meta["params"]["layer"] == "hidden"
    np.testing.assert_array_equal(
        store.trajectory(0), (2.0 * expected_states(make_items()[0])).astype(np.float32)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # old copy removed


def test_changed_items_are_recomputed(tmp_path, caplog):
    path = build(tmp_path)
    items = make_items()[:-1]
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store"):
        build(tmp_path, embed, items=items)
    assert sum(len(c) for c in embed.calls) == len(items)
    assert "items differ" in caplog.text
    assert len(load_store(path)) == len(items)


def test_corrupt_store_is_recomputed(tmp_path, caplog):
    path = build(tmp_path)
    (path / "meta.json").write_text("{not json")
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store"):
        build(tmp_path, embed)
    assert sum(len(c) for c in embed.calls) == len(LENGTHS)
    assert "unreadable" in caplog.text
    assert load_store(path).meta["n_sequences"] == len(LENGTHS)


def test_resume_after_interruption_is_byte_identical(tmp_path):
    reference = build(tmp_path / "a")  # uninterrupted
    root = tmp_path / "b"
    with pytest.raises(RuntimeError, match="simulated interruption"):
        build(root, FakeEmbed(fail_on_call=3))
    partial = root / "run.partial"
    assert not (root / "run").exists()
    # only finished chunks (and the manifest): nothing half-written
    assert sorted(p.name for p in partial.iterdir()) == [
        "chunk_000000.npz",
        "chunk_000001.npz",
        "manifest.json",
    ]
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_store("run", root=root)

    embed = FakeEmbed()
    resumed = build(root, embed)
    # chunk_size 3 over 11 items: chunks 2 and 3 (items 6..10) were left
    assert embed.calls == [["p6", "p7", "p8"], ["p9", "p10"]]
    assert not partial.exists()
    assert read_files(resumed) == read_files(reference)


def test_crash_while_writing_a_chunk_leaves_no_chunk_file(tmp_path, monkeypatch):
    real_savez = np.savez
    writes = []

    def crashing_savez(f, **arrays):
        writes.append(1)
        if len(writes) == 2:
            f.write(b"PK\x03\x04 half a zip")  # the process dies mid-write
            raise KeyboardInterrupt
        real_savez(f, **arrays)

    monkeypatch.setattr(tr.np, "savez", crashing_savez)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path)
    partial = tmp_path / "run.partial"
    assert sorted(p.name for p in partial.glob("chunk_*")) == ["chunk_000000.npz"]
    monkeypatch.setattr(tr.np, "savez", real_savez)
    embed = FakeEmbed()
    path = build(tmp_path, embed)
    assert embed.calls[0] == ["p3", "p4", "p5"]  # chunk 1 redone, chunk 0 kept
    assert not list(path.glob(".*.tmp"))
    assert read_files(path) == read_files(build(tmp_path / "ref"))


def test_partial_with_other_params_is_discarded(tmp_path, caplog):
    with pytest.raises(RuntimeError):
        build(tmp_path, FakeEmbed(fail_on_call=3))
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store"):
        build(tmp_path, embed, params={**PARAMS, "seed": 1})
    assert len(embed.calls) == 4  # all four chunks recomputed
    assert "discarding partial build" in caplog.text and "seed" in caplog.text


def test_partial_with_other_chunk_size_is_discarded(tmp_path, caplog):
    with pytest.raises(RuntimeError):
        build(tmp_path, FakeEmbed(fail_on_call=2))
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store"):
        build(tmp_path, embed, chunk_size=4)
    assert [len(c) for c in embed.calls] == [4, 4, 3]
    assert "chunk_size" in caplog.text


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_states_name_the_sequences(tmp_path, value):
    embed = FakeEmbed(bad={"p4": value, "p5": value})
    with pytest.raises(NonFiniteStatesError) as info:
        build(tmp_path, embed)
    msg = str(info.value)
    assert "'p4'" in msg and "'p5'" in msg and "'p3'" not in msg
    assert isinstance(info.value, ValueError)
    # the chunk before the bad one was kept for the next run
    assert (tmp_path / "run.partial" / "chunk_000000.npz").exists()
    assert not (tmp_path / "run").exists()


def test_float64_overflow_to_float32_counts_as_inf(tmp_path):
    with pytest.raises(NonFiniteStatesError, match="'p0'"):
        build(tmp_path, FakeEmbed(bad={"p0": 1e300}))


def _out(n=2, d=D, **kw):
    base = {"states": np.zeros((n, d)), "token_ids": [1] * n, "tokens": ["a"] * n}
    return base | kw


@pytest.mark.parametrize(
    ("result", "exc", "match"),
    [
        (lambda its: [_out() for _ in its][:-1], ValueError, "returned 2 results for 3 items"),
        (lambda its: {"states": 1}, TypeError, "must return a list of dicts"),
        (lambda its: [{"states": np.zeros((2, D))} for _ in its], ValueError, "lacks"),
        (lambda its: [_out(tokens=["a"]) for _ in its], ValueError, "tokens of p0 has length 1"),
        (lambda its: [_out(entropy=[0.1]) for _ in its], ValueError, "entropy of p0 has length"),
        (
            lambda its: [_out(states=np.zeros(3)) for _ in its],
            ValueError,
            "must be \\(L >= 1, d\\)",
        ),
        (lambda its: [_out(states=np.zeros((0, D))) for _ in its], ValueError, "L >= 1"),
        (lambda its: [_out(d=D + i) for i in range(len(its))], ValueError, "d=6, earlier ones d=5"),
        (lambda its: [_out(extra=[1, 2]) for _ in its], TypeError, "must be a scalar"),
        (lambda its: [_out(prompt="x") for _ in its], ValueError, "collides"),
    ],
)
def test_bad_embed_fn_outputs(tmp_path, result, exc, match):
    items = [it | {"n": 2} for it in make_items()]
    with pytest.raises(exc, match=match):
        build(tmp_path, result, items=items)


def test_dimension_change_across_chunks_is_an_error(tmp_path):
    calls = []

    def embed(chunk):
        calls.append(1)
        return [_out(n=it["n"], d=D + len(calls)) for it in chunk]

    with pytest.raises(ValueError, match="d=7, earlier ones d=6"):
        build(tmp_path, embed)


@pytest.mark.parametrize(
    ("items", "kw", "exc", "match"),
    [
        ([], {}, ValueError, "items is empty"),
        ({"conv_id": 1}, {}, TypeError, "items must be a list of dicts"),
        ([{"split": "train"}], {}, ValueError, "lacks \\['conv_id'\\]"),
        ([{"conv_id": "a", "split": "dev"}], {}, ValueError, "split 'dev'"),
        ([{"conv_id": "a", "split": "val", "length": 3}], {}, ValueError, "reserved keys"),
        (
            [{"conv_id": "a", "split": "train"}, {"conv_id": "a", "split": "test"}],
            {},
            ValueError,
            "conversations appear in two splits.*'a'",
        ),
        (
            [{"conv_id": "a", "split": "train", "pair_id": "x"}] * 2,
            {},
            ValueError,
            "pair_id values must be unique",
        ),
        ([{"conv_id": "a", "split": "train"}], {"chunk_size": 0}, ValueError, "chunk_size"),
        ([{"conv_id": "a", "split": "train"}], {"params": {"x": {1, 2}}}, TypeError, "params"),
        ([{"conv_id": "a", "split": "train"}], {"params": {"x": np.nan}}, TypeError, "NaN"),
        ([{"conv_id": "a", "split": "train"}], {"meta": {"dim": 3}}, ValueError, "reserved"),
    ],
)
def test_bad_build_arguments(tmp_path, items, kw, exc, match):
    kw = {"params": PARAMS, "chunk_size": 3} | kw
    with pytest.raises(exc, match=match):
        build_store("run", items, must_not_be_called, root=tmp_path, progress=False, **kw)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", "x.partial", ".hidden", 3])
def test_bad_run_id(tmp_path, run_id):
    with pytest.raises(ValueError, match="run_id"):
        build_store(run_id, make_items(), must_not_be_called, params={}, root=tmp_path)


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
