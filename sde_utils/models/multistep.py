"""The neural SDE trained on a multi-step objective, and the one-step Jacobian it needs.

The one-step losses (:mod:`sde_utils.models.losses`) only ever score ``X_{k+1} | X_k``; a
drift whose one-step map ``x -> x + mu(x, t) dt`` amplifies can fit those well and still
drift away over 16 steps. :class:`MultiStepObjective` scores ``k`` steps at once:

* **k-step Gaussian NLL by moment propagation.** From a window's start ``m_0 = x_0``,
  ``P_0 = 0``, the Euler chain is linearised around its mean:
  ``m_{j+1} = m_j + mu(m_j, t_j) dt`` and
  ``P_{j+1} = F_j P_j F_j^T + diag(sigma(m_j, t_j)^2) dt`` with ``F_j = I + J_mu(m_j) dt``
  the one-step Jacobian, ``t_j = t_0 + j dt``. The loss is the Gaussian NLL of the real
  ``x_j`` under ``N(m_j, P_j)`` per dimension, averaged over ``j = 1..k`` (the *marginal*
  k-step laws, not the joint law of the window). For a linear drift with constant sigma
  this propagation is exact: ``m_k = (I + A dt)^k x_0 + sum_{i<k} (I + A dt)^i b dt`` and
  ``P_k = sum_{i<k} (I + A dt)^i diag(sigma^2) dt (I + A dt)^{iT}``; for ``k = 1`` it is
  exactly the one-step NLL.
* the one-step **drift** loss (per dimension, as in the one-step objective), so that the
  History's ``drift`` is comparable across objectives;
* an optional **contraction penalty** ``weight * mean relu(||F||_2 - radius)^2`` on the
  spectral norm of the one-step map's Jacobian, at the states whose ``F_j`` the
  propagation computes anyway (the means ``m_1..m_{k-1}``, a step or more from the data;
  at the data states ``x_0`` when ``k = 1``), so it costs no extra Jacobian.

Total: ``drift + lam * kstep_nll + penalty`` (:func:`sde_utils.models.train.fit` with
``objective=MultiStepObjective(...)``). Data are windows ``(x0 (N, d), t0 (N,), xs (N, k,
d))`` with ``xs[:, j] = X_{k0 + j + 1}`` (:func:`windows`, never across sequences).

:class:`MultiStepNeuralSDE` is :class:`~sde_utils.models.neural.NeuralSDE`'s architecture
under its own registered name, so a fit keeps the two apart. :func:`drift_jacobian`
gives ``J_mu (B, d, d)`` for any model: in closed form for the project's MLP and linear
drifts (a ``d``-column forward-mode Jacobian was ~16x a forward-backward pass), by
``torch.func`` JVPs otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sde_utils.checks import check_int, check_positive, check_real
from sde_utils.models.base import SDEModel, register_model
from sde_utils.models.baselines import LinearDriftMLPSigma, LinearSDE
from sde_utils.models.losses import HALF_LOG_2PI
from sde_utils.models.neural import MLPDriftMixin, NeuralSDE

# d act(z) / dz of the activations of sde_utils.models.neural.ACTIVATIONS
_ACT_DERIVATIVES = {
    nn.Tanh: lambda z: 1.0 - torch.tanh(z).pow(2),
    nn.ReLU: lambda z: (z > 0).to(z.dtype),
    nn.SiLU: lambda z: torch.sigmoid(z) * (1.0 + z * (1.0 - torch.sigmoid(z))),
    # nn.Softplus(beta=1, threshold=20) is the identity above 20: derivative 1 there
    nn.Softplus: lambda z: torch.where(z > 20.0, torch.ones_like(z), torch.sigmoid(z)),
}


@register_model
class MultiStepNeuralSDE(NeuralSDE):
    """:class:`~sde_utils.models.neural.NeuralSDE` (same nets, same constructor), registered
    under its own name: the neural SDE trained on :class:`MultiStepObjective`."""


def mlp_with_jacobian(
    net: nn.Sequential, z: torch.Tensor, n_state: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output ``(B, m)`` of a :func:`~sde_utils.models.neural.make_mlp` net at ``z (B, n_in)``
    and its Jacobian with respect to the first ``n_state`` inputs, ``(B, m, n_state)``
    (chain rule ``W_L D_{L-1} W_{L-1} ... D_0 W_0[:, :n_state]``; differentiable)."""
    # kept as (width, B, n_state) so each Linear is one (out, width) @ (width, B * n) matmul
    # (a broadcast batched matmul over B small matrices was ~4x slower)
    jac = None
    h = z
    b = z.shape[0]
    for layer in net:
        if isinstance(layer, nn.Linear):
            w = layer.weight
            if jac is None:
                jac = w[:, :n_state].unsqueeze(1).expand(-1, b, -1)
            else:
                jac = (w @ jac.reshape(jac.shape[0], -1)).reshape(w.shape[0], b, n_state)
        else:
            jac = _ACT_DERIVATIVES[type(layer)](h).T.unsqueeze(-1) * jac
        h = layer(h)
    return h, jac.permute(1, 0, 2)


def _jvp_jacobian(model: SDEModel, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    def fn(xx):
        return model.drift(xx, t)

    basis = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    cols = [torch.func.jvp(fn, (x,), (e.expand_as(x),))[1] for e in basis]
    return torch.stack(cols, dim=-1)


def drift_jacobian(
    model: SDEModel, x: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu (B, d), J_mu (B, d, d))``: the drift at ``x (B, d)``, ``t (B,)`` and its Jacobian
    ``J[b, i, j] = d mu_i / d x_j`` (differentiable in the model's parameters).

    Closed form for MLP drifts (:class:`~sde_utils.models.neural.MLPDriftMixin`) and the
    linear drifts (``A``); ``torch.func`` JVPs (``d`` of them) for any other model."""
    if isinstance(model, MLPDriftMixin):
        return mlp_with_jacobian(model.drift_net, model.net_input(x, t), x.shape[1])
    if isinstance(model, (LinearSDE, LinearDriftMLPSigma)):
        a = model.A.to(x.dtype)
        return model.drift(x, t), a.expand(x.shape[0], -1, -1)
    return model.drift(x, t), _jvp_jacobian(model, x, t)


def one_step_jacobian(model: SDEModel, x: torch.Tensor, t: torch.Tensor, dt: float) -> torch.Tensor:
    """``F = I + J_mu dt`` ``(B, d, d)``: the Jacobian of ``x -> x + mu(x, t) dt``."""
    _, jac = drift_jacobian(model, x, t)
    return torch.eye(x.shape[1], dtype=x.dtype, device=x.device) + jac * dt


def spectral_norm(f: torch.Tensor) -> torch.Tensor:
    """``||F_b||_2`` ``(B,)`` of ``f (B, d, d)`` from the top eigenvalue of ``F^T F`` (its
    gradient stays finite when singular values repeat, unlike the SVD's)."""
    top = torch.linalg.eigvalsh(f.transpose(-1, -2) @ f)[..., -1]
    return top.clamp_min(1e-30).sqrt()


def _gaussian_nll(r: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Per-dimension NLL ``(B,)`` of residuals ``r (B, d)`` under ``N(0, cov (B, d, d))``."""
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, r.unsqueeze(-1), upper=False).squeeze(-1)
    half_logdet = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return HALF_LOG_2PI + (half_logdet + 0.5 * z.pow(2).sum(-1)) / r.shape[1]


def kstep_losses(
    model: SDEModel,
    x0: torch.Tensor,
    t0: torch.Tensor,
    xs: torch.Tensor,
    dt: float,
    *,
    radius: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(drift, kstep_nll, excess)`` of windows ``x0 (B, d)``, ``t0 (B,)``, ``xs (B, k, d)``.

    ``drift``: one-step squared error per dimension (``xs[:, 0]`` against
    ``x0 + mu(x0) dt``); ``kstep_nll``: the module docstring's NLL, mean over the window's
    ``k`` horizons, the batch and the dimensions; ``excess``: ``mean relu(||F_j||_2 -
    radius)^2`` over the batch and the ``F_j`` of ``j = 1..k-1`` (``j = 0``, at ``x0``, when
    ``k = 1``); zero when ``radius`` is None. Unchecked kernel (the training loop calls it
    per batch).
    """
    k, d = xs.shape[1], xs.shape[2]
    eye = torch.eye(d, dtype=x0.dtype, device=x0.device)
    m, cov = x0, None
    nll = x0.new_zeros(())
    drift = excess = x0.new_zeros(())
    for j in range(k):
        t = t0 + j * dt
        penalised = radius is not None and (j > 0 or k == 1)
        if j > 0 or penalised:
            mu, jac = drift_jacobian(model, m, t)
            f = eye + jac * dt
        else:
            mu = model.drift(m, t)
        var = model.diffusion(m, t).pow(2) * dt
        if penalised:
            excess = excess + torch.relu(spectral_norm(f) - radius).pow(2).mean() / max(k - 1, 1)
        m = m + mu * dt
        r = xs[:, j] - m
        if j == 0:  # P_1 = diag(var): the one-step NLL, elementwise
            drift = r.pow(2).mean()
            nll = nll + (HALF_LOG_2PI + 0.5 * var.log() + 0.5 * r.pow(2) / var).mean()
            cov = torch.diag_embed(var)
        else:
            cov = f @ cov @ f.transpose(-1, -2) + torch.diag_embed(var)
            nll = nll + _gaussian_nll(r, cov).mean()
    return drift, nll / k, excess


class MultiStepObjective:
    """The k-step objective of :func:`sde_utils.models.train.fit` (module docstring).

    Args:
        k: window length in steps (>= 1; ``k = 1`` without penalty is the one-step objective).
        contraction: weight of the contraction penalty (>= 0; 0: off).
        radius: the spectral-norm bound of ``F_0`` the penalty enforces (> 0).
    """

    def __init__(self, k: int = 4, contraction: float = 0.0, radius: float = 1.0):
        self.k = check_int("k", k, minimum=1)
        self.contraction = check_real("contraction", contraction, minimum=0.0)
        self.radius = check_positive("radius", radius)

    def config(self) -> dict[str, Any]:
        return {
            "name": "multi_step",
            "k": self.k,
            "contraction": self.contraction,
            "radius": self.radius,
        }

    def tensors(self, split: Any, name: str) -> tuple[torch.Tensor, ...]:
        """``split = (x0 (N, d), t0 (N,), xs (N, k, d))`` checked (:func:`window_tensors`)."""
        return window_tensors(split, name, self.k)

    def losses(
        self, model: SDEModel, batch: tuple[torch.Tensor, ...], dt: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        radius = self.radius if self.contraction > 0 else None
        drift, nll, excess = kstep_losses(model, *batch, dt, radius=radius)
        return drift, nll, self.contraction * excess


def window_tensors(split: Any, name: str, k: int) -> tuple[torch.Tensor, ...]:
    """``split = (x0 (N, d), t0 (N,), xs (N, k, d))`` checked, as tensors (``t0`` and ``xs``
    in ``x0``'s dtype): the data of every objective that reads k-step windows."""
    if not isinstance(split, (tuple, list)) or len(split) != 3:
        raise TypeError(f"{name} must be a tuple (x0 (N, d), t0 (N,), xs (N, k, d))")
    x0, t0, xs = (torch.as_tensor(v) for v in split)
    if x0.ndim != 2 or not x0.is_floating_point() or x0.shape[0] == 0:
        raise ValueError(f"{name}: x0 must be a float (N, d), N >= 1, got {tuple(x0.shape)}")
    n, d = x0.shape
    if tuple(xs.shape) != (n, k, d) or tuple(t0.shape) != (n,):
        raise ValueError(
            f"{name}: need t0 ({n},) and xs ({n}, k={k}, {d}), got "
            f"{tuple(t0.shape)} and {tuple(xs.shape)}"
        )
    for key, v in (("x0", x0), ("t0", t0), ("xs", xs)):
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name}: {key} contains NaN or inf")
    return x0, t0.to(x0.dtype), xs.to(x0.dtype)


def windows(
    x0: np.ndarray,
    t0: np.ndarray,
    x1: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    return_start: bool = False,
) -> tuple[np.ndarray, ...]:
    """k-step windows from one-step transitions in store order (sequence by sequence, step
    by step, as ``TrajectoryStore.transitions``): transition ``i`` starts a window when
    transitions ``i..i+k-1`` belong to the same sequence (``rows (N,)``). Returns ``x0
    (M, d)``, ``t0 (M,)``, ``xs (M, k, d)`` with ``xs[:, j] = x1[i + j]``, and with
    ``return_start`` the transitions ``i (M,)`` that start them."""
    k = check_int("k", k, minimum=1)
    rows = np.asarray(rows)
    n = rows.shape[0]
    start = np.arange(max(n - k + 1, 0))
    start = start[rows[start + k - 1] == rows[start]]
    xs = np.stack([x1[start + j] for j in range(k)], axis=1)
    if return_start:
        return x0[start], t0[start], xs, start
    return x0[start], t0[start], xs


__all__ = [
    "MultiStepNeuralSDE",
    "MultiStepObjective",
    "drift_jacobian",
    "kstep_losses",
    "mlp_with_jacobian",
    "one_step_jacobian",
    "spectral_norm",
    "window_tensors",
    "windows",
]
