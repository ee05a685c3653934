r"""Equilibria, Lyapunov functions and the generator LV (paper §3.2, Appendix A.2).

Conventions: Itô SDE dX = mu(X, t) dt + G(X, t) dW; states ``(N, d)``; the model's
diffusion is either the diagonal ``(N, d)`` (G = diag(sigma)) or the full ``(N, d, d)`` G.
V(x) = (x - x*)^T P (x - x*) with P symmetric positive definite; the generator is

    LV(x) = 2 (x - x*)^T P mu(x, t) + Tr(G^T P G)
          (= 2 (x - x*)^T P mu(x, t) + sum_i P_ii sigma_i(x, t)^2 for a diagonal G).

P comes from the Lyapunov equation A^T P + P A = -Q at the linearisation A = d mu / dx
(x*); P > 0 exactly when A is Hurwitz (all eigenvalues with negative real part).

The paper's condition LV <= 0 cannot hold near x*: LV(x*) = sum_i P_ii sigma_i(x*)^2 > 0
whenever sigma(x*) != 0 (the floor makes sigma > 0 everywhere for our models). The right
statement is LV <= -c V + d with c > 0, d >= 0; then d/dt E V = E LV <= -c E V + d and
Gronwall's inequality give E V(t) <= V(0) e^{-ct} + d/c (1 - e^{-ct}) (:func:`ultimate_bound`).

For the Euler chain with step dt (what we simulate, and what the data are), the exact
one-step drift of V is E[V(X_{k+1}) | X_k] - V(X_k) = dt (LV + dt mu^T P mu): pass ``dt`` to
:func:`generator_LV` for this discrete generator, and to :func:`ultimate_bound` for the
matching discrete bound E V_k <= (1 - c dt)^k V_0 + d/c (1 - (1 - c dt)^k).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
import torch
from torch import nn

from sde_utils.checks import (
    check_choice,
    check_dt,
    check_fraction,
    check_int,
    check_positive,
    check_real,
)
from sde_utils.models.base import drift_diffusion_tensors
from sde_utils.theory._common import (
    as_float64,
    as_states,
    as_times,
    check_dim,
    diffusion_matrix,
)


def _drift_and_jacobian(model: nn.Module, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """mu(x, t) (d,) and its Jacobian d mu / dx (d, d) for a float64 model."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    tt = torch.full((1,), float(t), dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return model.drift(z[None], tt)[0]

    jac = torch.func.jacfwd(f)(xt)
    with torch.no_grad():
        mu = f(xt)
    return mu.numpy(), jac.detach().numpy()


def find_equilibria(
    model: nn.Module,
    starts: Any,
    t: float = 0.0,
    *,
    method: str = "auto",
    residual_tol: float = 1e-8,
    dedupe_tol: float = 1e-6,
    max_nfev: int = 2000,
) -> list[dict[str, Any]]:
    """Solve mu(x, t) = 0 from several starts with ``scipy.optimize.root`` (autograd Jacobian).

    Args:
        model: an SDEModel (a float64 copy is used).
        starts: ``(S, d)`` starting states (e.g. data means, random data points).
        t: the time at which the drift is frozen.
        method: ``"hybr"`` (Powell hybrid), ``"lm"`` (Levenberg–Marquardt) or ``"auto"``
            (hybr, then lm from the same start if hybr did not converge).
        residual_tol: a root is *converged* when ||mu(x*, t)|| <= residual_tol.
        dedupe_tol: roots closer than ``dedupe_tol * (1 + ||x||)`` are merged.
        max_nfev: evaluation budget per start.

    Returns:
        A list of distinct solutions, converged ones first, each sorted by residual:
        ``{"x": (d,), "residual": ||mu||, "converged": bool, "n_hits": starts that found it,
        "start_index": first such start, "method": the solver used last, "scipy_success":
        bool, "message": str}``.
        Non-converged attempts (where the last solver stopped) are kept so a notebook can
        show them; a ``UserWarning`` says so when no start converged.
    """
    check_choice("method", method, ["auto", "hybr", "lm"])
    t = check_real("t", t)
    check_positive("residual_tol", residual_tol)
    check_positive("dedupe_tol", dedupe_tol)
    check_int("max_nfev", max_nfev, minimum=1)
    x0 = as_states(starts, "starts").numpy()
    check_dim(model, x0.shape[1], "starts")
    m64 = as_float64(model)

    def fun(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _drift_and_jacobian(m64, x, t)

    methods = ["hybr", "lm"] if method == "auto" else [method]
    found: list[dict[str, Any]] = []
    for i, start in enumerate(x0):
        for meth in methods:  # "auto": Levenberg–Marquardt where Powell's hybrid stalls
            opts = {"maxfev": max_nfev} if meth == "hybr" else {"maxiter": max_nfev}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                sol = scipy.optimize.root(fun, start, jac=True, method=meth, options=opts)
            x = np.asarray(sol.x, dtype=np.float64)
            res = float(np.linalg.norm(fun(x)[0])) if np.all(np.isfinite(x)) else np.inf
            if res <= residual_tol:
                break
        found.append(
            {
                "x": x,
                "residual": res,
                "converged": bool(res <= residual_tol),
                "n_hits": 1,
                "start_index": i,
                "method": meth,
                "scipy_success": bool(sol.success),
                "message": str(sol.message),
            }
        )
    found.sort(key=lambda r: (not r["converged"], r["residual"]))
    distinct: list[dict[str, Any]] = []
    for r in found:
        for kept in distinct:
            if kept["converged"] == r["converged"] and np.linalg.norm(
                kept["x"] - r["x"]
            ) <= dedupe_tol * (1.0 + np.linalg.norm(kept["x"])):
                kept["n_hits"] += 1
                kept["start_index"] = min(kept["start_index"], r["start_index"])
                break
        else:
            distinct.append(r)
    if not any(r["converged"] for r in distinct):
        best = min((r["residual"] for r in distinct), default=np.inf)
        warnings.warn(
            f"no equilibrium found from {len(x0)} starts at t={t}: best residual "
            f"||mu|| = {best:.3g} > residual_tol = {residual_tol:g}",
            stacklevel=2,
        )
    return distinct


def solve_lyapunov(A: Any, Q: Any = None) -> np.ndarray:
    """P solving A^T P + P A = -Q (``Q`` defaults to the identity), symmetrised.

    ``scipy.linalg.solve_continuous_lyapunov(a, q)`` solves a X + X a^H = q, so we pass
    a = A^T and q = -Q. P is positive definite iff A is Hurwitz (for Q > 0).
    """
    a = np.asarray(A, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"A must be square (d, d), got shape {a.shape}")
    q = np.eye(a.shape[0]) if Q is None else np.asarray(Q, dtype=np.float64)
    if q.shape != a.shape:
        raise ValueError(f"Q must have shape {a.shape} like A, got {q.shape}")
    p = scipy.linalg.solve_continuous_lyapunov(a.T, -q)
    return (p + p.T) / 2.0


def stability_at(model: nn.Module, x_star: Any, t: float = 0.0, Q: Any = None) -> dict[str, Any]:
    """Linearise the drift at ``x_star`` and build the Lyapunov matrix P.

    Returns:
        ``{"x_star" (d,), "t", "A" (d, d) = d mu/dx (x*), "eigenvalues" (d,) complex,
        "max_real_eigenvalue", "hurwitz": bool, "Q" (d, d), "P" (d, d),
        "lyapunov_residual": ||A^T P + P A + Q||_F / ||Q||_F, "P_eigenvalues" (d,),
        "P_positive_definite": bool, "drift_residual": ||mu(x*)||,
        "sigma_at_equilibrium" (d,) or (d, d) as the model returns it,
        "LV_at_equilibrium": Tr(G^T P G) at x*,
        "reason": None}``. ``LV_at_equilibrium > 0`` is why LV <= 0 cannot hold near x*.
        When the Lyapunov equation is singular (lambda_i + lambda_j = 0 for a pair of
        eigenvalues of A, e.g. A = 0 for a random walk) ``P`` is None, the P-derived
        numbers are NaN/None and ``reason`` says why.
    """
    t = check_real("t", t)
    xs = as_states(x_star, "x_star")[0].numpy()
    check_dim(model, xs.shape[0], "x_star")
    m64 = as_float64(model)
    mu, a = _drift_and_jacobian(m64, xs, t)
    q = np.eye(len(xs)) if Q is None else np.asarray(Q, dtype=np.float64)
    eig = np.linalg.eigvals(a)
    _, sig_raw = drift_diffusion_tensors(m64, torch.as_tensor(xs)[None], t)
    g = diffusion_matrix(sig_raw, 1, len(xs), "stability_at")[0]
    sig = sig_raw[0].numpy()
    # the Lyapunov operator P -> A^T P + P A is singular iff lambda_i + lambda_j = 0
    gap = float(np.abs(eig[:, None] + eig[None, :]).min())
    singular = gap <= 1e-12 * max(1.0, float(np.abs(eig).max()))
    out: dict[str, Any] = {
        "x_star": xs,
        "t": float(t),
        "A": a,
        "eigenvalues": eig,
        "max_real_eigenvalue": float(eig.real.max()),
        "hurwitz": bool(eig.real.max() < 0),
        "Q": q,
        "drift_residual": float(np.linalg.norm(mu)),
        "sigma_at_equilibrium": sig,
    }
    if singular:
        reason = (
            f"A^T P + P A = -Q has no unique solution: eigenvalues of A sum to ~0 in a pair "
            f"(min |lambda_i + lambda_j| = {gap:.3g}), e.g. a drift constant in x"
        )
        nan = float("nan")
        return {
            **out,
            "P": None,
            "reason": reason,
            "lyapunov_residual": nan,
            "P_eigenvalues": None,
            "P_positive_definite": False,
            "LV_at_equilibrium": nan,
        }
    p = solve_lyapunov(a, q)
    p_eig = np.linalg.eigvalsh(p)
    return {
        **out,
        "P": p,
        "reason": None,
        "lyapunov_residual": float(np.linalg.norm(a.T @ p + p @ a + q) / np.linalg.norm(q)),
        "P_eigenvalues": p_eig,
        "P_positive_definite": bool(p_eig.min() > 0),
        "LV_at_equilibrium": float(np.trace(g.T @ p @ g)),
    }


def lyapunov_V(P: Any, x_star: Any, states: Any) -> np.ndarray:
    """V(x) = (x - x*)^T P (x - x*) for ``states (..., d)`` (e.g. (N, d) or paths (T, n, d));
    returns the leading shape ``(...)``."""
    x = np.asarray(states.detach().cpu() if torch.is_tensor(states) else states, dtype=np.float64)
    p = np.asarray(P, dtype=np.float64)
    xs = np.asarray(x_star, dtype=np.float64).reshape(-1)
    if x.ndim < 1 or x.shape[-1] != xs.size or p.shape != (xs.size, xs.size):
        raise ValueError(
            f"need states (..., d), x_star (d,), P (d, d); got {x.shape}, {xs.shape}, {p.shape}"
        )
    y = x - xs
    return np.einsum("...i,ij,...j->...", y, p, y)


def expected_V(P: Any, x_star: Any, paths: Any) -> dict[str, np.ndarray]:
    """Monte Carlo E V(X_k) over paths ``(T, n_paths, d)``: ``{"mean" (T,), "se" (T,)}``."""
    v = lyapunov_V(P, x_star, paths)
    if v.ndim != 2 or v.shape[1] < 2:
        raise ValueError(f"paths must be (T, n_paths, d) with n_paths >= 2, got {np.shape(paths)}")
    return {"mean": v.mean(axis=1), "se": v.std(axis=1, ddof=1) / np.sqrt(v.shape[1])}


def generator_LV(
    model: nn.Module, P: Any, x_star: Any, states: Any, t: Any = 0.0, dt: float | None = None
) -> np.ndarray:
    """LV(x) = 2 (x - x*)^T P mu(x, t) + Tr(G^T P G) for a batch of states.

    Args:
        model: an SDEModel whose diffusion is the diagonal ``(N, d)`` (G = diag(sigma)) or
            the full ``(N, d, d)`` G; any other shape is a ValueError.
        P: ``(d, d)``. x_star: ``(d,)``.
        states: ``(N, d)``. t: a float, or ``(N,)`` one time per state.
        dt: if given, the Euler chain's discrete generator
            (E[V(X_{k+1}) | X_k = x] - V(x)) / dt = LV(x) + dt mu^T P mu (exact).

    Returns:
        ``(N,)`` float64 array.
    """
    x = as_states(states)
    check_dim(model, x.shape[1], "states")
    p = np.asarray(P, dtype=np.float64)
    d = x.shape[1]
    if p.shape != (d, d):
        raise ValueError(f"P must have shape ({d}, {d}), got {p.shape}")
    tt = as_times(t, "t")
    if tt.size not in (1, x.shape[0]):
        raise ValueError(
            f"t must be a float or have one time per state ({x.shape[0]}), got {tt.size}"
        )
    mu, sig = drift_diffusion_tensors(as_float64(model), x, torch.as_tensor(tt))
    g = diffusion_matrix(sig, x.shape[0], d, "generator_LV")
    mu = mu.numpy()
    xs = np.asarray(x_star, dtype=np.float64).reshape(-1)
    if xs.shape != (d,):
        raise ValueError(f"x_star must have shape ({d},) like the states, got {xs.shape}")
    y = x.numpy() - xs[None]
    lv = 2.0 * np.einsum("ni,ij,nj->n", y, p, mu) + np.einsum("nij,ik,nkj->n", g, p, g)
    if dt is not None:
        dt = check_dt(dt)
        lv = lv + dt * np.einsum("ni,ij,nj->n", mu, p, mu)
    return lv


def fit_lv_bound(
    LV: Any,
    V: Any,
    *,
    c_grid: Any = None,
    quantile: float = 1.0,
    dt: float | None = None,
) -> dict[str, Any]:
    r"""Fit LV <= -c V + d on data: the (c, d) with the smallest ultimate level d / c.

    For each c, d(c) = max_i (LV_i + c V_i) (``quantile`` = 1: the inequality then holds at
    every given state) or the ``quantile`` of LV_i + c V_i (holds on that fraction; not a
    certificate). Among the c of ``c_grid`` we pick the one minimising d(c)/c, the level
    that E V(t) cannot exceed for long (:func:`ultimate_bound`); with s = 1/c,
    d(c)/c = max_i (LV_i s + V_i) is convex in s, so the grid minimum is refined by a
    bounded scalar search between its neighbours.

    Args:
        LV: ``(N,)`` generator values (:func:`generator_LV`). V: ``(N,)`` values of V.
        c_grid: candidate rates (> 0); default 400 log-spaced values in [1e-6, 1e3].
        quantile: in (0, 1].
        dt: for the Euler chain: pass the discrete generator (``generator_LV(..., dt=dt)``)
            as ``LV``; only c <= 1/dt are considered (the discrete bound needs c dt <= 1).

    Returns:
        ``{"c", "d", "level" = d/c, "quantile", "fraction_satisfied" (share of states with
        LV <= -c V + d), "fraction_LV_nonpositive" (the paper's LV <= 0), "c_grid", "d_grid",
        "level_grid"}``.
    """
    lv = np.asarray(LV, dtype=np.float64).reshape(-1)
    v = np.asarray(V, dtype=np.float64).reshape(-1)
    if lv.shape != v.shape or lv.size == 0:
        raise ValueError(f"LV and V must be non-empty with equal shapes, got {lv.shape}, {v.shape}")
    quantile = check_fraction("quantile", quantile, open_low=True, open_high=False)
    c_max = np.inf if dt is None else 1.0 / check_dt(dt)
    if c_grid is None:
        grid = np.geomspace(1e-6, 1e3, 400)
    else:
        grid = np.asarray(c_grid, dtype=np.float64).reshape(-1)
        if grid.size == 0 or np.any(grid <= 0):
            raise ValueError(f"c_grid must hold values > 0, got {c_grid!r}")
    grid = np.sort(grid[grid <= c_max])
    if grid.size == 0:
        raise ValueError(f"no c in c_grid is <= 1/dt = {c_max:g}")

    def d_of(c: float) -> float:
        vals = lv + c * v
        return float(vals.max() if quantile == 1.0 else np.quantile(vals, quantile))

    d_grid = np.array([d_of(c) for c in grid])
    level = d_grid / grid
    i = int(np.argmin(level))
    c_best, d_best = float(grid[i]), float(d_grid[i])
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    if hi > lo:
        res = scipy.optimize.minimize_scalar(
            lambda c: d_of(c) / c, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}
        )
        if res.fun < level[i]:
            c_best, d_best = float(res.x), d_of(float(res.x))
    return {
        "c": c_best,
        "d": d_best,
        "level": d_best / c_best,
        "quantile": float(quantile),
        "fraction_satisfied": float(np.mean(lv <= -c_best * v + d_best + 1e-12 * np.abs(d_best))),
        "fraction_LV_nonpositive": float(np.mean(lv <= 0.0)),
        "c_grid": grid,
        "d_grid": d_grid,
        "level_grid": level,
    }


def ultimate_bound(V0: Any, c: float, d: float, t: Any, dt: float | None = None) -> np.ndarray:
    """Bound on E V(t) implied by LV <= -c V + d.

    Continuous time (``dt`` None): V0 e^{-c t} + d/c (1 - e^{-c t}).
    Euler chain with step ``dt`` (t = k dt): with LV the discrete generator,
    E V_{k+1} <= (1 - c dt) E V_k + d dt, hence
    E V_k <= (1 - c dt)^k V0 + d/c (1 - (1 - c dt)^k), valid for 0 < c dt <= 1.

    Args:
        V0: E V at t = 0 (a float). c: > 0. d: the offset. t: a float or ``(T,)`` times,
            measured from the start.

    Returns:
        ``(T,)`` array.
    """
    c = check_positive("c", c)
    d = check_real("d", d)
    tt = as_times(t, "t")
    if np.any(tt < 0):
        raise ValueError(f"t must be >= 0, got min {tt.min()}")
    if dt is None:
        decay = np.exp(-c * tt)
    else:
        dt = check_dt(dt)
        if c * dt > 1.0:
            raise ValueError(f"the discrete bound needs c * dt <= 1, got c={c}, dt={dt}")
        decay = (1.0 - c * dt) ** (tt / dt)
    return float(V0) * decay + d / c * (1.0 - decay)


__all__ = [
    "find_equilibria",
    "solve_lyapunov",
    "stability_at",
    "lyapunov_V",
    "expected_V",
    "generator_LV",
    "fit_lv_bound",
    "ultimate_bound",
]
