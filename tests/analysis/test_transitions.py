"""Tests for sde_utils.analysis.transitions on small synthetic stores with known answers.

Stores are built in memory (``TrajectoryStore`` over a numpy array and a DataFrame), so no
LLM is involved. Closed form used: notebook 03's total loss is the mean over transitions of
``sq_residual + lam * nll``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sde_utils.analysis.transitions import (
    drift_diffusion_blocks,
    next_step_values,
    step_quantities,
    transition_frame,
)
from sde_utils.models.base import drift_diffusion_at
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.features import FeatureMap
from sde_utils.models.losses import total_loss
from sde_utils.models.metrics import one_step_nll


def test_next_step_values_pairs_step_k_with_k_plus_1(make_store):
    store = make_store([4, 2, 5])
    _, _, _, index = store.transitions(return_index=True)
    got = next_step_values(store.sequences, index, "entropy")
    np.testing.assert_array_equal(got, 100.0 * index[:, 0] + index[:, 1] + 1)
    now = next_step_values(store.sequences, index, "entropy", offset=0)
    np.testing.assert_array_equal(now, 100.0 * index[:, 0] + index[:, 1])


def test_next_step_values_rejects_missing_steps_and_columns(make_store):
    store = make_store([3, 2])
    with pytest.raises(IndexError, match="no step k \\+ 1"):
        next_step_values(store.sequences, np.array([[1, 1]]), "entropy")
    with pytest.raises(KeyError, match="no column 'nope'"):
        next_step_values(store.sequences, np.array([[0, 0]]), "nope")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        next_step_values(store.sequences, np.array([0, 0]), "entropy")


def test_transition_frame_aligns_entropy_surprisal_and_metadata(make_store):
    store = make_store([5, 3, 4], temperature=[0.5, 1.0, 1.5])
    fmap = FeatureMap(pca_dim=None, standardize=False).fit(store.states())
    model = RandomWalk(3).double()
    model.sigma_diag.copy_(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    table = transition_frame(store, fmap, model, dt=0.5)
    assert len(table) == 4 + 2 + 3
    np.testing.assert_array_equal(table["entropy_next"], 100.0 * table["row"] + table["k"] + 1)
    np.testing.assert_array_equal(table["surprisal_next"], 1000.0 * table["row"] + table["k"] + 1)
    np.testing.assert_array_equal(table["entropy_now"], 100.0 * table["row"] + table["k"])
    np.testing.assert_array_equal(table["temperature"], np.repeat([0.5, 1.0, 1.5], [4, 2, 3]))
    np.testing.assert_allclose(table["t"], 0.5 * table["k"])
    # constant sigma: |sigma|^2 = 1 + 4 + 9 at every step
    np.testing.assert_allclose(table["sigma2"], 14.0)
    # no PCA and no scaling: the state space is model space up to a shift
    np.testing.assert_allclose(table["sq_increment"], table["sq_increment_model"], rtol=1e-6)
    x = store.embeddings.astype(np.float64)
    direct = ((x[1] - x[0]) ** 2).sum()
    assert table["sq_increment_model"].iloc[0] == pytest.approx(direct, rel=1e-6)  # float32 data


def test_step_quantities_reproduce_the_training_losses():
    rng = np.random.default_rng(1)
    d, n, dt, lam = 4, 200, 0.5, 0.7
    model = LinearSDE(d).double()
    model.A.copy_(torch.as_tensor(-0.3 * np.eye(d)))
    model.b.copy_(torch.as_tensor(rng.standard_normal(d)))
    model.sigma_diag.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, d)))
    z0, z1 = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    t0 = rng.uniform(0, 5, n)
    q = step_quantities(model, z0, t0, z1, dt)
    np.testing.assert_allclose(q["sigma2"], (model.sigma_diag.numpy() ** 2).sum())
    np.testing.assert_allclose(q["sq_increment"], ((z1 - z0) ** 2).sum(1))
    expected_total = total_loss(
        model, *(torch.as_tensor(a) for a in (z0, t0, z1)), dt=dt, lam=lam
    ).item()
    # float64 throughout: agreement to rounding; the training drift loss is per dimension
    total = (q["sq_residual"] / d + lam * q["nll"]).mean()
    assert total == pytest.approx(expected_total, rel=1e-12)
    assert q["nll"].mean() == pytest.approx(one_step_nll(model, z0, t0, z1, dt), rel=1e-12)


def test_drift_diffusion_blocks_match_one_call_in_any_block_size():
    rng = np.random.default_rng(9)
    model = LinearSDE(3).double()
    model.A.copy_(torch.as_tensor(rng.normal(size=(3, 3))))
    model.sigma_diag.copy_(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    z, t = rng.normal(size=(10, 3)), np.arange(10.0)
    mu, sigma = drift_diffusion_blocks(model, z, t, batch_size=3)
    whole_mu, whole_sigma = drift_diffusion_at(model, z, t)
    np.testing.assert_array_equal(mu, whole_mu)  # float64 rows do not depend on the block
    np.testing.assert_array_equal(sigma, whole_sigma)
    np.testing.assert_allclose(mu, z @ model.A.numpy().T, rtol=0, atol=1e-12)
    assert mu.dtype == np.float64 and sigma.shape == (10, 3)
    scalar_mu, _ = drift_diffusion_blocks(model, z, 0.0)  # one time for every row
    np.testing.assert_array_equal(scalar_mu, whole_mu)  # the linear drift ignores t
    empty_mu, empty_sigma = drift_diffusion_blocks(model, np.zeros((0, 3)), np.zeros(0))
    assert empty_mu.shape == empty_sigma.shape == (0, 3)
    with pytest.raises(ValueError, match=r"z must be \(N, k\)"):
        drift_diffusion_blocks(model, np.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"t must be a scalar or \(10,\)"):
        drift_diffusion_blocks(model, z, np.zeros(4))
