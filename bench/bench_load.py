"""Loading the default LLM from the safetensors cache vs reading the GGUF.

Ours: ``load_llm()`` with the cache under ``MODELS_DIR`` already written (the first call
below writes it if missing and is not timed): tokenizer, model, cache validation, eval mode.
Reference: what loading costs without the cache, ``from_pretrained(folder, gguf_file=...)``
for tokenizer and model (dequantising the Q4_1 tensors to float32), timed once. transformers
is imported before either timer starts. The target is absolute: a cache load <= 1 s
(fastest of the repeats; the machine is shared and other work only ever adds time).

Usage: ``python bench/bench_load.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers  # noqa: F401  (import cost kept out of the timers)

from sde_utils.extraction.llm import gguf_path, load_gguf, load_llm

TARGET_S = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"torch threads = {torch.get_num_threads()}")

    load_llm()  # make sure the cache exists (creating it is not what is measured)
    cache_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model, _ = load_llm()
        cache_times.append(time.perf_counter() - start)
        del model
    print("cache loads: " + ", ".join(f"{t:.3f} s" for t in cache_times))

    start = time.perf_counter()
    model, _ = load_gguf(gguf_path())
    gguf_time = time.perf_counter() - start
    del model

    best = min(cache_times)
    print(f"load from cache: best {best:.3f} s, median {statistics.median(cache_times):.3f} s")
    print(f"load from GGUF : {gguf_time:.2f} s")
    verdict = "PASS" if best <= TARGET_S else "FAIL"
    print(
        f"ratio cache/gguf = {best / gguf_time:.3f} (cache {best:.3f} s, target <= "
        f"{TARGET_S:g} s): {verdict}"
    )


if __name__ == "__main__":
    main()
