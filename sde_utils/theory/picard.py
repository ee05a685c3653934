r"""Picard iteration on one fixed Brownian path (paper Appendix A.1.2), on the time grid.

The paper's successive approximations, discretised with left-point Itô sums on the grid
t_k = t0 + k dt (k = 0..n) with the Brownian increments dW_j = W(t_{j+1}) - W(t_j):

    X^(0)_k = x0,
    X^(m+1)_k = x0 + sum_{j<k} mu(X^(m)_j, t_j) dt + sum_{j<k} sigma(X^(m)_j, t_j) * dW_j.

The fixed point of this map is exactly the Euler–Maruyama solution Y on the same path
(Y_{k+1} = Y_k + mu(Y_k) dt + sigma(Y_k) dW_k). Since X^(m)_k depends on X^(m-1)_j for
j < k only, X^(m)_k = Y_k for k <= m: the iteration reaches Y exactly after n iterations.

Pathwise bound (the one we test). Norms: Euclidean on states, sup over the grid. With
K_mu, K_sigma Lipschitz constants in x of the drift and of the diffusion vector, and
||(sigma(a) - sigma(b)) * dW_j|| <= K_sigma ||a - b|| ||dW_j||_inf, the differences
delta^(m)_k = ||X^(m)_k - X^(m-1)_k|| obey delta^(m+1)_k <= sum_{j<k} w_j delta^(m)_j with
weights w_j = K_mu dt + K_sigma ||dW_j||_inf. By induction (choose the largest index)

    sup_k ||X^(m+1)_k - X^(m)_k|| <= Delta_0 e_m(w_0, ..., w_{n-1}),
    sup_k ||X^(m)_k - Y_k||       <= E_0 e_m(w_0, ..., w_{n-1}),

with Delta_0 = sup_k ||X^(1)_k - x0||, E_0 = sup_k ||x0 - Y_k|| and e_m the elementary
symmetric polynomial of degree m (e_0 = 1, e_m = 0 for m > n). For constant weights
w_j = K dt (K_sigma = 0) it is the binomial form C(n, m) (K dt)^m. Maclaurin's inequality
gives the factorial relaxation e_m(w) <= (sum_j w_j)^m / m! = (K_mu T + K_sigma
sum_j ||dW_j||_inf)^m / m!, T = n dt: the continuous (K T)^m / m! rate with the Brownian
part measured by the path's increments.

The paper's continuous-time bound is in mean square (Itô isometry), E sup|X^(m+1) -
X^(m)|^2 <= C (L T)^m / m! with L = 2 K^2 (T + 4) (Doob), and does not apply to one fixed
path: the Itô integral along a single path is not Lipschitz in its integrand in the sup
norm. On the grid it is, with the constants above. The bounds need *upper* bounds of the
Lipschitz constants (:func:`sde_utils.theory.lipschitz_upper_bound`); a lower bound does
not make them valid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from sde_utils.checks import check_dt, check_int, check_real
from sde_utils.models.base import drift_diffusion_tensors
from sde_utils.theory._common import as_float64, as_states, check_dim, require_diagonal
from sde_utils.theory.lipschitz_upper import certified_upper_bound


def _inputs(model, x0, brownian_increments, dt, t0):
    """The checked arguments shared by the public functions: ``(m64, x0 (d,), dW (n, d),
    dt, t0)``."""
    dt, t0 = check_dt(dt), check_real("t0", t0)
    x = as_states(x0, "x0")
    if x.shape[0] != 1:
        raise ValueError(f"x0 must be one state (d,), got shape {tuple(x.shape)}")
    dw = torch.as_tensor(np.asarray(brownian_increments), dtype=torch.float64)
    if dw.ndim != 2 or dw.shape[1] != x.shape[1] or dw.shape[0] == 0:
        raise ValueError(
            f"brownian_increments must be (n_steps, d) with d={x.shape[1]}, got {tuple(dw.shape)}"
        )
    check_dim(model, x.shape[1], "x0")
    return as_float64(model), x[0], dw, dt, t0


def _grid_times(t0: float, dt: float, n: int) -> torch.Tensor:
    return t0 + dt * torch.arange(n, dtype=torch.float64)


def _em(m64, x: torch.Tensor, dw: torch.Tensor, dt: float, t0: float) -> np.ndarray:
    ts = _grid_times(t0, dt, dw.shape[0])
    out = [x]
    for j in range(dw.shape[0]):
        mu, sg = drift_diffusion_tensors(m64, out[-1][None], ts[j])
        sg = require_diagonal(sg, 1, x.shape[-1], "euler_maruyama_path")
        out.append(out[-1] + mu[0] * dt + sg[0] * dw[j])
    return torch.stack(out).numpy()


def _iterates(
    m64, x: torch.Tensor, dw: torch.Tensor, dt: float, t0: float, n_iter: int
) -> list[np.ndarray]:
    n = dw.shape[0]
    ts = _grid_times(t0, dt, n)
    path = x.expand(n + 1, -1).clone()
    out = [path.numpy().copy()]
    for _ in range(int(n_iter)):
        mu, sg = drift_diffusion_tensors(m64, path[:-1], ts)  # all grid points in one batch
        sg = require_diagonal(sg, n, x.shape[-1], "picard_iterates")
        path = torch.cat([x[None], x[None] + torch.cumsum(mu * dt + sg * dw, dim=0)])
        out.append(path.numpy().copy())
    return out


def euler_maruyama_path(
    model: nn.Module, x0: Any, brownian_increments: Any, dt: float, t0: float = 0.0
) -> np.ndarray:
    """Euler–Maruyama on one path: ``(n_steps + 1, d)``, row k at t0 + k dt.

    Args:
        x0: ``(d,)``. brownian_increments: ``(n_steps, d)``, dW_j ~ N(0, dt I).
    """
    m64, x, dw, dt, t0 = _inputs(model, x0, brownian_increments, dt, t0)
    return _em(m64, x, dw, dt, t0)


def picard_iterates(
    model: nn.Module,
    x0: Any,
    brownian_increments: Any,
    dt: float,
    t0: float = 0.0,
    n_iter: int = 10,
) -> list[np.ndarray]:
    """Picard iterates X^(0), ..., X^(n_iter) on one Brownian path (module docstring).

    Args:
        model: an SDEModel (evaluated in float64). x0: ``(d,)``.
        brownian_increments: ``(n_steps, d)``. dt: the step; t0: the first grid time.
        n_iter: number of iterations (n_steps iterations reach the Euler–Maruyama path).

    Returns:
        ``n_iter + 1`` arrays of shape ``(n_steps + 1, d)``; iterate m in position m.
    """
    n_iter = check_int("n_iter", n_iter, minimum=0)
    m64, x, dw, dt, t0 = _inputs(model, x0, brownian_increments, dt, t0)
    return _iterates(m64, x, dw, dt, t0, n_iter)


def elementary_symmetric_log(w: Any, m_max: int) -> np.ndarray:
    """log e_m(w) for m = 0..m_max (``-inf`` where e_m = 0), stable for large sums.

    e_m(w) = sum over j_1 < ... < j_m of w_{j_1} ... w_{j_m}, for w >= 0, from the
    recursion e_m(w_0..w_j) = e_m(w_0..w_{j-1}) + w_j e_{m-1}(w_0..w_{j-1}) in log space.
    """
    m_max = check_int("m_max", m_max, minimum=0)
    ww = np.asarray(w, dtype=np.float64).reshape(-1)
    if np.any(ww < 0):
        raise ValueError("weights must be >= 0")
    le = np.full(m_max + 1, -np.inf)
    le[0] = 0.0
    with np.errstate(divide="ignore"):
        lw = np.log(ww)
    for lwj in lw:
        le[1:] = np.logaddexp(le[1:], lwj + le[:-1])
    return le


def _sup_norm(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=-1).max())


def picard_convergence(
    model: nn.Module,
    x0: Any,
    brownian_increments: Any,
    dt: float,
    t0: float = 0.0,
    n_iter: int | None = None,
    *,
    K_mu: float | None = None,
    K_sigma: float | None = None,
) -> dict[str, Any]:
    """Picard differences and distances to Euler–Maruyama against the pathwise bounds.

    Args:
        model, x0, brownian_increments, dt, t0: as :func:`picard_iterates`.
        n_iter: iterations (default n_steps + 1, enough to reach the fixed point).
        K_mu, K_sigma: *upper* bounds of the Lipschitz constants in x of the drift and of
            the diffusion vector (Euclidean norms); by default the certified ones of
            :func:`sde_utils.theory.lipschitz_upper_bound` (ValueError if unavailable).

    Returns:
        ``{"iteration" (n_iter + 1,) = 0..n_iter, "sup_diff" (n_iter,) = sup_k ||X^(m+1)_k -
        X^(m)_k|| for m = 0..n_iter-1, "dist_to_em" (n_iter + 1,), "bound_diff" (n_iter,)
        = Delta_0 e_m(w), "bound_diff_factorial" (n_iter,) = Delta_0 (sum w)^m / m!,
        "bound_dist" (n_iter + 1,) = E_0 e_m(w), "bound_dist_factorial" (n_iter + 1,),
        "log10_bound_diff" (n_iter,), "weights_sum", "K_mu", "K_sigma", "n_steps", "T",
        "em_path" (n_steps + 1, d)}``. Bounds overflowing float64 are ``inf`` (their log10
        is finite).
    """
    m64, x, dw, dt, t0 = _inputs(model, x0, brownian_increments, dt, t0)
    n = dw.shape[0]
    n_iter = n + 1 if n_iter is None else check_int("n_iter", n_iter, minimum=1)
    consts = {}
    for name, which, given in (("K_mu", "drift", K_mu), ("K_sigma", "diffusion", K_sigma)):
        if given is None:
            up = certified_upper_bound(m64, which)
            if up["upper"] is None:
                raise ValueError(f"no certified {name} for this model ({up['reason']}); pass it")
            given = up["upper"]
        consts[name] = check_real(name, given, minimum=0.0)
    iterates = _iterates(m64, x, dw, dt, t0, n_iter)
    em = _em(m64, x, dw, dt, t0)

    sup_diff = np.array([_sup_norm(iterates[m + 1], iterates[m]) for m in range(n_iter)])
    dist = np.array([_sup_norm(it, em) for it in iterates])
    w = consts["K_mu"] * dt + consts["K_sigma"] * dw.abs().max(dim=1).values.numpy()
    w_sum = float(w.sum())
    le = elementary_symmetric_log(w, n_iter)
    m = np.arange(n_iter + 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # w_sum = 0: 0 * log 0, fixed below
        lfact = m * np.log(w_sum) - np.array([math.lgamma(k + 1) for k in m])
    lfact[0] = 0.0  # (sum w)^0 / 0! = 1, also when sum w = 0
    delta0, e0 = sup_diff[0], dist[0]

    def scaled(c: float, log_factor: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.where(c == 0.0, 0.0, c * np.exp(log_factor))  # no 0 * inf

    bound_diff, bound_fact = scaled(delta0, le[:-1]), scaled(delta0, lfact[:-1])
    bound_dist, bound_dist_fact = scaled(e0, le), scaled(e0, lfact)
    with np.errstate(divide="ignore"):
        log10_bound = (np.log(delta0) + le[:-1]) / np.log(10.0)
    return {
        "iteration": m,
        "sup_diff": sup_diff,
        "dist_to_em": dist,
        "bound_diff": bound_diff,
        "bound_diff_factorial": bound_fact,
        "bound_dist": bound_dist,
        "bound_dist_factorial": bound_dist_fact,
        "log10_bound_diff": log10_bound,
        "weights_sum": w_sum,
        "K_mu": consts["K_mu"],
        "K_sigma": consts["K_sigma"],
        "n_steps": int(n),
        "T": float(n * dt),
        "em_path": em,
    }


__all__ = [
    "euler_maruyama_path",
    "picard_iterates",
    "elementary_symmetric_log",
    "picard_convergence",
]
