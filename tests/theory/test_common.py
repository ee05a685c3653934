"""Tests for sde_utils.theory._common and the float64 evaluation the theory checks use
(:func:`sde_utils.models.base.drift_diffusion_at` on an ``as_float64`` copy)."""

import numpy as np
import pytest
import torch
from toy_models import ToyLinear, ToyNeuralSDE

from sde_utils.models.base import drift_diffusion_at, drift_diffusion_tensors
from sde_utils.models.baselines import LinearSDE
from sde_utils.theory._common import as_float64, as_states, as_times, safe_ratio, state_dim_of

A2 = np.array([[-1.0, 0.3], [-0.2, -0.7]])
B2 = np.array([0.5, -1.0])
S2 = np.array([0.6, 0.4])


def linear_model(A=A2, b=B2, sigma=S2):
    model = LinearSDE(len(b)).double()
    model.A.copy_(torch.as_tensor(A))
    model.b.copy_(torch.as_tensor(b))
    model.sigma_diag.copy_(torch.as_tensor(sigma))
    return model


def test_drift_diffusion_at_evaluates_in_float64():
    # moved from test_theory_report (report.drift_diffusion_at is now base's on a copy)
    model = linear_model().float()
    x = np.random.default_rng(9).normal(size=(5, 2))
    mu, sg = drift_diffusion_at(as_float64(model), x, np.arange(5.0))
    assert mu.dtype == np.float64 and sg.shape == (5, 2)
    np.testing.assert_allclose(mu, x @ A2.T + B2, rtol=1e-6)  # weights stored in float32
    np.testing.assert_allclose(sg, np.broadcast_to(S2, (5, 2)), rtol=1e-6)


def test_float64_copy_leaves_the_original_alone():
    model = ToyNeuralSDE(2).float().train()
    m64 = as_float64(model)
    assert next(m64.parameters()).dtype == torch.float64 and not m64.training
    assert next(model.parameters()).dtype == torch.float32 and model.training
    assert not any(p.requires_grad for p in m64.parameters())


def test_scalar_and_per_row_times_give_the_same_rows():
    m64 = as_float64(ToyNeuralSDE(3, seed=1))
    x = torch.as_tensor(np.random.default_rng(2).normal(size=(4, 3)))
    mu_s, sg_s = drift_diffusion_tensors(m64, x, 1.5)
    mu_r, sg_r = drift_diffusion_tensors(m64, x, torch.full((4,), 1.5, dtype=torch.float64))
    # same float64 operations on the same inputs: bitwise equal
    assert torch.equal(mu_s, mu_r) and torch.equal(sg_s, sg_r)
    assert mu_s.dtype == torch.float64 and not mu_s.requires_grad


def test_input_coercion_and_messages():
    assert as_states([1.0, 2.0]).shape == (1, 2)
    with pytest.raises(ValueError, match="non-finite"):
        as_states([[np.nan, 0.0]])
    np.testing.assert_array_equal(as_times(3.0), [3.0])
    with pytest.raises(ValueError, match="1-D sequence"):
        as_times(np.zeros((2, 2)))
    assert state_dim_of(ToyLinear(np.eye(2), [0, 0], [1, 1])) == 2
    assert state_dim_of(torch.nn.Linear(2, 2), fallback=5) == 5
    with pytest.raises(ValueError, match="Linear has no state_dim attribute and no fallback"):
        state_dim_of(torch.nn.Linear(2, 2))
    assert safe_ratio(2.0, 0.0) == np.inf and safe_ratio(0.0, 0.0) == 1.0
    assert safe_ratio(None, 1.0) is None and safe_ratio(3.0, 2.0) == 1.5


class PlainWeight(torch.nn.Module):
    """drift x W^T with W a plain float32 tensor attribute (not a parameter or buffer)."""

    state_dim = 2

    def __init__(self):
        super().__init__()
        self.W = torch.tensor([[-1.0, 0.5], [0.0, -2.0]], dtype=torch.float32)
        self.s = torch.tensor([0.5, 0.25], dtype=torch.float32)

    def drift(self, x, t):
        return x @ self.W.T

    def diffusion(self, x, t):
        return self.s.expand(x.shape[0], -1)

    def drift_diffusion(self, x, t):
        return self.drift(x, t), self.diffusion(x, t)


def test_a_float32_plain_tensor_attribute_is_converted_to_float64():
    from sde_utils.theory import generator_LV, stability_at

    model = PlainWeight()
    m64 = as_float64(model)
    assert m64.W.dtype == torch.float64 and model.W.dtype == torch.float32  # original kept
    # before: "expected m1 and m2 to have the same dtype" (float64 states @ float32 W)
    x = np.random.default_rng(1).normal(size=(5, 2))
    w, s = model.W.double().numpy(), model.s.double().numpy()
    lv = generator_LV(model, np.eye(2), np.zeros(2), x)
    closed = 2 * np.einsum("ni,ni->n", x, x @ w.T) + (s**2).sum()
    np.testing.assert_allclose(lv, closed, rtol=1e-12)  # W, s exact in float32 -> float64
    res = stability_at(model, np.zeros(2))
    np.testing.assert_allclose(res["A"], w, rtol=1e-12)
