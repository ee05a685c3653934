"""Tests for sde_utils.theory.lipschitz_upper: certified upper bounds read off a model's
structure (MLP chain, linear drift, zero drift, constant sigma), verified before use."""

import numpy as np
import pytest
import torch
from torch import nn
from toy_models import F64, ToyLinear, ToyNeuralSDE

from sde_utils.models.baselines import RandomWalk
from sde_utils.theory import (
    certified_upper_bound,
    lipschitz_bracket,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
)
from sde_utils.theory._common import as_float64


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


# --- structure detection ----------------------------------------------------------------


def test_mismatched_structure_is_not_certified():
    class Doubled(ToyNeuralSDE):
        def drift(self, x, t):
            return 2.0 * super().drift(x, t)

    up = lipschitz_upper_bound(Doubled(2), "drift")
    assert up["upper"] is None and "differs" in up["reason"]
    assert lipschitz_upper_bound(Doubled(2), "diffusion")["upper"] is not None


def test_random_walk_zero_drift_is_certified():
    model = RandomWalk(3)
    up = lipschitz_upper_bound(model, "drift")
    assert up["upper"] == 0.0 and up["method"] == "zero_drift"
    states = np.random.default_rng(0).normal(size=(50, 3))
    br = lipschitz_bracket(model, states, [0.0, 5.0], progress=False)
    # zero drift and constant sigma: every bound is exactly 0, and so is K
    assert br["K_mu"]["lower"] == br["K_mu"]["upper"] == 0.0
    assert br["K"]["upper"] == 0.0 and br["K"]["ratio"] == 1.0


def test_certified_upper_bound_is_the_core_of_the_checked_entry_point():
    model = ToyNeuralSDE(3, act="silu", seed=4)
    m64 = as_float64(model)
    for which in ("drift", "diffusion"):
        core = certified_upper_bound(m64, which, seed=2)
        public = lipschitz_upper_bound(model, which, seed=2)
        assert core["upper"] == public["upper"] and core["bounds"] == public["bounds"]
        assert core["structure"] == "mlp"


def test_linear_drift_and_constant_sigma_structures():
    A = np.array([[0.0, 2.0], [-1.0, 0.5]])
    model = ToyLinear(A, [0.3, -0.1], [0.2, 0.7])
    up = lipschitz_upper_bound(model, "drift")
    assert up["method"] == "spectral_norm_A" and up["structure"] == "linear"
    assert up["upper"] == pytest.approx(np.linalg.norm(A, 2), rel=1e-12)  # LAPACK SVD rounding
    sig = lipschitz_upper_bound(model, "diffusion")
    assert sig["upper"] == 0.0 and sig["method"] == "constant_sigma"


def test_a_model_without_state_dim_is_not_certified():
    class NoDim(nn.Module):
        def drift(self, x, t):
            return x

    up = lipschitz_upper_bound(NoDim(), "drift")
    assert up["upper"] is None
    assert up["reason"] == "NoDim has no state_dim attribute and no fallback was given"


def test_bad_upper_bound_arguments_are_named():
    model = ToyNeuralSDE(2)
    with pytest.raises(ValueError, match="which='jump'"):
        lipschitz_upper_bound(model, "jump")
    with pytest.raises(TypeError, match="seed must be an int >= 0"):
        lipschitz_upper_bound(model, "drift", seed=1.5)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        lipschitz_upper_bound(model, "drift", seed=-1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lipschitz_upper_bound("not a model", "drift")


def test_a_user_sequential_linear_drift_gets_its_spectral_norm():
    from toy_models import SequentialDrift

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2))  # a linear chain: W2 W1
    model = SequentialDrift(net)
    w = (net[1].weight @ net[0].weight).detach().numpy()
    up = lipschitz_upper_bound(model, "drift")
    assert up["reason"] is None and up["structure"] == "mlp"
    # ||W2 W1||_2 exactly (the chain is multiplied out), up to float64 rounding
    assert up["upper"] == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)
    assert up["time_lipschitz"] == 0.0  # net(x): no time input
    # a single nn.Linear too
    lin = SequentialDrift(nn.Linear(2, 2))
    w1 = lin.net.weight.detach().numpy()
    assert lipschitz_upper_bound(lin, "drift")["upper"] == pytest.approx(np.linalg.norm(w1, 2))
    # with an activation: at most the product of spectral norms (tanh' <= 1)
    deep = SequentialDrift(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)))
    prod = np.linalg.norm(deep.net[0].weight.detach().numpy(), 2) * np.linalg.norm(
        deep.net[2].weight.detach().numpy(), 2
    )
    assert 0 < lipschitz_upper_bound(deep, "drift")["upper"] <= prod * (1 + 1e-12)


def test_an_unsupported_layer_is_named_in_the_reason():
    from toy_models import SequentialDrift

    model = SequentialDrift(nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 2)))
    up = lipschitz_upper_bound(model, "drift")
    assert up["upper"] is None
    assert "no certified bound for SequentialDrift.drift" in up["reason"]
    assert "unsupported module LayerNorm" in up["reason"]
