"""Tests for sde_utils.models.simulate: moments against closed forms, shared noise, seeding, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchsde

from sde_utils.models.base import SDEModel
from sde_utils.models.simulate import (
    GridBrownian,
    brownian_noise,
    drift_path,
    euler_maruyama,
    simulate,
    time_grid,
)

DT64 = torch.float64


class OU(SDEModel):
    """Exact OU model: drift ``A x + b``, constant diagonal sigma (buffers, no parameters)."""

    def __init__(self, A, b, sigma):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=DT64))
        self.register_buffer("b", torch.as_tensor(b, dtype=DT64))
        self.register_buffer("sigma", torch.as_tensor(sigma, dtype=DT64))

    def drift(self, x, t):
        return x @ self.A.T + self.b

    def diffusion(self, x, t):
        return self.sigma.expand_as(x)


class GBM(SDEModel):
    """Geometric Brownian motion: drift ``mu x``, diffusion ``s x`` (state-dependent)."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s

    def drift(self, x, t):
        return self.mu * x

    def diffusion(self, x, t):
        return self.s * x


class SineDrift(SDEModel):
    """Nonlinear drift ``-2 sin(2x)`` with unit additive noise (its SRK step uses ``U``)."""

    def drift(self, x, t):
        return -2.0 * torch.sin(2.0 * x)

    def diffusion(self, x, t):
        return torch.ones_like(x)


class TimeDrift(SDEModel):
    """Drift ``c * t`` (state-independent), zero noise: checks the times the solver uses."""

    def __init__(self, c):
        super().__init__()
        self.c = torch.as_tensor(c, dtype=DT64)

    def drift(self, x, t):
        return self.c * t[:, None]

    def diffusion(self, x, t):
        return torch.zeros_like(x)


class MatrixNoise(SDEModel):
    """A model breaking the diagonal contract: diffusion returns (B, d, d)."""

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, x, t):
        return torch.ones(x.shape[0], x.shape[1], x.shape[1], dtype=x.dtype)


A = np.array([[-0.5, 0.2], [-0.1, -0.3]])
B = np.array([0.1, -0.2])
SIGMA = np.array([0.3, 0.5])
X0 = np.array([1.0, -1.0])


def euler_chain_moments(A, b, sigma, x0, dt, n_steps):
    """Exact mean and covariance of x_{k+1} = (I + A dt) x_k + b dt + sigma sqrt(dt) eps_k."""
    M = np.eye(len(b)) + A * dt
    Q = np.diag(sigma**2) * dt
    mean, cov = x0.copy(), np.zeros((len(b), len(b)))
    for _ in range(n_steps):
        mean = M @ mean + b * dt
        cov = M @ cov @ M.T + Q
    return mean, cov


@pytest.mark.parametrize("dt", [1.0, 0.25])
def test_ou_matches_euler_chain_moments(dt):
    # With dt = 1 Euler is not the exact OU transition, so the reference is the Euler
    # chain itself, whose mean and covariance are exact recursions (Gaussian, linear).
    n_steps, n_paths = 8, 20_000
    model = OU(A, B, SIGMA)
    paths = simulate(model, torch.tensor(X0), n_steps=n_steps, dt=dt, n_paths=n_paths, seed=1)
    assert paths.shape == (n_steps + 1, n_paths, 2)
    assert torch.equal(paths[0], torch.tensor(X0).expand(n_paths, 2))
    for k in (1, n_steps // 2, n_steps):
        mean, cov = euler_chain_moments(A, B, SIGMA, X0, dt, k)
        sample = paths[k].numpy()
        m_hat = sample.mean(0)
        c_hat = np.cov(sample, rowvar=False)
        # 3 standard errors: SE(mean_i) = sqrt(C_ii / n); for Gaussian samples
        # SE(cov_ij) = sqrt((C_ii C_jj + C_ij^2) / (n - 1)).
        se_mean = np.sqrt(np.diag(cov) / n_paths)
        np.testing.assert_array_less(np.abs(m_hat - mean), 3 * se_mean)
        se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / (n_paths - 1))
        np.testing.assert_array_less(np.abs(c_hat - cov), 3 * se_cov)


def test_ou_small_dt_approaches_continuous_moments():
    # With dt = 0.01 the Euler chain is within O(dt) of the exact OU transition; the
    # closed-form Euler bias is added to the 3-SE band so the check is exact in expectation.
    from scipy.linalg import expm, solve_continuous_lyapunov

    dt, n_steps, n_paths = 0.01, 100, 10_000
    T = dt * n_steps
    eAT = expm(A * T)
    mean_exact = eAT @ X0 + np.linalg.solve(A, (eAT - np.eye(2)) @ B)
    P_inf = solve_continuous_lyapunov(A, -np.diag(SIGMA**2))
    cov_exact = P_inf - eAT @ P_inf @ eAT.T
    mean_euler, cov_euler = euler_chain_moments(A, B, SIGMA, X0, dt, n_steps)
    sample = simulate(OU(A, B, SIGMA), torch.tensor(X0), n_steps=n_steps, dt=dt,
                      n_paths=n_paths, seed=2)[-1].numpy()  # fmt: skip
    se_mean = np.sqrt(np.diag(cov_exact) / n_paths)
    bias = np.abs(mean_euler - mean_exact)
    np.testing.assert_array_less(np.abs(sample.mean(0) - mean_exact), 3 * se_mean + bias)
    se_var = np.diag(cov_exact) * math.sqrt(2 / (n_paths - 1))
    bias_var = np.abs(np.diag(cov_euler - cov_exact))
    np.testing.assert_array_less(
        np.abs(sample.var(0, ddof=1) - np.diag(cov_exact)), 3 * se_var + bias_var
    )


def test_time_grid_and_time_dependent_drift():
    ts = time_grid(10, 0.1, t0=0.3)
    assert ts.dtype == torch.float64 and ts.shape == (11,)
    # repeated addition agrees with t0 + k dt to a few ulps
    np.testing.assert_allclose(ts.numpy(), 0.3 + 0.1 * np.arange(11), rtol=0, atol=1e-15)
    # drift c t, sigma 0: x_n = x0 + c dt sum_{k<n} t_k exactly (checks t0 and the grid)
    c = torch.tensor([1.0, -2.0], dtype=DT64)
    x0 = torch.tensor([0.5, 0.5], dtype=DT64)
    model = TimeDrift(c)
    expected = x0 + c * 0.1 * torch.cumsum(ts[:-1], 0)[:, None]
    for out in (
        simulate(model, x0, n_steps=10, dt=0.1, t0=0.3)[:, 0],
        euler_maruyama(model, x0, n_steps=10, dt=0.1, t0=0.3)[:, 0],
        drift_path(model, x0, 10, dt=0.1, t0=0.3),
    ):
        # 1e-14: a sum of ten float64 products of size ~1
        torch.testing.assert_close(out[1:], expected, rtol=0, atol=1e-14)


def test_seeded_determinism():
    model = OU(A, B, SIGMA)
    x0 = torch.tensor(X0)
    a = simulate(model, x0, n_steps=5, n_paths=64, seed=7)
    b = simulate(model, x0, n_steps=5, n_paths=64, seed=7)
    c = simulate(model, x0, n_steps=5, n_paths=64, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a[1:], c[1:])
    # the noise is exactly brownian_noise(seed)
    eps = brownian_noise(5, 64, 2, seed=7)
    assert torch.equal(a, simulate(model, x0, n_steps=5, n_paths=64, noise=eps))


@pytest.mark.parametrize("dt", [1.0, 0.1])
def test_euler_equals_reference_loop_with_shared_noise(dt):
    model = GBM(0.1, 0.4)
    x0 = torch.rand(3, 4, dtype=DT64) + 0.5
    eps = torch.randn(12, 3 * 5, 4, dtype=DT64, generator=torch.Generator().manual_seed(0))
    ours = simulate(model, x0, n_steps=12, dt=dt, n_paths=5, noise=eps)
    ref = euler_maruyama(model, x0, n_steps=12, dt=dt, n_paths=5, noise=eps)
    assert ours.shape == (13, 3, 5, 4)
    # both compute x + f dt + g dW in the same order: equal to float64 rounding
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-13)
    # and with the same seed instead of explicit noise
    torch.testing.assert_close(
        simulate(model, x0, n_steps=12, dt=dt, n_paths=5, seed=3),
        euler_maruyama(model, x0, n_steps=12, dt=dt, n_paths=5, seed=3),
        rtol=1e-13,
        atol=1e-13,
    )


def test_batch_layout_is_start_major():
    model = OU(A, B, SIGMA)
    x0 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]], dtype=DT64)
    n_paths, n_steps = 4, 6
    eps = brownian_noise(n_steps, 3 * n_paths, 2, seed=5)
    out = simulate(model, x0, n_steps=n_steps, n_paths=n_paths, noise=eps)
    assert out.shape == (n_steps + 1, 3, n_paths, 2)
    for b in range(3):
        rows = eps[:, b * n_paths : (b + 1) * n_paths]
        alone = simulate(model, x0[b], n_steps=n_steps, n_paths=n_paths, noise=rows)
        torch.testing.assert_close(out[:, b], alone, rtol=0, atol=1e-14)  # same arithmetic
        assert torch.equal(out[0, b], x0[b].expand(n_paths, 2))


def test_milstein_equals_euler_for_constant_sigma():
    # sigma does not depend on x, so Milstein's correction g g' (dW^2 - dt) / 2 is zero
    model = OU(A, B, SIGMA)
    x0 = torch.tensor(X0)
    e = simulate(model, x0, n_steps=10, n_paths=32, seed=4, method="euler")
    m = simulate(model, x0, n_steps=10, n_paths=32, seed=4, method="milstein")
    torch.testing.assert_close(m, e, rtol=0, atol=1e-14)  # identical up to rounding


def test_milstein_matches_hand_written_step_for_gbm():
    # x_{k+1} = x + mu x dt + s x dW + 0.5 s^2 x (dW^2 - dt) for g(x) = s x
    mu, s, dt, n = 0.2, 0.6, 0.1, 15
    x0 = torch.tensor([[1.0, 2.0]], dtype=DT64)
    eps = brownian_noise(n, 8, 2, seed=9)
    ours = simulate(GBM(mu, s), x0, n_steps=n, dt=dt, n_paths=8, method="milstein", noise=eps)
    x = x0.repeat_interleave(8, 0)
    steps = time_grid(n, dt).diff()
    for k in range(n):
        dW = eps[k] * steps[k].sqrt()
        x = x + mu * x * steps[k] + s * x * dW + 0.5 * s * s * x * (dW**2 - steps[k])
    torch.testing.assert_close(ours[-1, 0], x, rtol=1e-12, atol=1e-12)  # float64 rounding


def test_srk_uses_the_levy_area_correctly():
    # A reference solution from SRK on a 32x finer grid; the coarse W and space-time Levy
    # area U = int (W_s - W_tk) ds are aggregated exactly from the fine path. SRK (strong
    # order 1.5) with the right U is far more accurate than with an independent U or than
    # Euler (order 1.0 for additive noise); at dt = 0.05 the expected ratio is ~sqrt(dt)
    # ~ 0.2 (measured ~0.1-0.15), so a factor 0.5 leaves room while still failing if U
    # were ignored or mis-scaled.
    model = SineDrift()
    n, dt, n_paths, r = 20, 0.05, 500, 32
    hf = dt / r
    x0 = torch.full((1,), 0.3, dtype=DT64)
    gen = torch.Generator().manual_seed(0)
    eps_f = torch.randn(n * r, n_paths, 1, dtype=DT64, generator=gen)
    eta_f = torch.randn(n * r, n_paths, 1, dtype=DT64, generator=gen)
    bm_fine = GridBrownian(time_grid(n * r, hf), eps_f, eta_f)
    ref = simulate(model, x0, n_steps=n * r, dt=hf, n_paths=n_paths, method="srk", bm=bm_fine)
    dW_f = (eps_f * math.sqrt(hf)).reshape(n, r, n_paths, 1)
    U_f = hf * (0.5 * dW_f + math.sqrt(hf / 12) * eta_f.reshape(n, r, n_paths, 1))
    W = dW_f.sum(1)
    U = (U_f + (torch.cumsum(dW_f, 1) - dW_f) * hf).sum(1)
    eps = W / math.sqrt(dt)
    eta = (U / dt - W / 2) / math.sqrt(dt / 12)
    ts = time_grid(n, dt)

    def err(bm=None, method="srk"):
        noise = eps if bm is None else None
        out = simulate(
            model, x0, n_steps=n, dt=dt, n_paths=n_paths, method=method, bm=bm, noise=noise
        )
        return float((out[-1] - ref[-1]).abs().mean())

    good = err(GridBrownian(ts, eps, eta))
    wrong = err(GridBrownian(ts, eps, torch.randn(eta.shape, dtype=DT64, generator=gen)))
    euler = err(method="euler")
    assert good < 0.5 * wrong
    assert good < 0.5 * euler


def test_grid_brownian_queries():
    ts = time_grid(4, 0.5)
    eps = brownian_noise(4, 3, 2, seed=0)
    bm = GridBrownian(ts, eps)
    assert bm.shape == (3, 2) and bm.levy_area_approximation == "none"
    torch.testing.assert_close(bm(ts[1], ts[2]), eps[1] * math.sqrt(0.5), rtol=0, atol=0)
    torch.testing.assert_close(bm(ts[0], ts[3]), eps[:3].sum(0) * math.sqrt(0.5))
    torch.testing.assert_close(bm(ts[2]), eps[:2].sum(0) * math.sqrt(0.5))
    assert torch.equal(bm(ts[1], ts[1]), torch.zeros(3, 2, dtype=DT64))
    with pytest.raises(ValueError, match="not a grid time"):
        bm(0.25, 0.5)
    with pytest.raises(ValueError, match="Lévy area"):
        bm(ts[0], ts[1], return_U=True)
    with pytest.raises(ValueError, match="ta <= tb"):
        bm(ts[2], ts[1])


def test_torchsde_brownian_interval_is_accepted():
    model = OU(A, B, SIGMA)
    bm = torchsde.BrownianInterval(t0=0.0, t1=3.0, size=(16, 2), dtype=DT64, entropy=0)
    out = simulate(model, torch.tensor(X0), n_steps=3, n_paths=16, bm=bm)
    assert out.shape == (4, 16, 2) and torch.isfinite(out).all()


def test_bad_inputs():
    model = OU(A, B, SIGMA)
    x0 = torch.tensor(X0)
    with pytest.raises(ValueError, match="n_steps must be an int >= 1, got 0"):
        simulate(model, x0, n_steps=0)
    with pytest.raises(TypeError, match="n_steps must be an int"):
        simulate(model, x0, n_steps=2.0)
    for dt in (0.0, -1.0):
        with pytest.raises(ValueError, match="dt must be a finite number > 0"):
            simulate(model, x0, n_steps=2, dt=dt)
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got inf"):
        simulate(model, x0, n_steps=2, dt=float("inf"))
    with pytest.raises(ValueError, match=r"method='heun' is not allowed.*euler"):
        simulate(model, x0, n_steps=2, method="heun")
    with pytest.raises(ValueError, match="n_paths must be an int >= 1, got 0"):
        simulate(model, x0, n_steps=2, n_paths=0)
    with pytest.raises(ValueError, match=r"noise must have shape.*\(2, 3, 2\)"):
        simulate(model, x0, n_steps=2, n_paths=3, noise=torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match=r"x0 must have shape"):
        simulate(model, torch.zeros(1, 1, 2), n_steps=2)
    with pytest.raises(ValueError, match=r"diagonal noise needs \(1, 2\)"):
        simulate(MatrixNoise(), x0, n_steps=2, method="milstein")
    with pytest.raises(ValueError, match="bm must have shape"):
        simulate(model, x0, n_steps=2, bm=GridBrownian(time_grid(2, 1.0), torch.zeros(2, 5, 2)))
    with pytest.raises(ValueError, match="n_steps must be an int >= 1, got 0"):
        euler_maruyama(model, x0, n_steps=0)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        drift_path(model, x0, 3, dt=0.0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        simulate(model, x0, n_steps=2, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        euler_maruyama(model, x0, n_steps=2, seed=True)
    with pytest.raises(ValueError, match="t0 must be a finite number, got nan"):
        drift_path(model, x0, 3, t0=float("nan"))
    with pytest.raises(ValueError, match="batch must be an int >= 1, got 0"):
        brownian_noise(2, 0, 2, seed=0)
