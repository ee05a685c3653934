"""Tests for sde_utils.theory.chain_bounds: activation derivative ranges, parsing an MLP
into its state-Jacobian chain, and the certified bounds of the chain (float64)."""

import numpy as np
import pytest
import torch
from torch import nn
from toy_models import F64

from sde_utils.theory import (
    GELU_DERIVATIVE_MAX,
    SILU_DERIVATIVE_MAX,
    activation_derivative_range,
    chain_lipschitz_bounds,
)
from sde_utils.theory.chain_bounds import parse_chain, spectral_norm

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


# --- parsing a network into its chain -------------------------------------------------------


def test_parse_chain_slices_time_columns_and_multiplies_consecutive_linears():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 4), nn.Dropout(0.1), nn.Tanh(), nn.Linear(4, 6), nn.Linear(6, 3)
    ).double()
    mats, ranges = parse_chain(net, state_dim=3)
    w0 = net[0].weight.detach().numpy()[:, :3]  # the 2 time-feature columns are a shift
    w12 = (net[4].weight @ net[3].weight).detach().numpy()
    assert [m.shape for m in mats] == [(4, 3), (3, 4)] and ranges == [(0.0, 1.0)]
    np.testing.assert_array_equal(mats[0], w0)
    np.testing.assert_allclose(mats[1], w12, rtol=1e-14)  # one float64 matmul, rounding


def test_parse_chain_trailing_activation_appends_the_identity():
    net = nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2)).double()
    mats, ranges = parse_chain(net, state_dim=2, trailing=(0.0, 1.0))
    assert len(mats) == 3 and ranges == [activation_derivative_range(nn.SiLU()), (0.0, 1.0)]
    np.testing.assert_array_equal(mats[2], np.eye(2))


@pytest.mark.parametrize(
    ("net", "state_dim", "reason"),
    [
        (nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)), 3, "inputs < state_dim"),
        (nn.Sequential(nn.Tanh(), nn.Linear(2, 2)), 2, "starts with an activation"),
        (nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.ReLU()), 2, "two consecutive"),
        (nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), 2, "unsupported module LayerNorm"),
        (nn.Sequential(nn.Tanh()), 2, "starts with an activation"),
    ],
)
def test_parse_chain_says_why_a_network_is_not_a_chain(net, state_dim, reason):
    out = parse_chain(net, state_dim)
    assert isinstance(out, str) and reason in out


def test_activation_ranges_and_spectral_norm():
    assert activation_derivative_range(nn.Sigmoid()) == (0.0, 0.25)
    assert activation_derivative_range(nn.LeakyReLU(0.2)) == (0.2, 1.0)
    assert activation_derivative_range(nn.ELU(alpha=2.0)) == (0.0, 2.0)
    assert activation_derivative_range(nn.GELU(approximate="tanh")) is None
    assert activation_derivative_range(nn.Linear(2, 2)) is None
    # diag(3, -4) has singular values 4 and 3; an empty matrix has norm 0 by convention
    assert spectral_norm(np.diag([3.0, -4.0])) == pytest.approx(4.0, rel=1e-15)
    assert spectral_norm(np.zeros((0, 3))) == 0.0


def test_chain_of_one_matrix_is_its_spectral_norm():
    m = np.random.default_rng(3).standard_normal((4, 3))
    bounds = chain_lipschitz_bounds([m], [])
    # no activation: every bound is ||M||_2 (abs_product is || |M| ||_2 >= ||M||_2)
    assert bounds["combined"] == pytest.approx(np.linalg.norm(m, 2), rel=1e-12)
    assert bounds["abs_product"] >= bounds["combined"]
    with pytest.raises(ValueError, match="len\\(ranges\\) = len\\(mats\\) - 1"):
        chain_lipschitz_bounds([m, m.T], [])
