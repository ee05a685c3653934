"""Tests of sde_utils.models.neural: the NeuralSDE contract, initialisation, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torchsde
from torch import nn
from torch.nn import functional as F

from sde_utils.models.neural import ACTIVATIONS, NeuralSDE, TimeFeatures, inverse_softplus

D = 3


def _x_t(n: int = 64, d: int = D, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64) * 0.5
    return x, t


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_sequential_structure(depth, activation):
    m = NeuralSDE(D, hidden=7, depth=depth, activation=activation, time_encoding="sinusoidal")
    assert m.state_dim == D and m.activation == activation
    assert m.n_time_features == 2 * 4
    for net in (m.drift_net, m.diffusion_net):
        assert isinstance(net, nn.Sequential)
        assert len(net) == 2 * depth + 1
        for i, layer in enumerate(net):
            expected = nn.Linear if i % 2 == 0 else ACTIVATIONS[activation]
            assert type(layer) is expected
        assert net[0].in_features == D + m.n_time_features
        assert net[-1].out_features == D
        assert all(net[i].out_features == 7 for i in range(0, 2 * depth, 2))


@pytest.mark.parametrize(
    ("encoding", "n_features"), [("none", 0), ("linear", 1), ("sinusoidal", 2 * 5)]
)
def test_time_features(encoding, n_features):
    m = NeuralSDE(D, hidden=4, time_encoding=encoding, n_frequencies=5, time_scale=10.0).double()
    t = torch.tensor([0.0, 1.0, 7.5], dtype=torch.float64)
    feats = m.time_features(t)
    assert m.n_time_features == n_features and feats.shape == (3, n_features)
    u = t / 10.0
    if encoding == "linear":
        torch.testing.assert_close(feats[:, 0], u, rtol=0, atol=0)
    if encoding == "sinusoidal":
        w = torch.tensor([10_000.0 ** (-j / 5) for j in range(5)], dtype=torch.float64)
        expected = torch.cat([torch.sin(u[:, None] * w), torch.cos(u[:, None] * w)], 1)
        torch.testing.assert_close(feats, expected, rtol=1e-15, atol=1e-15)  # same formula


def test_drift_and_diffusion_follow_the_contract():
    """drift = drift_net([x, tf]); diffusion = softplus(diffusion_net([x, tf])) + floor,
    with the state in the first state_dim columns of the first Linear."""
    m = NeuralSDE(D, hidden=5, depth=2, time_encoding="linear", sigma_floor=0.05).double()
    x, t = _x_t()
    # manual first layer with the weight split into state columns and time columns
    w, b = m.drift_net[0].weight, m.drift_net[0].bias
    h = x @ w[:, :D].T + m.time_features(t) @ w[:, D:].T + b
    manual = m.drift_net[1:](h)
    torch.testing.assert_close(m.drift(x, t), manual, rtol=1e-13, atol=1e-13)  # rounding only
    z = torch.cat([x, m.time_features(t)], -1)
    sig = m.diffusion(x, t)
    torch.testing.assert_close(sig, F.softplus(m.diffusion_net(z)) + 0.05, rtol=0, atol=0)
    assert bool((sig >= 0.05).all())
    mu2, sig2 = m.drift_diffusion(x, t)
    assert torch.equal(mu2, m.drift(x, t)) and torch.equal(sig2, sig)
    # zeroing the time columns makes the drift independent of t
    with torch.no_grad():
        m.drift_net[0].weight[:, D:] = 0
    assert torch.equal(m.drift(x, t), m.drift(x, t + 100.0))


def test_initialisation_small_drift_and_sigma_near_init():
    torch.manual_seed(0)
    m = NeuralSDE(8, hidden=128, depth=2, sigma_init=0.7).double()
    x, t = _x_t(512, 8)
    with torch.no_grad():
        mu, sig = m.drift(x, t), m.diffusion(x, t)
        ref = nn.Linear(128, 8).double()  # a default-initialised output layer for scale
        h = m.drift_net[:-1](torch.cat([x, m.time_features(t)], -1))
        default_scale = ref(h).abs().max()
    # the output layer is PyTorch's default times 1e-2 with zero bias, so |drift| is about
    # 1e-2 of a default layer's output on the same hidden units (factor 3 for the random
    # draw of the two layers' weights)
    assert mu.abs().max() < 3e-2 * default_scale
    # sigma = softplus(bias + 1e-2-scaled output) + floor; softplus' <= 1, so
    # |sigma - 0.7| <= that output, bounded as above
    assert (sig - 0.7).abs().max() < 3e-2 * default_scale
    assert m.diffusion_net[-1].bias[0].item() == pytest.approx(inverse_softplus(0.7 - 1e-3))


def test_inverse_softplus():
    for y in (1e-6, 0.3, 1.0, 50.0):
        assert F.softplus(torch.tensor(inverse_softplus(y), dtype=torch.float64)).item() == (
            pytest.approx(y, rel=1e-12)  # exact formula; rounding only
        )
    with pytest.raises(ValueError, match="y > 0"):
        inverse_softplus(0.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"state_dim": 0}, ValueError, r"state_dim must be an int >= 1, got 0"),
        ({"hidden": 0}, ValueError, r"hidden \(width\) must be an int >= 1, got 0"),
        ({"hidden": 2.5}, TypeError, r"hidden \(width\) must be an int"),
        ({"depth": 0}, ValueError, r"depth must be an int >= 1, got 0"),
        ({"activation": "gelu"}, ValueError, r"activation='gelu' is not allowed; choose one of"),
        ({"time_encoding": "fourier"}, ValueError, r"time_encoding='fourier' is not allowed"),
        ({"n_frequencies": 0}, ValueError, r"n_frequencies must be an int >= 1, got 0"),
        ({"sigma_floor": -1.0}, ValueError, r"sigma_floor must be a finite number >= 0"),
        ({"sigma_init": 1e-4}, ValueError, r"sigma_init must be > sigma_floor=0.001"),
        ({"time_scale": 0.0}, ValueError, r"time_scale must be a finite number > 0"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    args = {"state_dim": D, **kwargs}
    with pytest.raises(error, match=match):
        NeuralSDE(**args)


def test_config_rebuilds_the_model():
    m = NeuralSDE(
        D,
        hidden=6,
        depth=3,
        activation="tanh",
        time_encoding="sinusoidal",
        n_frequencies=2,
        sigma_floor=0.01,
        sigma_init=0.5,
        time_scale=4.0,
    )
    m2 = NeuralSDE(**m.config())
    assert m2.config() == m.config()
    m2.load_state_dict(m.state_dict())
    x, t = _x_t()
    x, t = x.float(), t.float()
    assert torch.equal(m.drift(x, t), m2.drift(x, t))
    assert torch.equal(m.diffusion(x, t), m2.diffusion(x, t))


def test_torchsde_interface():
    """f/g with a scalar time equal drift/diffusion at that time; sdeint accepts the model."""
    m = NeuralSDE(D, hidden=8).double()
    x, _ = _x_t(16)
    s = torch.tensor(2.0, dtype=torch.float64)
    assert torch.equal(m.f(s, x), m.drift(x, torch.full((16,), 2.0, dtype=torch.float64)))
    assert torch.equal(m.g(s, x), m.diffusion(x, torch.full((16,), 2.0, dtype=torch.float64)))
    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        ys = torchsde.sdeint(m, x, ts, dt=1.0, method="euler")
    assert ys.shape == (3, 16, D) and bool(torch.isfinite(ys).all())


def test_time_features_module_validates():
    with pytest.raises(ValueError, match="time_encoding='x' is not allowed"):
        TimeFeatures("x")
    assert TimeFeatures("none")(torch.zeros(4)).shape == (4, 0)
    assert math.isclose(float(TimeFeatures("linear", time_scale=2.0)(torch.ones(1))[0, 0]), 0.5)
