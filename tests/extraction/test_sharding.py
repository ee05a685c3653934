"""Sharded store builds on torch.distributed: 2 CPU processes on the gloo backend build
the same store, file for file, as one process (exact comparisons: same chunks, same
arithmetic, one torch thread per process)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch.multiprocessing as mp
from shard_cases import WORLD, fake_store, llm_stores, llm_worker
from store_cases import FILES, FakeEmbed, build

from sde_utils.extraction.sharding import build_store_sharded, rank_and_world, shard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker, *args) -> list[tuple]:
    """Run ``worker(rank, port, *args, queue)`` on WORLD spawned processes; their reports
    sorted by rank."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(worker, args=(free_port(), *args, queue), nprocs=WORLD, join=True)
    return sorted(queue.get() for _ in range(WORLD))


def same_files(a: Path, b: Path) -> list[str]:
    """The store files whose bytes differ between stores ``a`` and ``b``."""
    return [f for f in FILES if (a / f).read_bytes() != (b / f).read_bytes()]


def test_shard_deals_chunks_round_robin():
    assert shard(7, 0, 3) == [0, 3, 6] and shard(7, 2, 3) == [2, 5]
    assert sorted(k for r in range(3) for k in shard(7, r, 3)) == list(range(7))
    assert shard(1, 1, 2) == []  # more ranks than chunks: a rank may have none
    with pytest.raises(ValueError, match="rank must be < world_size=2, got 2"):
        shard(4, 2, 2)
    with pytest.raises(TypeError, match="world_size must be an int >= 1"):
        shard(4, 0, 1.0)


def test_without_a_process_group_it_is_build_store(tmp_path):
    assert rank_and_world() == (0, 1)
    path = build_store_sharded("run", *_fixture(), params=_params(), chunk_size=2,
                               root=tmp_path / "a", progress=False)  # fmt: skip
    ref = build(tmp_path / "b", chunk_size=2)
    assert same_files(path, ref) == []


def _fixture():
    from store_cases import make_items

    return make_items(), FakeEmbed()


def _params():
    from store_cases import PARAMS

    return PARAMS


def test_two_ranks_fail_together_resume_and_build_the_one_process_store(tmp_path):
    root = tmp_path / "sharded"
    # a rank that fails makes every rank fail; the other rank's chunks are kept
    reports = run_ranks(fake_store, str(root), 1)
    assert [r[:2] for r in reports] == [(0, "error"), (1, "error")]
    assert "failed on rank(s) [1]" in reports[0][2]
    assert "simulated failure on rank 1" in reports[1][2]
    kept = sorted(p.name for p in (root / "run.partial").glob("chunk_*.npz"))
    assert kept == ["chunk_000000.npz", "chunk_000002.npz", "chunk_000004.npz"]
    assert not (root / "run").exists()
    # the rerun resumes: rank 0's chunks (0, 2, 4: pairs p0..p9, two a chunk) are done,
    # rank 1 computes its own (1, 3, 5)
    reports = run_ranks(fake_store, str(root), None)
    assert [r[:2] for r in reports] == [(0, "ok"), (1, "ok")]
    assert reports[0][2] == reports[1][2]  # every rank gets the store's path
    assert reports[0][3] == [] and reports[1][3] == [["p2", "p3"], ["p6", "p7"], ["p10"]]
    ref = build(tmp_path / "one", chunk_size=2)
    assert same_files(Path(reports[0][2]), ref) == []
    assert not (root / "run.partial").exists()
    # control: the comparison sees a store whose states differ in one factor
    other = build(tmp_path / "other", embed=FakeEmbed(scale=1.5), chunk_size=2)
    assert "embeddings.npy" in same_files(other, ref)


def test_sharded_llm_stores_equal_a_one_process_build_under_other_threads(tmp_path, lm):
    """Teacher-forced and sampled stores of the real model: two gloo ranks (one thread
    each) vs one process, byte for byte; the one process samples with two torch threads
    set (a sampled store built twice under different thread settings). Sampling runs on
    one thread whatever the caller's setting (the thread policy), so its draws, and its
    store, do not depend on it."""
    reports = run_ranks(llm_worker, str(tmp_path / "sharded"))
    assert [r[:2] for r in reports] == [(0, "ok"), (1, "ok")], reports
    ref = llm_stores(str(tmp_path / "one"), sample_threads=2)
    for got, want in zip(reports[0][2], ref, strict=True):
        assert Path(got).name == Path(want).name
        assert same_files(Path(got), Path(want)) == []
