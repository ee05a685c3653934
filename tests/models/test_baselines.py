"""Tests of sde_utils.models.baselines on synthetic Ornstein–Uhlenbeck data (float64, fixed seeds).

Tolerances on estimates are in standard errors: for the regression of the increments
``(x1 - x0) / dt`` on ``[x0, 1]`` the noise of dimension j has variance ``sigma_j^2 / dt``, so
``Cov(coef_j) = sigma_j^2 / dt * (X^T X)^{-1}`` (standard error ~ 1/sqrt(N)); the variance
estimate ``mean(resid^2) / dt`` has relative standard error ``sqrt(2 / N)``, so sigma's is
``1 / sqrt(2 N)``. We allow 5 standard errors: each check then fails by chance with
probability < 1e-6 (and the seeds are fixed), while a wrong estimator misses by far more.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from sde_utils.models.baselines import DriftOnlyMLP, LinearSDE, RandomWalk
from sde_utils.models.losses import diffusion_loss, drift_loss
from sde_utils.models.neural import NeuralSDE

D = 3
DT = 0.5
A_TRUE = np.array([[-1.0, 0.3, 0.0], [-0.2, -0.6, 0.1], [0.0, 0.25, -0.8]])  # stable
B_TRUE = np.array([0.5, -0.3, 0.2])
SIGMA_TRUE = np.array([0.3, 0.6, 0.45])
N_SE = 5.0


def ou_transitions(n_paths=100, n_steps=60, dt=DT, exact=False, seed=0):
    """Transitions (x0, t0, x1) from paths of the OU process dX = (A X + b) dt + sigma dW.

    ``exact=False``: Euler–Maruyama with step ``dt`` (the estimators' model holds exactly);
    ``exact=True``: the exact transition N(m + e^{A dt}(x - m), Sigma_dt).
    Starting points are N(0, I); returns float64 tensors, N = n_paths * n_steps.
    """
    rng = np.random.default_rng(seed)
    m = -np.linalg.solve(A_TRUE, B_TRUE)
    E = scipy.linalg.expm(A_TRUE * dt)
    s_inf = scipy.linalg.solve_continuous_lyapunov(A_TRUE, -np.diag(SIGMA_TRUE**2))
    chol = np.linalg.cholesky(s_inf - E @ s_inf @ E.T)
    x = rng.standard_normal((n_paths, D))
    xs = [x]
    for _ in range(n_steps):
        z = rng.standard_normal((n_paths, D))
        if exact:
            x = m + (x - m) @ E.T + z @ chol.T
        else:
            x = x + (x @ A_TRUE.T + B_TRUE) * dt + SIGMA_TRUE * np.sqrt(dt) * z
        xs.append(x)
    X = np.stack(xs)  # (n_steps + 1, n_paths, D)
    x0 = torch.from_numpy(X[:-1].reshape(-1, D))
    x1 = torch.from_numpy(X[1:].reshape(-1, D))
    t0 = torch.from_numpy(np.repeat(np.arange(n_steps) * dt, n_paths))
    return x0, t0, x1, (s_inf - E @ s_inf @ E.T)


@pytest.fixture(scope="module")
def em_data():
    x0, t0, x1, _ = ou_transitions()
    return x0, t0, x1


def _lstsq(x0, x1, dt):
    X = np.hstack([x0.numpy(), np.ones((len(x0), 1))])
    Y = (x1.numpy() - x0.numpy()) / dt
    coef = np.linalg.lstsq(X, Y, rcond=None)[0]
    return X, Y, coef


def test_linear_sde_equals_numpy_lstsq(em_data):
    x0, t0, x1 = em_data
    model = LinearSDE.fit_closed_form(x0, t0, x1, DT)
    X, _, coef = _lstsq(x0, x1, DT)
    # both solve the same well-conditioned least-squares problem in float64: only rounding
    np.testing.assert_allclose(model.A.numpy(), coef[:D].T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.b.numpy(), coef[D], rtol=0, atol=1e-10)
    resid = (x1.numpy() - x0.numpy()) - (X @ coef) * DT
    np.testing.assert_allclose(model.sigma.numpy() ** 2, (resid**2).mean(0) / DT, rtol=1e-10)
    assert model.A.dtype == torch.float64
    x = x0[:10]
    torch.testing.assert_close(model.drift(x, t0[:10]), x @ model.A.T + model.b, rtol=0, atol=0)
    assert torch.equal(model.diffusion(x, t0[:10]), model.sigma.expand(10, D))


def test_linear_sde_recovers_a_b_sigma(em_data):
    x0, t0, x1 = em_data
    model = LinearSDE.fit_closed_form(x0, t0, x1, DT)
    X, _, _ = _lstsq(x0, x1, DT)
    n = len(x0)
    xtx_inv = np.diag(np.linalg.inv(X.T @ X))  # (D + 1,)
    se = np.sqrt(np.outer(SIGMA_TRUE**2 / DT, xtx_inv))  # se[j, k] for coefficient k of dim j
    err_a = np.abs(model.A.numpy() - A_TRUE)
    err_b = np.abs(model.b.numpy() - B_TRUE)
    assert (err_a < N_SE * se[:, :D]).all(), (err_a, se[:, :D])
    assert (err_b < N_SE * se[:, D]).all(), (err_b, se[:, D])
    rel = np.abs(model.sigma.numpy() / SIGMA_TRUE - 1)
    assert (rel < N_SE / np.sqrt(2 * n)).all(), rel


def test_linear_sde_on_exact_transitions_estimates_the_discrete_drift():
    """On exact OU transitions the least-squares drift is (expm(A dt) - I) / dt, not A, and
    sigma^2 is diag(Sigma_dt) / dt: the Euler–Maruyama model's discretisation bias."""
    dt = 1.0
    x0, t0, x1, cov_dt = ou_transitions(n_paths=100, n_steps=60, dt=dt, exact=True, seed=1)
    model = LinearSDE.fit_closed_form(x0, t0, x1, dt)
    target = (scipy.linalg.expm(A_TRUE * dt) - np.eye(D)) / dt
    X, _, _ = _lstsq(x0, x1, dt)
    noise_sd = np.sqrt(np.diag(cov_dt)) / dt  # sd of the increment target per dimension
    se = np.outer(noise_sd, np.sqrt(np.diag(np.linalg.inv(X.T @ X))))[:, :D]
    assert (np.abs(model.A.numpy() - target) < N_SE * se).all()
    assert np.abs(model.A.numpy() - A_TRUE).max() > 10 * se.max()  # the bias is real
    rel = np.abs(model.sigma.numpy() ** 2 / (np.diag(cov_dt) / dt) - 1)
    assert (rel < N_SE * np.sqrt(2 / len(x0))).all(), rel  # variance: relative se sqrt(2/N)


def test_random_walk_closed_form(em_data):
    x0, t0, x1 = em_data
    model = RandomWalk.fit_closed_form(x0, t0, x1, DT)
    dx = (x1 - x0).numpy()
    np.testing.assert_allclose(model.sigma.numpy(), np.sqrt((dx**2).mean(0) / DT), rtol=1e-12)
    assert torch.equal(model.drift(x0[:5], t0[:5]), torch.zeros(5, D, dtype=torch.float64))
    assert model.diffusion(x0[:5], t0[:5]).shape == (5, D)
    assert list(model.parameters()) == []  # closed form only: nothing for fit to train


def test_closed_forms_are_stationary_points_of_the_losses(em_data):
    """The least-squares drift minimises the drift loss and the residual sigma minimises
    the step NLL, so the losses' gradients vanish there (up to rounding)."""
    x0, t0, x1 = em_data
    lin = LinearSDE.fit_closed_form(x0, t0, x1, DT)
    lin.A.requires_grad_(True)
    lin.b.requires_grad_(True)
    lin.sigma_diag.requires_grad_(True)
    drift_loss(lin, x0, t0, x1, DT).backward()
    # the gradient is X^T residual-type sums of ~1e4 terms of size ~1: rounding ~1e-12
    assert lin.A.grad.abs().max() < 1e-10 and lin.b.grad.abs().max() < 1e-10
    diffusion_loss(lin, x0, t0, x1, DT).backward()
    assert lin.sigma_diag.grad.abs().max() < 1e-10
    rw = RandomWalk.fit_closed_form(x0, t0, x1, DT)
    rw.sigma_diag.requires_grad_(True)
    diffusion_loss(rw, x0, t0, x1, DT).backward()
    assert rw.sigma_diag.grad.abs().max() < 1e-10
    # away from the optimum the gradient is clearly non-zero
    rw.sigma_diag.grad = None
    with torch.no_grad():
        rw.sigma_diag.mul_(1.1)
    diffusion_loss(rw, x0, t0, x1, DT).backward()
    assert rw.sigma_diag.grad.abs().min() > 1e-2


def test_drift_only_mlp_matches_neural_sde_drift():
    kwargs = dict(  # noqa: C408
        hidden=11,
        depth=2,
        activation="tanh",
        time_encoding="sinusoidal",
        n_frequencies=3,
        time_scale=5.0,
    )
    torch.manual_seed(3)
    m = DriftOnlyMLP(D, **kwargs).double()
    torch.manual_seed(3)
    n = NeuralSDE(D, **kwargs).double()
    assert [type(a) for a in m.drift_net] == [type(b) for b in n.drift_net]
    assert m.n_time_features == n.n_time_features == 6
    x, t = torch.randn(7, D, dtype=torch.float64), torch.arange(7, dtype=torch.float64)
    assert torch.equal(m.drift(x, t), n.drift(x, t))  # same seed, same construction order
    assert m.sigma.shape == (D,) and torch.allclose(m.sigma, torch.ones(D, dtype=torch.float64))
    assert torch.equal(m.diffusion(x, t), m.sigma.expand(7, D))
    assert any(p is m.log_sigma for p in m.parameters())
    fixed = DriftOnlyMLP(D, learn_sigma=False, sigma_init=0.2)
    assert all(p is not fixed.log_sigma for p in fixed.parameters())
    assert torch.allclose(fixed.sigma, torch.full((D,), 0.2))


def test_drift_only_mlp_sigma_from_residuals(em_data):
    x0, t0, x1 = em_data
    m = DriftOnlyMLP(D, hidden=8, learn_sigma=False).double()
    m.set_sigma_from_residuals(x0, t0, x1, DT)
    with torch.no_grad():
        r = (x1 - x0 - m.drift(x0, t0) * DT).numpy()
    np.testing.assert_allclose(m.sigma.numpy(), np.sqrt((r**2).mean(0) / DT), rtol=1e-12)


@pytest.mark.parametrize("cls", [RandomWalk, LinearSDE])
def test_closed_form_errors(cls, em_data):
    x0, t0, x1 = em_data
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got 0"):
        cls.fit_closed_form(x0, t0, x1, 0)
    with pytest.raises(TypeError, match=r"dt must be a finite number > 0, got '1' \(str\)"):
        cls.fit_closed_form(x0, t0, x1, "1")
    with pytest.raises(ValueError, match=r"x1 must have x0's shape \(6000, 3\), got \(6000, 2\)"):
        cls.fit_closed_form(x0, t0, x1[:, :2], DT)
    with pytest.raises(ValueError, match=r"t0 must have shape \(N,\) = \(6000,\), got \(5,\)"):
        cls.fit_closed_form(x0, t0[:5], x1, DT)
    with pytest.raises(ValueError, match=r"empty split \(N = 0"):
        cls.fit_closed_form(x0[:0], t0[:0], x1[:0], DT)
    bad = x1.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="x1 contains NaN or inf"):
        cls.fit_closed_form(x0, t0, bad, DT)
    with pytest.raises(ValueError, match="state_dim must be an int >= 1, got 0"):
        cls(0)


def test_drift_only_mlp_argument_errors():
    with pytest.raises(TypeError, match="learn_sigma must be True or False, got 1"):
        DriftOnlyMLP(D, learn_sigma=1)
    with pytest.raises(ValueError, match="sigma_init must be a finite number > 0, got 0.0"):
        DriftOnlyMLP(D, sigma_init=0.0)
    with pytest.raises(ValueError, match=r"hidden \(width\) must be an int >= 1, got 0"):
        DriftOnlyMLP(D, hidden=0)


def test_linear_sde_needs_enough_samples(em_data):
    x0, t0, x1 = em_data
    with pytest.raises(ValueError, match=r"needs N >= d \+ 1 = 4, got N = 3"):
        LinearSDE.fit_closed_form(x0[:3], t0[:3], x1[:3], DT)


# ----------------------------------------------------------------------------- linear drift + MLP sigma


def test_linear_drift_mlp_sigma_shapes_positive_sigma_and_exact_linear_drift():
    from sde_utils.models.baselines import LinearDriftMLPSigma

    torch.manual_seed(0)
    model = LinearDriftMLPSigma(D, hidden=8, depth=2, sigma_init=0.7, sigma_floor=1e-3).double()
    with torch.no_grad():
        model.A.copy_(torch.as_tensor(A_TRUE))
        model.b.copy_(torch.as_tensor(B_TRUE))
    x = torch.randn(11, D, dtype=torch.float64)
    t = torch.arange(11, dtype=torch.float64)
    mu, sigma = model.drift(x, t).detach(), model.diffusion(x, t).detach()
    assert mu.shape == sigma.shape == (11, D)
    # the drift is exactly x A^T + b (same float64 operations: equal to rounding)
    expected = x.numpy() @ A_TRUE.T + B_TRUE
    np.testing.assert_allclose(mu.detach().numpy(), expected, rtol=0, atol=1e-12)
    assert bool((sigma >= 1e-3).all())
    # sigma starts ~ sigma_init: output weights are scaled by 1e-2 (|deviation| << 0.1)
    assert float((sigma - 0.7).abs().max()) < 0.1
    # a control: sigma depends on the state once the output layer is not tiny
    with torch.no_grad():
        model.diffusion_net[-1].weight.mul_(100.0)
    sigma2 = model.diffusion(x, t).detach()
    assert float(sigma2.std(0).max()) > 1e-3
    # trainable: A, b and the diffusion net all get gradients from the NLL
    loss = diffusion_loss(model, x, t, x + 0.1, 1.0) + drift_loss(model, x, t, x + 0.1, 1.0)
    loss.backward()
    assert model.A.grad is not None and model.b.grad is not None
    assert model.diffusion_net[0].weight.grad is not None


def test_linear_drift_mlp_sigma_least_squares_start_equals_linear_sde():
    from sde_utils.models.baselines import LinearDriftMLPSigma

    x0, t0, x1 = ou_transitions(n_paths=20, n_steps=20)[:3]
    ls = LinearSDE.fit_closed_form(x0, t0, x1, DT)
    model = LinearDriftMLPSigma(D, hidden=4).double().set_drift_least_squares(x0, t0, x1, DT)
    np.testing.assert_array_equal(model.A.detach().numpy(), ls.A.numpy())
    np.testing.assert_array_equal(model.b.detach().numpy(), ls.b.numpy())
    with pytest.raises(ValueError, match="state_dim"):
        LinearDriftMLPSigma(D + 1, hidden=4).set_drift_least_squares(x0, t0, x1, DT)
    with pytest.raises(ValueError, match="sigma_init"):
        LinearDriftMLPSigma(D, sigma_init=1e-3, sigma_floor=1e-3)


def test_linear_drift_mlp_sigma_save_load_round_trip(tmp_path):
    from sde_utils.models.baselines import LinearDriftMLPSigma
    from sde_utils.models.serialize import load_model, save_model

    torch.manual_seed(1)
    model = LinearDriftMLPSigma(
        D, hidden=6, depth=1, activation="tanh", time_encoding="sinusoidal", time_scale=50.0
    )
    with torch.no_grad():
        model.A.normal_()
        model.b.normal_()
    back = load_model(save_model(model, tmp_path / "m.pt"))
    assert type(back) is LinearDriftMLPSigma and back.config() == model.config()
    x, t = torch.randn(5, D), torch.arange(5.0)
    assert torch.equal(back.drift(x, t), model.drift(x, t))
    assert torch.equal(back.diffusion(x, t), model.diffusion(x, t))
