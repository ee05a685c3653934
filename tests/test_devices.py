"""Tests of sde_utils.devices (the device policy) and, where CUDA exists, of training,
simulation-free evaluation and theory on the GPU against the CPU (tests marked ``gpu``;
skipped with the reason elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sde_utils.devices import cuda_skip_reason, resolve_device
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.train import fit
from sde_utils.theory.growth import growth_ratio


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want and resolve_device(None).type == want


def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")  # control: the check can differ


def test_a_missing_gpu_is_a_clear_error_not_a_silent_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(ValueError, match="torch sees no CUDA GPU.*use 'cpu' or 'auto'"):
            resolve_device(name)
    assert cuda_skip_reason().startswith("needs a CUDA GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"'cuda:3': only 1 CUDA device"):
        resolve_device("cuda:3")
    assert cuda_skip_reason() is None


def test_bad_devices_are_named():
    with pytest.raises(ValueError, match=r"device must be one of .*got 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match=r"got 'meta'"):
        resolve_device("meta")
    with pytest.raises(TypeError, match=r"device must be a str .* got 0 \(int\)"):
        resolve_device(0)


# --------------------------------------------------------------------------- on a GPU


def _data(n=600, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    x1 = 0.9 * x0 + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x0, torch.zeros(n, dtype=torch.float64), x1


def _model():
    torch.manual_seed(0)
    return NeuralSDE(3, hidden=16, depth=2).double()


def test_gpu_marker_is_registered(pytestconfig):
    markers = "\n".join(pytestconfig.getini("markers"))
    assert "gpu:" in markers  # --strict-markers would reject an unregistered one


@pytest.mark.gpu
@pytest.mark.skipif(cuda_skip_reason() is not None, reason=str(cuda_skip_reason()))
def test_training_on_cuda_matches_the_cpu():
    # float64 on both; same batches (drawn by a CPU generator); the GPU's reductions round
    # differently (~1e-16 relative per op), amplified over 5 epochs of AdamW to < 1e-9
    train, val = _data(seed=0), _data(seed=1)
    kw = dict(dt=1.0, epochs=5, batch_size=128, patience=None, seed=0, progress=False)
    cpu, gpu_model = _model(), _model().to("cuda")
    h_cpu, h_gpu = fit(cpu, train, val, **kw), fit(gpu_model, train, val, **kw)
    np.testing.assert_allclose(h_gpu.val_total, h_cpu.val_total, rtol=1e-9)
    assert next(gpu_model.parameters()).device.type == "cuda"
    x = torch.randn(50, 3, dtype=torch.float64)
    t = torch.zeros(50, dtype=torch.float64)
    with torch.no_grad():
        a = cpu.drift_diffusion(x, t)
        b = gpu_model.drift_diffusion(x.cuda(), t.cuda())
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(v.cpu().numpy(), u.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.gpu
@pytest.mark.skipif(cuda_skip_reason() is not None, reason=str(cuda_skip_reason()))
def test_theory_takes_a_cuda_model():
    # theory copies any model to float64 on the CPU: the same weights give the same numbers
    model = _model()
    states = np.random.default_rng(0).normal(size=(40, 3))
    times = 0.5
    ref = growth_ratio(model, states, times)
    np.testing.assert_array_equal(growth_ratio(model.to("cuda"), states, times), ref)


@pytest.mark.gpu
@pytest.mark.skipif(cuda_skip_reason() is not None, reason=str(cuda_skip_reason()))
def test_simulation_on_cuda_follows_the_cpu_paths():
    # the noise is drawn on the CPU for every device, so one seed gives the same Brownian
    # increments; float64 paths then differ by kernel rounding only (~1e-15 per step,
    # through 20 steps of a Lipschitz map with constant ~1: < 1e-10)
    from sde_utils.models.simulate import simulate

    model = _model()
    x0 = torch.randn(4, 3, dtype=torch.float64)
    kw = dict(n_steps=20, dt=1.0, n_paths=3, seed=7)
    ref = simulate(model, x0, **kw)
    out = simulate(model.to("cuda"), x0.cuda(), **kw)
    assert out.device.type == "cuda"
    np.testing.assert_allclose(out.cpu().numpy(), ref.numpy(), rtol=1e-10, atol=1e-10)
