"""Multi-layer capture (every depth from one forward pass) vs one plain forward pass.

Ours: :func:`sde_utils.extraction.layers.capture_states` with the sweep's kinds (the input
embedding, evenly spaced blocks and the final state: ``depth_kinds(model, 7)``) on real
ShareGPT pairs, everything included (prompt format, tokenisation, batching by length,
slicing each kind's response tokens and copying them out as float32 numpy arrays).
Reference: the base transformer (no LM head) called once on exactly the same right-padded
batches (:func:`~sde_utils.extraction.states.padded_batches`, built before the timer) with
nothing done to its output: what a single-kind extraction can at best cost. Repeats are
interleaved in ABBA order and the fastest repeat of each is compared (the machine is
shared: other work only adds time, so the minimum is the least noisy estimate, as in
``timeit``); the median of the per-repeat ratios is printed too. The gated ratio,
printed last, is throughput ours / reference (target >= 0.9): capturing seven kinds
should cost about one plain pass, not seven.

Usage: ``python bench/bench_layers.py [--llm smollm2-135m-instruct] [--pairs 32]
[--batch-size 8] [--repeats 4]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _sharegpt_pairs import sharegpt_pairs

from sde_utils.extraction.layers import capture_states, depth_kinds
from sde_utils.extraction.llm import DEFAULT_LLM, load_llm
from sde_utils.extraction.states import encode_pairs_checked, padded_batches

TARGET = 0.9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default=DEFAULT_LLM)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()

    model, tokenizer = load_llm(args.llm)
    prompts, responses = sharegpt_pairs(
        tokenizer, args.pairs, max_prompt_tokens=48, response_tokens=(16, 64)
    )
    kinds = depth_kinds(model, 7)
    encoded = encode_pairs_checked(model, tokenizer, prompts, responses)
    batches = [ids for _, ids in padded_batches(model, tokenizer, encoded, args.batch_size, False)]
    n_tokens = sum(len(p) + len(r) for p, r in encoded)

    def ours() -> float:
        start = time.perf_counter()
        capture_states(model, tokenizer, prompts, responses, kinds, batch_size=args.batch_size)
        return time.perf_counter() - start

    def reference() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for ids in batches:
                model.base_model(input_ids=ids, use_cache=False)
        return time.perf_counter() - start

    ours(), reference()  # warm-up
    times = {"ours": [], "reference": []}
    for r in range(args.repeats):
        order = (ours, reference) if r % 2 == 0 else (reference, ours)
        for fn in order:
            times["ours" if fn is ours else "reference"].append(fn())
    ratios = [b / a for a, b in zip(times["ours"], times["reference"], strict=True)]
    best_ours, best_ref = min(times["ours"]), min(times["reference"])
    print(
        f"{args.llm}: {len(prompts)} pairs, {n_tokens} tokens, batch {args.batch_size}, kinds {kinds}"
    )
    print(f"reference (one plain forward pass): {n_tokens / best_ref:,.0f} tokens/s")
    print(f"capture of {len(kinds)} kinds:           {n_tokens / best_ours:,.0f} tokens/s")
    print(f"median per-repeat ratio: {statistics.median(ratios):.3f} (target >= {TARGET})")
    print(f"throughput ratio (capture / one plain pass): {best_ref / best_ours:.3f}")


if __name__ == "__main__":
    main()
