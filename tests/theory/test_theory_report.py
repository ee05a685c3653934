"""Tests for sde_utils.theory.report: z-scores and agreement verdicts, moment comparisons
against the OU closed forms, the one-step second-moment forms, the Lyapunov centre and
its fallbacks, the LV bound check and the bracket table."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import norm

from sde_utils.models.base import SDEModel
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.simulate import simulate
from sde_utils.theory import (
    euler_chain_moments,
    linear_moment_odes,
    lipschitz_bracket,
    mc_mean_cov,
    solve_lyapunov,
    to_jsonable,
)
from sde_utils.theory.report import (
    ALPHA_3SE,
    agreement,
    bracket_table,
    flatten_paths,
    lv_bound_check,
    lyapunov_centre,
    moment_agreement,
    one_step_forms,
    z_scores,
)

A2 = np.array([[-1.0, 0.3], [-0.2, -0.7]])  # Hurwitz: eigenvalues -0.85 +- 0.19i
B2 = np.array([0.5, -1.0])
S2 = np.array([0.6, 0.4])


def linear_model(A=A2, b=B2, sigma=S2):
    model = LinearSDE(len(b)).double()
    model.A.copy_(torch.as_tensor(A))
    model.b.copy_(torch.as_tensor(b))
    model.sigma_diag.copy_(torch.as_tensor(sigma))
    return model


def euler_chain(A, b, sigma, x0, dt, n_steps, n_paths, seed):
    """Direct numpy Euler chain (T, n_paths, d), independent of sde_utils.models.simulate."""
    rng = np.random.default_rng(seed)
    x = np.tile(np.asarray(x0, dtype=np.float64), (n_paths, 1))
    out = [x]
    for _ in range(n_steps):
        x = x + (x @ A.T + b) * dt + sigma * np.sqrt(dt) * rng.standard_normal(x.shape)
        out.append(x)
    return np.stack(out)


# --- z-scores and agreement ---------------------------------------------------------------


def test_z_scores_divide_and_treat_zero_se_as_exact():
    z = z_scores([1.0, 2.0, 5.0, 5.0, 3.0], [0.0, 2.0, 5.0, 4.0, 4.0], [0.5, 1.0, 0.0, 0.0, 0.0])
    assert z[0] == 2.0 and z[1] == 0.0
    assert z[2] == 0.0  # deterministic and equal: no deviation
    assert z[3] == np.inf and z[4] == -np.inf  # deterministic and different: never passes
    with pytest.raises(ValueError, match="se must be >= 0"):
        z_scores([1.0], [0.0], [-1.0])
    with pytest.raises(ValueError, match="non-finite"):
        z_scores([np.nan], [0.0], [1.0])


def test_agreement_threshold_is_three_for_one_comparison_and_bonferroni_beyond():
    one = agreement([2.9])
    assert one["threshold"] == pytest.approx(3.0, rel=1e-12)  # ALPHA_3SE is defined from 3
    assert one["agree"] and one["within_3se_everywhere"]
    many = agreement(np.zeros(1000))
    assert many["threshold"] == pytest.approx(norm.isf(ALPHA_3SE / 2000), rel=1e-12)
    a = agreement([0.5, -3.5, 1.0, 0.0])
    assert a["n"] == 4 and a["max_abs_z"] == 3.5 and a["fraction_within_3se"] == 0.75
    assert not a["within_3se_everywhere"] and a["agree"] == (3.5 <= a["threshold"])
    assert not agreement([0.0, np.inf])["agree"]
    with pytest.raises(ValueError, match="without NaN"):
        agreement([np.nan])


def test_agreement_on_standard_normal_scores():
    z = np.random.default_rng(0).standard_normal(20000)
    a = agreement(z)
    # P(|z| <= 3) = 1 - ALPHA_3SE; binomial SE sqrt(0.0027 / 20000) = 3.7e-4, 0.0015 is 4 SE
    assert a["fraction_within_3se"] == pytest.approx(1 - ALPHA_3SE, abs=0.0015)
    assert not a["within_3se_everywhere"]  # ~54 of 20000 fall outside 3 SE by chance
    assert a["agree"]  # the family-wise threshold (~4.9) is not reached
    z[123] = 6.0  # one real discrepancy among 20000 comparisons is found
    assert not agreement(z)["agree"]


# --- moments ------------------------------------------------------------------------------


def test_moment_agreement_accepts_exact_moments_and_rejects_wrong_ones():
    x0 = np.array([2.0, -1.0])
    times = np.arange(6.0)
    m, S = linear_moment_odes(A2, B2, S2, x0, np.zeros((2, 2)), times)
    rng = np.random.default_rng(1)
    # exact Gaussian samples at each time (independent across times): MC of the ODE law
    samples = np.stack([rng.multivariate_normal(m[k], S[k], size=5000) for k in range(len(times))])
    mc = mc_mean_cov(samples)
    ok = moment_agreement(mc, m, S)
    assert ok["all"]["agree"] and ok["all"]["n"] == 6 * (2 + 3)  # upper triangle counted once
    assert ok["z_covs"].shape == (6, 2, 2) and ok["max_abs_z_by_time"].shape == (6,)
    bad = moment_agreement(mc, m, 1.2 * S)  # 20% too much variance: ~14 SE at 5000 samples
    assert not bad["covs"]["agree"] and bad["means"]["agree"]
    with pytest.raises(ValueError, match="do not match"):
        moment_agreement(mc, m[:3], S[:3])


def test_token_step_chain_matches_euler_moments_not_the_odes():
    """The notebook's central claim on a closed form: with dt = 1 the simulated chain has
    the Euler-chain moments, not those of the continuous ODEs."""
    A = np.array([[-1.0, 0.0], [0.0, -0.5]])
    x0 = np.array([3.0, 3.0])
    paths = euler_chain(A, B2, S2, x0, 1.0, 8, 20000, seed=2)
    mc = mc_mean_cov(paths)
    m_ode, S_ode = linear_moment_odes(A, B2, S2, x0, np.zeros((2, 2)), np.arange(9.0))
    m_ch, S_ch = euler_chain_moments(A, B2, S2, x0, np.zeros((2, 2)), 1.0, 8)
    assert moment_agreement(mc, m_ch, S_ch)["all"]["agree"]
    assert not moment_agreement(mc, m_ode, S_ode)["all"]["agree"]
    # with a small step the ODEs are matched again (bias O(dt) below the MC error)
    fine = euler_chain(A, B2, S2, x0, 0.01, 800, 4000, seed=3)[::100]
    assert moment_agreement(mc_mean_cov(fine), m_ode, S_ode)["all"]["agree"]


def test_one_step_forms_euler_identity_and_the_missing_dt2_term():
    rng = np.random.default_rng(4)
    x = rng.normal(1.0, 2.0, size=(20000, 2))
    mu = -1.0 * x + B2  # a strong drift: E[mu^2] dt^2 is large at dt = 1
    sigma = np.broadcast_to(S2, x.shape)
    dt = 1.0
    x_next = x + mu * dt + sigma * np.sqrt(dt) * rng.standard_normal(x.shape)
    res = one_step_forms(x, mu, sigma, x_next, dt)
    np.testing.assert_allclose(res["euler"] - res["continuous"], res["dt2_term"], rtol=1e-12)
    np.testing.assert_allclose(res["dt2_term"], (mu**2).mean(0), rtol=1e-12)  # dt = 1
    assert res["euler_agreement"]["agree"]
    assert not res["continuous_agreement"]["agree"]
    assert np.all(res["z_continuous"] > 10)  # the continuous form under-predicts E X'^2
    with pytest.raises(ValueError, match="equal shapes"):
        one_step_forms(x, mu, sigma, x_next[:5], dt)


def test_flatten_paths_is_time_major():
    paths = np.arange(3 * 2 * 4 * 2, dtype=np.float64).reshape(3, 2, 4, 2)  # (T, B, n, d)
    states, times = flatten_paths(paths, t0=1.0, dt=0.5)
    assert states.shape == (24, 2) and times.shape == (24,)
    np.testing.assert_array_equal(states[8:16], paths[1].reshape(8, 2))
    np.testing.assert_array_equal(times, np.repeat([1.0, 1.5, 2.0], 8))
    s2, t2 = flatten_paths(torch.as_tensor(paths[:, 0]), dt=1.0)  # (T, n, d) tensors too
    assert s2.shape == (12, 2) and t2[-1] == 2.0


# --- Lyapunov -----------------------------------------------------------------------------


def test_lyapunov_centre_of_an_ou_is_the_closed_form():
    model = linear_model()
    starts = np.random.default_rng(5).normal(size=(4, 2))
    c = lyapunov_centre(model, starts)
    np.testing.assert_allclose(c["x_star"], -np.linalg.solve(A2, B2), atol=1e-10)
    np.testing.assert_allclose(c["P"], solve_lyapunov(A2), rtol=1e-10)  # same solver path
    residual = A2.T @ c["P"] + c["P"] @ A2 + np.eye(2)
    assert np.abs(residual).max() < 1e-12  # A^T P + P A = -I to rounding
    assert c["P_source"] == "lyapunov" and c["x_star_source"] == "equilibrium"
    assert c["n_converged"] == 1 and c["equilibria"][0]["n_hits"] == 4 and c["reason"] is None
    assert len(c["equilibria"]) == 1 and c["equilibria"][0]["hurwitz"]
    json.dumps(to_jsonable(c))


def test_lyapunov_centre_fallbacks_are_stated():
    starts = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, -2.0]])
    centre = np.array([1.0, 1.0])
    # zero drift: every start is a root, A = 0 makes the Lyapunov equation singular
    rw = RandomWalk(2).double()
    c = lyapunov_centre(rw, starts, centre=centre)
    assert c["n_converged"] == 3 and c["P_source"] == "identity"
    np.testing.assert_array_equal(c["x_star"], centre)  # the root closest to the centre
    assert "no unique solution" in c["reason"] and np.array_equal(c["P"], np.eye(2))
    # constant drift b != 0: no root at all
    c = lyapunov_centre(linear_model(A=np.zeros((2, 2)), b=[1.0, 0.0]), starts, centre=centre)
    assert c["n_converged"] == 0 and c["x_star_source"] == "centre"
    assert "no equilibrium" in c["reason"] and c["best_residual"] == pytest.approx(1.0)
    np.testing.assert_array_equal(c["x_star"], centre)
    # unstable linear drift: a root, but P = -I/2 is not positive definite
    c = lyapunov_centre(linear_model(A=np.eye(2), b=[1.0, -1.0]), starts)
    np.testing.assert_allclose(c["x_star"], [-1.0, 1.0], atol=1e-10)
    assert c["P_source"] == "identity" and "not Hurwitz" in c["reason"]
    assert not c["equilibria"][0]["hurwitz"]


@pytest.mark.parametrize("discrete", [True, False])
def test_lv_bound_check_on_an_ou_process(discrete):
    model = linear_model()
    c = lyapunov_centre(model, np.zeros((1, 2)))
    rng = np.random.default_rng(6)
    states = rng.normal(size=(300, 2)) * 2.0
    starts = torch.as_tensor(rng.normal(size=(8, 2)) * 3.0)
    dt, n_steps = (1.0, 20) if discrete else (0.05, 400)
    paths = simulate(model, starts, n_steps=n_steps, dt=dt, n_paths=64, seed=7)  # (T, 8, 64, 2)
    r = lv_bound_check(
        model, c["P"], c["x_star"], states, np.zeros(300), paths, dt, discrete=discrete
    )
    assert r["LV_data"].shape == (300,) and r["LV_sim"].shape == ((n_steps + 1) * 8 * 64,)
    assert r["fraction_satisfied"] == 1.0  # quantile 1: the fit holds at every state
    assert 0.0 <= r["fraction_LV_nonpositive_data"] <= 1.0
    v0 = (
        (paths[0].double().numpy() - c["x_star"])
        @ c["P"]
        * (paths[0].double().numpy() - c["x_star"])
    ).sum(-1)
    assert r["EV"][0] == pytest.approx(v0.mean(), rel=1e-12)  # the bound starts at MC E V(0)
    assert r["bound"][0] == pytest.approx(r["EV"][0], rel=1e-12)
    np.testing.assert_allclose(r["t"], dt * np.arange(n_steps + 1))
    assert r["c"] > 0 and r["level"] == pytest.approx(r["d"] / r["c"])
    if discrete:
        assert r["c"] * dt <= 1.0
    # the discrete generator is exact for the chain, so its bound must hold; the continuous
    # one on a chain with a 0.05 step holds up to O(dt) (checked, not guaranteed in general)
    assert r["bound_holds"]
    # fitted on half the states and x*, checked on the other half: a linear drift obeys
    # LV <= -c V + d everywhere for c <= 1 / max eig P, so nothing violates it; d >= LV(x*)
    assert r["n_fit"] == r["n_check"] == 150 and r["d"] >= r["LV_at_x_star"]
    assert r["fraction_violating_check"] == 0.0 and r["passes"], r["failed"]
    # LV on held-out states: the closed form 2 y^T P (A y) + tr(P diag(sigma^2)) (+ dt mu^T P mu)
    y = states - c["x_star"]
    mu = y @ A2.T
    closed = 2 * np.einsum("ni,ij,nj->n", y, c["P"], mu) + (np.diag(c["P"]) * S2**2).sum()
    if discrete:
        closed = closed + dt * np.einsum("ni,ij,nj->n", mu, c["P"], mu)
    np.testing.assert_allclose(r["LV_data"], closed, rtol=1e-9, atol=1e-9)  # float64 rounding


@pytest.mark.parametrize("name", ["unstable", "random_walk"])
def test_lv_bound_check_fails_on_an_unstable_drift_and_a_random_walk(name):
    # the controls: eigenvalues +0.2 (unstable) or a zero drift (E V grows like t Tr sigma^2)
    model = (
        linear_model(A=[[0.2, 0.0], [0.0, 0.1]], b=[0.0, 0.0])
        if name == "unstable"
        else RandomWalk(2).double()
    )
    rng = np.random.default_rng(11)
    states = rng.normal(size=(200, 2))
    paths = simulate(model, torch.as_tensor(states[:8]), n_steps=20, dt=1.0, n_paths=32, seed=3)
    r = lv_bound_check(model, np.eye(2), np.zeros(2), states, np.zeros(200), paths, 1.0)
    assert not r["passes"]
    # LV > 0 at the outermost fit states (both): the level covers them, so it is vacuous
    assert r["level_over_max_V_fit"] >= 1.0
    assert "level d/c not below the largest fitted V" in r["failed"]
    assert r["fraction_violating_sim"] > 0.05  # the paths leave the fitted region


# --- tables and evaluation ----------------------------------------------------------------


class Sine(SDEModel):
    state_dim = 2

    def drift(self, x, t):
        return torch.sin(x)

    def diffusion(self, x, t):
        return 0.5 + 0.1 * torch.tanh(x)


def test_bracket_table_rows_and_uncertified_entries():
    states = np.random.default_rng(8).normal(size=(40, 2))
    brackets = {
        name: lipschitz_bracket(m, states, [0.0, 1.0], progress=False, n_explore=16)
        for name, m in (("ou", linear_model()), ("rw", RandomWalk(2).double()), ("sine", Sine()))
    }
    table = bracket_table(brackets)
    assert len(table) == 9 and list(table.columns) == ["lower", "upper", "ratio", "method"]
    ou = table.loc["ou"]
    assert ou.loc["K_mu", "upper"] == pytest.approx(np.linalg.norm(A2, 2), rel=1e-12)
    assert ou.loc["K_mu", "ratio"] == pytest.approx(1.0, abs=1e-9)  # linear: bracket is tight
    assert ou.loc["K", "method"] == "spectral_norm_A + constant_sigma"
    assert table.loc[("rw", "K"), "upper"] == 0.0
    assert np.isnan(table.loc[("sine", "K_mu"), "upper"])  # no certified bound for sin
    assert np.isnan(table.loc[("sine", "K"), "ratio"])


def test_report_arguments_use_the_shared_checks():
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\), got 1.5"):
        agreement([0.0], alpha=1.5)
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got 0"):
        flatten_paths(np.zeros((3, 2, 2)), dt=0)
    with pytest.raises(TypeError, match="t0 must be a finite number"):
        flatten_paths(np.zeros((3, 2, 2)), t0="0")
    with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
        z_scores([1.0], [1.0], [0.0], atol=-1.0)
