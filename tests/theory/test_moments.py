"""Tests for sde_utils.theory.moments against closed forms (matrix exponential, Van Loan,
scalar OU), Gauss–Hermite quadrature (exact Gaussian expectations) and Monte Carlo."""

import numpy as np
import pytest
import scipy.linalg
from scipy.stats import norm
from toy_models import ToyLinear

from sde_utils.theory import (
    along_paths,
    euler_chain_moments,
    linear_moment_odes,
    mc_mean_cov,
    moment_recursion_check,
    second_moment_terms,
)

A = np.array([[-0.8, 0.6], [-0.4, -0.5]])
B = np.array([0.3, -0.2])
SIGMA = np.array([0.5, 0.3])
M0 = np.array([1.0, -2.0])
S0 = np.array([[0.2, 0.05], [0.05, 0.1]])


def z_critical(n_tests, alpha=0.01):
    """Two-sided Bonferroni threshold: all n_tests |z| stay below it with prob >= 1 - alpha."""
    return norm.ppf(1 - alpha / (2 * n_tests))


def closed_form(t):
    """m(t) = e^{At} m0 + A^{-1}(e^{At} - I) b; S(t) = e^{At} S0 e^{A^T t} + Van Loan integral."""
    d = len(A)
    e = scipy.linalg.expm(A * t)
    m = e @ M0 + np.linalg.solve(A, (e - np.eye(d)) @ B)
    big = scipy.linalg.expm(np.block([[-A, np.diag(SIGMA**2)], [np.zeros((d, d)), A.T]]) * t)
    # Van Loan: big = [[F11, F12], [0, F22]] with F22 = e^{A^T t}; int_0^t e^{As} Q e^{A^T s} ds
    # = F22^T F12
    return m, e @ S0 @ e.T + big[d:, d:].T @ big[:d, d:]


def euler_paths(n_paths, dt, n_steps, seed):
    rng = np.random.default_rng(seed)
    x = M0 + rng.standard_normal((n_paths, 2)) @ np.linalg.cholesky(S0).T
    out = [x]
    for _ in range(n_steps):
        x = x + (x @ A.T + B) * dt + SIGMA * np.sqrt(dt) * rng.standard_normal(x.shape)
        out.append(x)
    return np.stack(out)  # (T, n_paths, d)


def test_moment_odes_equal_the_matrix_exponential_closed_form():
    times = np.linspace(0.0, 6.0, 13)
    means, covs = linear_moment_odes(A, B, SIGMA, M0, S0, times)
    for k, t in enumerate(times):
        m, s = closed_form(t)
        # DOP853 at rtol 1e-10, atol 1e-12 against expm (~1e-15): 1e-8 leaves margin
        np.testing.assert_allclose(means[k], m, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(covs[k], s, rtol=1e-8, atol=1e-10)


def test_scalar_moment_odes_equal_the_analytic_ou_solution():
    a, b, s, m0, v0 = -0.5, 0.2, 0.3, 1.5, 0.4
    t = np.linspace(0, 8, 9)
    means, covs = linear_moment_odes([[a]], [b], [s], [m0], [[v0]], t)
    m = m0 * np.exp(a * t) + b / a * (np.exp(a * t) - 1)
    v = v0 * np.exp(2 * a * t) + s**2 / (2 * a) * (np.exp(2 * a * t) - 1)
    np.testing.assert_allclose(means[:, 0], m, rtol=1e-9)  # solver tolerance 1e-10
    np.testing.assert_allclose(covs[:, 0, 0], v, rtol=1e-9)


def test_euler_chain_is_first_order_close_to_the_odes():
    t_end = 4.0
    errs = []
    for dt in (0.1, 0.05, 0.025):
        n = round(t_end / dt)
        cm, cc = euler_chain_moments(A, B, SIGMA, M0, S0, dt, n)
        m, s = closed_form(t_end)
        errs.append(np.abs(cc[-1] - s).max() + np.abs(cm[-1] - m).max())
    # Euler is first order in dt: halving dt halves the error (to O(dt^2) relative)
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2))


def test_euler_chain_moments_match_monte_carlo_within_standard_errors():
    dt, n_steps = 0.5, 8
    paths = euler_paths(40_000, dt, n_steps, seed=0)
    mc = mc_mean_cov(paths)
    means, covs = euler_chain_moments(A, B, SIGMA, M0, S0, dt, n_steps)
    z_m = (mc["means"] - means) / mc["se_means"]
    iu = np.triu_indices(2)
    z_c = ((mc["covs"] - covs) / mc["se_covs"])[:, iu[0], iu[1]]
    z = np.concatenate([z_m.ravel(), z_c.ravel()])
    # 45 z-scores; exact moments, so each is ~N(0, 1). "Within 3 SE" for one comparison
    # is, for 45 of them at a 1% family-wise false-alarm rate, Bonferroni's ~3.5 SE
    assert np.abs(z).max() < z_critical(z.size)
    # and the continuous ODE at t = 4 is off by many SE at this coarse step
    _, ode_covs = linear_moment_odes(A, B, SIGMA, M0, S0, [0.0, dt * n_steps])
    z_ode = (mc["covs"][-1] - ode_covs[-1]) / mc["se_covs"][-1]
    assert np.abs(z_ode).max() > 10


def _gauss_hermite(m, s, n=6):
    """Nodes and weights making E f(X), X ~ N(m, s), exact for polynomials of degree < 2n."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    zz = np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2)
    ww = np.outer(w, w).ravel()
    return m + zz @ np.linalg.cholesky(s).T, ww


def test_second_moment_identity_is_exact_on_gaussian_closed_forms():
    dt, k = 0.5, 3
    means, covs = euler_chain_moments(A, B, SIGMA, M0, S0, dt, k + 1)
    x, w = _gauss_hermite(means[k], covs[k])
    mu = x @ A.T + B
    sig = np.broadcast_to(SIGMA, x.shape)
    terms = second_moment_terms(mu, sig, x, dt, weights=w)
    exact_next = np.diag(covs[k + 1]) + means[k + 1] ** 2
    # quadrature is exact for these quadratics; the chain recursion is exact: rounding only
    np.testing.assert_allclose(terms["predicted_next"], exact_next, rtol=1e-12)
    np.testing.assert_allclose(terms["EX2"], np.diag(covs[k]) + means[k] ** 2, rtol=1e-12)
    drift_sq = dt**2 * (np.diag(A @ covs[k] @ A.T) + (A @ means[k] + B) ** 2)
    np.testing.assert_allclose(terms["drift_sq"], drift_sq, rtol=1e-12)
    np.testing.assert_allclose(
        terms["continuous_next"], terms["predicted_next"] - drift_sq, rtol=1e-12
    )
    assert np.all(terms["dt2_share"] > 0.01)  # at dt = 0.5 the dt^2 term is not negligible


def test_second_moment_terms_monte_carlo_with_observed_next_step():
    dt = 0.5
    paths = euler_paths(50_000, dt, 1, seed=1)
    x, xn = paths[0], paths[1]
    terms = second_moment_terms(x @ A.T + B, np.broadcast_to(SIGMA, x.shape), x, dt, x_next=xn)
    se = np.hypot(terms["observed_next_se"], terms["predicted_next_se"])
    # the two estimates share x, so the SE of their difference is at most the sum; a
    # 4-SE band on 2 coordinates
    assert np.all(np.abs(terms["observed_next"] - terms["predicted_next"]) < 4 * se)
    sums = terms["EX2"] + terms["cross"] + terms["drift_sq"] + terms["diffusion"]
    np.testing.assert_allclose(terms["predicted_next"], sums, rtol=1e-12)  # same samples


def _scalar_nonlinear_paths(n_paths, dt, n_steps, seed):
    rng = np.random.default_rng(seed)

    def mu(x):
        return -x + 0.5 * np.sin(x) + 0.3

    def sigma(x):
        return 0.5 + 0.2 * np.tanh(x)

    x = rng.standard_normal(n_paths) * 0.8 + 0.5
    xs = [x]
    for _ in range(n_steps):
        x = x + mu(x) * dt + sigma(x) * np.sqrt(dt) * rng.standard_normal(n_paths)
        xs.append(x)
    xs = np.stack(xs)
    return xs, mu(xs), sigma(xs)


def test_moment_recursion_euler_form_holds_and_paper_form_misses_the_dt_terms():
    dt, n_steps = 0.5, 6
    paths, mu, sg = _scalar_nonlinear_paths(200_000, dt, n_steps, seed=2)
    res = moment_recursion_check(paths, mu, sg, dt, n_max=4)
    assert res["lhs"].shape == (4, n_steps)
    # the Euler form is the exact conditional expectation: 24 z-scores ~N(0, 1)
    assert res["max_abs_z_euler"].max() < z_critical(res["z_euler"].size)
    # n = 1: both forms are E[mu]
    np.testing.assert_allclose(res["rhs_euler"][0], res["rhs_ito"][0], rtol=1e-12)
    # n >= 2: the paper's continuous form misses E[X^{n-2} mu^2] dt-type terms at dt = 0.5
    assert res["max_abs_z_ito"][1:].min() > 10
    # closed forms of the Euler increment for n = 2, 3 (per path, then averaged)
    x, m, s = paths[:-1], mu[:-1], sg[:-1]
    n2 = 2 * x * m + m**2 * dt + s**2
    n3 = 3 * x**2 * m + 3 * x * (m**2 * dt + s**2) + m**3 * dt**2 + 3 * m * s**2 * dt
    np.testing.assert_allclose(res["rhs_euler"][1], n2.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(res["rhs_euler"][2], n3.mean(axis=1), rtol=1e-10)


def test_mc_mean_cov_matches_numpy():
    paths = np.random.default_rng(3).standard_normal((4, 500, 3)) @ np.diag([1.0, 2.0, 0.5])
    mc = mc_mean_cov(paths)
    for k in range(4):
        np.testing.assert_allclose(mc["covs"][k], np.cov(paths[k].T), rtol=1e-12)
    np.testing.assert_allclose(mc["means"], paths.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(mc["se_means"], paths.std(axis=1, ddof=1) / np.sqrt(500))
    assert mc["n_paths"] == 500 and mc["se_covs"].shape == (4, 3, 3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"sigma \(diagonal\) must have shape \(2,\), got \(3,\)"):
        linear_moment_odes(A, B, [1.0, 2.0, 3.0], M0, S0, [0.0, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        linear_moment_odes(A, B, SIGMA, M0, S0, [1.0, 0.0])
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        euler_chain_moments(A, B, SIGMA, M0, S0, 0.0, 3)
    with pytest.raises(ValueError, match="paths must be"):
        moment_recursion_check(np.zeros(5), np.zeros(5), np.zeros(5), 0.1)


def test_along_paths_feeds_the_recursion_check_for_a_model():
    dt, n_steps = 0.5, 5
    paths = euler_paths(100_000, dt, n_steps, seed=5)
    mu, sg = along_paths(ToyLinear(A, B, SIGMA), paths, t0=0.0, dt=dt)
    np.testing.assert_allclose(mu, paths @ A.T + B, rtol=1e-12, atol=1e-14)  # same map
    np.testing.assert_allclose(sg, np.broadcast_to(SIGMA, paths.shape), rtol=1e-14)
    res = moment_recursion_check(paths[..., 0], mu[..., 0], sg[..., 0], dt, n_max=3)
    # the Euler form is exact: 15 z-scores ~N(0, 1), Bonferroni at 1%
    assert res["max_abs_z_euler"].max() < z_critical(res["z_euler"].size)


def test_along_paths_rejects_a_full_diffusion_matrix():
    from toy_models import FullNoiseOU

    with pytest.raises(ValueError, match=r"along_paths needs a diagonal diffusion of shape"):
        along_paths(FullNoiseOU(), np.zeros((3, 4, 2)))
