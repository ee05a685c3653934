r"""Moment equations: continuous ODEs, the exact Euler chain, Monte Carlo checks (§3.3, A.3).

Itô, diagonal noise. For the linear SDE dX = (A X + b) dt + diag(sigma) dW the mean and
covariance obey (Itô's lemma)

    dm/dt = A m + b,        dS/dt = A S + S A^T + diag(sigma^2)           (continuous)

while the Euler–Maruyama chain X_{k+1} = (I + A dt) X_k + b dt + sigma sqrt(dt) eps_k
(what we simulate with a step of one token) has exactly

    m_{k+1} = (I + A dt) m_k + b dt,  S_{k+1} = (I + A dt) S_k (I + A dt)^T + diag(sigma^2) dt.

The two differ at O(dt^2) per step: the chain's S gets the extra A S A^T dt^2.

For any drift and diffusion, one Euler step gives, per coordinate, exactly

    E X_{k+1}^2 = E X_k^2 + 2 E[X mu] dt + E[mu^2] dt^2 + E[sigma^2] dt,

and the paper's continuous second-moment equation drops the E[mu^2] dt^2 term
(:func:`second_moment_terms`). For the n-th moment the paper's equation (A.3.2) reads
d/dt E X^n = n E[X^{n-1} mu] + n(n-1)/2 E[X^{n-2} sigma^2]; the Euler chain obeys
instead (E X_{k+1}^n - E X_k^n)/dt = E[((X + mu dt + sigma sqrt(dt) eps)^n - X^n)] / dt,
computed exactly from Gaussian moments (:func:`moment_recursion_check`).
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import nn

from sde_utils.checks import check_dt, check_int, check_positive, check_real
from sde_utils.models.base import drift_diffusion_tensors
from sde_utils.theory._common import as_float64, check_dim, require_diagonal


def _linear_inputs(A, b, sigma, m0, S0):
    a = np.asarray(A, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"A must be square (d, d), got shape {a.shape}")
    d = a.shape[0]
    bb = np.asarray(b, dtype=np.float64).reshape(-1)
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 1:
        if s.shape != (d,):
            raise ValueError(f"sigma (diagonal) must have shape ({d},), got {s.shape}")
        q = np.diag(s**2)
    elif s.shape == (d, d):
        q = s @ s.T  # a full noise matrix G: dX = ... + G dW, diffusion G G^T
    else:
        raise ValueError(f"sigma must have shape ({d},) or ({d}, {d}), got {s.shape}")
    m = np.asarray(m0, dtype=np.float64).reshape(-1)
    cov = np.asarray(S0, dtype=np.float64)
    if bb.shape != (d,) or m.shape != (d,) or cov.shape != (d, d):
        raise ValueError(
            f"need b ({d},), m0 ({d},), S0 ({d}, {d}); got {bb.shape}, {m.shape}, {cov.shape}"
        )
    return a, bb, q, m, cov


def linear_moment_odes(
    A: Any,
    b: Any,
    sigma: Any,
    m0: Any,
    S0: Any,
    times: Any,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of dX = (A X + b) dt + diag(sigma) dW by ``solve_ivp`` (DOP853).

    Args:
        A: ``(d, d)``. b: ``(d,)``. sigma: ``(d,)`` diagonal (or a full ``(d, d)`` G, then
            G G^T replaces diag(sigma^2)). m0: ``(d,)``, S0: ``(d, d)``: the moments at
            ``times[0]``. times: ``(T,)`` increasing.
        rtol, atol: solver tolerances.

    Returns:
        ``means (T, d)``, ``covs (T, d, d)`` (symmetrised).
    """
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    a, bb, q, m, cov = _linear_inputs(A, b, sigma, m0, S0)
    d = a.shape[0]
    tt = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if tt.ndim != 1 or tt.size == 0 or np.any(np.diff(tt) <= 0):
        raise ValueError(f"times must be a non-empty increasing 1-D array, got {times!r}")

    def rhs(_t, y):
        mm, ss = y[:d], y[d:].reshape(d, d)
        return np.concatenate([a @ mm + bb, (a @ ss + ss @ a.T + q).ravel()])

    y0 = np.concatenate([m, cov.ravel()])
    if tt.size == 1:
        return m[None].copy(), cov[None].copy()
    sol = solve_ivp(rhs, (tt[0], tt[-1]), y0, t_eval=tt, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    means = sol.y[:d].T.copy()
    covs = sol.y[d:].T.reshape(-1, d, d)
    return means, (covs + covs.transpose(0, 2, 1)) / 2.0


def euler_chain_moments(
    A: Any, b: Any, sigma: Any, m0: Any, S0: Any, dt: float, n_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact moments of X_{k+1} = (I + A dt) X_k + b dt + diag(sigma) sqrt(dt) eps_k.

    Returns:
        ``means (n_steps + 1, d)``, ``covs (n_steps + 1, d, d)``; row k is step k (t = k dt
        after the start), row 0 is (m0, S0).
    """
    dt = check_dt(dt)
    n_steps = check_int("n_steps", n_steps, minimum=0)
    a, bb, q, m, cov = _linear_inputs(A, b, sigma, m0, S0)
    f = np.eye(a.shape[0]) + a * dt
    means = [m]
    covs = [cov]
    for _ in range(int(n_steps)):
        m = f @ m + bb * dt
        cov = f @ cov @ f.T + q * dt
        cov = (cov + cov.T) / 2.0
        means.append(m)
        covs.append(cov)
    return np.stack(means), np.stack(covs)


def _weighted_mean_se(values: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and its standard error (None weights: plain Monte Carlo)."""
    n = values.shape[0]
    if w is None:
        mean = values.mean(axis=0)
        se = values.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
        return mean, se
    mean = np.tensordot(w, values, axes=(0, 0))
    return mean, np.zeros_like(mean)  # quadrature weights: the expectation is exact


def second_moment_terms(
    mu: Any,
    sigma: Any,
    x: Any,
    dt: float,
    *,
    x_next: Any = None,
    weights: Any = None,
) -> dict[str, np.ndarray]:
    """Terms of the one-step second-moment identity of the Euler chain, per coordinate.

    E X_{k+1}^2 = E X_k^2 + 2 E[X mu] dt + E[mu^2] dt^2 + E[sigma^2] dt (exact for one
    Euler step X_{k+1} = X + mu dt + sigma sqrt(dt) eps, eps independent of X). The paper's
    continuous equation, stepped by dt, keeps everything but E[mu^2] dt^2.

    Args:
        mu, sigma, x: ``(N, d)`` drift, diffusion and states at step k (sigma the diagonal).
        dt: the step.
        x_next: optional ``(N, d)`` states at step k + 1 (simulated): adds the observed
            E X_{k+1}^2 and its standard error.
        weights: optional ``(N,)`` probability weights (e.g. Gauss–Hermite quadrature
            nodes as ``x``), making every expectation exact for polynomial integrands;
            without them, plain Monte Carlo means with standard errors.

    Returns:
        dict of ``(d,)`` arrays: ``EX2``, ``cross`` = 2 E[X mu] dt, ``drift_sq`` =
        E[mu^2] dt^2, ``diffusion`` = E[sigma^2] dt, ``predicted_next`` (exact Euler sum),
        ``continuous_next`` (without the dt^2 term), ``dt2_share`` = drift_sq /
        |predicted_next - EX2| (the dt^2 term's share of the one-step change), ``*_se``
        standard errors (Monte Carlo; 0 with weights), and ``observed_next``,
        ``observed_next_se`` when ``x_next`` is given.
    """
    dt = check_dt(dt)
    xs = np.asarray(x, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    sg = np.asarray(sigma, dtype=np.float64)
    if xs.ndim == 1:
        xs, mu, sg = xs[:, None], mu.reshape(-1, 1), sg.reshape(-1, 1)
    if not xs.shape == mu.shape == sg.shape:
        raise ValueError(
            f"x, mu, sigma need equal shapes (N, d), got {xs.shape}, {mu.shape}, {sg.shape}"
        )
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (xs.shape[0],) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
            raise ValueError(f"weights must be ({xs.shape[0]},), >= 0, summing to 1")
    ex2, ex2_se = _weighted_mean_se(xs**2, w)
    cross, cross_se = _weighted_mean_se(2.0 * xs * mu * dt, w)
    drift_sq, drift_sq_se = _weighted_mean_se(mu**2 * dt**2, w)
    diff, diff_se = _weighted_mean_se(sg**2 * dt, w)
    pred_terms = xs**2 + 2.0 * xs * mu * dt + mu**2 * dt**2 + sg**2 * dt
    pred, pred_se = _weighted_mean_se(pred_terms, w)
    cont, cont_se = _weighted_mean_se(pred_terms - mu**2 * dt**2, w)
    change = np.abs(pred - ex2)
    out = {
        "EX2": ex2,
        "EX2_se": ex2_se,
        "cross": cross,
        "cross_se": cross_se,
        "drift_sq": drift_sq,
        "drift_sq_se": drift_sq_se,
        "diffusion": diff,
        "diffusion_se": diff_se,
        "predicted_next": pred,
        "predicted_next_se": pred_se,
        "continuous_next": cont,
        "continuous_next_se": cont_se,
        "dt2_share": np.divide(
            drift_sq, change, out=np.full_like(change, np.nan), where=change > 0
        ),
    }
    if x_next is not None:
        xn = np.asarray(x_next, dtype=np.float64).reshape(xs.shape)
        out["observed_next"], out["observed_next_se"] = _weighted_mean_se(xn**2, w)
    return out


def _double_factorial_odd(i: int) -> int:
    """(i - 1)!! = E[eps^i] for even i (1 for i = 0)."""
    out = 1
    for k in range(i - 1, 0, -2):
        out *= k
    return out


def _euler_increment_moment(x, mu, sigma, dt, n):
    """E[(x + mu dt + sigma sqrt(dt) eps)^n - x^n | x] / dt, exact (eps ~ N(0, 1))."""
    a, s = mu * dt, sigma * np.sqrt(dt)
    total = np.zeros_like(x)
    for j in range(1, n + 1):
        # E[(a + s eps)^j] = sum over even i of C(j, i) a^(j - i) s^i (i - 1)!!
        ej = sum(
            comb(j, i) * a ** (j - i) * s**i * _double_factorial_odd(i) for i in range(0, j + 1, 2)
        )
        total = total + comb(n, j) * x ** (n - j) * ej
    return total / dt


def moment_recursion_check(
    paths: Any, mu: Any, sigma: Any, dt: float, n_max: int = 4
) -> dict[str, np.ndarray]:
    """Monte Carlo check of the n-th moment equations on one coordinate of simulated paths.

    For n = 1..n_max and each step k, compares the finite difference
    ``lhs = (E X_{k+1}^n - E X_k^n) / dt`` with
    ``rhs_ito = n E[X^{n-1} mu] + n(n-1)/2 E[X^{n-2} sigma^2]`` (the paper's A.3.2, at X_k)
    and with ``rhs_euler``, the exact conditional expectation of the Euler step
    (see :func:`_euler_increment_moment`; equals rhs_ito + O(dt)). All expectations are
    sample means over the same paths; standard errors come from per-path values, and the
    ``z_*`` scores use the per-path *differences* lhs - rhs (so shared noise cancels).

    Args:
        paths: ``(T, n_paths)`` one coordinate of the states, step k in row k.
        mu, sigma: ``(T, n_paths)`` or ``(T - 1, n_paths)`` drift and diffusion of that
            coordinate evaluated along the paths (row k at X_k, t_k).
        dt: the step. n_max: highest moment.

    Returns:
        dict with ``n`` (n_max,) and ``(n_max, T - 1)`` arrays ``moments`` (E X_k^n, k < T-1),
        ``lhs``, ``lhs_se``, ``rhs_ito``, ``rhs_ito_se``, ``rhs_euler``, ``rhs_euler_se``,
        ``z_ito``, ``z_euler``; and ``(n_max,)`` ``max_abs_z_ito``, ``max_abs_z_euler``.
    """
    dt = check_dt(dt)
    n_max = check_int("n_max", n_max, minimum=1)
    x = np.asarray(paths, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"paths must be (T, n_paths) with T >= 2, n_paths >= 2, got {x.shape}")
    m = np.asarray(mu, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    for name, arr in (("mu", m), ("sigma", s)):
        if arr.shape not in ((x.shape[0], x.shape[1]), (x.shape[0] - 1, x.shape[1])):
            raise ValueError(f"{name} must have shape {x.shape} or {(x.shape[0] - 1, x.shape[1])}")
    xk, xn = x[:-1], x[1:]
    m, s = m[: xk.shape[0]], s[: xk.shape[0]]
    n_paths = x.shape[1]

    def mean_se(v):
        return v.mean(axis=1), v.std(axis=1, ddof=1) / np.sqrt(n_paths)

    keys = ["moments", "lhs", "lhs_se", "rhs_ito", "rhs_ito_se", "rhs_euler", "rhs_euler_se"]
    keys += ["z_ito", "z_euler"]
    out: dict[str, Any] = {k: [] for k in keys}
    for n in range(1, n_max + 1):
        lhs_p = (xn**n - xk**n) / dt
        ito_p = n * xk ** (n - 1) * m + 0.5 * n * (n - 1) * xk ** max(n - 2, 0) * s**2
        eul_p = _euler_increment_moment(xk, m, s, dt, n)
        out["moments"].append((xk**n).mean(axis=1))
        for key, per_path in (("lhs", lhs_p), ("rhs_ito", ito_p), ("rhs_euler", eul_p)):
            mean, se = mean_se(per_path)
            out[key].append(mean)
            out[f"{key}_se"].append(se)
        for key, per_path in (("z_ito", ito_p), ("z_euler", eul_p)):
            mean, se = mean_se(lhs_p - per_path)
            out[key].append(np.divide(mean, se, out=np.zeros_like(mean), where=se > 0))
    res = {k: np.stack(v) for k, v in out.items()}
    res["n"] = np.arange(1, n_max + 1)
    res["max_abs_z_ito"] = np.abs(res["z_ito"]).max(axis=1)
    res["max_abs_z_euler"] = np.abs(res["z_euler"]).max(axis=1)
    return res


def along_paths(
    model: nn.Module, paths: Any, t0: float = 0.0, dt: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Drift and diffusion evaluated along simulated paths (float64 copy of the model).

    Args:
        paths: ``(T, n_paths, d)``, row k at time t0 + k dt.

    Returns:
        ``mu (T, n_paths, d)``, ``sigma (T, n_paths, d)``; slice a coordinate for
        :func:`moment_recursion_check`.
    """
    dt, t0 = check_dt(dt), check_real("t0", t0)
    x = torch.as_tensor(np.asarray(paths.detach().cpu() if torch.is_tensor(paths) else paths))
    x = x.to(torch.float64)
    if x.ndim != 3:
        raise ValueError(f"paths must be (T, n_paths, d), got shape {tuple(x.shape)}")
    check_dim(model, x.shape[2], "paths")
    m64 = as_float64(model)
    mu, sg = np.empty(x.shape), np.empty(x.shape)
    for k in range(x.shape[0]):
        a, b = drift_diffusion_tensors(m64, x[k], t0 + k * dt)
        b = require_diagonal(b, x.shape[1], x.shape[2], "along_paths")
        mu[k], sg[k] = a.numpy(), b.numpy()
    return mu, sg


def mc_mean_cov(paths: Any) -> dict[str, Any]:
    """Monte Carlo means and covariances over paths, with standard errors.

    Args:
        paths: ``(T, n_paths, d)`` (as returned by the simulator).

    Returns:
        ``{"means" (T, d), "covs" (T, d, d) (unbiased), "se_means" (T, d),
        "se_covs" (T, d, d), "n_paths"}``. The SE of a covariance entry is the standard
        deviation of the centred products (x_i - m_i)(x_j - m_j) over paths / sqrt(n).
    """
    x = np.asarray(paths, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[1] < 2:
        raise ValueError(f"paths must be (T, n_paths, d) with n_paths >= 2, got {x.shape}")
    n = x.shape[1]
    means = x.mean(axis=1)
    covs = np.empty((x.shape[0], x.shape[2], x.shape[2]))
    se_covs = np.empty_like(covs)
    for k in range(x.shape[0]):  # one time at a time: (n, d, d) products, not (T, n, d, d)
        c = x[k] - means[k]
        prods = c[:, :, None] * c[:, None, :]
        covs[k] = prods.sum(axis=0) / (n - 1)
        se_covs[k] = prods.std(axis=0, ddof=1) / np.sqrt(n)
    return {
        "means": means,
        "covs": covs,
        "se_means": x.std(axis=1, ddof=1) / np.sqrt(n),
        "se_covs": se_covs,
        "n_paths": int(n),
    }


__all__ = [
    "linear_moment_odes",
    "euler_chain_moments",
    "second_moment_terms",
    "moment_recursion_check",
    "mc_mean_cov",
    "along_paths",
]
