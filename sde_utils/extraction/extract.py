"""From text to trajectory stores: the glue between the LLM and the store.

Two producers, one store format (see :mod:`sde_utils.extraction.store`):

- :func:`extract_pairs` (notebook 01): teacher-forced states of given responses;
- :func:`sample_to_store` (notebook 02): the LLM answers prompts itself, K times at each
  temperature, recording per step its state, entropy and the chosen token's log-prob.

Both build the store chunk by chunk, so an interrupted run resumes where it stopped, and
both key the store on a hash of everything that determines its numbers. Called on every
rank of a ``torch.distributed`` process group, they share the chunks out
(:mod:`sde_utils.extraction.sharding`) and give the same store as one process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from sde_utils.checks import check_int
from sde_utils.config import run_id as make_run_id
from sde_utils.extraction.sampling import sample_trajectories
from sde_utils.extraction.sharding import build_store_sharded
from sde_utils.extraction.states import check_kind, teacher_forced_states

ANNOTATIONS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def pair_items(pairs: datasets.Dataset, splits: Sequence[str]) -> list[dict[str, Any]]:
    """One store item per pair: ``pair_id, conv_id, prompt, response``, the annotations
    present and ``split`` (``splits[i]`` is pair i's split)."""
    if len(splits) != len(pairs):
        raise ValueError(f"got {len(splits)} split labels for {len(pairs)} pairs")
    keep = [
        "pair_id",
        "conv_id",
        "prompt",
        "response",
        *[a for a in ANNOTATIONS if a in pairs.column_names],
    ]
    return [
        {**{c: row[c] for c in keep}, "split": split}
        for row, split in zip(pairs, splits, strict=True)
    ]


def extract_pairs(
    pairs: datasets.Dataset,
    splits: Sequence[str],
    model,
    tokenizer,
    *,
    kind: str,
    params: Mapping[str, Any],
    batch_size: int = 8,
    chunk_size: int = 64,
    root: Path | None = None,
    progress: bool = True,
) -> Path:
    """Teacher-forced ``kind`` states of every response of ``pairs`` -> a store; its path.

    ``splits[i]`` is pair i's split (from :func:`sde_utils.extraction.pairs.assign_splits`).
    ``params``: what determines the numbers (data selection, model, kind, split
    fractions, seed); the store's run id is a hash of them, prefixed ``tf-``. ``kind`` is
    checked first, so a bad one creates no folder.
    """
    check_kind(model, kind)
    if len(splits) != len(pairs):
        raise ValueError(f"got {len(splits)} split labels for {len(pairs)} pairs")
    items = pair_items(pairs, splits)

    def embed(chunk: list[dict]) -> list[dict]:
        return teacher_forced_states(
            model,
            tokenizer,
            [item["prompt"] for item in chunk],
            [item["response"] for item in chunk],
            kind=kind,
            batch_size=batch_size,
        )

    return build_store_sharded(
        make_run_id(dict(params), prefix="tf"),
        items,
        embed,
        params=dict(params),
        meta={"producer": "teacher_forced_states"},
        chunk_size=chunk_size,
        root=root,
        progress=progress,
    )


def sample_to_store(
    prompts: Sequence[Mapping[str, Any]],
    model,
    tokenizer,
    *,
    k: int,
    temperatures: Sequence[float],
    max_new_tokens: int,
    kind: str,
    seed: int,
    params: Mapping[str, Any],
    prompts_per_chunk: int = 4,
    root: Path | None = None,
    progress: bool = True,
) -> Path:
    """The LLM answers each prompt ``k`` times at each temperature -> a store; its path.

    ``prompts``: dicts with ``pair_id``, ``conv_id``, ``prompt`` and ``split``. One store
    row per (prompt, temperature, sample) with per-step ``entropy`` and ``logprob``.
    Every row's randomness depends only on ``(seed, prompt position, temperature,
    sample)``, so chunking and resuming do not change the samples. End-of-sequence is
    masked at the first step, so every answer has at least one token.
    """
    check_kind(model, kind)  # before any folder is created
    k = check_int("k", k, minimum=1)
    prompts_per_chunk = check_int("prompts_per_chunk", prompts_per_chunk, minimum=1)
    temps = [float(t) for t in temperatures]
    per_prompt = k * len(temps)
    items = []
    for index, p in enumerate(prompts):
        for temperature in temps:
            for sample in range(k):
                items.append(
                    {
                        "pair_id": f"{p['pair_id']}|T={temperature:g}|s={sample}",
                        "source_pair_id": p["pair_id"],
                        "conv_id": p["conv_id"],
                        "split": p["split"],
                        "prompt": p["prompt"],
                        "prompt_index": index,
                        "temperature": temperature,
                        "sample_index": sample,
                    }
                )

    def embed(chunk: list[dict]) -> list[dict]:
        first = chunk[0]["prompt_index"]
        chunk_prompts = [chunk[i]["prompt"] for i in range(0, len(chunk), per_prompt)]
        rows = sample_trajectories(
            model,
            tokenizer,
            chunk_prompts,
            k=k,
            temperatures=temps,
            max_new_tokens=max_new_tokens,
            kind=kind,
            seed=seed,
            min_new_tokens=1,  # an answer has at least one token (a store row needs one)
            prompt_offset=first,
        )
        return [
            {
                "states": r["states"],
                "token_ids": r["token_ids"],
                "tokens": r["tokens"],
                "entropy": r["entropy"],
                "logprob": r["logprob"],
                "text": r["text"],
            }
            for r in rows
        ]

    return build_store_sharded(
        make_run_id(dict(params), prefix="sampled"),
        items,
        embed,
        params=dict(params),
        meta={"producer": "sample_trajectories"},
        chunk_size=per_prompt * prompts_per_chunk,
        root=root,
        progress=progress,
    )


__all__ = ["extract_pairs", "pair_items", "sample_to_store", "ANNOTATIONS"]
