"""Seeding, parameter hashes and run ids.

Randomness in this project is always seeded from a parameter: call
``seed_everything(seed)`` at the top of a notebook and pass ``seed`` on to anything
that draws (torchsde's Brownian motion takes its seed from the argument or numpy).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch (CPU and, where present, CUDA) from ``seed``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: leave torch's setting).

    The project's thread policy: sampling from an LLM on the CPU runs single-threaded.
    How a matmul is split across threads changes its float rounding; one flipped draw
    changes the whole continuation, so a multi-threaded sampler gives another store on a
    machine with another core count or load. One thread also avoids the collapse seen
    when two threads compete with another process on a 2-core machine (30x slower).
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def params_hash(params: Mapping[str, Any], length: int = 12) -> str:
    """A stable hex digest of a parameter mapping (key order does not matter)."""
    blob = json.dumps(_jsonable(params), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def run_id(params: Mapping[str, Any], prefix: str | None = None) -> str:
    """A run id from a hash of ``params``: the same parameters always give the same id.

    >>> run_id({"seed": 0, "layer": "input"}, prefix="sharegpt")
    'sharegpt-...'
    """
    digest = params_hash(params)
    return f"{prefix}-{digest}" if prefix else digest


__all__ = ["seed_everything", "params_hash", "run_id", "torch_threads"]
