"""Tests of sde_utils.extraction.store_build (and, through it, the checks of
sde_utils.extraction.store_inputs): reuse, recompute, resume, atomic chunk files, and the
errors on bad items, arguments and ``embed_fn`` outputs.

Every store is built under ``tmp_path`` from the fake sequences of ``store_cases.py``.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from store_cases import (
    FILES,
    LENGTHS,
    PARAMS,
    D,
    FakeEmbed,
    build,
    expected_states,
    make_items,
    must_not_be_called,
    read_files,
)

from sde_utils.extraction import store_build as tr
from sde_utils.extraction.store import NonFiniteStatesError, load_store
from sde_utils.extraction.store_build import build_store

# --- reuse, recompute, resume -------------------------------------------------------------------


def test_matching_store_is_reused_without_calling_embed_fn(tmp_path, caplog):
    path = build(tmp_path)
    before = read_files(path)
    mtimes = {n: (path / n).stat().st_mtime_ns for n in FILES}
    with caplog.at_level(logging.INFO, logger="sde_utils.extraction.store_build"):
        again = build(tmp_path, must_not_be_called, params=dict(reversed(PARAMS.items())))
    assert again == path
    assert read_files(path) == before
    assert {n: (path / n).stat().st_mtime_ns for n in FILES} == mtimes
    assert "reusing store" in caplog.text


def test_mismatched_params_are_recomputed(tmp_path, caplog):
    path = build(tmp_path)
    embed = FakeEmbed(scale=2.0)
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store_build"):
        build(tmp_path, embed, params={**PARAMS, "layer": "hidden"})
    assert sum(len(c) for c in embed.calls) == len(LENGTHS)  # every sequence recomputed
    assert "params differ" in caplog.text and "layer" in caplog.text
    store = load_store(path)
    assert store.meta["params"]["layer"] == "hidden"
    np.testing.assert_array_equal(
        store.trajectory(0), (2.0 * expected_states(make_items()[0])).astype(np.float32)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.lock"]  # old copy removed


def test_changed_items_are_recomputed(tmp_path, caplog):
    path = build(tmp_path)
    items = make_items()[:-1]
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store_build"):
        build(tmp_path, embed, items=items)
    assert sum(len(c) for c in embed.calls) == len(items)
    assert "items differ" in caplog.text
    assert len(load_store(path)) == len(items)


def test_corrupt_store_is_recomputed(tmp_path, caplog):
    path = build(tmp_path)
    (path / "meta.json").write_text("{not json")
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store_build"):
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
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store_build"):
        build(tmp_path, embed, params={**PARAMS, "seed": 1})
    assert len(embed.calls) == 4  # all four chunks recomputed
    assert "discarding partial build" in caplog.text and "seed" in caplog.text


def test_partial_with_other_chunk_size_is_discarded(tmp_path, caplog):
    with pytest.raises(RuntimeError):
        build(tmp_path, FakeEmbed(fail_on_call=2))
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="sde_utils.extraction.store_build"):
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
        (
            [{"conv_id": "a", "split": "train"}],
            {"chunk_size": 0},
            ValueError,
            "chunk_size must be an int >= 1, got 0",
        ),
        ([{"conv_id": "a", "split": "train"}], {"chunk_size": 2.0}, TypeError, "chunk_size"),
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


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", "x.partial", "x.lock", ".hidden", 3])
def test_bad_run_id(tmp_path, run_id):
    with pytest.raises(ValueError, match="run_id"):
        build_store(run_id, make_items(), must_not_be_called, params={}, root=tmp_path)
