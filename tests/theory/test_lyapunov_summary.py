"""Tests for sde_utils.theory.lyapunov_summary: notebook 05's simulations, tables, verdicts
and metrics on an OU process (closed-form equilibrium) and a random walk (none)."""

import json

import numpy as np
import pytest
import torch
from toy_models import linear_sde

from sde_utils.models.baselines import RandomWalk
from sde_utils.models.simulate import simulate
from sde_utils.theory import generator_LV, to_jsonable
from sde_utils.theory.lyapunov_summary import (
    LV_METRIC_KEYS,
    centre_table,
    lv_checks,
    lv_table,
    roots_table,
    stability_metrics,
    stability_verdicts,
)
from sde_utils.theory.report import lv_bound_check, lyapunov_centre

A = np.array([[-1.0, 0.3], [-0.2, -0.7]])  # Hurwitz
B = np.array([0.5, -1.0])
S = np.array([0.6, 0.4])


@pytest.fixture(scope="module")
def run():
    models = {"ou": linear_sde(A, B, S), "rw": RandomWalk(2).double()}
    rng = np.random.default_rng(0)
    states, times = rng.normal(size=(40, 2)), rng.uniform(0, 5, 40)
    starts, sim_starts = rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    centres = {n: lyapunov_centre(m, starts, 0.0) for n, m in models.items()}
    lv_star = {
        n: float(generator_LV(models[n], c["P"], c["x_star"], c["x_star"], 0.0)[0])
        for n, c in centres.items()
    }
    kw = dict(n_steps=6, n_paths=8, fine_steps=2, quantile=1.0, seed=4)
    checks = {
        n: lv_checks(m, centres[n], sim_starts, states, times, 0.5, **kw) for n, m in models.items()
    }
    return models, centres, lv_star, checks, (states, times, sim_starts)


def test_lv_checks_are_lv_bound_check_on_the_seeded_simulations(run):
    models, centres, _, checks, (states, times, sim_starts) = run
    c = centres["ou"]
    paths = simulate(
        models["ou"], torch.as_tensor(sim_starts), n_steps=6, dt=0.5, n_paths=8, seed=4
    )
    direct = lv_bound_check(
        models["ou"], c["P"], c["x_star"], states, times, paths, 0.5, discrete=True, seed=4
    )
    # the same seed and the same operations: identical numbers
    np.testing.assert_array_equal(checks["ou"]["discrete"]["EV"], direct["EV"])
    assert checks["ou"]["discrete"]["c"] == direct["c"]
    cont = checks["ou"]["continuous"]
    assert not cont["discrete"] and cont["t"].shape == (13,)  # 6 tokens x 2 substeps + 1
    # the OU equilibrium is -A^{-1} b (solved to 1e-8 residual)
    np.testing.assert_allclose(c["x_star"], -np.linalg.solve(A, B), atol=1e-8)


def test_tables(run):
    _, centres, lv_star, checks, _ = run
    t = centre_table(centres, lv_star, np.zeros(2))
    assert list(t.index) == ["ou", "rw"] and t.loc["ou", "Hurwitz"]
    assert t.loc["rw", "P from"] == "identity"  # zero drift: no Lyapunov solution
    assert t.loc["ou", "LV(x*)"] == lv_star["ou"] > 0  # the noise term at x*
    roots = roots_table(centres)
    assert roots.index.names == ["model", "root"] and roots.loc[("ou", 0), "converged"]
    lv = lv_table(checks, lv_star)
    assert lv.loc["ou", "c (continuous)"] == checks["ou"]["continuous"]["c"]


def test_verdicts_and_metrics(run):
    _, centres, lv_star, checks, _ = run
    verdicts, lines = stability_verdicts(centres, checks, lv_star)
    ou = verdicts["ou"]
    assert ou["equilibrium_found"] and ou["hurwitz"] and ou["paper_condition_fails_near_x_star"]
    # a stable linear drift: LV <= -c V + d holds for all x once c <= 1 / max eig P, so the
    # Euler chain's exact bound holds on the simulations; the random walk must fail
    assert ou["bound_holds_discrete"] and ou["passes_discrete"]
    assert 0 < ou["level_over_max_V_seen"] and ou["level_over_max_V_fit"] < 1
    rw = verdicts["rw"]
    assert not rw["passes_continuous"] and not rw["passes_discrete"]
    assert rw["level_over_max_V_fit"] >= 1  # LV = Tr sigma^2 > 0 everywhere: vacuous level
    assert len(lines) == 8 and lines[0].startswith("ou: equilibrium 1 root(s)")
    assert "FAILS near x*" in lines[1] and lines[7].endswith(")") and "FAILS (" in lines[7]
    metrics = stability_metrics(centres, checks, lv_star)
    assert set(metrics["rw"]["continuous"]) == set(LV_METRIC_KEYS)
    assert metrics["rw"]["P_source"] == "identity"
    json.dumps(to_jsonable(metrics))


def test_bad_simulation_arguments_are_named(run):
    models, centres, _, _, (states, times, sim_starts) = run
    kw = dict(n_steps=2, n_paths=1, fine_steps=1, quantile=1.0, seed=0)
    with pytest.raises(ValueError, match="n_paths must be an int >= 2, got 1"):
        lv_checks(models["ou"], centres["ou"], sim_starts, states, times, 0.5, **kw)


def test_unstable_control_shifts_the_spectrum_and_keeps_the_original():
    from sde_utils.theory.lyapunov_summary import unstable_control

    ou = linear_sde(A, B, S)
    un = unstable_control(ou, 0.05)
    eig = np.linalg.eigvals(un.A.numpy())
    # A + (0.05 - max Re lambda(A)) I: the same eigenvectors, largest real part 0.05
    assert eig.real.max() == pytest.approx(0.05, abs=1e-12)
    np.testing.assert_array_equal(ou.A.numpy(), A)  # a copy; the fit's model is untouched
    with pytest.raises(TypeError, match="unstable_control needs a linear model with an A"):
        unstable_control(RandomWalk(2))
