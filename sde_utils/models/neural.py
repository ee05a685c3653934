"""The paper's neural SDE (§2.2) and its building blocks.

:class:`NeuralSDE` is a drift MLP and a diffusion MLP, both on ``[x, time_features(t)]``,
the diffusion through ``softplus`` plus a floor; it implements
:class:`~sde_utils.models.base.SDEModel` (Itô, diagonal noise; states ``(batch, d)``,
times ``(batch,)``), where the conventions are stated. :class:`MLPDriftMixin` builds the
drift MLP it shares with :class:`~sde_utils.models.baselines.DriftOnlyMLP`;
:class:`TimeFeatures` encodes times. Saving and loading: :mod:`sde_utils.models.serialize`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sde_utils.checks import check_choice, check_int, check_positive
from sde_utils.models.base import SDEModel, register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}
TIME_ENCODINGS = ("none", "linear", "sinusoidal")
SINUSOIDAL_BASE = 10_000.0  # frequencies base**(-j / n_frequencies), as in transformer encodings
OUTPUT_INIT_SCALE = 1e-2  # output layers start this small: drift ~ 0, sigma ~ sigma_init


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
        self.encoding = check_choice("time_encoding", encoding, TIME_ENCODINGS)
        self.n_frequencies = check_int("n_frequencies", n_frequencies, minimum=1)
        self.time_scale = check_positive("time_scale", time_scale)
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
def init_output(layer: nn.Linear, bias: float) -> None:
    """Scale an output layer's weights by ``OUTPUT_INIT_SCALE`` and set its bias: the net
    starts near the constant ``bias``."""
    layer.weight.mul_(OUTPUT_INIT_SCALE)
    layer.bias.fill_(bias)


def check_sigma_range(sigma_floor: Any, sigma_init: Any) -> tuple[float, float]:
    """``(sigma_floor, sigma_init)`` checked: ``0 <= sigma_floor < sigma_init``."""
    floor = check_positive("sigma_floor", sigma_floor, allow_zero=True)
    init = check_positive("sigma_init", sigma_init)
    if init <= floor:
        raise ValueError(f"sigma_init must be > sigma_floor={floor!r}, got {sigma_init!r}")
    return floor, init


def make_diffusion_net(
    n_in: int, hidden: int, depth: int, state_dim: int, activation: str, *,
    sigma_init: float, sigma_floor: float,
) -> nn.Sequential:  # fmt: skip
    """The diffusion MLP ``n_in -> state_dim`` whose ``softplus(.) + sigma_floor`` starts
    near ``sigma_init``: output weights scaled by ``OUTPUT_INIT_SCALE``, output bias
    ``inverse_softplus(sigma_init - sigma_floor)``. Shared by :class:`NeuralSDE` and the
    linear-drift + MLP-sigma baseline, so both diffusions are built the same way."""
    net = make_mlp(n_in, hidden, depth, state_dim, activation)
    init_output(net[-1], inverse_softplus(sigma_init - sigma_floor))
    return net


class MLPDriftMixin:
    """The drift MLP of :class:`NeuralSDE` and ``DriftOnlyMLP``, with its argument checks.

    A subclass calls :meth:`build_drift` in its constructor; then ``drift_net`` maps
    ``net_input(x, t)`` ``(B, state_dim + n_time_features)`` to ``(B, state_dim)``.
    """

    def build_drift(
        self,
        state_dim: int,
        hidden: int,
        depth: int,
        activation: str,
        time_encoding: str,
        n_frequencies: int,
        time_scale: float,
    ) -> None:
        """Check the architecture arguments (once, for the public constructors) and build
        ``drift_net`` (output layer scaled by ``OUTPUT_INIT_SCALE``, bias 0)."""
        self.state_dim = check_int("state_dim", state_dim, minimum=1)
        self.hidden = check_int("hidden (width)", hidden, minimum=1)
        self.depth = check_int("depth", depth, minimum=1)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self._time = TimeFeatures(time_encoding, n_frequencies, time_scale)  # checks all three
        self.time_encoding = self._time.encoding
        self.n_frequencies = self._time.n_frequencies
        self.time_scale = self._time.time_scale
        self.n_time_features = self._time.n_features
        self.drift_net = make_mlp(
            self.state_dim + self.n_time_features,
            self.hidden,
            self.depth,
            self.state_dim,
            self.activation,
        )
        init_output(self.drift_net[-1], 0.0)

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """``t (B,) -> (B, n_time_features)``; see :class:`TimeFeatures`."""
        return self._time(t)

    def net_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``[x, time_features(t)]``: ``(B, state_dim + n_time_features)``, state first."""
        return torch.cat([x, self._time(t.to(x.dtype))], dim=-1)


# ----------------------------------------------------------------------------- the neural SDE


@register_model
class NeuralSDE(MLPDriftMixin, SDEModel):
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
        self.sigma_floor, self.sigma_init = check_sigma_range(sigma_floor, sigma_init)
        self.build_drift(
            state_dim, hidden, depth, activation, time_encoding, n_frequencies, time_scale
        )
        self.diffusion_net = make_diffusion_net(
            self.state_dim + self.n_time_features,
            self.hidden,
            self.depth,
            self.state_dim,
            self.activation,
            sigma_init=self.sigma_init,
            sigma_floor=self.sigma_floor,
        )

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


__all__ = [
    "NeuralSDE",
    "MLPDriftMixin",
    "TimeFeatures",
    "ACTIVATIONS",
    "TIME_ENCODINGS",
    "make_mlp",
    "init_output",
    "make_diffusion_net",
    "check_sigma_range",
    "inverse_softplus",
]
