"""Sharded extraction: two torchrun processes (gloo, 1 thread each) vs one process (1 thread).

Both build the same store of teacher-forced final-layer states (``extract_pairs``,
``kind="hidden"``) of real ShareGPT pairs, in chunks of ``--chunk`` pairs, into a fresh
folder. The one-process build runs in a subprocess with ``OMP_NUM_THREADS=1``; the
sharded build is ``python -m torch.distributed.run --nproc-per-node 2`` (the torchrun
launcher) on the same script, each rank with 1 thread. Each timer starts after the model
is loaded (and, for the ranks, after a barrier) and stops when the store is in place, so
interpreter start-up, model loading and the rendezvous are outside it. The two stores are
checked to be identical, file for file. Repeats alternate one / two / two / one; the
fastest of each is compared (a shared machine only ever adds time). The last line prints
the ratio one-process time / two-process time (target >= 1.7 on 2 free cores).

Usage: ``python bench/bench_shard.py [--pairs 32] [--chunk 4] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.7
FILES = ("embeddings.npy", "sequences.parquet", "meta.json")


def worker(args) -> None:
    """One build (one process, or one rank of a torchrun group); rank 0 writes the time."""
    import datasets
    import torch
    import torch.distributed as dist
    from _sharegpt_pairs import sharegpt_pairs

    from sde_utils.extraction.extract import extract_pairs
    from sde_utils.extraction.llm import load_llm

    torch.set_num_threads(1)
    sharded = "WORLD_SIZE" in os.environ
    if sharded:
        dist.init_process_group("gloo")
    model, tokenizer = load_llm(device="cpu")
    prompts, responses = sharegpt_pairs(
        tokenizer, args.pairs, max_prompt_tokens=64, response_tokens=(64, 256)
    )
    n = len(prompts)
    pairs = datasets.Dataset.from_dict(
        {"pair_id": [f"p{i}" for i in range(n)], "conv_id": [f"c{i}" for i in range(n)],
         "prompt": prompts, "response": responses}
    )  # fmt: skip
    if sharded:
        dist.barrier()
    began = time.perf_counter()
    path = extract_pairs(pairs, ["train"] * n, model, tokenizer, kind="hidden",
                         params={"bench": "shard", "pairs": n}, batch_size=args.chunk,
                         chunk_size=args.chunk, root=args.root, progress=False)  # fmt: skip
    seconds = time.perf_counter() - began
    if not sharded or dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps({"seconds": seconds, "store": str(path)}))
    if sharded:
        dist.destroy_process_group()


def run(kind: str, args, scratch: Path, k: int) -> tuple[float, Path]:
    root, out = scratch / f"{kind}-{k}", scratch / f"{kind}-{k}.json"
    script = [__file__, "--worker", "--root", str(root), "--out", str(out),
              "--pairs", str(args.pairs), "--chunk", str(args.chunk)]  # fmt: skip
    launcher = [sys.executable]
    if kind == "two":
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", "2",
                     "--master-port", str(29700 + k)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(launcher + script, env=env, check=True, capture_output=True)
    result = json.loads(out.read_text())
    return result["seconds"], Path(result["store"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-shard-"))
    try:
        times: dict[str, list[float]] = {"one": [], "two": []}
        stores = {}
        k = 0
        for _ in range(args.repeats):
            for kind in ("one", "two", "two", "one"):
                seconds, stores[kind] = run(kind, args, scratch, k)
                times[kind].append(seconds)
                k += 1
        same = all(
            (stores["one"] / f).read_bytes() == (stores["two"] / f).read_bytes() for f in FILES
        )
        one, two = min(times["one"]), min(times["two"])
        load = os.getloadavg()[0]
        print(f"{args.pairs} pairs, chunks of {args.chunk}, {os.cpu_count()} cores, "
              f"load average {load:.1f} (other work on the machine slows both)")  # fmt: skip
        print(f"  one process, 1 thread:        {one:7.2f} s  (all: {times['one']})")
        print(f"  two torchrun ranks, 1 thread: {two:7.2f} s  (all: {times['two']})")
        print(f"  stores identical file for file: {same}")
        ratio = one / two
        verdict = "PASS" if ratio >= TARGET and same else "FAIL"
        print(f"ratio one-process / two-process time = {ratio:.2f} (target >= {TARGET}) {verdict}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
