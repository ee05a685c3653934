r"""Linear growth of drift and diffusion (paper §3.1.2): certified and empirical constants.

The paper asks for a constant C with ||mu(x, t)||^2 + ||sigma(x, t)||^2 <= C (1 + ||x||^2)
for all x and t (Euclidean norms, sigma the diagonal of the diffusion matrix).
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
from sde_utils.models.base import drift_diffusion_at, drift_diffusion_tensors
from sde_utils.theory._common import as_float64, as_states, as_times, check_dim, safe_ratio
from sde_utils.theory.lipschitz_upper import certified_upper_bound


def _growth_ratio(model, x: torch.Tensor, times: np.ndarray) -> np.ndarray:
    """(T, N) values of (|mu|^2 + |sigma|^2) / (1 + |x|^2)."""
    out = np.empty((len(times), x.shape[0]))
    den = (1.0 + x.pow(2).sum(1)).numpy()
    for i, ti in enumerate(times):
        mu, sg = drift_diffusion_tensors(model, x, float(ti))
        out[i] = (mu.pow(2).sum(1) + sg.pow(2).sum(1)).numpy() / den
    return out


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
) -> dict[str, Any]:
    r"""Certified and empirical linear-growth constants C of (3.1.2), over the time grid.

    Certified C. If |f(x) - f(0)| <= K_f |x| then |f(x)| <= |f(0)| + K_f |x|, and by
    Cauchy–Schwarz (a + b r)^2 = ((a, b) . (1, r))^2 <= (a^2 + b^2)(1 + r^2), with equality
    at r = b / a, so |f(x)|^2 <= (|f(0)|^2 + K_f^2)(1 + |x|^2) is the best constant from
    this argument. Summing drift and diffusion,

        C_certified = max_t (|mu(0, t)|^2 + |sigma(0, t)|^2) + K_mu^2 + K_sigma^2,

    valid for all x and every t of the grid (the values at x = 0 depend on t; with
    unbounded time features no C may exist for all t). The textbook route
    (a + b r)^2 <= 2 a^2 + 2 b^2 r^2 gives C_simple = 2 max(a^2, b^2) with a^2, b^2 the
    two sums above; C_certified <= C_simple always.

    Empirical C. sup of (|mu|^2 + |sigma|^2) / (1 + |x|^2) over ``states`` x ``times``, over
    spheres |x| = r for each r in ``radii`` (``n_directions`` seeded random directions
    each) and at x = 0 (where the ratio is ``f0_sq``). Any such value is a lower bound of
    the smallest valid C.

    Args:
        model: an SDEModel. states: ``(N, d)``. times: float or ``(T,)``. radii: ``(R,)``.
        n_directions: random unit directions per radius; seed: their seed.
        K_mu, K_sigma: upper bounds to use; by default the certified ones of
            :func:`~sde_utils.theory.lipschitz_upper.lipschitz_upper_bound` (pass them from
            :func:`~sde_utils.theory.lipschitz_lower.lipschitz_bracket` to
            avoid recomputing).

    Returns:
        ``{"C_certified", "C_simple", "C_empirical", "ratio", "reason", "K_mu", "K_sigma",
        "f0_sq" (T,) |mu(0,t)|^2 + |sigma(0,t)|^2, "sup_data", "sup_data_by_time" (T,),
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
    m64 = as_float64(model)

    reasons = []
    if K_mu is None:
        up = certified_upper_bound(m64, "drift", seed)
        K_mu = up["upper"]
        reasons += [up["reason"]] if up["reason"] else []
    if K_sigma is None:
        up = certified_upper_bound(m64, "diffusion", seed)
        K_sigma = up["upper"]
        reasons += [up["reason"]] if up["reason"] else []

    zero = torch.zeros(1, d, dtype=torch.float64)
    f0 = _growth_ratio(m64, zero, t)[:, 0]  # at x = 0 the denominator is 1
    a2 = float(f0.max())
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
    c_emp = float(max(data.max(), sphere.max() if sphere.size else -np.inf, a2))
    return {
        "C_certified": c_cert,
        "C_simple": c_simple,
        "C_empirical": c_emp,
        "ratio": safe_ratio(c_cert, c_emp),
        "reason": "; ".join(reasons) or None,
        "K_mu": K_mu,
        "K_sigma": K_sigma,
        "f0_sq": f0,
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
    mu, sg = drift_diffusion_at(as_float64(model), x, t)
    xs = x.numpy()
    return (np.sum(mu**2, 1) + np.sum(sg**2, 1)) / (1 + np.sum(xs**2, 1))


__all__ = ["linear_growth", "growth_ratio"]
