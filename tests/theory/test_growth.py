"""Tests for sde_utils.theory.growth: certified and empirical linear-growth constants
against closed forms (float64)."""

import json

import numpy as np
import pytest
import torch
from toy_models import ToyLinear, ToyNeuralSDE

from sde_utils.theory import growth_ratio, linear_growth, to_jsonable


def test_linear_growth_closed_form_for_isotropic_linear_drift():
    a, s = -0.7, np.array([0.3, 0.4])
    model = ToyLinear(a * np.eye(2), [0.0, 0.0], s)
    radii = [0.0, 0.5, 2.0, 100.0]
    res = linear_growth(model, np.zeros((1, 2)), [0.0, 1.0], radii, n_directions=8)
    # mu = a x, |sigma|^2 = |s|^2: the ratio is (a^2 r^2 + |s|^2) / (1 + r^2) in every direction
    r = np.asarray(radii)
    closed = (a**2 * r**2 + (s**2).sum()) / (1 + r**2)
    np.testing.assert_allclose(res["sup_sphere"], closed, rtol=1e-12)  # float64 rounding
    # certified: |0|^2 + |s|^2 + a^2 (Cauchy–Schwarz form), tight as r -> infinity or 0
    assert res["C_certified"] == pytest.approx((s**2).sum() + a**2, rel=1e-12)
    assert res["C_simple"] == pytest.approx(2 * max((s**2).sum(), a**2), rel=1e-12)
    assert res["C_empirical"] <= res["C_certified"]


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_linear_growth_certified_dominates_empirical(act):
    model = ToyNeuralSDE(3, hidden=16, act=act, seed=2)
    states = np.random.default_rng(1).standard_normal((100, 3))
    res = linear_growth(model, states, [0.0, 1.0, 5.0], np.geomspace(0.1, 1e3, 9), n_directions=256)
    assert res["C_empirical"] <= res["C_certified"] <= res["C_simple"]
    assert res["ratio"] >= 1.0
    json.dumps(to_jsonable(res))  # notebook-ready


def test_linear_growth_empirical_includes_the_origin():
    # constant drift c and sigma s: the ratio (|c|^2 + |s|^2) / (1 + |x|^2) peaks at x = 0,
    # which is neither a data point nor on a sphere of positive radius here
    c, s = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    model = ToyLinear(np.zeros((2, 2)), c, s)
    res = linear_growth(model, np.full((4, 2), 3.0), 0.0, [1.0, 10.0], n_directions=8)
    peak = (c**2).sum() + (s**2).sum()
    assert res["C_empirical"] == pytest.approx(peak, rel=1e-12)  # float64 rounding
    assert res["C_certified"] == pytest.approx(peak, rel=1e-12)  # K_mu = K_sigma = 0: tight
    assert res["sup_data"] < peak


def test_growth_ratio_closed_form_at_own_times():
    A = np.array([[-1.0, 0.5], [0.0, -2.0]])
    b, s = np.array([0.1, 0.2]), np.array([0.3, 0.4])
    model = ToyLinear(A, b, s)
    x = np.random.default_rng(5).normal(size=(6, 2))
    ratio = growth_ratio(model, x, np.arange(6.0))  # one time per state (time-free model)
    mu = x @ A.T + b
    closed = ((mu**2).sum(1) + (s**2).sum()) / (1 + (x**2).sum(1))
    np.testing.assert_allclose(ratio, closed, rtol=1e-12)  # float64 rounding
    assert ratio.dtype == np.float64 and ratio.shape == (6,)
    np.testing.assert_allclose(growth_ratio(model, x, 0.0), closed, rtol=1e-12)  # one time
    # every value is attained, so none exceeds the certified C
    res = linear_growth(model, x, 0.0, [1.0], n_directions=4)
    assert ratio.max() <= res["C_certified"]


def test_bad_growth_arguments_are_named():
    model = ToyLinear(np.eye(2), [0.0, 0.0], [1.0, 1.0])
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"times must be a float or \(3,\), got 2 values"):
        growth_ratio(model, x, [0.0, 1.0])
    with pytest.raises(ValueError, match="n_directions must be an int >= 1, got 0"):
        linear_growth(model, x, 0.0, [1.0], n_directions=0)
    with pytest.raises(ValueError, match="K_mu must be a finite number >= 0"):
        linear_growth(model, x, 0.0, [1.0], K_mu=-1.0)
    with pytest.raises(ValueError, match="radii must be a 1-D array"):
        linear_growth(model, x, 0.0, [-1.0])


def test_linear_growth_with_a_full_diffusion_matrix():
    from toy_models import A_FULL, G_FULL, FullNoiseOU

    res = linear_growth(FullNoiseOU(), np.zeros((1, 2)), [0.0], [0.0, 1.0], n_directions=8)
    # mu(0) = 0 and |G|_F^2 = 0.09 + 0.01 + 0.09 = 0.19; K_mu = ||A||_2 (an A attribute);
    # the diffusion has no structure the bounds recognise (no sigma attribute, no network),
    # so K_sigma and C_certified are None and certified_for names the diffusion
    assert res["f0_sq"][0] == pytest.approx(float((np.asarray(G_FULL) ** 2).sum()), rel=1e-12)
    assert res["K_mu"] == pytest.approx(np.linalg.norm(A_FULL, 2), rel=1e-12)
    assert res["C_certified"] is None and "diffusion" in res["certified_for"]
    ratio = growth_ratio(FullNoiseOU(), np.zeros((1, 2)), 0.0)
    assert ratio[0] == pytest.approx(0.19, rel=1e-12)  # 0.09 + 0.01 + 0.09


class LinearTime(torch.nn.Module):
    """drift = W [x, t / 10] + b (the NeuralSDE contract with a "linear" time encoding and
    no hidden layer), constant sigma: |mu(0, t)| grows with t, largest at the horizon."""

    state_dim, time_encoding, time_scale, n_frequencies = 2, "linear", 10.0, 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.drift_net = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
        self.register_buffer("sigma", torch.tensor([0.3, 0.4], dtype=torch.float64))

    def time_features(self, t):
        return t.reshape(-1, 1) / self.time_scale

    def drift(self, x, t):
        return self.drift_net(torch.cat([x, self.time_features(t).to(x.dtype)], dim=-1))

    def diffusion(self, x, t):
        return self.sigma.expand(x.shape[0], -1)

    def drift_diffusion(self, x, t):
        return self.drift(x, t), self.diffusion(x, t)


def test_linear_growth_is_certified_between_the_grid_times():
    model, horizon = LinearTime(), 50.0
    res = linear_growth(model, np.zeros((1, 2)), [0.0], [1.0], horizon=horizon, n_time_grid=11)
    assert res["certified_for"] == "all t in [0, 50]"
    w = model.drift_net[0].weight.detach().numpy()
    assert res["time_lipschitz_mu"] == pytest.approx(np.linalg.norm(w[:, 2:], 2) / 10.0)
    assert res["time_lipschitz_sigma"] == 0.0
    # f(0, t) is affine in t, so its sup over [0, T] is at t = T: a grid at t = 0 alone
    # misses it, the certificate may not
    true_sup = growth_ratio(model, np.zeros((1, 2)), horizon)[0]
    assert res["f0_sq"][0] < true_sup <= res["f0_sq_sup"]
    assert res["C_certified"] >= true_sup + np.linalg.norm(w[:, :2], 2) ** 2 - 1e-12
    # a model whose time encoding is not recognised is certified on the given times only
    other = linear_growth(ToyNeuralSDE(2, seed=1), np.zeros((1, 2)), [0.0, 1.0], [1.0])
    assert other["certified_for"].startswith("the given times only")
    with pytest.raises(ValueError, match="times must lie in"):
        linear_growth(model, np.zeros((1, 2)), [0.0, 60.0], [1.0], horizon=horizon)
