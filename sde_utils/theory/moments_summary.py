r"""Moment checks of notebook 06 on the fitted models: runs, tables, verdicts, metrics.

1. :func:`continuous_moment_check` / :func:`token_moment_check`: the linear fit's mean
   and covariance ODEs against Monte Carlo at a fine step and at one step per token (and
   against the exact Euler-chain moments);
2. :func:`one_step_checks`: the one-step second-moment identity on held-out states;
3. :func:`recursion_check`: the n-th moment equation on one coordinate, at one step per
   token and at a finer step.

Paths are ``(T, n_paths, d)`` from :func:`sde_utils.models.simulate.simulate`, row k at
t = k dt from the start; Itô, diagonal sigma.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from sde_utils.checks import check_dt, check_int, check_seed
from sde_utils.models.base import drift_diffusion_at
from sde_utils.models.simulate import simulate
from sde_utils.theory._common import as_float64
from sde_utils.theory.moments import (
    along_paths,
    euler_chain_moments,
    linear_moment_odes,
    mc_mean_cov,
    moment_recursion_check,
    second_moment_terms,
)
from sde_utils.theory.report import agreement, moment_agreement, one_step_forms


def linear_coefficients(model: nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A (d, d)``, ``b (d,)``, ``sigma (d,)`` of a linear SDE (``LinearSDE``) as float64."""
    A = model.A.detach().double().numpy()
    b = model.b.detach().double().numpy()
    sig = model.sigma.detach().double().numpy()
    return A, b, sig


def continuous_moment_check(
    model: nn.Module,
    start: np.ndarray,
    dt: float,
    *,
    horizon: int,
    n_paths: int,
    fine_steps: int,
    seed: int,
) -> dict[str, Any]:
    """The mean and covariance ODEs of a linear SDE against Monte Carlo at step dt / fine_steps.

    From ``start (d,)`` (S(0) = 0), ``n_paths`` paths of ``horizon`` tokens at step
    ``h = dt / fine_steps`` (seed ``seed``) are compared at every whole token with the
    ODEs (:func:`~sde_utils.theory.report.moment_agreement`); ``bias`` compares the exact
    Euler chain at step h with the ODEs, in the same standard errors.

    Returns:
        ``{"A", "b", "sigma", "S0" (d, d) zeros, "tokens" (horizon + 1,), "h", "m_ode"
        (horizon + 1, d), "S_ode" (horizon + 1, d, d), "mc" (mc_mean_cov at the tokens),
        "agreement", "bias", "t_fine" (horizon * fine_steps + 1,), "m_ode_fine",
        "S_ode_fine" (the ODEs on the fine grid, for the figure)}``.
    """
    dt, seed = check_dt(dt), check_seed(seed)
    horizon = check_int("horizon", horizon, minimum=1)
    fine_steps = check_int("fine_steps", fine_steps, minimum=1)
    A, b, sig = linear_coefficients(model)
    d = len(start)
    tokens = np.arange(horizon + 1, dtype=np.float64) * dt
    S0 = np.zeros((d, d))
    m_ode, S_ode = linear_moment_odes(A, b, sig, start, S0, tokens)
    h = dt / fine_steps
    paths_fine = simulate(
        model,
        torch.as_tensor(start),
        n_steps=horizon * fine_steps,
        dt=h,
        n_paths=n_paths,
        seed=seed,
    )
    mc_fine = mc_mean_cov(paths_fine[::fine_steps].double().numpy())
    del paths_fine
    cont = moment_agreement(mc_fine, m_ode, S_ode)
    # the Euler chain at the fine step differs from the ODEs by O(h); in SE units:
    m_h, S_h = euler_chain_moments(A, b, sig, start, S0, h, horizon * fine_steps)
    bias = moment_agreement(
        {**mc_fine, "means": m_h[::fine_steps], "covs": S_h[::fine_steps]}, m_ode, S_ode
    )
    t_fine = np.arange(horizon * fine_steps + 1) * h
    m_ode_f, S_ode_f = linear_moment_odes(A, b, sig, start, S0, t_fine)
    return {
        "A": A,
        "b": b,
        "sigma": sig,
        "S0": S0,
        "tokens": tokens,
        "h": h,
        "m_ode": m_ode,
        "S_ode": S_ode,
        "mc": mc_fine,
        "agreement": cont,
        "bias": bias,
        "t_fine": t_fine,
        "m_ode_fine": m_ode_f,
        "S_ode_fine": S_ode_f,
    }


def continuous_moment_lines(res: Mapping[str, Any]) -> list[str]:
    """:func:`continuous_moment_check` in words: A's spectrum, the agreements, the bias."""
    eig = np.linalg.eigvals(res["A"]).real
    lines = [f"eigenvalues of A: real parts in [{eig.min():.3f}, {eig.max():.3f}]"]
    for key in ("means", "covs", "all"):
        a = res["agreement"][key]
        lines.append(
            f"{key:<5}: {a['n']} comparisons, max |z| = {a['max_abs_z']:.2f}, within 3 SE: "
            f"{a['fraction_within_3se']:.1%}, Bonferroni threshold {a['threshold']:.2f} -> "
            f"{'agree' if a['agree'] else 'DISAGREE'}"
        )
    lines.append(
        f"discretisation bias of the step h = {res['h']:g} (exact chain vs ODE): at most "
        f"{res['bias']['all']['max_abs_z']:.2f} SE"
    )
    return lines


def token_moment_check(
    model: nn.Module,
    start: np.ndarray,
    dt: float,
    continuous: Mapping[str, Any],
    *,
    n_paths: int,
    seed: int,
) -> dict[str, Any]:
    """One Euler step per token against the ODEs and against the exact Euler chain.

    ``continuous``: the result of :func:`continuous_moment_check` (its ODE solution and
    coefficients); ``n_paths`` paths of as many tokens, seed ``seed``.

    Returns:
        ``{"mc" (mc_mean_cov), "m_chain", "S_chain" (exact chain moments), "vs_odes",
        "vs_chain" (moment_agreement), "matching" (the forms that agree), "trace" (tr S at
        the horizon: ODE, chain, Monte Carlo)}``.
    """
    dt, seed = check_dt(dt), check_seed(seed)
    A, b, sig, S0 = (continuous[k] for k in ("A", "b", "sigma", "S0"))
    m_ode, S_ode = continuous["m_ode"], continuous["S_ode"]
    horizon = len(continuous["tokens"]) - 1
    paths_tok = simulate(
        model, torch.as_tensor(start), n_steps=horizon, dt=dt, n_paths=n_paths, seed=seed
    )
    mc_tok = mc_mean_cov(paths_tok.double().numpy())
    m_chain, S_chain = euler_chain_moments(A, b, sig, start, S0, dt, horizon)
    tok_ode = moment_agreement(mc_tok, m_ode, S_ode)
    tok_chain = moment_agreement(mc_tok, m_chain, S_chain)
    matching = [
        name
        for name, a in (("continuous ODEs", tok_ode), ("Euler chain", tok_chain))
        if a["all"]["agree"]
    ]
    tr = {
        k: float(np.trace(S[-1]))
        for k, S in (("ODE", S_ode), ("chain", S_chain), ("Monte Carlo", mc_tok["covs"]))
    }
    return {
        "mc": mc_tok,
        "m_chain": m_chain,
        "S_chain": S_chain,
        "vs_odes": tok_ode,
        "vs_chain": tok_chain,
        "matching": matching,
        "trace": tr,
    }


def token_moment_lines(res: Mapping[str, Any], horizon_time: float) -> list[str]:
    """:func:`token_moment_check` in words (``horizon_time``: the last token's time)."""
    ode, chain = res["vs_odes"]["all"], res["vs_chain"]["all"]
    return [
        f"one step per token: vs ODEs max |z| = {ode['max_abs_z']:.1f}; vs Euler chain max "
        f"|z| = {chain['max_abs_z']:.2f} (threshold {chain['threshold']:.2f})",
        f"total variance tr S at t = {horizon_time:g}: "
        + ", ".join(f"{k} {v:.4g}" for k, v in res["trace"].items()),
        f"forms that match the simulated chain: {res['matching'] or 'none'}",
    ]


def one_step_checks(
    models: Mapping[str, nn.Module],
    xs: np.ndarray,
    ts: np.ndarray,
    xs_real: np.ndarray,
    dt: float,
    eps: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Per model, the one-step second-moment terms at held-out states ``xs (N, d)`` (times
    ``ts (N,)``) and which form one simulated step (noise ``eps (N, d)``) and the real next
    states ``xs_real (N, d)`` obey.

    Returns:
        ``{name: {"terms": second_moment_terms, "sim": one_step_forms on the simulated
        step, "real": one_step_forms on the real next states}}``.
    """
    dt = check_dt(dt)
    out = {}
    for name, model in models.items():
        mu, sg = drift_diffusion_at(as_float64(model), xs, ts)
        x_next = xs + mu * dt + sg * np.sqrt(dt) * eps
        out[name] = {
            "terms": second_moment_terms(mu, sg, xs, dt),
            "sim": one_step_forms(xs, mu, sg, x_next, dt),
            "real": one_step_forms(xs, mu, sg, xs_real, dt),
        }
    return out


def one_step_table(one_step: Mapping[str, Mapping[str, Any]], coordinate: int) -> pd.DataFrame:
    """One row per model: the terms on ``coordinate`` and the z-scores of both forms."""
    rows, c = [], coordinate
    for name, o in one_step.items():
        terms, sim, real = o["terms"], o["sim"], o["real"]
        rows.append(
            {
                "model": name,
                "E X² (PC1)": terms["EX2"][c],
                "2E[Xμ]Δt": terms["cross"][c],
                "E[σ²]Δt": terms["diffusion"][c],
                "E[μ²]Δt²": terms["drift_sq"][c],
                "E[μ²]Δt² / E X²": terms["drift_sq"][c] / terms["EX2"][c],
                "dt2 share": terms["dt2_share"][c],
                "z Euler (sim)": sim["z_euler"][c],
                "z continuous (sim)": sim["z_continuous"][c],
                "max|z| Euler, all PCs": sim["euler_agreement"]["max_abs_z"],
                "max|z| continuous, all PCs": sim["continuous_agreement"]["max_abs_z"],
                "z Euler (real)": real["z_euler"][c],
                "z continuous (real)": real["z_continuous"][c],
            }
        )
    return pd.DataFrame(rows).set_index("model")


def recursion_check(
    model: nn.Module,
    start: np.ndarray,
    dt: float,
    *,
    n_steps: int,
    n_paths: int,
    fine_steps: int,
    coordinate: int,
    n_moments: int,
    seed: int,
) -> dict[str, Any]:
    """The n-th moment equation on ``coordinate`` at one step per token and at dt / fine_steps.

    ``n_paths`` paths of ``n_steps`` tokens from ``start (d,)`` (seed ``seed`` for both
    steps); :func:`~sde_utils.theory.moment_recursion_check` on each, with
    ``agreement`` verdicts ``ito``, ``euler``, the ``step`` and ``ito_gap`` = mean over
    steps of |Euler form - Itô form| ``(n_moments,)``.

    Returns:
        ``{"token": result, "fine": result, "gap_shrink" (n_moments,)}``: how much the Itô
        form's gap shrinks with the finer step (NaN where the two forms coincide exactly).
    """
    dt, seed = check_dt(dt), check_seed(seed)
    r: dict[str, Any] = {}
    for label, n_sub in (("token", 1), ("fine", fine_steps)):
        step = dt / n_sub
        paths = simulate(
            model,
            torch.as_tensor(start),
            n_steps=n_steps * n_sub,
            dt=step,
            n_paths=n_paths,
            seed=seed,
        )
        paths = paths.double().numpy()
        mu, sg = along_paths(model, paths, t0=0.0, dt=step)
        res = moment_recursion_check(
            paths[..., coordinate], mu[..., coordinate], sg[..., coordinate], step, n_max=n_moments
        )
        res["ito"], res["euler"] = agreement(res["z_ito"]), agreement(res["z_euler"])
        res["step"] = step
        res["ito_gap"] = np.abs(res["rhs_euler"] - res["rhs_ito"]).mean(axis=1)  # (n_moments,)
        r[label] = res
    # the forms can coincide exactly (always for n = 1; for a random walk also n = 2, 3): no gap
    real_gap = r["token"]["ito_gap"] > 1e-9 * np.abs(r["token"]["rhs_euler"]).mean(axis=1)
    fine_gap = np.maximum(r["fine"]["ito_gap"], 1e-300)
    r["gap_shrink"] = np.where(real_gap, r["token"]["ito_gap"] / fine_gap, np.nan)
    return r


def _shrink_text(gap_shrink: np.ndarray, none: str) -> list[str]:
    return [none if np.isnan(v) else f"{v:.1f}" for v in gap_shrink[1:]]


def recursion_table(recursion: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (model, step): max |z| of both forms per n, the verdicts, and on the
    fine row the Itô gap's shrink factors for n = 2.."""
    rows = []
    for name, r in recursion.items():
        for label in ("token", "fine"):
            res = r[label]
            rows.append(
                {
                    "model": name,
                    "step": res["step"],
                    **{f"max|z| Itô n={n}": res["max_abs_z_ito"][n - 1] for n in res["n"]},
                    **{f"max|z| Euler n={n}": res["max_abs_z_euler"][n - 1] for n in res["n"]},
                    "Itô agrees": res["ito"]["agree"],
                    "Euler agrees": res["euler"]["agree"],
                }
            )
        rows[-1]["Itô gap shrink (n=2..)"] = ", ".join(_shrink_text(r["gap_shrink"], "none"))
    return pd.DataFrame(rows).set_index(["model", "step"])


def moments_verdicts(
    continuous: Mapping[str, Any],
    token: Mapping[str, Any],
    one_step: Mapping[str, Mapping[str, Any]],
    recursion: Mapping[str, Mapping[str, Any]],
    picard: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Every verdict of notebook 06, each computed from the checks above (bools, or dicts
    of bools by model)."""
    return {
        "linear_moment_odes_match_continuous_monte_carlo": continuous["agreement"]["all"]["agree"],
        "token_chain_matches_odes": token["vs_odes"]["all"]["agree"],
        "token_chain_matches_euler_moments": token["vs_chain"]["all"]["agree"],
        "one_step_euler_form_holds": {
            n: o["sim"]["euler_agreement"]["agree"] for n, o in one_step.items()
        },
        "one_step_continuous_form_holds": {
            n: o["sim"]["continuous_agreement"]["agree"] for n, o in one_step.items()
        },
        "recursion_euler_holds_token": {
            n: r["token"]["euler"]["agree"] for n, r in recursion.items()
        },
        "recursion_ito_holds_token": {n: r["token"]["ito"]["agree"] for n, r in recursion.items()},
        "recursion_ito_holds_fine": {n: r["fine"]["ito"]["agree"] for n, r in recursion.items()},
        "recursion_ito_gap_shrinks": {
            n: bool(np.all(r["gap_shrink"][np.isfinite(r["gap_shrink"])] > 1.0))
            for n, r in recursion.items()
        },
        "picard_below_bound": {n: pc["bound_holds"] for n, pc in picard.items()},
        "picard_converges_to_em": {n: pc["converged"] for n, pc in picard.items()},
    }


def _holds(flag: bool) -> str:
    return "holds" if flag else "fails"


def moments_verdict_lines(
    continuous: Mapping[str, Any],
    token: Mapping[str, Any],
    one_step: Mapping[str, Mapping[str, Any]],
    recursion: Mapping[str, Mapping[str, Any]],
    *,
    coordinate: int,
    fine_factor: int,
) -> list[str]:
    """The verdicts of the moment checks in words, with the numbers they rest on.

    ``coordinate``: the coordinate of the one-step and n-th moment checks (0: PC1);
    ``fine_factor``: how many times smaller the recursion's fine step is.
    """
    a, ode, chain = (
        continuous["agreement"]["all"],
        token["vs_odes"]["all"],
        token["vs_chain"]["all"],
    )
    n_times = len(continuous["tokens"])
    lines = [
        f"Linear fit, continuous time: ODEs {'agree' if a['agree'] else 'DISAGREE'} with Monte "
        f"Carlo (max |z| {a['max_abs_z']:.2f} over {a['n']} means and covariances at {n_times} "
        f"times, threshold {a['threshold']:.2f}; {a['fraction_within_3se']:.1%} within 3 SE).",
        f"One step per token: the ODEs {'match' if ode['agree'] else 'do NOT match'} (max |z| "
        f"{ode['max_abs_z']:.1f}); the exact Euler-chain moments "
        f"{'match' if chain['agree'] else 'do NOT match'} (max |z| {chain['max_abs_z']:.2f}).",
    ]
    c = coordinate
    for name, o in one_step.items():
        t, eu, co = o["terms"], o["sim"]["euler_agreement"], o["sim"]["continuous_agreement"]
        lines.append(
            f"{name:<11} dt^2 term on PC{c + 1}: E[mu^2]dt^2 = {t['drift_sq'][c]:.4g} "
            f"({t['drift_sq'][c] / t['EX2'][c]:.2f} x E X^2, {t['dt2_share'][c]:.2f} x the "
            f"one-step change); simulated step: Euler form max|z| {eu['max_abs_z']:.2f} "
            f"({_holds(eu['agree'])}), continuous form max|z| {co['max_abs_z']:.1f} "
            f"({_holds(co['agree'])})"
        )
    for name, r in recursion.items():
        tk, fn = r["token"], r["fine"]
        n_max = int(tk["n"][-1])
        lines.append(
            f"{name:<11} n-th moment (n <= {n_max}), dt = {tk['step']:g}: Euler form max|z| "
            f"{tk['euler']['max_abs_z']:.2f} ({_holds(tk['euler']['agree'])}), paper's Itô form "
            f"max|z| {tk['ito']['max_abs_z']:.1f} ({_holds(tk['ito']['agree'])}); dt = "
            f"{fn['step']:g}: Itô form max|z| {fn['ito']['max_abs_z']:.2f} "
            f"({_holds(fn['ito']['agree'])}), its gap shrinks by "
            + ", ".join(_shrink_text(r["gap_shrink"], "(no gap)"))
            + f" (n = 2..{n_max}) for a step {fine_factor}x smaller"
        )
    return lines


def linear_metrics(continuous: Mapping[str, Any], token: Mapping[str, Any]) -> dict[str, Any]:
    """The linear-moment numbers notebook 06 records."""
    cont = continuous["agreement"]
    return {
        "continuous": {k: cont[k] for k in ("means", "covs", "all")},
        "continuous_step": continuous["h"],
        "discretisation_bias_max_z": continuous["bias"]["all"]["max_abs_z"],
        "token_vs_odes": token["vs_odes"]["all"],
        "token_vs_euler_chain": token["vs_chain"]["all"],
        "matching_forms": token["matching"],
        "trace_at_horizon": token["trace"],
        "max_abs_z_by_time_continuous": cont["max_abs_z_by_time"],
    }


def one_step_metrics(one_step: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: the dt^2 term, its share, E X^2 and the four agreements."""
    return {
        name: {
            "dt2_term": o["terms"]["drift_sq"],
            "dt2_share": o["terms"]["dt2_share"],
            "EX2": o["terms"]["EX2"],
            "sim_euler": o["sim"]["euler_agreement"],
            "sim_continuous": o["sim"]["continuous_agreement"],
            "real_euler": o["real"]["euler_agreement"],
            "real_continuous": o["real"]["continuous_agreement"],
        }
        for name, o in one_step.items()
    }


def recursion_metrics(recursion: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model and step ("token", "fine"): max |z|, verdicts and the Itô gap; and the
    gap's shrink factors."""
    keys = ("step", "max_abs_z_ito", "max_abs_z_euler", "ito", "euler", "ito_gap")
    return {
        name: {label: {k: r[label][k] for k in keys} for label in ("token", "fine")}
        | {"gap_shrink": r["gap_shrink"]}
        for name, r in recursion.items()
    }


__all__ = [
    "linear_coefficients",
    "continuous_moment_check",
    "continuous_moment_lines",
    "token_moment_check",
    "token_moment_lines",
    "one_step_checks",
    "one_step_table",
    "recursion_check",
    "recursion_table",
    "moments_verdicts",
    "moments_verdict_lines",
    "linear_metrics",
    "one_step_metrics",
    "recursion_metrics",
]
