"""Tests of sde_utils.models.base: the registry, model_dtype_device, broadcast_time and the
evaluation of a model at given states against closed forms (float64, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sde_utils.models import base
from sde_utils.models.base import (
    SDEModel,
    broadcast_time,
    drift_diffusion_at,
    drift_diffusion_tensors,
    model_dtype_device,
    register_model,
    registered_models,
)
from sde_utils.models.baselines import LinearSDE
from sde_utils.models.neural import NeuralSDE

D = 3
CPU = torch.device("cpu")


class ParameterFree(SDEModel):
    """dX = -X dt + 0.5 dW with no parameters and no buffers."""

    def drift(self, x, t):
        return -x

    def diffusion(self, x, t):
        return torch.full_like(x, 0.5)


class MatrixNoise(ParameterFree):
    """Breaks the diagonal-noise contract: diffusion is (B, d, d)."""

    def diffusion(self, x, t):
        return torch.eye(x.shape[1], dtype=x.dtype).expand(x.shape[0], -1, -1)


def _linear_sde(seed: int = 0) -> tuple[LinearSDE, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(D, D))
    b = rng.normal(size=D)
    sigma = rng.uniform(0.1, 1.0, size=D)
    model = LinearSDE(D).double()
    model.A.copy_(torch.from_numpy(A))
    model.b.copy_(torch.from_numpy(b))
    model.sigma_diag.copy_(torch.from_numpy(sigma))
    return model, A, b, sigma


# ----------------------------------------------------------------------------- registry


def test_register_model_makes_a_class_known_by_name(monkeypatch):
    # register into a copy of the registry, restored after the test
    monkeypatch.setattr(base, "_REGISTRY", dict(registered_models()))

    @register_model
    class Toy(ParameterFree):
        pass

    assert registered_models()["Toy"] is Toy
    assert registered_models()["NeuralSDE"] is NeuralSDE  # registered on import of neural
    registered_models().pop("Toy")  # a copy: the registry itself is unchanged
    assert "Toy" in registered_models()


# ----------------------------------------------------------------------------- dtype/device


def test_model_dtype_device_reads_the_first_floating_tensor():
    assert model_dtype_device(NeuralSDE(D, hidden=4)) == (torch.float32, CPU)
    assert model_dtype_device(NeuralSDE(D, hidden=4).double()) == (torch.float64, CPU)
    # a buffer-only model: its buffers decide, not `like`
    like = torch.zeros(2, dtype=torch.float32)
    assert model_dtype_device(LinearSDE(D).double(), like) == (torch.float64, CPU)


def test_model_dtype_device_of_a_parameter_free_model_follows_like():
    model = ParameterFree()
    assert model_dtype_device(model) == (torch.float64, CPU)
    assert model_dtype_device(model, torch.zeros(2, dtype=torch.float32)) == (torch.float32, CPU)
    assert model_dtype_device(model, torch.zeros(2, dtype=torch.float16)) == (torch.float16, CPU)
    # an integer `like` gives float64 on like's device
    assert model_dtype_device(model, torch.zeros(2, dtype=torch.int64)) == (torch.float64, CPU)


def test_broadcast_time():
    y = torch.zeros(4, D, dtype=torch.float64)
    t = broadcast_time(2.5, y)
    assert t.shape == (4,) and t.dtype == torch.float64 and bool((t == 2.5).all())
    ts = torch.arange(4, dtype=torch.float32)
    assert torch.equal(broadcast_time(ts, y), ts.double())


# ----------------------------------------------------------------------------- evaluation


def test_drift_diffusion_at_linear_sde_matches_its_closed_form():
    """drift = A x + b and diffusion = sigma (constant) for LinearSDE; float64 throughout,
    so the only error is the rounding of one matrix product (1e-12 relative)."""
    model, A, b, sigma = _linear_sde()
    x = np.random.default_rng(1).normal(size=(50, D))
    mu, sg = drift_diffusion_at(model, x, 3.0)
    assert mu.dtype == sg.dtype == np.float64 and mu.shape == sg.shape == (50, D)
    np.testing.assert_allclose(mu, x @ A.T + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sg, np.broadcast_to(sigma, (50, D)))
    # per-row times give the same numbers (the model is time-homogeneous)
    mu_t, _ = drift_diffusion_at(model, x, np.arange(50.0))
    np.testing.assert_array_equal(mu_t, mu)


def test_drift_diffusion_tensors_casts_to_the_model_and_has_no_grad():
    model = NeuralSDE(D, hidden=4)  # float32
    x = torch.randn(5, D, dtype=torch.float64, requires_grad=True)
    mu, sg = drift_diffusion_tensors(model, x, torch.zeros(5))
    assert mu.dtype == sg.dtype == torch.float32
    assert not mu.requires_grad and not sg.requires_grad
    assert bool((sg > 0).all())


def test_drift_diffusion_at_parameter_free_model():
    x = np.array([[1.0, -2.0, 0.5]])
    mu, sg = drift_diffusion_at(ParameterFree(), x, 0.0)
    np.testing.assert_array_equal(mu, -x)
    np.testing.assert_array_equal(sg, np.full((1, D), 0.5))


def test_drift_diffusion_at_refuses_a_non_diagonal_diffusion():
    with pytest.raises(ValueError, match=r"MatrixNoise returned drift \(4, 3\) and diffusion "):
        drift_diffusion_at(MatrixNoise(), np.zeros((4, D)), 0.0)
    with pytest.raises(ValueError, match=r"diffusion \(4, 3, 3\) for states \(4, 3\)"):
        drift_diffusion_at(MatrixNoise(), np.zeros((4, D)), 0.0)
