"""Tests of sde_utils.models.serialize: save/load round trips of every registered model
(bit-exact, dtype kept), and the errors for unregistered classes."""

from __future__ import annotations

import pytest
import torch

from sde_utils.models.base import SDEModel, registered_models
from sde_utils.models.baselines import DriftOnlyMLP, LinearSDE, RandomWalk
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.serialize import PROJECT_MODELS, load_model, save_model

D = 3
DT = 0.5


def _x_t(n: int = 64, d: int = D, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64) * 0.5
    return x, t


@pytest.fixture(scope="module")
def em_data():
    """Euler–Maruyama transitions of dX = -X dt + 0.3 dW (float64, fixed seed), N = 600."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(600, D, generator=g, dtype=torch.float64)
    noise = torch.randn(600, D, generator=g, dtype=torch.float64)
    x1 = x0 - x0 * DT + 0.3 * DT**0.5 * noise
    t0 = (torch.arange(600, dtype=torch.float64) % 20) * DT
    return x0, t0, x1


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    m = NeuralSDE(D, hidden=9, depth=2, time_encoding="sinusoidal", sigma_init=0.3).double()
    path = save_model(m, tmp_path / "sub" / "model.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temp files left
    m2 = load_model(path)
    assert type(m2) is NeuralSDE and m2.config() == m.config()
    assert m2.drift_net[0].weight.dtype == torch.float64
    x, t = _x_t()
    assert torch.equal(m.drift(x, t), m2.drift(x, t))  # same weights, same dtype: bit-exact
    assert torch.equal(m.diffusion(x, t), m2.diffusion(x, t))


def test_float32_model_stays_float32(tmp_path):
    torch.manual_seed(2)
    m = NeuralSDE(D, hidden=4)
    m2 = load_model(save_model(m, tmp_path / "m.pt"))
    assert m2.drift_net[0].weight.dtype == torch.float32
    x, t = (v.float() for v in _x_t())
    assert torch.equal(m.drift(x, t), m2.drift(x, t))


@pytest.mark.parametrize("cls", [RandomWalk, LinearSDE, DriftOnlyMLP])
def test_baseline_save_load_round_trip(cls, em_data, tmp_path):
    x0, t0, x1 = em_data
    if cls is DriftOnlyMLP:
        torch.manual_seed(0)
        model = DriftOnlyMLP(D, hidden=5, time_encoding="none", sigma_init=0.4).double()
    else:
        model = cls.fit_closed_form(x0, t0, x1, DT)
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    assert type(loaded) is cls and loaded.config() == model.config()
    x, t = x0[:20], t0[:20]
    assert torch.equal(loaded.drift(x, t), model.drift(x, t))  # bit-exact, float64 kept
    assert torch.equal(loaded.diffusion(x, t), model.diffusion(x, t))
    if cls is LinearSDE:
        assert torch.equal(loaded.A, model.A) and torch.equal(loaded.b, model.b)


def test_save_and_load_errors(tmp_path):
    class Unregistered(SDEModel):
        def config(self):
            return {}

    with pytest.raises(TypeError, match=r"registered SDEModel.*got Unregistered"):
        save_model(Unregistered(), tmp_path / "x.pt")
    torch.save({"class": "Nope", "config": {}, "state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="model class 'Nope' is not registered; known:"):
        load_model(tmp_path / "bad.pt")
    assert {"NeuralSDE", "RandomWalk", "LinearSDE", "DriftOnlyMLP"} <= set(registered_models())


def test_importing_serialize_registers_the_project_models():
    registry = registered_models()
    assert all(registry[cls.__name__] is cls for cls in PROJECT_MODELS)
