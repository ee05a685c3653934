"""Tests for sde_utils.analysis.prediction_error.

Closed forms: a random walk's drift path stays at its start, so its squared error at
horizon h is ``|z_h - z_0|^2 / k``; a linear drift's path is the matrix recursion.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sde_utils.analysis.prediction_error import horizon_errors, initial_model
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.neural import NeuralSDE


def test_initial_model_reseeds_the_architecture():
    torch.manual_seed(11)
    original = NeuralSDE(3, hidden=8, depth=1, sigma_init=0.5)
    snapshot = {k: v.clone() for k, v in original.state_dict().items()}
    with torch.no_grad():
        for p in original.parameters():
            p.add_(1.0)  # "training"
    rebuilt = initial_model(SimpleNamespace(params={"seed": 11}, sde=original))
    for name, value in rebuilt.state_dict().items():
        torch.testing.assert_close(value, snapshot[name], atol=0, rtol=0)
    assert rebuilt.config() == original.config()


def test_horizon_errors_of_a_random_walk_are_distances_from_the_start():
    rng = np.random.default_rng(10)
    trajs = [rng.standard_normal((L, 3)) for L in (3, 9, 6)]
    table = horizon_errors(RandomWalk(3).double(), trajs, ["a", "b", "c"], [1, 2, 4, 8], 1.0)
    assert table.groupby("trajectory")["h"].apply(list).to_dict() == {
        0: [1, 2],
        1: [1, 2, 4, 8],
        2: [1, 2, 4],
    }
    for _, row in table.iterrows():
        z = trajs[row["trajectory"]]
        want = ((z[row["h"]] - z[0]) ** 2).mean()  # zero drift: the path stays at z[0]
        assert row["sq_error"] == pytest.approx(want, rel=1e-12)
        assert row["group"] == "abc"[row["trajectory"]]


def test_horizon_errors_follow_a_linear_drift_exactly():
    model = LinearSDE(2).double()
    model.A.copy_(torch.tensor([[-0.5, 0.0], [0.0, 0.1]], dtype=torch.float64))
    z = [np.array([1.0, 2.0])]
    for _ in range(4):
        z.append(z[-1] + (np.diag([-0.5, 0.1]) @ z[-1]) * 1.0)
    table = horizon_errors(model, [np.array(z)], [0], [1, 2, 4], 1.0)
    np.testing.assert_allclose(table["sq_error"], 0.0, atol=1e-24)  # exact Euler path
