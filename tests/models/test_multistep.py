"""Tests of sde_utils.models.multistep: the k-step objective against the exact k-step
Gaussian of a linear Euler chain, the closed-form Jacobians, the contraction penalty, the
windows, and training through ``fit`` (float64, fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from sde_utils.models.baselines import LinearSDE
from sde_utils.models.losses import OneStepObjective, mean_objective_losses, step_losses
from sde_utils.models.multistep import (
    MultiStepNeuralSDE,
    MultiStepObjective,
    drift_jacobian,
    kstep_losses,
    one_step_jacobian,
    spectral_norm,
    windows,
)
from sde_utils.models.neural import ACTIVATIONS, NeuralSDE
from sde_utils.models.serialize import load_model, save_model
from sde_utils.models.train import fit

D, DT = 3, 0.5


def linear_model(a, b, sigma) -> LinearSDE:
    m = LinearSDE(len(b)).double()
    m.A.copy_(torch.as_tensor(a, dtype=torch.float64))
    m.b.copy_(torch.as_tensor(b, dtype=torch.float64))
    m.sigma_diag.copy_(torch.as_tensor(sigma, dtype=torch.float64))
    return m


A = np.array([[-0.4, 0.3, 0.0], [-0.2, -0.1, 0.5], [0.1, 0.0, -0.6]])
B = np.array([0.3, -0.2, 0.1])
SIGMA = np.array([0.5, 1.2, 0.8])


def exact_kstep_nll(x0, xs, dt):
    """The closed form: with M = I + A dt, X_j | x0 ~ N(M^j x0 + sum_{i<j} M^i b dt,
    sum_{i<j} M^i diag(sigma^2) dt M^iT); NLL per dimension, mean over j = 1..k and rows."""
    m = np.eye(D) + A * dt
    q = np.diag(SIGMA**2) * dt
    k = xs.shape[1]
    total = 0.0
    for j in range(1, k + 1):
        powers = [np.linalg.matrix_power(m, i) for i in range(j)]
        cov = sum(p @ q @ p.T for p in powers)
        shift = sum(p @ B for p in powers) * dt
        for row in range(x0.shape[0]):
            mean = np.linalg.matrix_power(m, j) @ x0[row] + shift
            total += -scipy.stats.multivariate_normal(mean, cov).logpdf(xs[row, j - 1]) / D
    return total / (k * x0.shape[0])


@pytest.mark.parametrize("k", [1, 2, 5])
def test_kstep_nll_is_the_exact_gaussian_of_a_linear_euler_chain(k):
    g = np.random.default_rng(k)
    x0 = g.normal(size=(7, D))
    xs = g.normal(size=(7, k, D)) * 2.0
    model = linear_model(A, B, SIGMA)
    t0 = torch.zeros(7, dtype=torch.float64)
    _, nll, _ = kstep_losses(model, torch.as_tensor(x0), t0, torch.as_tensor(xs), DT)
    # float64 Cholesky against scipy's eigendecomposition: agree to ~1e-14 relative
    assert nll.item() == pytest.approx(exact_kstep_nll(x0, xs, DT), rel=1e-11)
    # control: the k-step law is not the one-step law applied k times to the data
    if k > 1:
        wrong = linear_model(A * 0.5, B, SIGMA)
        _, nll_wrong, _ = kstep_losses(wrong, torch.as_tensor(x0), t0, torch.as_tensor(xs), DT)
        assert abs(nll_wrong.item() - exact_kstep_nll(x0, xs, DT)) > 1e-3


def test_one_step_window_is_the_one_step_objective():
    torch.manual_seed(0)
    model = NeuralSDE(D, hidden=8, depth=2, time_scale=10.0).double()
    x0, x1 = torch.randn(50, D, dtype=torch.float64), torch.randn(50, D, dtype=torch.float64)
    t0 = torch.arange(50, dtype=torch.float64)
    ld, ln, pen = kstep_losses(model, x0, t0, x1[:, None], DT)
    ld1, ln1 = step_losses(model, x0, t0, x1, DT)
    assert torch.equal(ld, ld1)  # the same arithmetic: bit-exact
    assert ln.item() == pytest.approx(ln1.item(), rel=1e-14)  # same terms, other grouping
    assert pen.item() == 0.0


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_closed_form_jacobian_matches_autograd(activation):
    torch.manual_seed(1)
    model = NeuralSDE(D, hidden=6, depth=2, activation=activation, time_scale=5.0).double()
    x = torch.randn(4, D, dtype=torch.float64) * 2
    t = torch.tensor([0.0, 1.0, 2.0, 30.0], dtype=torch.float64)
    mu, jac = drift_jacobian(model, x, t)
    for i in range(4):
        ti = t[i : i + 1]
        ref = torch.autograd.functional.jacobian(lambda z, ti=ti: model.drift(z[None], ti)[0], x[i])
        torch.testing.assert_close(jac[i], ref, rtol=1e-12, atol=1e-12)  # float64 rounding
    torch.testing.assert_close(mu, model.drift(x, t), rtol=0, atol=0)


def test_loss_terms_are_per_dimension_means():
    """A pure-noise linear model: drift residuals N(0, s^2 dt), so the drift term is about
    s^2 dt whatever d is (it would grow like d if summed), and the NLL about
    0.5 log(2 pi e s^2 dt): both per dimension."""
    g = torch.Generator().manual_seed(0)
    for d in (2, 32):
        model = linear_model(np.zeros((d, d)), np.zeros(d), np.full(d, 0.7))
        x0 = torch.randn(20000, d, generator=g, dtype=torch.float64)
        x1 = x0 + 0.7 * math.sqrt(DT) * torch.randn(20000, d, generator=g, dtype=torch.float64)
        ld, ln = step_losses(model, x0, torch.zeros(20000, dtype=torch.float64), x1, DT)
        # 40k+ squared normals: relative sd ~ sqrt(2 / 40000) = 0.7%; 5% is > 7 sd
        assert ld.item() == pytest.approx(0.49 * DT, rel=0.05)
        assert ln.item() == pytest.approx(
            0.5 * math.log(2 * math.pi * math.e * 0.49 * DT), rel=0.02
        )


def test_contraction_penalty_binds_on_an_amplifying_map_and_not_on_a_contracting_one():
    x0 = torch.randn(10, D, dtype=torch.float64)
    t0 = torch.zeros(10, dtype=torch.float64)
    xs = torch.randn(10, 1, D, dtype=torch.float64)
    contracting = linear_model(-0.5 * np.eye(D), B, SIGMA)  # F = 0.75 I
    amplifying = linear_model(0.8 * np.eye(D), B, SIGMA)  # F = 1.4 I
    obj = MultiStepObjective(k=1, contraction=2.0, radius=1.0)
    assert obj.losses(contracting, (x0, t0, xs), DT)[2].item() == 0.0
    # excess (1.4 - 1)^2 = 0.16, weighted by 2
    assert obj.losses(amplifying, (x0, t0, xs), DT)[2].item() == pytest.approx(0.32, rel=1e-12)
    assert MultiStepObjective(k=1).losses(amplifying, (x0, t0, xs), DT)[2].item() == 0.0  # off
    # spectral norm of a known matrix: diag(3, 1) rotated has norm 3
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    f = (rot @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)))[None]
    assert spectral_norm(f).item() == pytest.approx(3.0, rel=1e-12)


def test_penalty_training_pulls_the_one_step_norm_under_the_radius():
    """An MLP drift fitted to amplifying data (x1 = 1.3 x0) has ||F|| ~ 1.3; with a heavy
    contraction penalty (radius 1) training keeps it near 1 instead (control: no penalty)."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(600, 2, generator=g, dtype=torch.float64)
    x1 = 1.3 * x0 + 0.05 * torch.randn(600, 2, generator=g, dtype=torch.float64)
    t0 = torch.zeros(600, dtype=torch.float64)
    data = (x0, t0, x1[:, None])
    norms = {}
    for weight in (0.0, 100.0):
        torch.manual_seed(0)
        model = MultiStepNeuralSDE(2, hidden=16, depth=1, sigma_init=0.1).double()
        fit(
            model, data, data, dt=1.0, epochs=150, batch_size=200, lr=1e-2, patience=None,
            progress=False, objective=MultiStepObjective(1, weight, 1.0),
        )  # fmt: skip
        with torch.no_grad():
            norms[weight] = spectral_norm(one_step_jacobian(model, x0, t0, 1.0)).median().item()
    assert norms[0.0] > 1.2  # the data amplify, and so does the unpenalised fit
    assert norms[100.0] < 1.1  # the penalty binds


def test_windows_never_cross_sequences():
    rows = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    x1 = np.arange(9.0)[:, None]
    x0 = x1 - 0.5
    t0 = np.arange(9.0)
    w0, wt, ws = windows(x0, t0, x1, rows, 2)
    # starts 0, 1 (sequence 0), 3 (sequence 1), 5, 6, 7 (sequence 2)
    np.testing.assert_array_equal(wt, [0, 1, 3, 5, 6, 7])
    np.testing.assert_array_equal(ws[:, :, 0], [[0, 1], [1, 2], [3, 4], [5, 6], [6, 7], [7, 8]])
    assert windows(x0, t0, x1, rows, 4)[0].shape[0] == 1  # only sequence 2 has 4 steps


def test_objectives_agree_through_fit_and_the_model_round_trips(tmp_path):
    torch.manual_seed(0)
    model = MultiStepNeuralSDE(D, hidden=8, depth=1).double()
    x0 = torch.randn(40, D, dtype=torch.float64)
    x1 = 0.9 * x0 + 0.1 * torch.randn(40, D, dtype=torch.float64)
    t0 = torch.zeros(40, dtype=torch.float64)
    one = mean_objective_losses(model, OneStepObjective(), (x0, t0, x1), DT, 1.0, 16)
    multi = mean_objective_losses(model, MultiStepObjective(1), (x0, t0, x1[:, None]), DT, 1.0, 16)
    assert one == pytest.approx(multi, rel=1e-13)
    with pytest.raises(ValueError, match="xs"):
        fit(model, (x0, t0, x1), (x0, t0, x1), dt=DT, objective=MultiStepObjective(2))
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    assert type(loaded) is MultiStepNeuralSDE
    torch.testing.assert_close(loaded.drift(x0, t0), model.drift(x0, t0), rtol=0, atol=0)
