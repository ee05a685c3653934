r"""Linear growth of drift and diffusion (paper §3.1.2): certified and empirical constants.

The paper asks for a constant C with ||mu(x, t)||^2 + ||sigma(x, t)||^2 <= C (1 + ||x||^2)
for all x and t (Euclidean norms; ||sigma|| is the Frobenius norm of the diffusion matrix
G: diag(sigma) for a diagonal model, the full ``(d, d)`` G otherwise).
:func:`linear_growth` derives a certified C from the Lipschitz upper bounds of
:mod:`sde_utils.theory.lipschitz_upper` and the values at x = 0, and searches for the
largest ratio over data and spheres (a lower bound of the smallest valid C);
:func:`growth_ratio` is that ratio at given states and times.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sde_utils.checks import check_int, check_real, check_seed
from sde_utils.models.base import drift_diffusion_tensors
from sde_utils.theory._common import (
    as_float64,
    as_states,
    as_times,
    check_dim,
    diffusion_matrix,
    safe_ratio,
)
from sde_utils.theory.lipschitz_upper import certified_upper_bound


def _growth_ratio(model, x: torch.Tensor, times: np.ndarray) -> np.ndarray:
    """(T, N) values of (|mu|^2 + |G|_F^2) / (1 + |x|^2) (G: diag(sigma) or the full matrix)."""
    out = np.empty((len(times), x.shape[0]))
    den = (1.0 + x.pow(2).sum(1)).numpy()
    for i, ti in enumerate(times):
        mu, sg = drift_diffusion_tensors(model, x, float(ti))
        sg = torch.as_tensor(diffusion_matrix(sg, x.shape[0], x.shape[1], "linear_growth"))
        out[i] = (mu.pow(2).sum(1) + sg.pow(2).sum((1, 2))).numpy() / den
    return out


def _sup_over_horizon(m64, d: int, horizon: float, n: int, lip_t: dict) -> tuple:
    """(bound of sup_{t in [0, T]} |mu(0, t)|^2 + |sigma(0, t)|^2, what it covers), or
    (None, "the given times only: <reason>") when a Lipschitz constant in t is missing."""
    missing = [f"{w}: {why}" for w, (lip, why) in lip_t.items() if lip is None]
    if missing:
        return None, "the given times only (" + "; ".join(missing) + ")"
    grid = np.linspace(0.0, horizon, n)
    half = (grid[1] - grid[0]) / 2.0
    zero = torch.zeros(n, d, dtype=torch.float64)
    mu, sg = drift_diffusion_tensors(m64, zero, torch.as_tensor(grid))
    g = diffusion_matrix(sg, n, d, "linear_growth")
    a_mu = float(mu.norm(dim=1).max()) + lip_t["drift"][0] * half
    a_sg = float(np.sqrt((g**2).sum((1, 2))).max()) + lip_t["diffusion"][0] * half
    return a_mu**2 + a_sg**2, f"all t in [0, {horizon:g}]"


def linear_growth(
    model: nn.Module,
    states: Any,
    times: Any,
    radii: Any,
    *,
    n_directions: int = 64,
    seed: int = 0,
    K_mu: float | None = None,
    K_sigma: float | None = None,
    horizon: float | None = None,
    n_time_grid: int = 1025,
) -> dict[str, Any]:
    r"""Certified and empirical linear-growth constants C of (3.1.2), for all t in [0, T].

    Certified C. If |f(x) - f(0)| <= K_f |x| then |f(x)| <= |f(0)| + K_f |x|, and by
    Cauchy–Schwarz (a + b r)^2 = ((a, b) . (1, r))^2 <= (a^2 + b^2)(1 + r^2), with equality
    at r = b / a, so |f(x)|^2 <= (|f(0)|^2 + K_f^2)(1 + |x|^2) is the best constant from
    this argument. Summing drift and diffusion,

        C_certified = sup_t (|mu(0, t)|^2 + |sigma(0, t)|^2) + K_mu^2 + K_sigma^2,

    valid for all x. The sup over t in [0, T] (T = ``horizon``, default the largest of
    ``times``) is bounded, not sampled: with L_f a certified Lipschitz constant in t of
    f(0, t) (``time_lipschitz`` of
    :func:`~sde_utils.theory.lipschitz_upper.certified_upper_bound`: 0 for a time-free
    drift, the network's chain bound on the time-feature columns times the time
    encoding's Lipschitz constant otherwise), every t in [0, T] lies within h / 2 of one of
    ``n_time_grid`` evenly spaced times t_i (spacing h), so
    sup_t |f(0, t)| <= max_i |f(0, t_i)| + L_f h / 2; the sum of the squares of these two
    bounds (drift, diffusion) replaces the sup. ``certified_for`` says what is covered:
    "all t in [0, T]" or, when some L_f is unknown, "the given times only" with the reason
    (no C may then exist for all t, e.g. with unbounded time features). The textbook route
    (a + b r)^2 <= 2 a^2 + 2 b^2 r^2 gives C_simple = 2 max(a^2, b^2) with a^2, b^2 the
    two sums above; C_certified <= C_simple always.

    Empirical C. sup of (|mu|^2 + |sigma|^2) / (1 + |x|^2) over ``states`` x ``times``, over
    spheres |x| = r for each r in ``radii`` (``n_directions`` seeded random directions
    each) and at x = 0 (where the ratio is ``f0_sq``). Any such value is a lower bound of
    the smallest valid C.

    Args:
        model: an SDEModel. states: ``(N, d)``. times: float or ``(T,)``. radii: ``(R,)``.
        n_directions: random unit directions per radius; seed: their seed.
        horizon: T of [0, T] (>= the largest time; default the largest of ``times``).
        n_time_grid: grid times over [0, T] for the sup over t (>= 2).
        K_mu, K_sigma: upper bounds to use; by default the certified ones of
            :func:`~sde_utils.theory.lipschitz_upper.lipschitz_upper_bound` (pass them from
            :func:`~sde_utils.theory.lipschitz_lower.lipschitz_bracket` to
            avoid recomputing).

    Returns:
        ``{"C_certified", "C_simple", "C_empirical", "ratio", "reason", "K_mu", "K_sigma",
        "f0_sq" (T,) |mu(0,t)|^2 + |sigma(0,t)|^2 at ``times``, "f0_sq_sup" the certified
        bound of its sup over [0, T] (None if not certified), "horizon", "certified_for",
        "time_lipschitz_mu", "time_lipschitz_sigma", "sup_data", "sup_data_by_time" (T,),
        "radii" (R,), "sup_sphere" (R,), "times" (T,)}``.
    """
    n_directions = check_int("n_directions", n_directions, minimum=1)
    seed = check_seed(seed)
    if K_mu is not None:
        K_mu = check_real("K_mu", K_mu, minimum=0.0)
    if K_sigma is not None:
        K_sigma = check_real("K_sigma", K_sigma, minimum=0.0)
    x = as_states(states)
    d = x.shape[1]
    check_dim(model, d, "states")
    t = as_times(times)
    r = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if r.ndim != 1 or np.any(r < 0) or not np.all(np.isfinite(r)):
        raise ValueError(f"radii must be a 1-D array of finite values >= 0, got {radii!r}")
    n_time_grid = check_int("n_time_grid", n_time_grid, minimum=2)
    horizon = float(t.max()) if horizon is None else check_real("horizon", horizon)
    if horizon < t.max() or t.min() < 0:
        raise ValueError(
            f"times must lie in [0, horizon]; got times in [{t.min():g}, {t.max():g}] and "
            f"horizon={horizon:g} (pass a horizon >= the largest time, or times >= 0)"
        )
    m64 = as_float64(model)

    reasons, lip_t = [], {}
    for which, given in (("drift", K_mu), ("diffusion", K_sigma)):
        up = certified_upper_bound(m64, which, seed)
        lip_t[which] = (up["time_lipschitz"], up["time_reason"])
        if given is None:
            reasons += [up["reason"]] if up["reason"] else []
            K_mu, K_sigma = (up["upper"], K_sigma) if which == "drift" else (K_mu, up["upper"])

    zero = torch.zeros(1, d, dtype=torch.float64)
    f0 = _growth_ratio(m64, zero, t)[:, 0]  # at x = 0 the denominator is 1
    f0_sup, covered = _sup_over_horizon(m64, d, horizon, n_time_grid, lip_t)
    a2 = max(float(f0.max()), f0_sup) if f0_sup is not None else float(f0.max())
    if K_mu is None or K_sigma is None:
        c_cert = c_simple = None
    else:
        b2 = float(K_mu) ** 2 + float(K_sigma) ** 2
        c_cert, c_simple = a2 + b2, 2.0 * max(a2, b2)

    data = _growth_ratio(m64, x, t)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_directions, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sphere = np.array(
        [_growth_ratio(m64, torch.as_tensor(ri * u), t).max() for ri in r], dtype=np.float64
    )
    c_emp = float(max(data.max(), sphere.max() if sphere.size else -np.inf, f0.max()))
    return {
        "C_certified": c_cert,
        "C_simple": c_simple,
        "C_empirical": c_emp,
        "ratio": safe_ratio(c_cert, c_emp),
        "reason": "; ".join(reasons) or None,
        "K_mu": K_mu,
        "K_sigma": K_sigma,
        "f0_sq": f0,
        "f0_sq_sup": f0_sup,
        "horizon": horizon,
        "certified_for": covered,
        "time_lipschitz_mu": lip_t["drift"][0],
        "time_lipschitz_sigma": lip_t["diffusion"][0],
        "sup_data": float(data.max()),
        "sup_data_by_time": data.max(axis=1),
        "radii": r,
        "sup_sphere": sphere,
        "times": t,
    }


def growth_ratio(model: nn.Module, states: Any, times: Any) -> np.ndarray:
    """(|mu|^2 + |sigma|^2) / (1 + |x|^2) at ``states (N, d)``, each at its own time.

    Args:
        model: an SDEModel (evaluated on a float64 copy). states: ``(N, d)``.
        times: a float, or ``(N,)`` one time per state (e.g. the held-out states' own t).

    Returns:
        ``(N,)`` float64; every value is a lower bound of the smallest C of (3.1.2).
    """
    x = as_states(states)
    check_dim(model, x.shape[1], "states")
    t = as_times(times)
    if t.size not in (1, x.shape[0]):
        raise ValueError(f"times must be a float or ({x.shape[0]},), got {t.size} values")
    mu, sg = drift_diffusion_tensors(as_float64(model), x, torch.as_tensor(t))
    g = diffusion_matrix(sg, x.shape[0], x.shape[1], "growth_ratio")
    xs = x.numpy()
    return (np.sum(mu.numpy() ** 2, 1) + np.sum(g**2, (1, 2))) / (1 + np.sum(xs**2, 1))


__all__ = ["linear_growth", "growth_ratio"]
