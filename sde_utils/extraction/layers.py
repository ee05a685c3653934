"""Many state kinds from one forward pass per batch: the layer sweep's extraction.

Kinds are those of :mod:`~sde_utils.extraction.states` (``"input"``, ``"layer:N"``,
``"hidden"``). :func:`capture_states` runs the base model (never the LM head) once per
right-padded batch with ``output_hidden_states=True`` and slices every requested kind out
of that one pass: ``"layer:N"`` is ``hidden_states[N]`` (the residual stream after block N,
before any norm; ``N = 0`` the embedding output, which for Gemma is the embedding row
times sqrt(hidden size)), ``"hidden"`` the last entry (after the final norm) and
``"input"`` the raw embedding-matrix rows (no forward pass, as in notebook 01). The
numbers are those of :func:`~sde_utils.extraction.states.teacher_forced_states` run
once per kind (tests check this for both packaged LLMs).

Stores (:mod:`~sde_utils.extraction.store`): one store holds **one** kind, as before.
:func:`extract_layers` writes one store per kind, all from the same forward passes: the
first store's build captures every kind of a chunk at once and the other stores take
their chunk from that capture. Each store's params carry ``model`` (the LLM's name) and
``embedding_kind``, so its meta.json names both; :func:`check_store_llm` refuses a store
built by one LLM for another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch

from sde_utils.checks import check_int
from sde_utils.config import run_id as make_run_id
from sde_utils.extraction.extract import pair_items
from sde_utils.extraction.pairs import load_pairs
from sde_utils.extraction.states import (
    check_kind,
    encode_pairs_checked,
    num_layers,
    padded_batches,
)
from sde_utils.extraction.store_build import build_store

__all__ = [
    "short_prompt_pairs",
    "depth_kinds",
    "relative_depth",
    "capture_states",
    "extract_layers",
    "store_llm",
    "check_store_llm",
]


def short_prompt_pairs(
    *, n_pairs: int, max_prompt_tokens: int, count_tokens, pool_factor: int = 4, **kwargs
) -> datasets.Dataset:
    """``n_pairs`` pairs of :func:`~sde_utils.extraction.pairs.load_pairs` whose prompt has
    at most ``max_prompt_tokens`` tokens (``count_tokens``; every LLM reads the prompt, so
    long ones cost forward passes but give no state). Draws ``pool_factor * n_pairs`` pairs
    with ``kwargs`` (source, seed, response bounds, ...), keeps the first ``n_pairs`` short
    ones in source order; a ValueError says when fewer pass."""
    n_pairs = check_int("n_pairs", n_pairs, minimum=1)
    max_prompt_tokens = check_int("max_prompt_tokens", max_prompt_tokens, minimum=1)
    pool = load_pairs(n_pairs=pool_factor * n_pairs, count_tokens=count_tokens, **kwargs)
    keep = [i for i, p in enumerate(pool["prompt"]) if count_tokens(p) <= max_prompt_tokens]
    if len(keep) < n_pairs:
        raise ValueError(
            f"only {len(keep)} of {len(pool)} drawn pairs have prompts of at most "
            f"{max_prompt_tokens} tokens, fewer than n_pairs={n_pairs}; raise "
            "max_prompt_tokens or lower n_pairs"
        )
    return pool.select(keep[:n_pairs])


def depth_kinds(model, n_depths: int) -> list[str]:
    """``n_depths`` kinds spread evenly over the depth of ``model``: ``"input"`` first,
    ``"hidden"`` last and ``"layer:N"`` between, ``N = round(j * n / (n_depths - 1))``
    (``n`` blocks; duplicates dropped). ``n_depths >= 2``."""
    n_depths = check_int("n_depths", n_depths, minimum=2)
    n = num_layers(model)
    kinds = ["input"]
    for j in range(1, n_depths - 1):
        layer = round(j * n / (n_depths - 1))
        if 0 < layer < n and f"layer:{layer}" not in kinds:
            kinds.append(f"layer:{layer}")
    return [*kinds, "hidden"]


def relative_depth(model_or_layers, kind: str) -> float:
    """Depth of ``kind`` in ``0..1``: ``"input"`` 0, ``"layer:N"`` N / n, ``"hidden"`` 1
    (``model_or_layers``: a model or its number of blocks n)."""
    n = model_or_layers if isinstance(model_or_layers, int) else num_layers(model_or_layers)
    if kind == "input":
        return 0.0
    if kind == "hidden":
        return 1.0
    match = re.fullmatch(r"layer:(\d+)", kind)
    if match is None or not 0 <= int(match.group(1)) <= n:
        raise ValueError(f"unknown kind {kind!r} for a model of {n} layers")
    return int(match.group(1)) / n


def capture_states(
    model,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    kinds: Sequence[str],
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Teacher-forced states of every kind in ``kinds`` from one forward pass per batch.

    Returns ``{kind: [one dict per pair, in input order]}`` with the fields of
    :func:`~sde_utils.extraction.states.teacher_forced_states` (``token_ids``, ``tokens``,
    ``states (L, d) float32``, ``prompt_len``); the token fields are shared between kinds.
    Every kind is checked first (a layer outside the model's range names that range).
    """
    kinds = list(dict.fromkeys(kinds))
    if not kinds:
        raise ValueError("kinds must name at least one state kind")
    index = {kind: check_kind(model, kind) for kind in kinds}
    batch_size = check_int("batch_size", batch_size, minimum=1)
    encoded = encode_pairs_checked(model, tokenizer, prompts, responses)
    tokens = [tokenizer.convert_ids_to_tokens(r) for _, r in encoded]
    out: dict[str, list] = {kind: [None] * len(encoded) for kind in kinds}

    def record(kind: str, i: int, states: torch.Tensor) -> None:
        out[kind][i] = {
            "token_ids": encoded[i][1],
            "tokens": tokens[i],
            "states": states.to(torch.float32).cpu().numpy().copy(),
            "prompt_len": len(encoded[i][0]),
        }

    forward = [k for k in kinds if index[k] is not None]
    with torch.inference_mode():
        if "input" in index:
            weight = model.get_input_embeddings().weight
            for i, (_, response) in enumerate(encoded):
                record("input", i, weight[torch.tensor(response, device=weight.device)])
        if forward:
            base = model.base_model
            for chunk, ids in padded_batches(model, tokenizer, encoded, batch_size, progress):
                hs = base(input_ids=ids, use_cache=False, output_hidden_states=True).hidden_states
                for kind in forward:
                    hidden = hs[index[kind]]
                    for row, i in enumerate(chunk):
                        start = len(encoded[i][0])
                        record(kind, i, hidden[row, start : start + len(encoded[i][1])])
    return out


def extract_layers(
    pairs: datasets.Dataset,
    splits: Sequence[str],
    model,
    tokenizer,
    *,
    llm: str,
    kinds: Sequence[str],
    params: Mapping[str, Any],
    batch_size: int = 8,
    chunk_size: int = 64,
    root: Path | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """One store per kind of ``kinds`` (teacher-forced states of every response of
    ``pairs``), all from one forward pass per batch; returns ``{kind: store path}``.

    ``params``: what determines the numbers besides the LLM and the kind (data selection,
    split fractions, seed); each store's run id (prefix ``tf-``) hashes them with ``model
    = llm`` and ``embedding_kind = kind``. A store that exists with the same params is
    reused without running the model; a chunk captured for one store is handed to the
    others, so each batch goes through the model once whatever the number of kinds.
    """
    kinds = list(dict.fromkeys(kinds))
    for kind in kinds:
        check_kind(model, kind)
    items = pair_items(pairs, splits)
    captured: dict[str, dict[tuple, list[dict]]] = {kind: {} for kind in kinds}

    def embedder(kind: str):
        def embed(chunk: list[dict]) -> list[dict]:
            key = tuple(item["pair_id"] for item in chunk)
            if key not in captured[kind]:
                states = capture_states(
                    model,
                    tokenizer,
                    [item["prompt"] for item in chunk],
                    [item["response"] for item in chunk],
                    kinds,
                    batch_size=batch_size,
                )
                for other, rows in states.items():
                    captured[other][key] = rows
            return captured[kind].pop(key)

        return embed

    paths = {}
    for kind in kinds:
        store_params = {**dict(params), "model": llm, "embedding_kind": kind}
        paths[kind] = build_store(
            make_run_id(store_params, prefix="tf"),
            items,
            embedder(kind),
            params=store_params,
            meta={"producer": "capture_states"},
            chunk_size=chunk_size,
            root=root,
            progress=progress,
        )
        captured[kind].clear()  # nothing of this kind is needed any more
    return paths


def store_llm(store) -> str | None:
    """The LLM a store was built by: meta.json's ``model``, else its params' ``model`` or
    ``model_name`` (notebook 01's name for it); None when it recorded none."""
    meta = store.meta
    params = meta.get("params") or {}
    return meta.get("model") or params.get("model") or params.get("model_name")


def check_store_llm(store, llm: str) -> None:
    """Refuse a store built by another LLM than ``llm`` (or by an unrecorded one): states of
    different models live in different spaces, so fits and comparisons would be meaningless."""
    built = store_llm(store)
    if built != llm:
        raise ValueError(
            f"store {store.path.name} holds states of the LLM {built!r}, not {llm!r}; build "
            f"the store with {llm!r} (extract_layers(..., llm={llm!r})) or use that LLM"
        )
