"""Tests of sde_utils.analysis.jacobians: spectra of linear maps in closed form, and the
summary table's quantiles (float64, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sde_utils.analysis.jacobians import heldout_states, one_step_spectra, spectra_table
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.neural import NeuralSDE


def test_linear_model_spectra_are_those_of_i_plus_a_dt():
    # I + A dt = [[0.9, 0.3], [-0.075, 0.9]]: eigenvalues 0.9 +- 0.15i (radius ~ 0.912),
    # and a norm above the radius since the matrix is not normal
    a = np.array([[-0.2, 0.6], [-0.15, -0.2]])
    model = LinearSDE(2).double()
    model.A.copy_(torch.as_tensor(a))
    x = np.random.default_rng(0).normal(size=(5, 2))
    s = one_step_spectra(model, x, np.zeros(5), 0.5)
    f = np.eye(2) + 0.5 * a
    np.testing.assert_allclose(s["radius"], np.abs(np.linalg.eigvals(f)).max(), rtol=1e-12)
    np.testing.assert_allclose(s["norm"], np.linalg.norm(f, 2), rtol=1e-12)
    assert s["norm"][0] > s["radius"][0] + 0.01  # control: radius and norm differ here
    rw = one_step_spectra(RandomWalk(2).double(), x, np.zeros(5), 0.5)
    np.testing.assert_allclose(rw["radius"], 1.0, rtol=1e-14)  # the identity map
    np.testing.assert_allclose(rw["norm"], 1.0, rtol=1e-14)


def test_mlp_spectra_vary_with_the_state_and_batches_do_not_matter():
    torch.manual_seed(0)
    model = NeuralSDE(3, hidden=16, depth=2, time_scale=10.0).double()
    with torch.no_grad():
        model.drift_net[-1].weight.mul_(100)  # a drift large enough to matter
    x = np.random.default_rng(1).normal(size=(40, 3)) * 3
    t = np.arange(40.0)
    s = one_step_spectra(model, x, t, 1.0)
    s7 = one_step_spectra(model, x, t, 1.0, batch_size=7)
    np.testing.assert_allclose(s["radius"], s7["radius"], rtol=1e-12)
    assert np.ptp(s["norm"]) > 1e-3  # state-dependent, unlike a linear drift


def test_spectra_table_quantiles_and_share():
    spectra = {"m": {"radius": np.array([0.5, 0.9, 1.1, 1.3, 2.0]), "norm": np.arange(1.0, 6.0)}}
    row = spectra_table(spectra).loc["m"]
    assert row["radius_median"] == pytest.approx(1.1)
    assert row["radius_q90"] == pytest.approx(1.3 + 0.6 * 0.7)  # linear interpolation
    assert row["norm_median"] == pytest.approx(3.0)
    assert row["share_radius_above_1"] == pytest.approx(0.6)


def test_heldout_states_draws_without_replacement():
    x0 = np.arange(20.0)[:, None]
    xs, ts = heldout_states((x0, np.arange(20.0), x0), 8, seed=3)
    assert len(np.unique(xs)) == 8 and np.all(np.diff(ts) > 0)
    assert heldout_states((x0, np.arange(20.0), x0), 100, seed=3)[0].shape[0] == 20
