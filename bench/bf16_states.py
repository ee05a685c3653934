"""How far bf16 LLM states are from float32 ones: teacher-forced states of a few real
ShareGPT pairs with the model in float32 and in bfloat16 (same weights, cast), compared per
kind (input embedding, a middle block, the final state) as the relative error
``|s_bf16 - s_fp32| / |s_fp32|`` per token (median and 95th percentile, with a 95%
bootstrap interval over pairs for the median), and the cosine similarity.

Usage: ``python bench/bf16_states.py [--pairs 8]`` (CPU, about a minute)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _sharegpt_pairs import sharegpt_pairs

from sde_utils.extraction.llm import load_llm
from sde_utils.extraction.states import teacher_forced_states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args()
    model, tokenizer = load_llm(device="cpu")
    prompts, responses = sharegpt_pairs(tokenizer, args.pairs, max_prompt_tokens=64,
                                        response_tokens=(32, 128))  # fmt: skip
    half, _ = load_llm(device="cpu", dtype=torch.bfloat16)
    rng = np.random.default_rng(0)
    n_layers = model.config.num_hidden_layers
    for kind in ("input", f"layer:{n_layers // 2}", "hidden"):
        ref = teacher_forced_states(model, tokenizer, prompts, responses, kind=kind)
        low = teacher_forced_states(half, tokenizer, prompts, responses, kind=kind)
        rel_per_pair, cos, rel_all = [], [], []
        for a, b in zip(ref, low, strict=True):
            s32, s16 = np.asarray(a["states"], np.float64), np.asarray(b["states"], np.float64)
            rel = np.linalg.norm(s16 - s32, axis=1) / np.linalg.norm(s32, axis=1)
            rel_all.append(rel)
            rel_per_pair.append(np.median(rel))
            cos.append(
                np.sum(s16 * s32, 1) / np.linalg.norm(s16, axis=1) / np.linalg.norm(s32, axis=1)
            )
        rel_all, cos = np.concatenate(rel_all), np.concatenate(cos)
        per_pair = np.array(rel_per_pair)
        boot = [
            np.median(per_pair[rng.integers(0, len(per_pair), len(per_pair))]) for _ in range(2000)
        ]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(f"{kind:>9}: {len(rel_all)} tokens, relative error median {np.median(rel_all):.4f} "
              f"(per-pair median {np.median(per_pair):.4f}, 95% CI [{lo:.4f}, {hi:.4f}]), "
              f"p95 {np.percentile(rel_all, 95):.4f}, min cosine {cos.min():.5f}")  # fmt: skip


if __name__ == "__main__":
    main()
