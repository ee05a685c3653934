"""Fixtures shared by the store tests: 11 fake sequences and a deterministic ``embed_fn``.

States are drawn from a generator seeded by the pair id, so the expected trajectories are
known exactly; float32 storage of those float64 draws is compared with the float32 cast,
exactly.
"""

from __future__ import annotations

import hashlib

import numpy as np

from sde_utils.extraction.store_build import build_store

D = 5  # state dimension of the fake embeddings
PARAMS = {"source": "fixture", "model": "fake", "layer": "input", "seed": 0, "n_pairs": 11}
SPLIT_OF_CONV = ["train", "train", "val", "train", "test", "train"]
LENGTHS = [4, 1, 6, 3, 2, 5, 7, 2, 3, 4, 5]  # includes a length-1 sequence (no transition)


def make_items() -> list[dict]:
    """11 sequences from 6 conversations (two pairs per conversation but the last)."""
    items = []
    for i, n in enumerate(LENGTHS):
        conv = i // 2
        items.append(
            {
                "pair_id": f"p{i}",
                "conv_id": f"c{conv}",
                "split": SPLIT_OF_CONV[conv],
                "prompt": f"prompt {i}",
                "n": n,
                "temperature": 0.7,
                "sample_index": i % 3,
            }
        )
    return items


def expected_states(item: dict) -> np.ndarray:
    seed = int(hashlib.sha256(item["pair_id"].encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal((item["n"], D))  # float64


class FakeEmbed:
    """Deterministic embed_fn that records the pair ids of every call.

    ``fail_on_call``: raise RuntimeError on that call (1-based), simulating an interruption.
    ``bad``: pair_id -> value (nan / inf) written into that sequence's states.
    ``scale``: multiply every state (to tell two builds apart).
    """

    def __init__(self, fail_on_call=None, bad=None, scale=1.0):
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call
        self.bad = bad or {}
        self.scale = scale

    def __call__(self, items):
        self.calls.append([it["pair_id"] for it in items])
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("simulated interruption")
        out = []
        for it in items:
            states = expected_states(it) * self.scale
            if it["pair_id"] in self.bad:
                states[-1, 0] = self.bad[it["pair_id"]]
            n = it["n"]
            out.append(
                {
                    "states": states,
                    "token_ids": list(range(100, 100 + n)),
                    "tokens": [f"tok{k}" for k in range(n)],
                    "entropy": np.linspace(0.0, 1.0, n),
                    "logprob": -np.arange(n, dtype=np.float64),
                    "score": float(n) / 2,
                }
            )
        return out


def must_not_be_called(items):
    raise AssertionError(f"embed_fn must not be called, got {len(items)} items")


def build(root, embed=None, params=PARAMS, items=None, chunk_size=3, **kw):
    return build_store(
        "run",
        make_items() if items is None else items,
        embed or FakeEmbed(),
        params=params,
        chunk_size=chunk_size,
        root=root,
        progress=False,
        **kw,
    )


FILES = ("embeddings.npy", "sequences.parquet", "meta.json")


def read_files(path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in FILES}
