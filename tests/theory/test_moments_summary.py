"""Tests for sde_utils.theory.moments_summary: notebook 06's moment checks on an OU
process, whose mean and covariance ODEs and Euler chain have closed forms (float64)."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from toy_models import linear_sde

from sde_utils.models.baselines import RandomWalk
from sde_utils.theory import euler_chain_moments, to_jsonable
from sde_utils.theory.moments_summary import (
    continuous_moment_check,
    continuous_moment_lines,
    linear_coefficients,
    linear_metrics,
    moments_verdict_lines,
    moments_verdicts,
    one_step_checks,
    one_step_metrics,
    one_step_table,
    recursion_check,
    recursion_metrics,
    recursion_table,
    token_moment_check,
    token_moment_lines,
)

A = np.array([[-1.0, 0.3], [-0.2, -0.7]])
B = np.array([0.5, -1.0])
S = np.array([0.6, 0.4])
START = np.array([1.0, -0.5])


@pytest.fixture(scope="module")
def linear():
    model = linear_sde(A, B, S)
    cont = continuous_moment_check(
        model, START, 0.5, horizon=4, n_paths=3000, fine_steps=20, seed=0
    )
    token = token_moment_check(model, START, 0.5, cont, n_paths=3000, seed=1)
    return model, cont, token


def test_linear_coefficients_are_float64_copies():
    a, b, s = linear_coefficients(linear_sde(A, B, S))
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(b, B)
    np.testing.assert_allclose(s, S, rtol=1e-15)  # sigma may be stored as exp(log sigma)
    assert a.dtype == b.dtype == s.dtype == np.float64


def test_continuous_check_matches_the_closed_form_and_monte_carlo(linear):
    _, cont, _ = linear
    # closed-form mean of dX = (A X + b) dt + ...: m(t) = e^{At} (m0 + A^{-1} b) - A^{-1} b
    x_inf = -np.linalg.solve(A, B)
    for k, t in enumerate(cont["tokens"]):
        m = scipy.linalg.expm(A * t) @ (START - x_inf) + x_inf
        np.testing.assert_allclose(cont["m_ode"][k], m, rtol=1e-8, atol=1e-10)  # DOP853 tols
    assert cont["h"] == 0.025 and cont["t_fine"].shape == (81,)
    np.testing.assert_allclose(cont["m_ode_fine"][::20], cont["m_ode"], rtol=1e-8, atol=1e-10)
    # 3000 paths at a step 1/20 token: Monte Carlo agrees with the ODEs (Bonferroni, 0.27%)
    assert cont["agreement"]["all"]["agree"]
    lines = continuous_moment_lines(cont)
    assert lines[0].startswith("eigenvalues of A") and "-> agree" in lines[3]


def test_token_chain_matches_the_exact_euler_moments(linear):
    _, cont, token = linear
    m, S_chain = euler_chain_moments(A, B, S, START, np.zeros((2, 2)), 0.5, 4)
    np.testing.assert_array_equal(token["m_chain"], m)
    np.testing.assert_array_equal(token["S_chain"], S_chain)
    assert token["vs_chain"]["all"]["agree"] and "Euler chain" in token["matching"]
    assert token["trace"]["chain"] == pytest.approx(np.trace(S_chain[-1]), rel=1e-15)
    assert "tr S at t = 2" in token_moment_lines(token, horizon_time=2.0)[1]


def test_one_step_recursion_verdicts_and_metrics(linear):
    model, cont, token = linear
    rng = np.random.default_rng(3)
    xs, ts = rng.normal(size=(500, 2)), rng.uniform(0, 5, 500)
    eps = rng.normal(size=(500, 2))
    models = {"ou": model, "rw": RandomWalk(2).double()}
    one = one_step_checks(models, xs, ts, xs + 0.1, 0.5, eps)
    # the Euler identity is exact for a simulated step: its paired z-score is ~0
    assert one["ou"]["sim"]["euler_agreement"]["agree"]
    np.testing.assert_allclose(one["rw"]["terms"]["drift_sq"], 0.0)  # zero drift: no dt^2 term
    table = one_step_table(one, coordinate=0)
    assert table.loc["ou", "E[μ²]Δt²"] == one["ou"]["terms"]["drift_sq"][0]
    rec = {
        n: recursion_check(
            m, START, 0.5, n_steps=4, n_paths=400, fine_steps=2, coordinate=0, n_moments=3,
            seed=5,
        )
        for n, m in models.items()
    }  # fmt: skip
    assert rec["ou"]["token"]["lhs"].shape == (3, 4) and rec["ou"]["fine"]["step"] == 0.25
    assert np.isnan(rec["ou"]["gap_shrink"][0])  # n = 1: the two forms coincide
    rtable = recursion_table(rec)
    assert len(rtable) == 4 and rtable["Itô gap shrink (n=2..)"].notna().sum() == 2
    picard = {"ou": {"bound_holds": True, "converged": True}}
    verdicts = moments_verdicts(cont, token, one, rec, picard)
    assert verdicts["linear_moment_odes_match_continuous_monte_carlo"]
    assert set(verdicts["recursion_ito_gap_shrinks"]) == {"ou", "rw"}
    lines = moments_verdict_lines(cont, token, one, rec, coordinate=0, fine_factor=2)
    assert len(lines) == 2 + 2 + 2 and "(n = 2..3) for a step 2x smaller" in lines[-1]
    metrics = {
        "linear": linear_metrics(cont, token),
        "one_step": one_step_metrics(one),
        "recursion": recursion_metrics(rec),
    }
    assert set(metrics["recursion"]["ou"]) == {"token", "fine", "gap_shrink"}
    json.dumps(to_jsonable(metrics))


def test_bad_arguments_are_named():
    model = linear_sde(A, B, S)
    with pytest.raises(ValueError, match="horizon must be an int >= 1, got 0"):
        continuous_moment_check(model, START, 0.5, horizon=0, n_paths=4, fine_steps=2, seed=0)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        one_step_checks({"ou": model}, np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2)), 0.0,
                        np.zeros((3, 2)))  # fmt: skip
    assert torch.get_default_dtype() == torch.float32  # nothing here changed the default
