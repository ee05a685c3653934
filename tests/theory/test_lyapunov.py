"""Tests for sde_utils.theory.lyapunov on an OU process (closed forms) and small nonlinear
drifts. Models are built here following the shared contract (no baselines import)."""

import json

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch
from scipy.stats import norm
from toy_models import A_FULL, G_FULL, FullNoiseOU, ToyLinear

from sde_utils.models.base import SDEModel
from sde_utils.theory import (
    euler_chain_moments,
    expected_V,
    find_equilibria,
    fit_lv_bound,
    generator_LV,
    lyapunov_V,
    solve_lyapunov,
    stability_at,
    to_jsonable,
    ultimate_bound,
)

F64 = torch.float64


class Cubic(SDEModel):
    """mu_i = x_i - x_i^3: nine equilibria {-1, 0, 1}^2; sigma = 0.2 + 0.1 x^2."""

    state_dim = 2

    def drift(self, x, t):
        return x - x**3

    def diffusion(self, x, t):
        return 0.2 + 0.1 * x**2


class NoRoot(SDEModel):
    state_dim = 2

    def drift(self, x, t):
        return x**2 + 1.0

    def diffusion(self, x, t):
        return torch.ones_like(x)


# a non-symmetric Hurwitz matrix, so that A vs A^T conventions give different P
A = np.array([[-1.0, 2.0, 0.0], [-0.5, -1.5, 0.3], [0.2, 0.0, -0.8]])
B = np.array([0.3, -0.2, 0.5])
SIGMA = np.array([0.4, 0.3, 0.2])
X_STAR = -np.linalg.solve(A, B)


def ou():
    return ToyLinear(A, B, SIGMA)


def test_ou_equilibrium_is_minus_A_inverse_b():
    starts = np.random.default_rng(0).standard_normal((5, 3)) * 3
    eq = find_equilibria(ou(), starts, t=0.0)
    assert len(eq) == 1 and eq[0]["converged"] and eq[0]["n_hits"] == 5  # one root, all starts
    np.testing.assert_allclose(eq[0]["x"], X_STAR, rtol=1e-10, atol=1e-12)  # Newton on linear
    assert eq[0]["residual"] < 1e-12
    json.dumps(to_jsonable(eq))


def test_lyapunov_matrix_matches_the_vec_kronecker_closed_form():
    st = stability_at(ou(), X_STAR, t=0.0)
    np.testing.assert_allclose(st["A"], A, atol=1e-13)  # autograd Jacobian of a linear map
    assert st["hurwitz"] and st["max_real_eigenvalue"] < 0
    np.testing.assert_allclose(
        np.sort_complex(st["eigenvalues"]), np.sort_complex(np.linalg.eigvals(A))
    )
    # A^T P + P A = -Q  <=>  (I kron A^T + A^T kron I) vec(P) = -vec(Q)
    d = len(A)
    kron = np.kron(np.eye(d), A.T) + np.kron(A.T, np.eye(d))
    p_closed = np.linalg.solve(kron, -np.eye(d).ravel()).reshape(d, d)
    np.testing.assert_allclose(st["P"], p_closed, rtol=1e-10, atol=1e-12)  # two direct solves
    assert st["lyapunov_residual"] < 1e-10  # requested residual level
    p_wrong = solve_lyapunov(A.T)  # the transposed convention gives a different matrix
    assert np.abs(p_wrong - p_closed).max() > 1e-2
    assert st["P_positive_definite"]
    assert st["LV_at_equilibrium"] == pytest.approx(np.diag(p_closed) @ SIGMA**2, rel=1e-12)
    eig = json.loads(json.dumps(to_jsonable(st)))["eigenvalues"]  # complex -> [re, im]
    np.testing.assert_allclose(np.array(eig) @ [1, 1j], st["eigenvalues"])


def test_generator_matches_closed_form_continuous_and_discrete():
    model, st = ou(), stability_at(ou(), X_STAR)
    p, q = st["P"], st["Q"]
    x = np.random.default_rng(1).standard_normal((50, 3)) * 2
    y = x - X_STAR
    trace = np.diag(p) @ SIGMA**2
    # mu = A (x - x*): 2 y^T P A y = y^T (P A + A^T P) y = -y^T Q y
    closed = -np.einsum("ni,ij,nj->n", y, q, y) + trace
    lv = generator_LV(model, p, X_STAR, x, t=0.0)
    np.testing.assert_allclose(lv, closed, rtol=1e-9, atol=1e-12)  # P solved to ~1e-14
    # discrete: (E[V(x + mu dt + sigma sqrt(dt) eps)] - V(x)) / dt
    #         = (V(x + mu dt) - V(x)) / dt + sum_i P_ii sigma_i^2, exactly
    dt = 0.7
    mu = y @ A.T
    disc = (lyapunov_V(p, X_STAR, x + mu * dt) - lyapunov_V(p, X_STAR, x)) / dt + trace
    np.testing.assert_allclose(generator_LV(model, p, X_STAR, x, 0.0, dt=dt), disc, rtol=1e-10)
    # one time per state works too
    lv_t = generator_LV(model, p, X_STAR, x, t=np.linspace(0, 5, 50))
    np.testing.assert_allclose(lv_t, lv, rtol=1e-14)


def test_paper_condition_fails_near_equilibrium_and_the_fit_holds_everywhere_on_data():
    model, st = ou(), stability_at(ou(), X_STAR)
    p = st["P"]
    x = (
        X_STAR
        + np.random.default_rng(2).standard_normal((2000, 3)) * np.linspace(0.01, 3, 2000)[:, None]
    )
    lv, v = generator_LV(model, p, X_STAR, x), lyapunov_V(p, X_STAR, x)
    fit = fit_lv_bound(lv, v)
    assert 0 < fit["fraction_LV_nonpositive"] < 1  # LV > 0 near x*, < 0 far away
    assert fit["fraction_satisfied"] == 1.0  # quantile 1: holds on every state
    # analytic certificate with Q = I: LV = -|y|^2 + s <= -V / lambda_max(P) + s
    s, lam_max = st["LV_at_equilibrium"], np.linalg.eigvalsh(p).max()
    assert np.all(lv <= -v / lam_max + s + 1e-12)
    assert fit["level"] <= s * lam_max * (1 + 1e-9)  # the optimum beats the analytic pair
    q90 = fit_lv_bound(lv, v, quantile=0.9)
    assert q90["level"] <= fit["level"] and q90["fraction_satisfied"] >= 0.9


def test_ultimate_bound_dominates_exact_ou_EV_continuous_and_discrete():
    st = stability_at(ou(), X_STAR)
    p, s = st["P"], st["LV_at_equilibrium"]
    x0 = X_STAR + np.array([3.0, -2.0, 1.0])
    v0 = float(lyapunov_V(p, X_STAR, x0[None])[0])
    t = np.linspace(0, 10, 101)
    # exact E V(t) = tr(P S(t)) + (m - x*)^T P (m - x*): m - x* = e^{At} y0, S by Van Loan
    d = len(A)
    ev = []
    for ti in t:
        m = X_STAR + scipy.linalg.expm(A * ti) @ (x0 - X_STAR)
        big = scipy.linalg.expm(np.block([[-A, np.diag(SIGMA**2)], [np.zeros((d, d)), A.T]]) * ti)
        cov = big[d:, d:].T @ big[:d, d:]
        ev.append(np.trace(p @ cov) + (m - X_STAR) @ p @ (m - X_STAR))
    c = 1.0 / np.linalg.eigvalsh(p).max()  # LV <= -c V + s holds for every x
    bound = ultimate_bound(v0, c, s, t)
    assert bound[0] == pytest.approx(v0, rel=1e-14)
    assert np.all(bound >= np.array(ev) * (1 - 1e-10))  # Gronwall: a bound; 1e-10 for expm

    # Euler chain, dt = 0.5: the discrete generator is -|y|^2 + dt |A y|_P^2 + s, and
    # -I + dt A^T P A + c P <= 0 for c <= c_dt = lambda_min(P^{-1/2} (I - dt A^T P A) P^{-1/2})
    dt = 0.5
    ph = scipy.linalg.sqrtm(np.linalg.inv(p)).real
    c_dt = np.linalg.eigvalsh(ph @ (np.eye(d) - dt * A.T @ p @ A) @ ph).min()
    assert 0 < c_dt * dt <= 1
    means, covs = euler_chain_moments(A, B, SIGMA, x0, np.zeros((d, d)), dt, 20)
    ev_chain = [
        np.trace(p @ cv) + (m - X_STAR) @ p @ (m - X_STAR)
        for m, cv in zip(means, covs, strict=True)
    ]
    bound_chain = ultimate_bound(v0, c_dt, s, dt * np.arange(21), dt=dt)
    assert np.all(bound_chain >= np.array(ev_chain) * (1 - 1e-12))  # exact recursions
    # on data covering the chain, the discrete fit is at least as good as (c_dt, s)
    x = X_STAR + np.random.default_rng(3).standard_normal((3000, 3)) * 2
    lv_dt = generator_LV(ou(), p, X_STAR, x, 0.0, dt=dt)
    fit = fit_lv_bound(lv_dt, lyapunov_V(p, X_STAR, x), dt=dt)
    assert fit["c"] * dt <= 1 and fit["level"] <= s / c_dt * (1 + 1e-9)


def test_all_equilibria_of_a_cubic_drift_and_their_stability():
    grid = np.array([[a, b] for a in (-1.7, -0.3, 0.2, 1.4) for b in (-1.6, 0.1, 1.5)])
    eq = find_equilibria(Cubic(), grid, t=0.0)
    roots = {tuple(np.round(r["x"], 8)) for r in eq if r["converged"]}
    assert roots == {(a, b) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0)}
    assert sum(r["n_hits"] for r in eq) == len(grid)
    st_stable = stability_at(Cubic(), [1.0, -1.0])
    assert st_stable["hurwitz"] and st_stable["P_positive_definite"]
    np.testing.assert_allclose(st_stable["P"], np.eye(2) / 4, atol=1e-14)  # A = -2 I
    st_unstable = stability_at(Cubic(), [0.0, 0.0])  # A = I: P = -I/2, not a Lyapunov matrix
    assert not st_unstable["hurwitz"] and not st_unstable["P_positive_definite"]
    np.testing.assert_allclose(st_unstable["P"], -np.eye(2) / 2, atol=1e-14)
    assert st_stable["LV_at_equilibrium"] == pytest.approx(2 * 0.25 * 0.3**2, rel=1e-12)


def test_no_equilibrium_is_reported_not_hidden():
    with pytest.warns(UserWarning, match="no equilibrium found from 3 starts"):
        eq = find_equilibria(NoRoot(), np.zeros((3, 2)) + [[0.5, 1.0]], t=0.0)
    assert eq and not any(r["converged"] for r in eq)
    assert all(r["residual"] >= 1.0 for r in eq)  # |x^2 + 1| >= 1 everywhere


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="c must be a finite number > 0"):
        ultimate_bound(1.0, 0.0, 1.0, [0.0, 1.0])
    with pytest.raises(ValueError, match="c \\* dt <= 1"):
        ultimate_bound(1.0, 3.0, 1.0, [0.0, 1.0], dt=0.5)
    with pytest.raises(ValueError, match="P must have shape"):
        generator_LV(ou(), np.eye(2), X_STAR, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="quantile"):
        fit_lv_bound([1.0], [1.0], quantile=1.5)


class ZeroDrift(SDEModel):
    """The RandomWalk contract: mu = 0, constant sigma."""

    state_dim = 2

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, x, t):
        return torch.full_like(x, 0.5)


def test_singular_lyapunov_equation_is_reported():
    eq = find_equilibria(ZeroDrift(), [[0.3, 0.1], [1.0, 2.0]])
    assert len(eq) == 2 and all(r["converged"] for r in eq)  # every point is an equilibrium
    st = stability_at(ZeroDrift(), [0.3, 0.1])
    assert st["P"] is None and "no unique solution" in st["reason"] and not st["hurwitz"]
    json.dumps(to_jsonable(st))


def test_auto_falls_back_to_levenberg_marquardt_when_hybr_stalls(monkeypatch):
    """On an untrained NeuralSDE Powell's hybrid stalled where LM converged; here a
    stalled hybr is simulated, and "auto" must retry the same start with LM."""
    real_root = scipy.optimize.root

    def stalled_hybr(fun, x0, method, **kw):
        if method == "hybr":
            return scipy.optimize.OptimizeResult(x=np.asarray(x0), success=False, message="stall")
        return real_root(fun, x0, method=method, **kw)

    monkeypatch.setattr(scipy.optimize, "root", stalled_hybr)
    eq = find_equilibria(ou(), [[5.0, 5.0, 5.0]])
    assert eq[0]["converged"] and eq[0]["method"] == "lm"
    np.testing.assert_allclose(eq[0]["x"], X_STAR, rtol=1e-10, atol=1e-12)  # LM on linear
    with pytest.warns(UserWarning, match="no equilibrium"):
        assert not find_equilibria(ou(), [[5.0, 5.0, 5.0]], method="hybr")[0]["converged"]


def test_monte_carlo_EV_of_the_euler_chain_matches_exact_moments_and_the_bound():
    st = stability_at(ou(), X_STAR)
    p, s = st["P"], st["LV_at_equilibrium"]
    dt, n_steps, n_paths = 0.5, 12, 20_000
    x0 = X_STAR + np.array([3.0, -2.0, 1.0])
    rng = np.random.default_rng(4)
    x = np.tile(x0, (n_paths, 1))
    paths = [x]
    for _ in range(n_steps):
        x = x + (x @ A.T + B) * dt + SIGMA * np.sqrt(dt) * rng.standard_normal(x.shape)
        paths.append(x)
    mc = expected_V(p, X_STAR, np.stack(paths))
    means, covs = euler_chain_moments(A, B, SIGMA, x0, np.zeros((3, 3)), dt, n_steps)
    exact = np.array(
        [
            np.trace(p @ c) + (m - X_STAR) @ p @ (m - X_STAR)
            for m, c in zip(means, covs, strict=True)
        ]
    )
    z = (mc["mean"][1:] - exact[1:]) / mc["se"][1:]
    # 12 z-scores ~N(0, 1) (V is not Gaussian, but 20k paths make its mean nearly so):
    # Bonferroni at 1% family-wise is about 3.2
    assert np.abs(z).max() < norm.ppf(1 - 0.01 / (2 * z.size))
    assert mc["mean"][0] == pytest.approx(exact[0], rel=1e-12) and mc["se"][0] == 0.0
    # the discrete ultimate bound with the certified (c_dt, s) of the closed-form test
    d = len(A)
    ph = scipy.linalg.sqrtm(np.linalg.inv(p)).real
    c_dt = np.linalg.eigvalsh(ph @ (np.eye(d) - dt * A.T @ p @ A) @ ph).min()
    bound = ultimate_bound(exact[0], c_dt, s, dt * np.arange(n_steps + 1), dt=dt)
    assert np.all(mc["mean"] <= bound + 3 * mc["se"])


# --- full (B, d, d) diffusion matrices ----------------------------------------------------


def test_full_noise_ou_lv_at_equilibrium_is_the_trace_closed_form():
    res = stability_at(FullNoiseOU(), np.zeros(2))
    p = res["P"]
    # P solves A^T P + P A = -I; for this A, P = [[1/2, 1/4], [1/4, 1/3]] (hand-solved:
    # -2 p11 = -1; 2 p11 - 4 p12 = 0; 4 p12 - 6 p22 = -1)
    np.testing.assert_allclose(p, [[0.5, 0.25], [0.25, 1 / 3]], rtol=1e-12)
    g = np.asarray(G_FULL)
    trace = float(np.trace(g.T @ p @ g))
    assert trace == pytest.approx(0.095, rel=1e-12)  # 0.045 + 0.015 + 0.005 + 0.03
    assert res["LV_at_equilibrium"] == pytest.approx(trace, rel=1e-12)  # float64 rounding
    assert res["sigma_at_equilibrium"].shape == (2, 2)


def test_full_noise_generator_is_minus_y_q_y_plus_the_trace():
    # with P from A^T P + P A = -Q: 2 y^T P A y = -y^T Q y, so LV = -|y|^2 + tr(G^T P G)
    model, p = FullNoiseOU(), solve_lyapunov(A_FULL)
    x = np.random.default_rng(3).normal(size=(50, 2))
    lv = generator_LV(model, p, np.zeros(2), x, 0.0)
    g = np.asarray(G_FULL)
    closed = -(x**2).sum(1) + np.trace(g.T @ p @ g)
    np.testing.assert_allclose(lv, closed, rtol=1e-10, atol=1e-12)  # float64 rounding
    # the Euler chain adds dt mu^T P mu exactly
    lv_dt = generator_LV(model, p, np.zeros(2), x, 0.0, dt=0.1)
    mu = x @ np.asarray(A_FULL).T
    np.testing.assert_allclose(lv_dt - lv, 0.1 * np.einsum("ni,ij,nj->n", mu, p, mu), rtol=1e-10)


def test_diagonal_and_full_diffusion_give_the_same_generator():
    s = np.array([0.3, 0.5])
    full, diag = FullNoiseOU(G=np.diag(s)), ToyLinear(A_FULL, [0.0, 0.0], s)
    x, p = np.random.default_rng(4).normal(size=(20, 2)), solve_lyapunov(A_FULL)
    np.testing.assert_allclose(
        generator_LV(full, p, np.zeros(2), x), generator_LV(diag, p, np.zeros(2), x), rtol=1e-12
    )


class BadShape(SDEModel):
    state_dim = 2

    def drift(self, x, t):
        return -x

    def diffusion(self, x, t):
        return torch.ones(x.shape[0], 3, dtype=x.dtype)


def test_a_diffusion_of_another_shape_is_rejected_with_the_allowed_shapes():
    with pytest.raises(ValueError, match=r"generator_LV: the diffusion returned shape \(4, 3\)"):
        generator_LV(BadShape(), np.eye(2), np.zeros(2), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"allowed are the diagonal \(1, 2\) or the full"):
        stability_at(BadShape(), np.zeros(2))
