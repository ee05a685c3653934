"""Baseline SDE models with the same interface as :class:`~sde_utils.models.neural.NeuralSDE`.

All three have a constant diagonal diffusion ``sigma`` (property, ``(d,)``):

- :class:`RandomWalk`: ``dX = sigma dW`` (zero drift);
- :class:`LinearSDE`: Ornstein–Uhlenbeck ``dX = (A X + b) dt + sigma dW``, time-homogeneous;
- :class:`DriftOnlyMLP`: MLP drift (exactly NeuralSDE's ``drift_net``) and constant sigma.

and one has a state-dependent sigma:

- :class:`LinearDriftMLPSigma`: linear drift ``x A^T + b`` and NeuralSDE's diffusion MLP,
  so that comparing it with :class:`LinearSDE` (same drift family, constant sigma) and with
  the neural SDE (MLP drift) separates what the state-dependent sigma buys from what the
  MLP drift buys.

``RandomWalk`` and ``LinearSDE`` hold their coefficients in buffers (no trainable parameters)
and are fitted by :meth:`fit_closed_form` from transitions ``x0 (N, d)``, ``t0 (N,)``,
``x1 (N, d)`` with step ``dt``, by the Euler–Maruyama likelihood: the drift by plain least
squares of the increments ``(x1 - x0) / dt`` on ``[x0, 1]`` (this minimises the paper's drift
loss), and ``sigma_j^2 = mean_i(residual_ij^2) / dt`` per dimension (the Gaussian MLE given
the drift). On data from the exact OU transition the least-squares drift estimates
``(expm(A dt) - I) / dt``, which tends to ``A`` as ``dt -> 0``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sde_utils.checks import check_bool, check_choice, check_dt, check_int, check_positive
from sde_utils.models.base import SDEModel, register_model
from sde_utils.models.neural import (
    ACTIVATIONS,
    MLPDriftMixin,
    TimeFeatures,
    check_sigma_range,
    make_diffusion_net,
)

SIGMA_MIN = 1e-12  # closed-form sigma is clamped here so a constant dimension stays valid


def check_transitions(
    x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float, *, name: str = "data"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Validate transitions ``x0 (N, d)``, ``t0 (N,)``, ``x1 (N, d)`` and ``dt > 0``.

    Returns them as tensors (``t0`` in ``x0``'s dtype) and ``dt`` as a float; raises
    ``ValueError``/``TypeError`` saying what was received otherwise. Values must be finite.
    """
    dt = check_dt(dt)
    return (*transition_tensors(x0, t0, x1, name=name), dt)


def transition_tensors(
    x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, *, name: str = "data"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The array part of :func:`check_transitions` (for callers that checked ``dt``):
    ``x0 (N, d)`` float, ``x1`` of its shape, ``t0 (N,)``, ``N, d >= 1``, all finite.
    Returns tensors, ``t0`` and ``x1`` in ``x0``'s dtype."""
    x0, t0, x1 = (torch.as_tensor(v) for v in (x0, t0, x1))
    if x0.ndim != 2 or not x0.is_floating_point():
        raise ValueError(
            f"{name}: x0 must be a float tensor (N, d), got {x0.dtype} {tuple(x0.shape)}"
        )
    if x1.shape != x0.shape:
        raise ValueError(
            f"{name}: x1 must have x0's shape {tuple(x0.shape)}, got {tuple(x1.shape)}"
        )
    if t0.shape != (x0.shape[0],):
        raise ValueError(
            f"{name}: t0 must have shape (N,) = ({x0.shape[0]},), got {tuple(t0.shape)}"
        )
    if x0.shape[0] == 0:
        raise ValueError(f"{name}: empty split (N = 0 transitions)")
    if x0.shape[1] == 0:
        raise ValueError(f"{name}: state dimension d = 0")
    for key, v in (("x0", x0), ("t0", t0), ("x1", x1)):
        # a sum is ~15x faster than isfinite(); only a non-finite sum needs the exact check
        if not math.isfinite(float(v.sum())) and not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name}: {key} contains NaN or inf")
    return x0, t0.to(x0.dtype), x1.to(x0.dtype)


class _ConstantSigma(SDEModel):
    """Constant diagonal diffusion: ``diffusion(x, t) = sigma`` broadcast to ``(B, d)``."""

    @property
    def sigma(self) -> torch.Tensor:  # (d,)
        raise NotImplementedError

    def diffusion(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.sigma.to(x.dtype).expand(x.shape[0], -1)


@register_model
class RandomWalk(_ConstantSigma):
    """``dX = sigma dW``: zero drift, constant sigma ``(d,)`` (a buffer, initially ones)."""

    def __init__(self, state_dim: int):
        super().__init__()
        self.state_dim = check_int("state_dim", state_dim, minimum=1)
        self.register_buffer("sigma_diag", torch.ones(state_dim))

    @property
    def sigma(self) -> torch.Tensor:
        return self.sigma_diag

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def config(self) -> dict[str, Any]:
        return {"state_dim": self.state_dim}

    @classmethod
    def fit_closed_form(
        cls, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
    ) -> RandomWalk:
        """MLE: ``sigma_j^2 = mean_i (x1 - x0)_ij^2 / dt``. Returns a model in x0's dtype."""
        x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="RandomWalk.fit_closed_form")
        model = cls(x0.shape[1]).to(dtype=x0.dtype, device=x0.device)
        var = (x1 - x0).pow(2).mean(0) / dt
        model.sigma_diag.copy_(var.sqrt().clamp_min(SIGMA_MIN))
        return model


@register_model
class LinearSDE(_ConstantSigma):
    """Ornstein–Uhlenbeck: ``drift(x, t) = x @ A.T + b``, constant sigma; all buffers.

    ``A (d, d)``, ``b (d,)``, ``sigma (d,)``; initially ``A = 0``, ``b = 0``, ``sigma = 1``.
    Stable when every eigenvalue of ``A`` has a negative real part; then the equilibrium is
    ``-A^{-1} b``.
    """

    def __init__(self, state_dim: int):
        super().__init__()
        self.state_dim = check_int("state_dim", state_dim, minimum=1)
        self.register_buffer("A", torch.zeros(state_dim, state_dim))
        self.register_buffer("b", torch.zeros(state_dim))
        self.register_buffer("sigma_diag", torch.ones(state_dim))

    @property
    def sigma(self) -> torch.Tensor:
        return self.sigma_diag

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ self.A.to(x.dtype).T + self.b.to(x.dtype)

    def config(self) -> dict[str, Any]:
        return {"state_dim": self.state_dim}

    @classmethod
    def fit_closed_form(
        cls, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
    ) -> LinearSDE:
        """Least squares of ``(x1 - x0) / dt`` on ``[x0, 1]``, then residual sigma.

        Solved in float64 (``torch.linalg.lstsq``, SVD-based driver on CPU); needs
        ``N >= d + 1``. ``t0`` is validated but unused (the model is time-homogeneous).
        """
        x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="LinearSDE.fit_closed_form")
        n, d = x0.shape
        if n < d + 1:
            raise ValueError(f"LinearSDE.fit_closed_form needs N >= d + 1 = {d + 1}, got N = {n}")
        X = torch.cat([x0, torch.ones(n, 1, dtype=x0.dtype, device=x0.device)], 1).double().cpu()
        Y = ((x1 - x0) / dt).double().cpu()
        coef = torch.linalg.lstsq(X, Y, driver="gelsd").solution  # (d + 1, d)
        resid = Y - X @ coef  # (x1 - x0)/dt - drift; the step residual is resid * dt
        var = (resid * dt).pow(2).mean(0) / dt
        model = cls(d).to(dtype=x0.dtype)
        model.A.copy_(coef[:d].T)
        model.b.copy_(coef[d])
        model.sigma_diag.copy_(var.sqrt().clamp_min(SIGMA_MIN))
        return model.to(x0.device)


@register_model
class DriftOnlyMLP(MLPDriftMixin, _ConstantSigma):
    """MLP drift (built exactly as :class:`~sde_utils.models.neural.NeuralSDE`'s ``drift_net``) and a
    constant diagonal sigma ``(d,)``.

    With ``learn_sigma=True`` sigma is ``exp(log_sigma)``, a trainable parameter (trained by
    the diffusion NLL in :func:`sde_utils.models.train.fit`); with ``False`` it is a buffer, set at
    ``sigma_init`` or from data by :meth:`set_sigma_from_residuals`.
    """

    def __init__(
        self,
        state_dim: int,
        hidden: int = 128,
        depth: int = 2,
        activation: str = "silu",
        time_encoding: str = "linear",
        n_frequencies: int = 4,
        *,
        sigma_init: float = 1.0,
        learn_sigma: bool = True,
        time_scale: float = 1.0,
    ):
        super().__init__()
        self.sigma_init = check_positive("sigma_init", sigma_init)
        self.learn_sigma = check_bool("learn_sigma", learn_sigma)
        self.build_drift(
            state_dim, hidden, depth, activation, time_encoding, n_frequencies, time_scale
        )
        log_sigma = torch.full((state_dim,), math.log(self.sigma_init))
        if learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.drift_net(self.net_input(x, t))

    @torch.no_grad()
    def set_sigma_from_residuals(
        self, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
    ) -> DriftOnlyMLP:
        """Set ``sigma_j^2 = mean_i (x1 - x0 - drift dt)_ij^2 / dt`` (MLE given the drift)."""
        x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="set_sigma_from_residuals")
        p = self.log_sigma
        x0, t0, x1 = (v.to(dtype=p.dtype, device=p.device) for v in (x0, t0, x1))
        var = (x1 - x0 - self.drift(x0, t0) * dt).pow(2).mean(0) / dt
        self.log_sigma.copy_(var.sqrt().clamp_min(SIGMA_MIN).log())
        return self

    def config(self) -> dict[str, Any]:
        return {
            "state_dim": self.state_dim,
            "hidden": self.hidden,
            "depth": self.depth,
            "activation": self.activation,
            "time_encoding": self.time_encoding,
            "n_frequencies": self.n_frequencies,
            "sigma_init": self.sigma_init,
            "learn_sigma": self.learn_sigma,
            "time_scale": self.time_scale,
        }


@register_model
class LinearDriftMLPSigma(SDEModel):
    """Linear drift ``x @ A.T + b`` and NeuralSDE's diffusion MLP.

    ``drift(x, t) = x @ A.T + b`` (``A (d, d)``, ``b (d,)``, trainable parameters,
    time-homogeneous like :class:`LinearSDE`) and ``diffusion(x, t) = softplus(
    diffusion_net([x, time_features(t)])) + sigma_floor`` built exactly as
    :class:`~sde_utils.models.neural.NeuralSDE`'s (``depth`` hidden layers of width
    ``hidden``, output weights scaled by ``OUTPUT_INIT_SCALE``, output bias
    ``inverse_softplus(sigma_init - sigma_floor)`` so sigma starts ~ ``sigma_init``).

    Choice: the drift is *initialised* from the closed-form least squares of
    :meth:`LinearSDE.fit_closed_form` (:meth:`set_drift_least_squares`; a fresh model starts at
    ``A = 0, b = 0``) and then trained jointly with the diffusion by
    :func:`sde_utils.models.train.fit`. Least squares already minimises the drift loss, so
    training mostly moves sigma; the drift may still move where the NLL weighs residuals
    by ``1 / sigma(x)^2``.
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
        self.state_dim = check_int("state_dim", state_dim, minimum=1)
        self.hidden = check_int("hidden (width)", hidden, minimum=1)
        self.depth = check_int("depth", depth, minimum=1)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.sigma_floor, self.sigma_init = check_sigma_range(sigma_floor, sigma_init)
        self.time = TimeFeatures(time_encoding, n_frequencies, time_scale)  # checks all three
        self.time_encoding = self.time.encoding
        self.n_frequencies = self.time.n_frequencies
        self.time_scale = self.time.time_scale
        self.A = nn.Parameter(torch.zeros(state_dim, state_dim))
        self.b = nn.Parameter(torch.zeros(state_dim))
        self.diffusion_net = make_diffusion_net(
            state_dim + self.time.n_features, hidden, depth, state_dim, activation,
            sigma_init=self.sigma_init, sigma_floor=self.sigma_floor,
        )  # fmt: skip

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ self.A.T + self.b

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """``t (B,) -> (B, n_time_features)``; see :class:`~sde_utils.models.neural.TimeFeatures`
        (the theory's certified bounds read the diffusion net's input through it)."""
        return self.time(t)

    def diffusion(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, self.time_features(t.to(x.dtype))], dim=-1)
        return F.softplus(self.diffusion_net(z)) + self.sigma_floor

    @torch.no_grad()
    def set_drift_least_squares(
        self, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
    ) -> LinearDriftMLPSigma:
        """Set ``A, b`` to :meth:`LinearSDE.fit_closed_form`'s least-squares drift on the
        transitions ``x0 (N, d)``, ``t0 (N,)``, ``x1 (N, d)`` (``N >= d + 1``); returns self."""
        ls = LinearSDE.fit_closed_form(x0, t0, x1, dt)
        if ls.state_dim != self.state_dim:
            raise ValueError(
                f"transitions have d = {ls.state_dim}, the model state_dim = {self.state_dim}"
            )
        self.A.copy_(ls.A.to(self.A))
        self.b.copy_(ls.b.to(self.b))
        return self

    def config(self) -> dict[str, Any]:
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
    "RandomWalk",
    "LinearSDE",
    "DriftOnlyMLP",
    "LinearDriftMLPSigma",
    "check_transitions",
    "transition_tensors",
    "SIGMA_MIN",
]
