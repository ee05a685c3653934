r"""What notebooks 04–06 compute on top of the theory checks, so they stay thin.

- :func:`z_scores`, :func:`agreement`: a Monte Carlo estimate against a reference, in
  standard errors, and one verdict for many comparisons at once;
- :func:`moment_agreement`: means and covariances of simulated paths against reference
  moments (the ODEs or the exact Euler chain);
- :func:`one_step_forms`: which one-step second-moment equation simulated steps obey, the
  Euler chain's (with the E[mu^2] dt^2 term) or the paper's continuous one (without);
- :func:`flatten_paths`: simulated paths as rows of states with their times;
- :func:`lyapunov_centre`: the equilibrium, its linearisation and the matrix P of
  V = (x - x*)^T P (x - x*), with a stated fallback when no P > 0 exists;
- :func:`lv_bound_check`: LV <= -c V + d fitted on part of the held-out states (and x*),
  checked on the rest, on simulated states and through the bound on E V(t) against
  Monte Carlo, with a pass / fail verdict;
- :func:`bracket_table`: Lipschitz brackets of several models as one table.

Conventions as in the rest of :mod:`sde_utils.theory`: states ``(N, d)``, paths
``(T, ..., d)`` with row k at time ``t0 + k dt``, Itô; every result is a
dict of floats and numpy arrays (pass it through :func:`~sde_utils.theory.to_jsonable`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from torch import nn

from sde_utils.checks import (
    check_bool,
    check_dt,
    check_fraction,
    check_positive,
    check_real,
    check_seed,
)
from sde_utils.theory._common import as_states
from sde_utils.theory.lyapunov import (
    expected_V,
    find_equilibria,
    fit_lv_bound,
    generator_LV,
    lyapunov_V,
    stability_at,
    ultimate_bound,
)

#: two-sided probability that a standard normal falls outside +-3 (~0.0027): the false
#: alarm rate of "within 3 standard errors" for one comparison.
ALPHA_3SE: float = float(2.0 * norm.sf(3.0))


def _array(name: str, value: Any) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    return a


def z_scores(estimate: Any, reference: Any, se: Any, *, atol: float = 1e-9) -> np.ndarray:
    """``(estimate - reference) / se`` elementwise (arrays broadcast together).

    Where ``se == 0`` the estimate is deterministic (e.g. the start of every path): the
    score is 0 when ``|estimate - reference| <= atol * (1 + |reference|)`` and +-inf
    otherwise, so an exact quantity is never divided by zero nor silently passed.
    """
    atol = check_positive("atol", atol, allow_zero=True)
    est, ref, s = _array("estimate", estimate), _array("reference", reference), _array("se", se)
    if np.any(s < 0):
        raise ValueError("se must be >= 0")
    est, ref, s = np.broadcast_arrays(est, ref, s)
    diff = est - ref
    z = np.divide(diff, s, out=np.zeros(diff.shape), where=s > 0)
    off = (s == 0) & (np.abs(diff) > atol * (1.0 + np.abs(ref)))
    z[off] = np.sign(diff[off]) * np.inf
    return z


def agreement(z: Any, *, alpha: float = ALPHA_3SE) -> dict[str, Any]:
    """One verdict for many z-scores: do estimate and reference agree everywhere?

    "Within 3 SE" is a test with false-alarm rate ``alpha`` = 0.27% for one comparison; over
    n comparisons some fall outside 3 SE by chance alone (about 0.0027 n of them when the
    reference is right). ``agree`` therefore uses the Bonferroni threshold
    ``norm.isf(alpha / (2 n))`` (3.0 for n = 1), keeping the chance of a false alarm for
    the whole family at most ``alpha``.

    Args:
        z: array of z-scores (any shape; +-inf allowed, NaN not).

    Returns:
        ``{"n", "max_abs_z", "fraction_within_3se", "within_3se_everywhere", "threshold",
        "agree"}``.
    """
    zz = np.asarray(z, dtype=np.float64).reshape(-1)
    if zz.size == 0 or np.any(np.isnan(zz)):
        raise ValueError(f"z must be a non-empty array without NaN, got {zz.size} values")
    alpha = check_fraction("alpha", alpha)
    n = int(zz.size)
    threshold = float(norm.isf(alpha / (2.0 * n)))
    max_abs = float(np.abs(zz).max())
    return {
        "n": n,
        "max_abs_z": max_abs,
        "fraction_within_3se": float(np.mean(np.abs(zz) <= 3.0)),
        "within_3se_everywhere": bool(max_abs <= 3.0),
        "threshold": threshold,
        "agree": bool(max_abs <= threshold),
    }


def moment_agreement(
    mc: Mapping[str, Any], means: Any, covs: Any, *, alpha: float = ALPHA_3SE
) -> dict[str, Any]:
    """Monte Carlo moments (:func:`~sde_utils.theory.mc_mean_cov`) against reference moments.

    Args:
        mc: ``{"means" (T, d), "covs" (T, d, d), "se_means" (T, d), "se_covs" (T, d, d)}``.
        means: ``(T, d)`` reference means; covs: ``(T, d, d)`` reference covariances, at the
            same times.

    Returns:
        ``{"z_means" (T, d), "z_covs" (T, d, d), "means": agreement, "covs": agreement over
        the upper triangle (i <= j, each entry once), "all": agreement over both,
        "max_abs_z_by_time" (T,)}``.
    """
    m, c = _array("means", means), _array("covs", covs)
    mc_m, mc_c = np.asarray(mc["means"], np.float64), np.asarray(mc["covs"], np.float64)
    if m.shape != mc_m.shape or c.shape != mc_c.shape:
        raise ValueError(
            f"reference moments {m.shape}, {c.shape} do not match Monte Carlo "
            f"{mc_m.shape}, {mc_c.shape}"
        )
    zm = z_scores(mc_m, m, mc["se_means"])
    zc = z_scores(mc_c, c, mc["se_covs"])
    iu = np.triu_indices(m.shape[1])
    zc_upper = zc[:, iu[0], iu[1]]  # (T, d (d + 1) / 2)
    both = np.concatenate([zm, zc_upper], axis=1)
    return {
        "z_means": zm,
        "z_covs": zc,
        "means": agreement(zm, alpha=alpha),
        "covs": agreement(zc_upper, alpha=alpha),
        "all": agreement(both, alpha=alpha),
        "max_abs_z_by_time": np.abs(both).max(axis=1),
    }


def one_step_forms(
    x: Any, mu: Any, sigma: Any, x_next: Any, dt: float, *, alpha: float = ALPHA_3SE
) -> dict[str, Any]:
    """Which second-moment step do simulated steps obey, per coordinate?

    With X' = X + mu dt + sigma sqrt(dt) eps (one Euler step from each row of ``x``):

    - Euler form: E X'^2 = E X^2 + 2 E[X mu] dt + E[mu^2] dt^2 + E[sigma^2] dt (exact);
    - the paper's continuous form stepped by dt: the same without E[mu^2] dt^2.

    Paired per row: the score of a form is the mean of ``X'^2 - (its prediction)`` over
    its standard error, so the shared randomness of X cancels.

    Args:
        x, mu, sigma, x_next: ``(N, d)``. dt: the step.

    Returns:
        ``{"observed" (d,) E X'^2, "euler" (d,), "continuous" (d,) predictions,
        "dt2_term" (d,) E[mu^2] dt^2, "z_euler" (d,), "z_continuous" (d,),
        "euler_agreement", "continuous_agreement" (see :func:`agreement`)}``.
    """
    dt = check_dt(dt)
    xs, m, s = _array("x", x), _array("mu", mu), _array("sigma", sigma)
    xn = _array("x_next", x_next)
    if not xs.shape == m.shape == s.shape == xn.shape or xs.ndim != 2 or xs.shape[0] < 2:
        raise ValueError(
            f"x, mu, sigma, x_next need equal shapes (N, d) with N >= 2, got {xs.shape}, "
            f"{m.shape}, {s.shape}, {xn.shape}"
        )
    n = xs.shape[0]
    dt2 = m**2 * dt**2
    euler = xs**2 + 2.0 * xs * m * dt + dt2 + s**2 * dt
    cont = euler - dt2
    out: dict[str, Any] = {
        "observed": (xn**2).mean(0),
        "euler": euler.mean(0),
        "continuous": cont.mean(0),
        "dt2_term": dt2.mean(0),
    }
    for key, pred in (("euler", euler), ("continuous", cont)):
        diff = xn**2 - pred
        z = z_scores(diff.mean(0), 0.0, diff.std(0, ddof=1) / np.sqrt(n))
        out[f"z_{key}"] = z
        out[f"{key}_agreement"] = agreement(z, alpha=alpha)
    return out


def flatten_paths(paths: Any, t0: float = 0.0, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Paths ``(T, ..., d)`` (row k at ``t0 + k dt``) as ``states (N, d)``, ``times (N,)``.

    Rows are time-major: all paths at t0 first, then at t0 + dt, and so on.
    """
    dt, t0 = check_dt(dt), check_real("t0", t0)
    p = np.asarray(paths.detach().cpu() if hasattr(paths, "detach") else paths, np.float64)
    if p.ndim < 2:
        raise ValueError(f"paths must be (T, ..., d), got shape {p.shape}")
    per_time = int(np.prod(p.shape[1:-1], dtype=np.int64))
    states = p.reshape(p.shape[0] * per_time, p.shape[-1])
    times = np.repeat(t0 + dt * np.arange(p.shape[0]), per_time)
    return states, times


def lyapunov_centre(
    model: nn.Module,
    starts: Any,
    t: float = 0.0,
    *,
    centre: Any = None,
    residual_tol: float = 1e-8,
) -> dict[str, Any]:
    """The point x* and matrix P of V = (x - x*)^T P (x - x*), as §3.2 / A.2 would have them.

    Solves mu(x, t) = 0 from every start (:func:`~sde_utils.theory.find_equilibria`). Among
    the converged roots, Hurwitz ones (a stable linearisation) come first, then the one
    closest to ``centre``. P solves A^T P + P A = -I at x* (:func:`stability_at`).

    Fallbacks, each stated in ``reason``: no converged root -> x* = ``centre``; a singular
    Lyapunov equation (e.g. zero drift: every point is an equilibrium and A = 0) or a P that
    is not positive definite (A not Hurwitz) -> P = I, so V = |x - x*|^2 is still a valid
    positive-definite candidate for LV <= -c V + d, just not one from the linearisation.

    Args:
        model: an SDEModel. starts: ``(S, d)``. t: the time at which the drift is frozen.
        centre: ``(d,)`` fallback and tie-breaker (default: the mean of ``starts``).
        residual_tol: a root is converged when ||mu(x*, t)|| <= residual_tol.

    Returns:
        ``{"equilibria": list (find_equilibria's, each with "hurwitz" and
        "max_real_eigenvalue" added when converged), "n_converged" (distinct converged
        roots), "x_star" (d,), "x_star_source": "equilibrium" | "centre", "best_residual",
        "stability" (stability_at at x*), "P" (d, d), "P_source": "lyapunov" | "identity",
        "reason": str | None}``.
    """
    t = check_real("t", t)
    x0 = as_states(starts, "starts").numpy()
    c = x0.mean(0) if centre is None else np.asarray(centre, dtype=np.float64).reshape(-1)
    if c.shape != (x0.shape[1],):
        raise ValueError(f"centre must have shape ({x0.shape[1]},), got {c.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no equilibrium" is reported below
        eqs = find_equilibria(model, x0, t, residual_tol=residual_tol)
    reasons = []
    converged = [e for e in eqs if e["converged"]]
    for e in converged:
        st = stability_at(model, e["x"], t)
        e["hurwitz"], e["max_real_eigenvalue"] = st["hurwitz"], st["max_real_eigenvalue"]
    best_res = float(min((e["residual"] for e in eqs), default=np.inf))
    if converged:
        chosen = min(converged, key=lambda e: (not e["hurwitz"], np.linalg.norm(e["x"] - c)))
        x_star, source = np.asarray(chosen["x"], dtype=np.float64), "equilibrium"
    else:
        x_star, source = c.copy(), "centre"
        reasons.append(
            f"no equilibrium from {len(x0)} starts (best residual ||mu|| = {best_res:.3g} > "
            f"{residual_tol:g}); V is centred at the given centre instead"
        )
    st = stability_at(model, x_star, t)
    if st["P"] is not None and st["P_positive_definite"]:
        p, p_source = st["P"], "lyapunov"
    else:
        p, p_source = np.eye(len(x_star)), "identity"
        why = st["reason"] or (
            f"A is not Hurwitz (max Re lambda = {st['max_real_eigenvalue']:.3g}), so the "
            "Lyapunov solution is not positive definite"
        )
        reasons.append(f"{why}; P = I used instead")
    return {
        "equilibria": eqs,
        "n_converged": len(converged),
        "x_star": x_star,
        "x_star_source": source,
        "best_residual": best_res,
        "stability": st,
        "P": p,
        "P_source": p_source,
        "reason": "; ".join(reasons) or None,
    }


def lv_bound_check(
    model: nn.Module,
    P: Any,
    x_star: Any,
    states: Any,
    times: Any,
    paths: Any,
    dt: float,
    *,
    t0: float = 0.0,
    t_star: float = 0.0,
    discrete: bool = False,
    quantile: float = 1.0,
    n_sigma: float = 3.0,
    fit_fraction: float = 0.5,
    max_violation: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    r"""LV <= -c V + d fitted on part of the held-out states, checked where it was not fitted.

    The held-out ``states`` are split at random (``seed``) into a *fit* part (a share
    ``fit_fraction``) and a *check* part. (c, d) is fitted (:func:`fit_lv_bound`) on the fit
    part together with x* itself, so d >= LV(x*) by construction. The inequality is then
    checked where it was not fitted: on the check part and on the simulated ``paths``
    (share of states violating it), and through the bound it implies on E V(t) against
    Monte Carlo. ``discrete=False``: the paper's generator LV and the continuous bound
    E V(t) <= V(0) e^{-ct} + d/c (1 - e^{-ct}) (compare with paths simulated at a small
    ``dt``); ``discrete=True``: the Euler chain's exact generator LV + dt mu^T P mu and the
    bound (1 - c dt)^k V(0) + d/c (1 - (1 - c dt)^k) (paths simulated at the same ``dt``).
    V(0) is the Monte Carlo mean of V at the start.

    The check passes (``passes``) when (i) at most ``max_violation`` of the check states
    and of the simulated states violate the inequality, (ii) Monte Carlo E V(t) stays
    below the bound within ``n_sigma`` SE at every time, and (iii) the level d/c is below
    the largest V among the fit states (``level_over_max_V_fit < 1``). (iii) rules out the
    vacuous fit: with LV > 0 at the outermost fit states (a random walk, an unstable
    drift), any (c, d) covering them has d/c above their V, and the "bound" only says that
    V stays below what was already seen.

    Args:
        model: an SDEModel. P: ``(d, d)``. x_star: ``(d,)``; t_star: the time at which
            LV(x*) is taken (where the drift was frozen to find x*).
        states: ``(N, d)`` held-out states, N >= 2; times: ``(N,)`` their times.
        paths: ``(T, ..., d)`` simulated with step ``dt`` from time ``t0``.
        quantile: of :func:`~sde_utils.theory.fit_lv_bound`.
        n_sigma: the bound holds when E V(t) <= bound + n_sigma SE at every time.
        fit_fraction: share of ``states`` used for the fit, in (0, 1).
        max_violation: the largest share of check / simulated states allowed to violate.
        seed: seeds the fit / check split.

    Returns:
        ``{"LV_data", "V_data", "dist_data" (N,), "fit_mask" (N,) bool, "LV_sim", "V_sim",
        "dist_sim" (M,), "fraction_LV_nonpositive_data", "fraction_LV_nonpositive_sim",
        "LV_at_x_star", "c", "d", "level", "fraction_satisfied" (fit states),
        "n_fit", "n_check", "fraction_violating_check", "fraction_violating_sim",
        "max_V_fit", "max_V_seen", "level_over_max_V_fit", "level_over_max_V_seen",
        "t" (T,) from 0, "EV" (T,), "EV_se" (T,), "bound" (T,), "bound_holds": bool,
        "max_excess_z": max over t > 0 of (E V - bound) / SE, "passes": bool,
        "failed": list of the failed criteria, "discrete"}``.
    """
    dt, t0, t_star = check_dt(dt), check_real("t0", t0), check_real("t_star", t_star)
    discrete = check_bool("discrete", discrete)
    n_sigma = check_positive("n_sigma", n_sigma)
    fit_fraction = check_fraction("fit_fraction", fit_fraction, open_low=True, open_high=True)
    max_violation = check_fraction("max_violation", max_violation, open_low=False)
    seed = check_seed(seed)
    p = np.asarray(P, dtype=np.float64)
    xs = np.asarray(x_star, dtype=np.float64).reshape(-1)
    x_data = as_states(states).numpy()
    t_data = np.asarray(times, dtype=np.float64).reshape(-1)
    if t_data.shape != (x_data.shape[0],):
        raise ValueError(f"times must be ({x_data.shape[0]},), got {t_data.shape}")
    n = x_data.shape[0]
    n_fit = int(round(fit_fraction * n))
    if not 1 <= n_fit < n:
        raise ValueError(
            f"fit_fraction={fit_fraction} of {n} states leaves {n_fit} to fit and "
            f"{n - n_fit} to check; both need >= 1 (pass more states)"
        )
    fit_mask = np.zeros(n, dtype=bool)
    fit_mask[np.random.default_rng(seed).permutation(n)[:n_fit]] = True
    x_sim, t_sim = flatten_paths(paths, t0, dt)
    gen_dt = dt if discrete else None
    out: dict[str, Any] = {"discrete": bool(discrete), "fit_mask": fit_mask}
    for key, xx, tt in (("data", x_data, t_data), ("sim", x_sim, t_sim)):
        lv = generator_LV(model, p, xs, xx, tt, dt=gen_dt)
        out[f"LV_{key}"] = lv
        out[f"V_{key}"] = lyapunov_V(p, xs, xx)
        out[f"dist_{key}"] = np.linalg.norm(xx - xs, axis=1)
        out[f"fraction_LV_nonpositive_{key}"] = float(np.mean(lv <= 0.0))
    lv_star = float(generator_LV(model, p, xs, xs, t_star, dt=gen_dt)[0])
    fit = fit_lv_bound(
        np.append(out["LV_data"][fit_mask], lv_star),
        np.append(out["V_data"][fit_mask], 0.0),
        quantile=quantile,
        dt=gen_dt,
    )
    c, d = fit["c"], fit["d"]
    slack = 1e-12 * max(1.0, abs(d))  # rounding of LV + c V, not a tolerance on the claim

    def violating(lv: np.ndarray, v: np.ndarray) -> float:
        return float(np.mean(lv > -c * v + d + slack)) if lv.size else 0.0

    arr = np.asarray(paths.detach().cpu() if hasattr(paths, "detach") else paths, np.float64)
    ev = expected_V(p, xs, arr.reshape(arr.shape[0], -1, arr.shape[-1]))
    tt = dt * np.arange(arr.shape[0])
    bound = ultimate_bound(ev["mean"][0], c, d, tt, dt=gen_dt)
    excess = z_scores(ev["mean"], bound, ev["se"])
    max_v_fit = float(out["V_data"][fit_mask].max())
    max_v_seen = float(max(out["V_data"].max(), out["V_sim"].max()))
    out.update(
        LV_at_x_star=lv_star,
        c=c,
        d=d,
        level=fit["level"],
        fraction_satisfied=fit["fraction_satisfied"],
        n_fit=n_fit,
        n_check=n - n_fit,
        fraction_violating_check=violating(out["LV_data"][~fit_mask], out["V_data"][~fit_mask]),
        fraction_violating_sim=violating(out["LV_sim"], out["V_sim"]),
        max_V_fit=max_v_fit,
        max_V_seen=max_v_seen,
        level_over_max_V_fit=fit["level"] / max_v_fit if max_v_fit > 0 else np.inf,
        level_over_max_V_seen=fit["level"] / max_v_seen if max_v_seen > 0 else np.inf,
        t=tt,
        EV=ev["mean"],
        EV_se=ev["se"],
        bound=bound,
        bound_holds=bool(np.all(excess <= n_sigma)),
        max_excess_z=float(excess[1:].max() if excess.size > 1 else excess.max()),
    )
    failed = [
        name
        for name, bad in (
            ("held-out violations", out["fraction_violating_check"] > max_violation),
            ("simulated violations", out["fraction_violating_sim"] > max_violation),
            ("Monte Carlo E V above the bound", not out["bound_holds"]),
            ("level d/c not below the largest fitted V", not out["level_over_max_V_fit"] < 1),
        )
        if bad
    ]
    out.update(passes=not failed, failed=failed, max_violation=float(max_violation))
    return out


def bracket_table(brackets: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Lipschitz brackets (:func:`~sde_utils.theory.lipschitz_bracket`) of several models.

    Returns:
        One row per (model, constant) for K_mu, K_sigma and K, columns ``lower``,
        ``upper`` (NaN when uncertified), ``ratio`` upper / lower and ``method`` (the
        certified upper bound used; for K the two methods joined by "+").
    """
    rows = []
    for name, br in brackets.items():
        for key in ("K_mu", "K_sigma", "K"):
            e = br[key]
            if key == "K":
                methods = [br[k]["upper_method"] for k in ("K_mu", "K_sigma")]
                method = " + ".join(str(m) for m in methods)
            else:
                method = e["upper_method"]
            up = np.nan if e["upper"] is None else float(e["upper"])
            ratio = np.nan if e["ratio"] is None else float(e["ratio"])
            rows.append(
                {
                    "model": name,
                    "constant": key,
                    "lower": float(e["lower"]),
                    "upper": up,
                    "ratio": ratio,
                    "method": method,
                }
            )
    return pd.DataFrame(rows).set_index(["model", "constant"])


__all__ = [
    "ALPHA_3SE",
    "z_scores",
    "agreement",
    "moment_agreement",
    "one_step_forms",
    "flatten_paths",
    "lyapunov_centre",
    "lv_bound_check",
    "bracket_table",
]
