"""Reliability of trajectory stores (issue 16, "nothing lost, nothing silently wrong").

Concurrent builds, damaged finished stores, damaged partial builds, a killed build, a bad
``kind`` and the files a finished store keeps. Every store is the 11-sequence fixture of
``tests/extraction/store_cases.py`` (chunk_size 3: four chunks, items p0..p10), so each
test takes well under a second, except the two with subprocesses (about 2 s each, the
import of the package). Results are compared byte for byte with an undisturbed build: the
fixture is deterministic, so no tolerance is needed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest

from sde_utils.extraction.extract import extract_pairs
from sde_utils.extraction.store import CorruptStoreError, load_store

CASES_DIR = Path(__file__).resolve().parents[1] / "extraction"
_spec = importlib.util.spec_from_file_location("store_cases", CASES_DIR / "store_cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

BUILD_LOGGER = "sde_utils.extraction.store_build"
N_SEQ = len(cases.LENGTHS)

# A child process: waits for <root>/go (so that two children really overlap), builds the
# fixture store with a slow embed_fn (or one that kills itself with SIGKILL on call
# KILL_ON_CALL, after the chunks of the earlier calls are on disk) and prints its hash.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    sys.path.insert(0, {cases_dir!r})
    import store_cases
    root, kill_on_call = Path(sys.argv[1]), int(sys.argv[2])
    while not (root / "go").exists():
        time.sleep(0.01)
    embed = store_cases.FakeEmbed()
    def slow(items):
        if len(embed.calls) + 1 == kill_on_call:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)
        return embed(items)
    path = store_cases.build(root / "stores", slow)
    from sde_utils.extraction.store import load_store
    print(load_store(path).meta["content_hash"], len(embed.calls))
    """
).format(cases_dir=str(CASES_DIR))


def _children(root: Path, n: int, kill_on_call: int = 0) -> list[subprocess.Popen]:
    root.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(kill_on_call)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    time.sleep(0.5)  # let the children import the package before they start together
    (root / "go").touch()
    return procs


def test_two_processes_building_one_store_both_succeed_with_one_store(tmp_path):
    reference = cases.build(tmp_path / "ref")
    results = []
    for proc in _children(tmp_path, 2):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(out.split())
    hashes = {h for h, _ in results}
    assert hashes == {load_store(reference).meta["content_hash"]}
    # one of them computed the 4 chunks; the other waited for the lock and reused the store
    assert sorted(int(calls) for _, calls in results) == [0, 4]
    root = tmp_path / "stores"
    assert sorted(p.name for p in root.iterdir()) == ["run", "run.lock"]  # no stray .partial
    assert cases.read_files(root / "run") == cases.read_files(reference)


def test_build_killed_with_sigkill_resumes_to_an_identical_store(tmp_path):
    reference = cases.build(tmp_path / "ref")
    (proc,) = _children(tmp_path, 1, kill_on_call=3)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    root = tmp_path / "stores"
    partial = root / "run.partial"
    assert sorted(p.name for p in partial.glob("chunk_*")) == [
        "chunk_000000.npz",
        "chunk_000001.npz",
    ]
    embed = cases.FakeEmbed()
    path = cases.build(root, embed)  # the dead process's lock does not block
    assert embed.calls == [["p6", "p7", "p8"], ["p9", "p10"]]
    assert cases.read_files(path) == cases.read_files(reference)
    assert not partial.exists()


def _set_embedding(path: Path, value: float) -> None:
    emb = np.load(path / "embeddings.npy", mmap_mode="r+")
    emb[15, 2] = value  # row 15: pair p4 (rows 14..15), the first of split "val", step 1
    emb.flush()
    del emb


def _edit_meta(path: Path, change) -> None:
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def _more_val_rows(meta: dict) -> None:
    meta["split_sizes"]["val"]["sequences"] += 1


def _forget_file_hashes(meta: dict) -> None:
    del meta["file_sha256"]  # as in a store written before file_sha256 was recorded


@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (None, None),  # control: an untouched store is reused, embed_fn is not called
        (
            lambda p: _set_embedding(p, np.nan),
            r"non-finite state .* split 'val', row 0 .*p4.*step 1",
        ),
        (lambda p: _set_embedding(p, 1e6), r"embeddings\.npy changed"),
        (lambda p: _edit_meta(p, _more_val_rows), "split_sizes"),
        (lambda p: (p / "meta.json").write_text("{not json"), "meta.json missing or unreadable"),
    ],
)
def test_damaged_finished_store_is_named_and_rebuilt(tmp_path, caplog, damage, warning):
    path = cases.build(tmp_path)
    reference = cases.read_files(path)
    if damage is not None:
        damage(path)
    embed = cases.FakeEmbed()
    with caplog.at_level(logging.WARNING, logger=BUILD_LOGGER):
        assert cases.build(tmp_path, embed) == path
    if warning is None:
        assert embed.calls == [] and caplog.text == ""
    else:
        assert sum(len(c) for c in embed.calls) == N_SEQ
        assert re.search(warning, caplog.text), caplog.text
    assert cases.read_files(path) == reference


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: _set_embedding(p, np.inf), r"store .*run: non-finite .*split 'val', row 0"),
        (lambda p: _edit_meta(p, _more_val_rows), r"split_sizes .* delete the folder"),
    ],
)
def test_load_store_refuses_non_finite_states_and_edited_meta(tmp_path, damage, match):
    path = cases.build(tmp_path)
    load_store(path)  # control: the intact store loads
    damage(path)
    with pytest.raises(CorruptStoreError, match=match):
        load_store(path)


def test_load_store_verify_names_the_changed_file(tmp_path):
    path = cases.build(tmp_path)
    load_store(path, verify=True)  # control
    _set_embedding(path, 1e6)  # finite: only the hash can tell
    load_store(path)  # the cheap checks cannot see it
    with pytest.raises(CorruptStoreError, match=r"embeddings\.npy changed.*delete the folder"):
        load_store(path, verify=True)


def test_store_without_file_hashes_is_verified_through_content_hash(tmp_path, caplog):
    path = cases.build(tmp_path)
    _edit_meta(path, _forget_file_hashes)
    assert cases.build(tmp_path, cases.must_not_be_called) == path  # control: still reused
    _set_embedding(path, 1e6)
    embed = cases.FakeEmbed()
    with caplog.at_level(logging.WARNING, logger=BUILD_LOGGER):
        cases.build(tmp_path, embed)
    assert "embeddings.npy or sequences.parquet changed" in caplog.text
    assert sum(len(c) for c in embed.calls) == N_SEQ


def _interrupted(root: Path) -> Path:
    with pytest.raises(RuntimeError, match="simulated interruption"):
        cases.build(root, cases.FakeEmbed(fail_on_call=3))  # chunks 0 and 1 written
    return root / "run.partial"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan_chunk(path: Path) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["states"][4, 1] = np.nan
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(None, None), (_truncate, "unreadable"), (_nan_chunk, "non-finite state \\(row 4")],
)
def test_damaged_chunk_in_partial_is_named_and_redone(tmp_path, caplog, damage, reason):
    reference = cases.read_files(cases.build(tmp_path / "ref"))
    partial = _interrupted(tmp_path / "b")
    if damage is not None:
        damage(partial / "chunk_000001.npz")
    embed = cases.FakeEmbed()
    with caplog.at_level(logging.WARNING, logger=BUILD_LOGGER):
        path = cases.build(tmp_path / "b", embed)
    redone = [] if damage is None else [["p3", "p4", "p5"]]  # chunk 1 only; chunk 0 kept
    assert embed.calls == [*redone, ["p6", "p7", "p8"], ["p9", "p10"]]
    if reason is None:
        assert caplog.text == ""  # control: a sound partial build raises no warning
    else:
        assert "chunk_000001.npz" in caplog.text
        assert re.search(reason, caplog.text), caplog.text
    assert cases.read_files(path) == reference


def test_assembled_partial_whose_rename_was_interrupted_is_moved_into_place(tmp_path):
    reference = cases.read_files(cases.build(tmp_path / "ref"))
    path = cases.build(tmp_path / "b")
    os.replace(path, tmp_path / "b" / "run.partial")  # killed between assembly and rename
    assert cases.build(tmp_path / "b", cases.must_not_be_called) == path
    assert cases.read_files(path) == reference
    assert not (tmp_path / "b" / "run.partial").exists()


def test_finished_store_holds_no_chunk_files(tmp_path):
    path = cases.build(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == sorted(cases.FILES)
    # a store written before this contract keeps its build files; reusing it removes them
    (path / "chunk_000000.npz").write_bytes(b"old chunk")
    (path / "manifest.json").write_text("{}")
    cases.build(tmp_path, cases.must_not_be_called)
    assert sorted(p.name for p in path.iterdir()) == sorted(cases.FILES)


def test_bad_kind_creates_no_folder(tmp_path):
    model = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=2))
    pairs = datasets.Dataset.from_list(
        [{"pair_id": "p0", "conv_id": "c0", "prompt": "a", "response": "b"}]
    )
    kw = {"params": {"n": 1}, "root": tmp_path / "stores", "progress": False}
    with pytest.raises(ValueError, match="unknown embedding kind 'bogus'"):
        extract_pairs(pairs, ["train"], model, None, kind="bogus", **kw)
    assert not (tmp_path / "stores").exists()
    # control: a valid kind gets as far as the build (the fake model then fails in embed_fn)
    with pytest.raises(TypeError):  # no tokenizer
        extract_pairs(pairs, ["train"], model, None, kind="input", **kw)
    assert [p.name for p in (tmp_path / "stores").glob("tf-*.partial")]
