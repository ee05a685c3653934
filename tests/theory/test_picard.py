"""Tests for sde_utils.theory.picard: exact convergence to Euler–Maruyama on the grid and
the pathwise factorial bounds. Models are built here following the shared contract."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from toy_models import ToyLinear

from sde_utils.models.base import SDEModel
from sde_utils.theory import (
    elementary_symmetric_log,
    euler_maruyama_path,
    lipschitz_upper_bound,
    picard_convergence,
    picard_iterates,
    to_jsonable,
)

F64 = torch.float64


class ToyNeuralSDE(SDEModel):
    """The NeuralSDE contract: drift_net / diffusion_net on [x, t / 10]."""

    def __init__(self, d, hidden=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.state_dim, self.n_time_features, self.sigma_floor = d, 1, 1e-3

        def net():
            return nn.Sequential(
                nn.Linear(d + 1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                nn.Linear(hidden, d),
            )  # fmt: skip

        self.drift_net, self.diffusion_net = net(), net()
        with torch.no_grad():
            self.diffusion_net[-1].weight.mul_(3.0)  # clearly state-dependent noise
        self.double()

    def time_features(self, t):
        return t.reshape(-1, 1) / 10.0

    def _z(self, x, t):
        return torch.cat([x, self.time_features(t).to(x.dtype)], dim=-1)

    def drift(self, x, t):
        return self.drift_net(self._z(x, t))

    def diffusion(self, x, t):
        return nn.functional.softplus(self.diffusion_net(self._z(x, t))) + self.sigma_floor


class SineModel(SDEModel):
    state_dim = 2

    def drift(self, x, t):
        return torch.sin(x)

    def diffusion(self, x, t):
        return 0.5 + 0.1 * torch.tanh(x)


A = np.array([[-0.6, 0.8], [-0.3, -0.4]])
B = np.array([0.2, -0.1])
SIGMA = np.array([0.5, 0.3])


def increments(n, d, dt, seed):
    return np.random.default_rng(seed).standard_normal((n, d)) * np.sqrt(dt)


def test_elementary_symmetric_polynomials_match_brute_force():
    w = np.random.default_rng(0).uniform(0, 2, 9)
    le = elementary_symmetric_log(w, 11)
    for m in range(12):
        brute = sum(math.prod(c) for c in itertools.combinations(w, m))
        if m <= 9:
            assert math.exp(le[m]) == pytest.approx(brute, rel=1e-12)  # log-space rounding
        else:
            assert le[m] == -np.inf and brute == 0  # e_m = 0 for m > n
    # constant weights give the binomial form C(n, m) w^m, and no overflow in log space
    le_big = elementary_symmetric_log(np.full(2000, 3.0), 1000)
    assert le_big[1000] == pytest.approx(
        math.lgamma(2001) - math.lgamma(1001) - math.lgamma(1001) + 1000 * math.log(3.0),
        rel=1e-12,
    )


def test_picard_on_a_linear_sde_reaches_the_euler_maruyama_path():
    model, n, dt = ToyLinear(A, B, SIGMA), 30, 0.1
    dw = increments(n, 2, dt, seed=1)
    x0 = np.array([1.5, -1.0])
    its = picard_iterates(model, x0, dw, dt, t0=0.0, n_iter=n)
    em = euler_maruyama_path(model, x0, dw, dt)
    # hand-written Euler–Maruyama, the closed form of the fixed point
    y = [x0]
    for j in range(n):
        y.append(y[-1] + (A @ y[-1] + B) * dt + SIGMA * dw[j])
    np.testing.assert_allclose(em, np.array(y), rtol=1e-13, atol=1e-13)  # same arithmetic
    assert len(its) == n + 1 and its[0].shape == (n + 1, 2)
    np.testing.assert_allclose(its[0], np.tile(x0, (n + 1, 1)))
    for m in (1, 5, 17, n):
        # X^(m)_k = Y_k for k <= m (Volterra structure); cumsum vs sequential sums: 1e-12
        np.testing.assert_allclose(its[m][: m + 1], em[: m + 1], rtol=1e-12, atol=1e-12)
    assert np.abs(its[5][6:] - em[6:]).max() > 1e-6  # and not before


def test_linear_picard_respects_the_binomial_and_factorial_bounds():
    model, n, dt = ToyLinear(A, B, SIGMA), 40, 0.1
    res = picard_convergence(model, [2.0, 1.0], increments(n, 2, dt, seed=2), dt)
    k = np.linalg.norm(A, 2)
    assert res["K_mu"] == pytest.approx(k, rel=1e-12) and res["K_sigma"] == 0.0
    m = np.arange(n + 1)
    binom = np.array([math.comb(n, i) for i in m]) * (k * dt) ** m
    np.testing.assert_allclose(res["bound_diff"], res["sup_diff"][0] * binom, rtol=1e-10)
    assert np.all(res["sup_diff"] <= res["bound_diff"] * (1 + 1e-12) + 1e-14)  # the theorem
    assert np.all(res["dist_to_em"] <= res["bound_dist"] * (1 + 1e-12) + 1e-12)
    assert np.all(res["bound_diff"] <= res["bound_diff_factorial"] * (1 + 1e-12))  # Maclaurin
    np.testing.assert_allclose(res["weights_sum"], k * n * dt, rtol=1e-12)  # = K T
    # factorial convergence: consecutive ratios fall like K T / m, and the grid map is
    # exact after n iterations
    d = res["sup_diff"]
    ratios = d[1:10] / d[:9]
    assert ratios[-1] < 0.35 * ratios[0]
    assert d[n] == 0.0 and res["dist_to_em"][n] < 1e-12


def test_neural_picard_with_state_dependent_noise_respects_the_pathwise_bound():
    model, n, dt = ToyNeuralSDE(2, seed=3), 25, 0.2
    dw = increments(n, 2, dt, seed=4)
    res = picard_convergence(model, [0.5, -0.5], dw, dt, t0=1.0)
    up_mu = lipschitz_upper_bound(model, "drift")["upper"]
    up_sg = lipschitz_upper_bound(model, "diffusion")["upper"]
    assert res["K_mu"] == up_mu and res["K_sigma"] == up_sg > 0  # the certified constants
    w = up_mu * dt + up_sg * np.abs(dw).max(axis=1)
    assert res["weights_sum"] == pytest.approx(w.sum(), rel=1e-12)
    assert np.all(res["sup_diff"] <= res["bound_diff"] * (1 + 1e-12) + 1e-14)
    assert np.all(res["dist_to_em"] <= res["bound_dist"] * (1 + 1e-12) + 1e-12)
    np.testing.assert_allclose(res["em_path"], euler_maruyama_path(model, [0.5, -0.5], dw, dt, 1.0))
    assert res["dist_to_em"][n] < 1e-12  # converged to EM (rounding only)
    assert res["dist_to_em"][0] > 0.1  # from a genuinely different start
    json.dumps(to_jsonable(res))


def test_uncertified_model_needs_explicit_constants():
    dw = increments(10, 2, 0.1, seed=5)
    with pytest.raises(ValueError, match="no certified K_mu"):
        picard_convergence(SineModel(), [0.1, 0.2], dw, 0.1)
    # sin and 0.1 tanh are 1- and 0.1-Lipschitz coordinatewise, so in the Euclidean norm
    res = picard_convergence(SineModel(), [0.1, 0.2], dw, 0.1, K_mu=1.0, K_sigma=0.1)
    assert np.all(res["sup_diff"] <= res["bound_diff"] * (1 + 1e-12) + 1e-14)


def test_bad_arguments_are_named():
    model = ToyLinear(A, B, SIGMA)
    with pytest.raises(ValueError, match="brownian_increments must be"):
        picard_iterates(model, [0.0, 0.0], np.zeros((5, 3)), 0.1)
    with pytest.raises(ValueError, match="x0 must be one state"):
        picard_iterates(model, np.zeros((2, 2)), np.zeros((5, 2)), 0.1)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        euler_maruyama_path(model, [0.0, 0.0], np.zeros((5, 2)), -0.1)


def test_a_full_diffusion_matrix_is_rejected_with_a_clear_error():
    from toy_models import FullNoiseOU

    dw = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"euler_maruyama_path needs a diagonal diffusion"):
        euler_maruyama_path(FullNoiseOU(), np.zeros(2), dw, 0.1)
    with pytest.raises(ValueError, match=r"returned \(3, 2, 2\), a full diffusion matrix"):
        picard_iterates(FullNoiseOU(), np.zeros(2), dw, 0.1, 1)
