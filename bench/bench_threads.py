"""The thread policy: sampling with 1 torch thread vs torch's default, beside a competing process.

The machine this project targets has 2 cores and is often shared. This benchmark starts
one competing CPU-bound process (a single-threaded numpy matmul loop) and, while it runs,
times ``sample_trajectories`` with ``cpu_threads=1`` (the policy) and ``cpu_threads=None``
(torch's default: one thread per core), interleaved ABBA, fastest repeat of each. It
prints both throughputs and their ratio (policy / default; the policy is kept when the
ratio is >= 0.8, i.e. one thread costs at most 20% even where the default would win).

Usage: ``python bench/bench_threads.py [--prompts 2] [--k 4] [--new 32] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from _sharegpt_pairs import sharegpt_pairs

from sde_utils.extraction.llm import load_llm
from sde_utils.extraction.sampling import sample_trajectories

TARGET = 0.8
COMPETITOR = (
    "import os; os.environ['OMP_NUM_THREADS'] = '1'\n"
    "import numpy as np\n"
    "a = np.random.default_rng(0).normal(size=(400, 400))\n"
    "while True:\n"
    "    a = np.tanh(a @ a.T / 400)\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    model, tokenizer = load_llm()
    prompts, _ = sharegpt_pairs(
        tokenizer, args.prompts, max_prompt_tokens=48, response_tokens=(16, 512)
    )
    n_tokens = len(prompts) * args.k * args.new
    default_threads = torch.get_num_threads()

    def run(threads):
        began = time.perf_counter()
        sample_trajectories(model, tokenizer, prompts, k=args.k, temperatures=(1.0,),
                            max_new_tokens=args.new, stop_at_eos=False, seed=0,
                            cpu_threads=threads)  # fmt: skip
        return time.perf_counter() - began

    run(1)  # warm-up
    env = dict(os.environ, OMP_NUM_THREADS="1")
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
    try:
        time.sleep(1.0)
        times = {1: [], None: []}
        for _ in range(args.repeats):
            for threads in (1, None, None, 1):
                times[threads].append(run(threads))
    finally:
        competitor.kill()
        competitor.wait()
    one, default = min(times[1]), min(times[None])
    print(f"{n_tokens} sampled tokens, {os.cpu_count()} cores, one competing process")
    print(f"  1 thread (policy):          {n_tokens / one:8.1f} tokens/s")
    print(f"  {default_threads} threads (torch default): {n_tokens / default:8.1f} tokens/s")
    ratio = (n_tokens / one) / (n_tokens / default)
    print(
        f"ratio policy/default = {ratio:.2f} (target >= {TARGET}) {'PASS' if ratio >= TARGET else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
