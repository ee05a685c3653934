"""SDE models in torchsde's interface (Itô, diagonal noise).

Every model of this project (the neural SDE and each baseline) subclasses
:class:`SDEModel`, so training, simulation, metrics and the theory checks run on any
of them. Conventions:

- states ``x``: ``(batch, d)``; times ``t``: ``(batch,)`` (one time per row) for
  :meth:`drift` / :meth:`diffusion`, a scalar tensor for torchsde's :meth:`f` / :meth:`g`;
- ``diffusion`` returns the diagonal of sigma, ``(batch, d)``, strictly positive;
- one Euler–Maruyama step: ``x + drift * dt + diffusion * sqrt(dt) * N(0, I)``.

:class:`NeuralSDE` is the paper's model (§2.2): a drift MLP and a diffusion MLP, both on
``[x, time_features(t)]``, the diffusion through ``softplus`` plus a floor.
:func:`save_model` / :func:`load_model` store any registered model (class name, ``config()``
and ``state_dict``) so a fit can be reloaded without knowing its class.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sde_utils.io import atomic_write

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}
TIME_ENCODINGS = ("none", "linear", "sinusoidal")
SINUSOIDAL_BASE = 10_000.0  # frequencies base**(-j / n_frequencies), as in transformer encodings
OUTPUT_INIT_SCALE = 1e-2  # output layers start this small: drift ~ 0, sigma ~ sigma_init


class SDEModel(nn.Module):
    """Base class: subclasses implement ``drift(x, t)`` and ``diffusion(x, t)``."""

    noise_type = "diagonal"
    sde_type = "ito"

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, d), (B,) -> (B, d)
        raise NotImplementedError

    def diffusion(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, d), (B,) -> (B, d)
        raise NotImplementedError

    def drift_diffusion(
        self, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(drift(x, t), diffusion(x, t))``; subclasses may share work between the two."""
        return self.drift(x, t), self.diffusion(x, t)

    # torchsde's interface: scalar t, y (batch, d)
    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.drift(y, _broadcast_time(t, y))

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.diffusion(y, _broadcast_time(t, y))


def _broadcast_time(t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
    return t.reshape(-1).expand(y.shape[0]) if t.numel() == 1 else t.reshape(y.shape[0])


# ----------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_float(name: str, value: Any, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    bad = value <= minimum if strict else value < minimum
    if not math.isfinite(value) or bad:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def _check_choice(name: str, value: Any, allowed: Any) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}")
    return value


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) == y`` for ``y > 0`` (stable for large and small ``y``)."""
    if not y > 0:
        raise ValueError(f"inverse_softplus needs y > 0, got {y!r}")
    return y + math.log(-math.expm1(-y))


# ----------------------------------------------------------------------------- building blocks


class TimeFeatures(nn.Module):
    """Time encoding ``t (B,) -> (B, n_time_features)``.

    - ``"none"``: no features (``n_time_features = 0``): a time-homogeneous model;
    - ``"linear"``: ``[t / time_scale]`` (1 feature);
    - ``"sinusoidal"``: ``[sin(w_j u), cos(w_j u)]`` for ``u = t / time_scale`` and
      ``w_j = 10000 ** (-j / n_frequencies)``, ``j = 0..n_frequencies-1``
      (``2 * n_frequencies`` features; all sines first, then all cosines).
    """

    def __init__(self, encoding: str, n_frequencies: int = 4, time_scale: float = 1.0):
        super().__init__()
        self.encoding = _check_choice("time_encoding", encoding, TIME_ENCODINGS)
        self.n_frequencies = _check_int("n_frequencies", n_frequencies, 1)
        self.time_scale = _check_float("time_scale", time_scale, minimum=0.0, strict=True)
        self.n_features = {"none": 0, "linear": 1, "sinusoidal": 2 * n_frequencies}[encoding]
        exponents = torch.arange(n_frequencies, dtype=torch.float64) / n_frequencies
        self.register_buffer("frequencies", SINUSOIDAL_BASE ** (-exponents), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        u = t.reshape(-1, 1) / self.time_scale
        if self.encoding == "none":
            return u[:, :0]
        if self.encoding == "linear":
            return u
        angles = u * self.frequencies.to(u.dtype)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def make_mlp(n_in: int, hidden: int, depth: int, n_out: int, activation: str) -> nn.Sequential:
    """``Linear(n_in, hidden), act, [Linear(hidden, hidden), act] * (depth - 1), Linear(hidden,
    n_out)``: ``depth`` hidden layers, PyTorch's default initialisation."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


@torch.no_grad()
def _init_output(layer: nn.Linear, bias: float) -> None:
    layer.weight.mul_(OUTPUT_INIT_SCALE)
    layer.bias.fill_(bias)


class _MLPDriftMixin:
    """Shared validation and the drift MLP of :class:`NeuralSDE` and ``DriftOnlyMLP``."""

    def _build_drift(
        self,
        state_dim: int,
        hidden: int,
        depth: int,
        activation: str,
        time_encoding: str,
        n_frequencies: int,
        time_scale: float,
    ) -> None:
        self.state_dim = _check_int("state_dim", state_dim, 1)
        self.hidden = _check_int("hidden (width)", hidden, 1)
        self.depth = _check_int("depth", depth, 1)
        self.activation = _check_choice("activation", activation, ACTIVATIONS)
        self.time_encoding = time_encoding
        self.n_frequencies = n_frequencies
        self.time_scale = float(time_scale)
        self._time = TimeFeatures(time_encoding, n_frequencies, time_scale)
        self.n_time_features = self._time.n_features
        self.drift_net = make_mlp(
            state_dim + self.n_time_features, hidden, depth, state_dim, activation
        )
        _init_output(self.drift_net[-1], 0.0)

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """``t (B,) -> (B, n_time_features)``; see :class:`TimeFeatures`."""
        return self._time(t)

    def net_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``[x, time_features(t)]``: ``(B, state_dim + n_time_features)``, state first."""
        return torch.cat([x, self._time(t.to(x.dtype))], dim=-1)


# ----------------------------------------------------------------------------- the neural SDE

_REGISTRY: dict[str, type[SDEModel]] = {}


def register_model(cls: type[SDEModel]) -> type[SDEModel]:
    """Class decorator: make ``cls`` loadable by :func:`load_model` (by class name)."""
    _REGISTRY[cls.__name__] = cls
    return cls


@register_model
class NeuralSDE(_MLPDriftMixin, SDEModel):
    """``dX = mu(X, t) dt + sigma(X, t) dW`` with MLP drift and diagonal MLP diffusion.

    ``drift(x, t) = drift_net([x, time_features(t)])`` and
    ``diffusion(x, t) = softplus(diffusion_net([x, time_features(t)])) + sigma_floor``,
    with ``x (B, state_dim)``, ``t (B,)`` -> ``(B, state_dim)``. Each net is
    ``nn.Sequential(Linear, act, ..., Linear)`` with ``depth`` hidden layers of width
    ``hidden``; the first Linear takes ``state_dim + n_time_features`` inputs, the state in
    the first ``state_dim`` columns.

    Initialisation: PyTorch's default, except the output layers, whose weights are scaled by
    1e-2; the drift output bias is 0 (initial drift ~ 0) and the diffusion output bias is
    ``inverse_softplus(sigma_init - sigma_floor)`` (initial sigma ~ ``sigma_init``).

    Args:
        state_dim: d, the state dimension (e.g. the PCA dimension).
        hidden: width of every hidden layer (>= 1).
        depth: number of hidden layers (>= 1).
        activation: one of ``"tanh", "relu", "silu", "softplus"``.
        time_encoding: ``"none"``, ``"linear"`` or ``"sinusoidal"`` (see :class:`TimeFeatures`).
        n_frequencies: frequencies of the sinusoidal encoding (``2 * n`` features).
        sigma_floor: added to the softplus so that sigma >= sigma_floor > 0 (>= 0 allowed).
        sigma_init: initial sigma (> sigma_floor).
        time_scale: times are divided by this before encoding (e.g. a typical length).
    """

    def __init__(
        self,
        state_dim: int,
        hidden: int = 128,
        depth: int = 2,
        activation: str = "silu",
        time_encoding: str = "linear",
        n_frequencies: int = 4,
        sigma_floor: float = 1e-3,
        *,
        sigma_init: float = 1.0,
        time_scale: float = 1.0,
    ):
        super().__init__()
        self.sigma_floor = _check_float("sigma_floor", sigma_floor, minimum=0.0, strict=False)
        self.sigma_init = _check_float("sigma_init", sigma_init, minimum=0.0, strict=True)
        if self.sigma_init <= self.sigma_floor:
            raise ValueError(
                f"sigma_init must be > sigma_floor={self.sigma_floor!r}, got {sigma_init!r}"
            )
        self._build_drift(
            state_dim, hidden, depth, activation, time_encoding, n_frequencies, time_scale
        )
        self.diffusion_net = make_mlp(
            state_dim + self.n_time_features, hidden, depth, state_dim, activation
        )
        _init_output(self.diffusion_net[-1], inverse_softplus(self.sigma_init - self.sigma_floor))

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.drift_net(self.net_input(x, t))

    def diffusion(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.diffusion_net(self.net_input(x, t))) + self.sigma_floor

    def drift_diffusion(
        self, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.net_input(x, t)
        return self.drift_net(z), F.softplus(self.diffusion_net(z)) + self.sigma_floor

    def config(self) -> dict[str, Any]:
        """The constructor kwargs: ``NeuralSDE(**m.config())`` rebuilds the architecture."""
        return {
            "state_dim": self.state_dim,
            "hidden": self.hidden,
            "depth": self.depth,
            "activation": self.activation,
            "time_encoding": self.time_encoding,
            "n_frequencies": self.n_frequencies,
            "sigma_floor": self.sigma_floor,
            "sigma_init": self.sigma_init,
            "time_scale": self.time_scale,
        }


# ----------------------------------------------------------------------------- save / load


def save_model(model: SDEModel, path: str | os.PathLike) -> Path:
    """Write ``{"class", "config", "state_dict"}`` of ``model`` to ``path`` (atomically).

    ``model`` must be a registered class (``NeuralSDE`` or a baseline) with ``config()``.
    Returns the path.
    """
    name = type(model).__name__
    if _REGISTRY.get(name) is not type(model) or not hasattr(model, "config"):
        raise TypeError(
            f"save_model needs a registered SDEModel with config(), got {name}; "
            f"registered: {sorted(_REGISTRY)}"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    saved = {"format": 1, "class": name, "config": model.config(), "state_dict": state}
    atomic_write(path, lambda fh: torch.save(saved, fh))
    return path


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SDEModel:
    """Rebuild a model written by :func:`save_model` (class from the registry, same dtype)."""
    from sde_utils.models import baselines  # noqa: F401  (registers the baseline classes)

    blob = torch.load(Path(path), map_location=map_location, weights_only=True)
    name = blob.get("class") if isinstance(blob, dict) else None
    if name not in _REGISTRY:
        raise ValueError(
            f"{path}: model class {name!r} is not registered; known: {sorted(_REGISTRY)}"
        )
    model = _REGISTRY[name](**blob["config"])
    floats = [v.dtype for v in blob["state_dict"].values() if v.is_floating_point()]
    if floats:
        model = model.to(dtype=floats[0])
    model.load_state_dict(blob["state_dict"])
    return model.to(map_location)


def registered_models() -> dict[str, Callable[..., SDEModel]]:
    """Class name -> class of every model :func:`load_model` can rebuild."""
    from sde_utils.models import baselines  # noqa: F401

    return dict(_REGISTRY)


__all__ = [
    "SDEModel",
    "NeuralSDE",
    "TimeFeatures",
    "ACTIVATIONS",
    "TIME_ENCODINGS",
    "make_mlp",
    "inverse_softplus",
    "register_model",
    "registered_models",
    "save_model",
    "load_model",
]
