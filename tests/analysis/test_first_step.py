"""Tests for sde_utils.analysis.first_step: groups sharing a prefix, and the comparison of their
second states with each model's Gaussian (calibrated for the true model).

Stores are built in memory (``TrajectoryStore`` over a numpy array and a DataFrame), so no
LLM is involved.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.analysis.first_step import (
    first_step_comparison,
    first_token_groups,
    summarise_first_step,
)
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.baselines import RandomWalk
from sde_utils.models.features import FeatureMap


def test_first_token_groups_group_by_prompt_temperature_and_first_token():
    seqs = pd.DataFrame(
        {
            "prompt_index": [0, 0, 0, 0, 1, 1],
            "temperature": [0.5, 0.5, 0.5, 1.0, 0.5, 0.5],
            "token_ids": [[7, 1], [7, 2], [8, 1], [7, 3], [7, 1], [7]],
            "length": [2, 2, 2, 2, 2, 1],
            "conv_id": ["a", "a", "a", "a", "b", "b"],
        }
    )
    groups = first_token_groups(seqs)
    assert len(groups) == 1  # prompt 1's second sample has no second state
    g = groups.iloc[0]
    assert (g["prompt_index"], g["temperature"], g["first_token"]) == (0, 0.5, 7)
    assert g["rows"] == [0, 1] and g["size"] == 2 and g["conv_id"] == "a"
    assert len(first_token_groups(seqs, min_size=3)) == 0


def first_step_store(second_states: np.ndarray, x0: np.ndarray) -> TrajectoryStore:
    """K sequences of length 2 sharing prompt 0, temperature 1 and first token 5."""
    k, d = second_states.shape
    emb = np.empty((2 * k, d), dtype=np.float64)
    emb[0::2] = x0
    emb[1::2] = second_states
    seqs = pd.DataFrame(
        {
            "prompt_index": 0,
            "temperature": 1.0,
            "token_ids": [[5, 100 + i] for i in range(k)],
            "length": 2,
            "offset": np.arange(k) * 2,
            "conv_id": "c0",
            "split": "test",
        }
    )
    return TrajectoryStore(Path("mem-first"), {}, emb, seqs)


def _right_and_wrong(seed: int, k: int = 60, n_null: int = 99) -> pd.DataFrame:
    """One group of K true second states ~ N(x0, diag(sigma^2)); a random walk with that
    sigma ("right") and one with 4 sigma ("wrong")."""
    rng = np.random.default_rng(seed)
    x0 = np.array([1.0, -2.0])
    sigma = np.array([0.5, 1.5])
    draws = x0 + sigma * rng.standard_normal((k, 2))
    store = first_step_store(draws, x0)
    fmap = FeatureMap(pca_dim=None, standardize=False).fit(np.vstack([draws, x0]))
    models = {}
    for name, factor in (("right", 1.0), ("wrong", 4.0)):
        models[name] = RandomWalk(2).double()
        models[name].sigma_diag.copy_(torch.as_tensor(factor * sigma))
    return first_step_comparison(store, fmap, models, 1.0, dims=2, n_null=n_null, seed=seed)


def test_first_step_comparison_is_calibrated_for_the_true_model():
    tables = [_right_and_wrong(seed, n_null=49).set_index("model") for seed in range(40)]
    for stat in ("kl_gauss_diag", "energy"):
        p_right = np.array([t.loc["right", f"{stat}_p"] for t in tables])
        # under the true model p is ~uniform: the mean of 40 has sd 0.29 / sqrt(40) = 0.046,
        # so [0.35, 0.65] is a +-3.3 sd band around 0.5
        assert 0.35 < p_right.mean() < 0.65
        p_wrong = np.array([t.loc["wrong", f"{stat}_p"] for t in tables])
        assert (p_wrong == 1 / 50).all()  # 4x too wide: beyond every one of the 49 null draws


def test_first_step_comparison_rows_and_summary():
    table = _right_and_wrong(0)
    assert table["model"].tolist() == ["right", "wrong"]
    assert (table["size"] == 60).all() and (table["temperature"] == 1.0).all()
    assert not table["degenerate"].any()
    by = table.set_index("model")
    assert by.loc["wrong", "kl_gauss_diag"] > 5 * by.loc["right", "kl_gauss_diag"]
    summary = summarise_first_step(table, n_boot=50)
    assert summary["right"]["n_groups"] == 1 and summary["right"]["n_degenerate"] == 0
    for stat in ("kl_gauss_diag", "energy"):
        excess = by.loc["wrong", stat] - by.loc["wrong", f"{stat}_null_mean"]
        assert summary["wrong"][stat]["excess"]["estimate"] == pytest.approx(excess)
        # one conversation: no group bootstrap
        assert math.isnan(summary["wrong"][stat]["excess"]["low"])
        assert summary["wrong"][stat]["share_p05"] == 1.0


def test_first_step_comparison_marks_identical_second_states_degenerate():
    x0 = np.zeros(2)
    store = first_step_store(np.ones((3, 2)), x0)
    fmap = FeatureMap(pca_dim=None, standardize=False).fit(np.vstack([np.ones((3, 2)), x0]))
    table = first_step_comparison(store, fmap, {"rw": RandomWalk(2).double()}, 1.0, dims=2)
    assert table["degenerate"].tolist() == [True]
    assert "kl_gauss" not in table or table["kl_gauss"].isna().all()
    summary = summarise_first_step(table)
    assert summary["rw"]["n_groups"] == 0 and summary["rw"]["n_degenerate"] == 1
    assert math.isnan(summary["rw"]["energy"]["excess"]["low"])
