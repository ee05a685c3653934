"""Shared pytest configuration: ``--runslow`` enables tests marked ``slow``; the
``ou_store`` fixture builds small synthetic trajectory stores for the fit tests."""

import os

import numpy as np
import pytest

from sde_utils.extraction.store_build import build_store

# Tests run single-threaded by default so their timings are stable on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def build_ou_store(name, root, *, n_seqs, length, dim, seed=0, params=None):
    """``n_seqs`` AR(1) sequences ``x_{k+1} = 0.7 x_k + 0.3 eps`` of ``length`` states in
    R^``dim`` (start N(0, I)), one conversation each, splits train/val/test in turn; built
    as store ``name`` under ``root`` (``params`` its parameters). Returns the store folder."""
    rng = np.random.default_rng(seed)
    items, states = [], {}
    for i in range(n_seqs):
        x = np.zeros((length, dim))
        x[0] = rng.normal(size=dim)
        for k in range(length - 1):
            x[k + 1] = 0.7 * x[k] + 0.3 * rng.normal(size=dim)
        states[f"p{i}"] = x.astype(np.float32)
        items.append(
            {"pair_id": f"p{i}", "conv_id": f"c{i}", "split": ("train", "val", "test")[i % 3]}
        )

    def embed(chunk):
        return [
            {
                "states": states[it["pair_id"]],
                "token_ids": list(range(length)),
                "tokens": ["t"] * length,
            }
            for it in chunk
        ]

    return build_store(name, items, embed, params=params or {}, root=root, progress=False)


@pytest.fixture(scope="session")
def ou_store():
    """:func:`build_ou_store`, for tests that need a small store to fit on."""
    return build_ou_store
