"""Tests for sde_utils.theory.lipschitz_lower: searched lower bounds and the bracket of
K_mu, K_sigma and K, against closed forms (a linear map's constant is its spectral norm)
and brute force (dense grids, random pairs)."""

import json
import math

import numpy as np
import pytest
import torch
from toy_models import ACT, F64, SineModel, ToyLinear, ToyNeuralSDE

from sde_utils.theory import (
    lipschitz_bracket,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
    to_jsonable,
)


def _random_A(d, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, d)) - 2.0 * np.eye(d)


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


def test_power_and_exact_methods_agree_on_a_net():
    model = ToyNeuralSDE(3, hidden=16, act="softplus", seed=1)
    states = np.random.default_rng(4).standard_normal((50, 3))
    kw = dict(n_ascent=0, progress=False, n_power_iter=3000, tol=1e-14)
    a = lipschitz_lower_bound(model, states, [0.0, 1.0], "drift", method="exact", **kw)
    b = lipschitz_lower_bound(model, states, [0.0, 1.0], "drift", method="power", **kw)
    # power iteration converged to 1e-14 per step; rounding in the SVD ~1e-15
    np.testing.assert_allclose(a["lower_by_time"], b["lower_by_time"], rtol=1e-8)


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


def test_bracket_is_json_ready_and_certified_for_all_activations():
    states = np.random.default_rng(3).standard_normal((64, 3))
    for act in ACT:
        br = lipschitz_bracket(ToyNeuralSDE(3, act=act), states, [0.0, 2.0], progress=False)
        for key in ("K_mu", "K_sigma", "K"):
            assert 0 < br[key]["lower"] <= br[key]["upper"]  # lower bounds never cross
        text = json.dumps(to_jsonable(br))
        assert json.loads(text)["K_mu"]["upper_method"] == "combined"
        assert math.isfinite(json.loads(text)["K"]["ratio"])


def test_bad_arguments_are_named():
    model = ToyNeuralSDE(2)
    with pytest.raises(ValueError, match="which='jump'"):
        lipschitz_upper_bound(model, "jump")
    with pytest.raises(ValueError, match="dimension 3 but the model's state_dim is 2"):
        lipschitz_lower_bound(model, np.zeros((4, 3)), 0.0, progress=False)
    with pytest.raises(TypeError, match="unknown option"):
        lipschitz_bracket(model, np.zeros((4, 2)), 0.0, n_iters=3)


def test_lower_bound_options_are_checked_with_the_shared_checks():
    model = ToyNeuralSDE(2)
    x = np.zeros((4, 2))
    with pytest.raises(TypeError, match="n_power_iter must be an int >= 1, got 2.5"):
        lipschitz_lower_bound(model, x, 0.0, n_power_iter=2.5, progress=False)
    with pytest.raises(ValueError, match="top_k must be an int >= 1, got 0"):
        lipschitz_lower_bound(model, x, 0.0, top_k=0, progress=False)
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        lipschitz_bracket(model, x, 0.0, explore_radii=(1.0, -2.0), progress=False)
    with pytest.raises(TypeError, match="progress must be True or False"):
        lipschitz_lower_bound(model, x, 0.0, progress=1)
    with pytest.raises(ValueError, match="method='svd' is not allowed"):
        lipschitz_lower_bound(model, x, 0.0, method="svd", progress=False)


def test_a_full_diffusion_matrix_is_rejected_by_the_search_and_the_drift_still_works():
    from toy_models import A_FULL, FullNoiseOU

    x = np.random.default_rng(2).normal(size=(6, 2))
    with pytest.raises(ValueError, match=r"lipschitz_lower_bound \(which='diffusion'\) needs a"):
        lipschitz_bracket(FullNoiseOU(), x, [0.0], progress=False, n_explore=4)
    low = lipschitz_lower_bound(FullNoiseOU(), x, [0.0], "drift", progress=False, n_explore=4)
    assert low["lower"] == pytest.approx(np.linalg.norm(A_FULL, 2), rel=1e-9)  # J = A
