"""Tests for sde_utils.theory.lipschitz: certified upper bounds, searched lower bounds,
linear growth. Models are built here following the shared contract (no NeuralSDE import)."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from toy_models import ToyLinear

from sde_utils.models.neural import SDEModel
from sde_utils.theory import (
    GELU_DERIVATIVE_MAX,
    SILU_DERIVATIVE_MAX,
    chain_lipschitz_bounds,
    linear_growth,
    lipschitz_bracket,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
    to_jsonable,
)

F64 = torch.float64
ACT = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "softplus": nn.Softplus}


def mlp(n_in, hidden, n_out, depth, act):
    layers = [nn.Linear(n_in, hidden), ACT[act]()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), ACT[act]()]
    return nn.Sequential(*layers, nn.Linear(hidden, n_out))


class ToyNeuralSDE(SDEModel):
    """The NeuralSDE contract: drift_net / diffusion_net on [x, time features]."""

    def __init__(self, d, hidden=16, depth=2, act="tanh", sigma_floor=1e-3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.state_dim, self.n_time_features, self.sigma_floor = d, 2, sigma_floor
        self.drift_net = mlp(d + 2, hidden, d, depth, act)
        self.diffusion_net = mlp(d + 2, hidden, d, depth, act)
        self.double()

    def time_features(self, t):
        t = t.reshape(-1, 1)
        return torch.cat([t / 10.0, torch.sin(t)], dim=-1)

    def _z(self, x, t):
        return torch.cat([x, self.time_features(t).to(x.dtype)], dim=-1)

    def drift(self, x, t):
        return self.drift_net(self._z(x, t))

    def diffusion(self, x, t):
        return nn.functional.softplus(self.diffusion_net(self._z(x, t))) + self.sigma_floor


class SineModel(SDEModel):
    """No recognised structure: mu = sin(x), sigma = 0.5 + 0.1 tanh(x)."""

    state_dim = 2

    def drift(self, x, t):
        return torch.sin(x)

    def diffusion(self, x, t):
        return 0.5 + 0.1 * torch.tanh(x)


def _random_A(d, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, d)) - 2.0 * np.eye(d)


# --- activation constants ---------------------------------------------------------------


def test_silu_and_gelu_constants_match_a_dense_grid():
    x = torch.linspace(-10, 10, 2_000_001, dtype=F64, requires_grad=True)
    for fn, const in ((nn.functional.silu, SILU_DERIVATIVE_MAX), (nn.functional.gelu, None)):
        (g,) = torch.autograd.grad(fn(x).sum(), x)
        c = GELU_DERIVATIVE_MAX if const is None else const
        # grid step 1e-5 at a smooth maximum: the grid max is below the true max by
        # O(h^2) ~ 1e-10, so 1e-9 is the resolution of this check
        assert abs(float(g.max()) - c) < 1e-9
        assert abs(float(g.min()) - (1.0 - c)) < 1e-9  # f'(x) + f'(-x) = 1
    assert 1.0998 < SILU_DERIVATIVE_MAX < 1.0999


# --- the chain bounds are certified -----------------------------------------------------


@pytest.mark.parametrize("rng_kind", [(0.0, 1.0), (1.0 - SILU_DERIVATIVE_MAX, SILU_DERIVATIVE_MAX)])
def test_chain_bounds_dominate_every_sampled_activation_pattern(rng_kind):
    rng = np.random.default_rng(1)
    a, b = rng_kind
    mats = [
        rng.standard_normal((12, 3)),
        rng.standard_normal((12, 12)),
        rng.standard_normal((3, 12)),
    ]
    bounds = chain_lipschitz_bounds(mats, [(a, b), (a, b)])
    worst = 0.0
    for _ in range(4000):
        # random diagonals, half of them at the vertices of [a, b] where norms peak
        d1, d2 = (rng.uniform(a, b, 12) for _ in range(2))
        if rng.random() < 0.5:
            d1, d2 = (np.where(rng.random(12) < 0.5, a, b) for _ in range(2))
        worst = max(
            worst, np.linalg.norm(mats[2] @ np.diag(d2) @ mats[1] @ np.diag(d1) @ mats[0], 2)
        )
    for name in ("naive", "abs_product", "midpoint", "combined"):
        assert bounds[name] >= worst  # a certified bound is above every realisable Jacobian
    assert bounds["combined"] <= min(bounds["naive"], bounds["abs_product"], bounds["midpoint"])
    lmax = max(abs(a), abs(b))
    naive = np.prod([np.linalg.norm(m, 2) for m in mats]) * lmax**2
    assert bounds["naive"] == pytest.approx(naive, rel=1e-12)  # same arithmetic, rounding only


# --- linear maps: both bounds equal the spectral norm ------------------------------------


@pytest.mark.parametrize("method", ["exact", "power"])
def test_linear_model_bounds_equal_spectral_norm(method):
    A = _random_A(4, seed=0)
    model = ToyLinear(A, [0.1, -0.2, 0.3, 0.0], [0.5, 0.4, 0.3, 0.2])
    states = np.random.default_rng(0).standard_normal((20, 4))
    br = lipschitz_bracket(
        model, states, [0.0, 3.0], method=method, n_power_iter=2000, progress=False
    )
    norm = np.linalg.norm(A, 2)
    # the upper bound is an SVD of A (rounding); the lower one a converged power iteration
    # (or SVD of the autograd Jacobian): 1e-6 relative is the requested agreement
    assert br["K_mu"]["upper"] == pytest.approx(norm, rel=1e-12)
    assert br["K_mu"]["lower"] == pytest.approx(norm, rel=1e-6)
    assert br["K_mu"]["lower"] <= br["K_mu"]["upper"] * (1 + 1e-12)
    assert br["K_mu"]["upper_method"] == "spectral_norm_A"
    assert br["K_sigma"]["upper"] == 0.0 and br["K_sigma"]["lower"] == 0.0  # constant sigma
    assert br["K"]["upper"] == pytest.approx(norm, rel=1e-12)


def test_activation_free_net_slices_out_the_time_columns():
    """drift_net = Linear, Linear: the Lipschitz constant in x is ||W2 W1[:, :d]|| exactly;
    huge time-column weights would break a bound that forgot to slice them out."""
    model = ToyNeuralSDE(3, hidden=8)
    model.drift_net = nn.Sequential(nn.Linear(5, 8), nn.Linear(8, 3)).double()
    with torch.no_grad():
        model.drift_net[0].weight[:, 3:] = 100.0
    w = (model.drift_net[1].weight @ model.drift_net[0].weight[:, :3]).detach().numpy()
    up = lipschitz_upper_bound(model, "drift")
    low = lipschitz_lower_bound(model, np.zeros((2, 3)), [0.0, 7.0], "drift", progress=False)
    assert up["upper"] == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)  # same SVD, rounding
    assert low["lower"] == pytest.approx(np.linalg.norm(w, 2), rel=1e-10)  # exact Jacobian SVD


# --- nets: the bracket contains a brute-force estimate ------------------------------------


def _abs_derivative_max(model, which, x, t):
    x = torch.as_tensor(x, dtype=F64)[:, None].requires_grad_(True)
    f = getattr(model, which)(x, torch.full((x.shape[0],), t, dtype=F64))
    (g,) = torch.autograd.grad(f.sum(), x)
    return float(g.abs().max())


@pytest.mark.parametrize("act", ["tanh", "silu", "relu"])
def test_bracket_contains_dense_grid_lipschitz_in_one_dimension(act):
    model = ToyNeuralSDE(1, hidden=12, act=act, seed=3)
    states = np.linspace(-5, 5, 41)[:, None]
    br = lipschitz_bracket(model, states, [0.0, 2.0], progress=False)
    # brute force: in 1-D the Lipschitz constant is sup |f'(x)|. f' varies on the scale
    # of the weights near 0 and only on the scale of |x| far out, where it tends to its
    # asymptote (the sup can sit at infinity, e.g. softplus(net) -> linear): a 2e-4 grid
    # on [-50, 50], geometric grids (ratio 1.0002) out to 1e5, and a 1e-7 grid within
    # 1e-3 of the search's maximiser (a maximum at a ReLU kink is missed by O(h) on a
    # coarse grid)
    far = np.geomspace(50, 1e5, 40_000)
    grid = np.concatenate([-far[::-1], np.linspace(-50, 50, 500_001), far])
    for key, which in (("K_mu", "drift"), ("K_sigma", "diffusion")):
        e = br[key]
        fine = e["argmax_state"][0] + np.linspace(-1e-3, 1e-3, 20_001)
        true = max(_abs_derivative_max(model, which, grid, t) for t in (0.0, 2.0))
        true = max(true, _abs_derivative_max(model, which, fine, e["argmax_time"]))
        assert e["lower"] <= true * (1 + 1e-9)  # a lower bound (1e-9: rounding)
        assert e["upper"] >= true  # certified
        if act != "relu":
            # smooth nets: the ascent climbs to the maximiser, so the search finds most of
            # the true constant. A ReLU net's Jacobian is piecewise constant (no gradient
            # to climb) and its drift maximum here sits in a piece 0.018 wide, between states
            assert e["lower"] >= 0.9 * true
    assert br["K_min_lower"] <= br["K"]["upper"]


def test_bracket_contains_random_pair_ratios_for_relu_net():
    model = ToyNeuralSDE(2, hidden=16, act="relu", seed=5)
    rng = np.random.default_rng(2)
    states = 2.0 * rng.standard_normal((300, 2))
    br = lipschitz_bracket(model, states, [0.0, 1.0], progress=False)
    # brute force: max |f(x1) - f(x2)| / |x1 - x2| over many random pairs (close and far)
    x1 = torch.as_tensor(2.0 * rng.standard_normal((200_000, 2)))
    x2 = x1 + torch.as_tensor(rng.standard_normal((200_000, 2))) * torch.as_tensor(
        10.0 ** rng.uniform(-4, 0.5, (200_000, 1))
    )
    for key, which in (("K_mu", "drift"), ("K_sigma", "diffusion")):
        brute = 0.0
        for t in (0.0, 1.0):
            tt = torch.full((x1.shape[0],), t, dtype=F64)
            with torch.no_grad():
                f = getattr(model, which)
                r = (f(x1, tt) - f(x2, tt)).norm(dim=1) / (x1 - x2).norm(dim=1)
            brute = max(brute, float(r.max()))
        assert brute <= br[key]["upper"]  # certified upper bound
        assert br[key]["lower"] <= br[key]["upper"]
        # both are lower estimates of the true constant. A ReLU Jacobian is piecewise
        # constant, so the ascent cannot move between linear regions and the search can
        # miss a small region that one of the 200k pairs crosses: we ask for 10%
        assert br[key]["lower"] >= 0.9 * brute


def test_deep_net_bound_is_certified_and_splits_long_chains():
    model = ToyNeuralSDE(2, hidden=8, depth=4, act="silu", seed=7)
    up = {w: lipschitz_upper_bound(model, w) for w in ("drift", "diffusion")}
    # drift: 4 activations (expanded whole); diffusion: 5 with the output softplus, more
    # than max_expand = 4, so only sub-chains are expanded
    assert up["drift"]["bounds"]["midpoint"] is not None
    assert up["diffusion"]["bounds"]["midpoint"] is None
    rng = np.random.default_rng(6)
    x1 = torch.as_tensor(3.0 * rng.standard_normal((100_000, 2)))
    x2 = x1 + torch.as_tensor(0.3 * rng.standard_normal((100_000, 2)))
    tt = torch.full((100_000,), 1.0, dtype=F64)
    for which, u in up.items():
        assert u["upper"] <= u["bounds"]["naive"]
        with torch.no_grad():
            f = getattr(model, which)
            brute = float(((f(x1, tt) - f(x2, tt)).norm(dim=1) / (x1 - x2).norm(dim=1)).max())
        assert brute <= u["upper"]  # certified


def test_power_and_exact_methods_agree_on_a_net():
    model = ToyNeuralSDE(3, hidden=16, act="softplus", seed=1)
    states = np.random.default_rng(4).standard_normal((50, 3))
    kw = dict(n_ascent=0, progress=False, n_power_iter=3000, tol=1e-14)
    a = lipschitz_lower_bound(model, states, [0.0, 1.0], "drift", method="exact", **kw)
    b = lipschitz_lower_bound(model, states, [0.0, 1.0], "drift", method="power", **kw)
    # power iteration converged to 1e-14 per step; rounding in the SVD ~1e-15
    np.testing.assert_allclose(a["lower_by_time"], b["lower_by_time"], rtol=1e-8)


# --- structure detection ----------------------------------------------------------------


def test_unknown_structure_gives_lower_bound_only():
    states = np.random.default_rng(0).uniform(-3, 3, (200, 2))
    br = lipschitz_bracket(SineModel(), states, 0.0, progress=False)
    assert br["K_mu"]["upper"] is None and "lower bound only" in br["K_mu"]["upper_reason"]
    assert br["K_mu"]["ratio"] is None and br["K"]["upper"] is None
    # J = diag(cos x): sup ||J|| = 1 at x = 0, found by the ascent (1e-6: Newton-free ascent)
    assert br["K_mu"]["lower"] == pytest.approx(1.0, abs=1e-6)
    assert br["K_mu"]["lower"] <= 1.0 + 1e-12
    # J = diag(0.1 (1 - tanh^2 x)): sup 0.1 at x = 0
    assert br["K_sigma"]["lower"] == pytest.approx(0.1, abs=1e-6)


def test_mismatched_structure_is_not_certified():
    class Doubled(ToyNeuralSDE):
        def drift(self, x, t):
            return 2.0 * super().drift(x, t)

    up = lipschitz_upper_bound(Doubled(2), "drift")
    assert up["upper"] is None and "differs" in up["reason"]
    assert lipschitz_upper_bound(Doubled(2), "diffusion")["upper"] is not None


def test_bad_arguments_are_named():
    model = ToyNeuralSDE(2)
    with pytest.raises(ValueError, match="which='jump'"):
        lipschitz_upper_bound(model, "jump")
    with pytest.raises(ValueError, match="dimension 3 but the model's state_dim is 2"):
        lipschitz_lower_bound(model, np.zeros((4, 3)), 0.0, progress=False)
    with pytest.raises(TypeError, match="unknown option"):
        lipschitz_bracket(model, np.zeros((4, 2)), 0.0, n_iters=3)


# --- linear growth ----------------------------------------------------------------------


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


def test_bracket_is_json_ready_and_certified_for_all_activations():
    states = np.random.default_rng(3).standard_normal((64, 3))
    for act in ACT:
        br = lipschitz_bracket(ToyNeuralSDE(3, act=act), states, [0.0, 2.0], progress=False)
        for key in ("K_mu", "K_sigma", "K"):
            assert 0 < br[key]["lower"] <= br[key]["upper"]  # lower bounds never cross
        text = json.dumps(to_jsonable(br))
        assert json.loads(text)["K_mu"]["upper_method"] == "combined"
        assert math.isfinite(json.loads(text)["K"]["ratio"])


def test_random_walk_zero_drift_is_certified():
    from sde_utils.models.baselines import RandomWalk

    model = RandomWalk(3)
    up = lipschitz_upper_bound(model, "drift")
    assert up["upper"] == 0.0 and up["method"] == "zero_drift"
    states = np.random.default_rng(0).normal(size=(50, 3))
    br = lipschitz_bracket(model, states, [0.0, 5.0], progress=False)
    # zero drift and constant sigma: every bound is exactly 0, and so is K
    assert br["K_mu"]["lower"] == br["K_mu"]["upper"] == 0.0
    assert br["K"]["upper"] == 0.0 and br["K"]["ratio"] == 1.0


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
