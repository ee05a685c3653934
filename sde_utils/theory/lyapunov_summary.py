"""Simulations, tables, verdicts and metrics of notebook 05 (Lyapunov stability).

Inputs are dicts ``{model name: result}``, one entry per model of the fit: ``centres``
from :func:`~sde_utils.theory.report.lyapunov_centre`, ``checks`` from
:func:`lv_checks` (``{"continuous": ..., "discrete": ...}`` results of
:func:`~sde_utils.theory.report.lv_bound_check`) and ``lv_star`` the generator LV at
each x* (a float).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from sde_utils.checks import check_dt, check_int, check_positive, check_seed
from sde_utils.models.simulate import simulate
from sde_utils.theory.report import lv_bound_check

#: the fields of each ``lv_bound_check`` result notebook 05 records
LV_METRIC_KEYS = (
    "c",
    "d",
    "level",
    "fraction_satisfied",
    "LV_at_x_star",
    "n_fit",
    "n_check",
    "fraction_violating_check",
    "fraction_violating_sim",
    "max_violation",
    "max_V_fit",
    "max_V_seen",
    "level_over_max_V_fit",
    "level_over_max_V_seen",
    "passes",
    "failed",
    "fraction_LV_nonpositive_data",
    "fraction_LV_nonpositive_sim",
    "bound_holds",
    "max_excess_z",
    "t",
    "EV",
    "EV_se",
    "bound",
)


def lv_checks(
    model: nn.Module,
    centre: Mapping[str, Any],
    sim_starts: np.ndarray,
    states: np.ndarray,
    times: np.ndarray,
    dt: float,
    *,
    n_steps: int,
    n_paths: int,
    fine_steps: int,
    quantile: float,
    seed: int,
    t_star: float = 0.0,
    fit_fraction: float = 0.5,
    max_violation: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """LV and the ultimate bound in continuous time and for the Euler chain.

    Simulates ``n_paths`` paths from each of ``sim_starts (S, d)`` for ``n_steps`` tokens,
    once with one step per token (seed ``seed``) and once with ``fine_steps`` substeps
    per token (seed ``seed + 1``), and runs :func:`~sde_utils.theory.report.lv_bound_check`
    with the centre's P and x* (LV(x*) at ``t_star``) on the held-out ``states (N, d)`` at
    ``times (N,)``, split by ``seed`` into a share ``fit_fraction`` that fits (c, d) and the
    rest that checks it: on the fine paths with the continuous generator, on the token
    paths with the discrete one.

    Returns:
        ``{"continuous": lv_bound_check result, "discrete": lv_bound_check result}``.
    """
    dt = check_dt(dt)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    n_paths = check_int("n_paths", n_paths, minimum=2)
    fine_steps = check_int("fine_steps", fine_steps, minimum=1)
    seed = check_seed(seed)
    paths_tok = simulate(
        model, torch.as_tensor(sim_starts), n_steps=n_steps, dt=dt, n_paths=n_paths, seed=seed
    )
    paths_fine = simulate(
        model,
        torch.as_tensor(sim_starts),
        n_steps=n_steps * fine_steps,
        dt=dt / fine_steps,
        n_paths=n_paths,
        seed=seed + 1,
    )
    common = dict(
        P=centre["P"],
        x_star=centre["x_star"],
        states=states,
        times=times,
        quantile=quantile,
        t_star=t_star,
        fit_fraction=fit_fraction,
        max_violation=max_violation,
        seed=seed,
    )
    return {
        "continuous": lv_bound_check(
            model, paths=paths_fine, dt=dt / fine_steps, discrete=False, **common
        ),
        "discrete": lv_bound_check(model, paths=paths_tok, dt=dt, discrete=True, **common),
    }


def unstable_control(model: nn.Module, rate: float = 0.05) -> nn.Module:
    """A copy of a linear model (``A (d, d)`` buffer, drift x A^T + b) made unstable: A is
    shifted by (rate - max Re lambda(A)) I, so its largest real eigenvalue is ``rate`` > 0.

    The control of notebook 05: a drift that pushes away from x*, which the Lyapunov check
    must fail. ``rate`` per unit time (per token) keeps 64 simulated tokens finite.
    """
    if not isinstance(getattr(model, "A", None), torch.Tensor):
        raise TypeError(
            f"unstable_control needs a linear model with an A tensor (drift x A^T + b), "
            f"got {type(model).__name__}; pass the fit's linear_ou"
        )
    check_positive("rate", rate)
    out = copy.deepcopy(model)
    a = out.A.detach()
    shift = rate - float(np.linalg.eigvals(a.double().cpu().numpy()).real.max())
    with torch.no_grad():
        out.A.copy_(a + shift * torch.eye(a.shape[0], dtype=a.dtype, device=a.device))
    return out


def centre_table(
    centres: Mapping[str, Mapping[str, Any]],
    lv_star: Mapping[str, float],
    data_mean: np.ndarray,
) -> pd.DataFrame:
    """One row per model: roots found, the chosen x*, its linearisation and P, LV(x*)."""
    return pd.DataFrame.from_dict(
        {
            name: {
                "equilibria found": c["n_converged"],
                "best residual ‖μ‖": c["best_residual"],
                "x* from": c["x_star_source"],
                "‖x*‖": float(np.linalg.norm(c["x_star"])),
                "‖x* − data mean‖": float(np.linalg.norm(c["x_star"] - data_mean)),
                "max Re λ(A)": c["stability"]["max_real_eigenvalue"],
                "Hurwitz": c["stability"]["hurwitz"],
                "P from": c["P_source"],
                "min eig P": float(np.linalg.eigvalsh(c["P"]).min()),
                "LV(x*)": lv_star[name],
            }
            for name, c in centres.items()
        },
        orient="index",
    )


def roots_table(centres: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (model, root): converged, residual, starts that found it, norm, Hurwitz."""
    rows = []
    for name, c in centres.items():
        for i, e in enumerate(c["equilibria"]):
            rows.append(
                {
                    "model": name,
                    "root": i,
                    "converged": e["converged"],
                    "residual ‖μ‖": e["residual"],
                    "starts that found it": e["n_hits"],
                    "‖x‖": float(np.linalg.norm(e["x"])),
                    "Hurwitz": e.get("hurwitz"),
                }
            )
    return pd.DataFrame(rows).set_index(["model", "root"])


def lv_table(checks: Mapping[str, Mapping[str, Any]], lv_star: Mapping[str, float]) -> pd.DataFrame:
    """One row per model: LV(x*), the share of LV <= 0, the fitted c, d and level d/c, the
    shares of check and simulated states violating LV <= -c V + d, and pass / fail."""
    return pd.DataFrame.from_dict(
        {
            name: {
                "LV(x*)": lv_star[name],
                "share LV ≤ 0, held-out": ch["continuous"]["fraction_LV_nonpositive_data"],
                "share LV ≤ 0, simulated": ch["continuous"]["fraction_LV_nonpositive_sim"],
                "c (continuous)": ch["continuous"]["c"],
                "d (continuous)": ch["continuous"]["d"],
                "level d/c": ch["continuous"]["level"],
                "level / max V fitted": ch["continuous"]["level_over_max_V_fit"],
                "violating, held-out check": ch["continuous"]["fraction_violating_check"],
                "violating, simulated": ch["continuous"]["fraction_violating_sim"],
                "passes": ch["continuous"]["passes"],
                "c (Euler chain)": ch["discrete"]["c"],
                "level d/c (chain)": ch["discrete"]["level"],
                "passes (chain)": ch["discrete"]["passes"],
            }
            for name, ch in checks.items()
        },
        orient="index",
    )


def _form_line(label: str, f: Mapping) -> str:
    verdict = "PASSES" if f["passes"] else "FAILS (" + ", ".join(f["failed"]) + ")"
    return (
        f"   {label}: c = {f['c']:.3g}, d = {f['d']:.4g} (LV(x*) = {f['LV_at_x_star']:.4g}), "
        f"level d/c = {f['level']:.4g} = {f['level_over_max_V_fit']:.2f} x the largest fitted V "
        f"({f['max_V_fit']:.4g}); violated on {f['fraction_violating_check']:.1%} of "
        f"{f['n_check']} held-out check states and {f['fraction_violating_sim']:.1%} of "
        f"simulated states (allowed {f['max_violation']:.0%}); max (E V - bound) / SE = "
        f"{f['max_excess_z']:+.2f}: {verdict}"
    )


def _verdict_lines(name: str, c: Mapping, cont: Mapping, disc: Mapping, v: Mapping) -> list[str]:
    st, lv = c["stability"], v["LV_at_x_star"]
    eq = (
        f"{c['n_converged']} root(s), residual {c['best_residual']:.1e}"
        if c["n_converged"]
        else f"none (best residual {c['best_residual']:.3g})"
    )
    return [
        f"{name}: equilibrium {eq}; A {'is' if st['hurwitz'] else 'is not'} Hurwitz "
        f"(max Re λ = {st['max_real_eigenvalue']:.3g}); P from {c['P_source']}",
        f"   paper's LV <= 0: {'FAILS' if lv > 0 else 'holds'} near x* (LV(x*) = {lv:.4g}); "
        f"holds on {cont['fraction_LV_nonpositive_data']:.1%} of held-out and "
        f"{cont['fraction_LV_nonpositive_sim']:.1%} of simulated states",
        _form_line("LV <= -c V + d, continuous", cont),
        _form_line("Euler chain", disc),
    ]


def stability_verdicts(
    centres: Mapping[str, Mapping[str, Any]],
    checks: Mapping[str, Mapping[str, Any]],
    lv_star: Mapping[str, float],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per model: equilibrium, linear stability, the paper's LV <= 0 and the fitted bound.

    Returns:
        ``(verdicts, lines)``: ``verdicts[name]`` with ``equilibrium_found``,
        ``best_residual``, ``hurwitz``, ``P_source``, ``LV_at_x_star``,
        ``paper_condition_fails_near_x_star``, ``paper_fraction_LV_nonpositive_data``,
        ``paper_condition_holds_on_data``, ``bound_holds_continuous``,
        ``bound_holds_discrete``, ``level_over_max_V_seen`` (the level d/c over the
        largest V on held-out and simulated states), ``level_over_max_V_fit``,
        ``passes_continuous``, ``passes_discrete`` (the pass / fail of
        :func:`~sde_utils.theory.report.lv_bound_check`); ``lines`` the verdict in words.
    """
    verdicts, lines = {}, []
    for name, ch in checks.items():
        c, st = centres[name], centres[name]["stability"]
        cont, disc = ch["continuous"], ch["discrete"]
        v_max = float(max(cont["V_data"].max(), cont["V_sim"].max()))
        verdicts[name] = {
            "equilibrium_found": c["n_converged"] > 0,
            "best_residual": c["best_residual"],
            "hurwitz": st["hurwitz"],
            "P_source": c["P_source"],
            "LV_at_x_star": lv_star[name],
            "paper_condition_fails_near_x_star": bool(lv_star[name] > 0),
            "paper_fraction_LV_nonpositive_data": cont["fraction_LV_nonpositive_data"],
            "paper_condition_holds_on_data": bool(cont["fraction_LV_nonpositive_data"] == 1.0),
            "bound_holds_continuous": cont["bound_holds"],
            "bound_holds_discrete": disc["bound_holds"],
            "level_over_max_V_seen": cont["level"] / v_max,
            "level_over_max_V_fit": cont["level_over_max_V_fit"],
            "passes_continuous": cont["passes"],
            "passes_discrete": disc["passes"],
        }
        lines += _verdict_lines(name, c, cont, disc, verdicts[name])
    return verdicts, lines


def stability_metrics(
    centres: Mapping[str, Mapping[str, Any]],
    checks: Mapping[str, Mapping[str, Any]],
    lv_star: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """``{name: {...}}``: the centre, its linearisation and the :data:`LV_METRIC_KEYS` of
    both forms (``"continuous"``, ``"discrete"``)."""
    return {
        name: {
            "n_converged": c["n_converged"],
            "best_residual": c["best_residual"],
            "x_star_source": c["x_star_source"],
            "x_star": c["x_star"],
            "eigenvalues": c["stability"]["eigenvalues"],
            "max_real_eigenvalue": c["stability"]["max_real_eigenvalue"],
            "hurwitz": c["stability"]["hurwitz"],
            "P_source": c["P_source"],
            "P_min_eigenvalue": float(np.linalg.eigvalsh(c["P"]).min()),
            "lyapunov_residual": c["stability"]["lyapunov_residual"],
            "reason": c["reason"],
            "LV_at_x_star": lv_star[name],
            "continuous": {k: checks[name]["continuous"][k] for k in LV_METRIC_KEYS},
            "discrete": {k: checks[name]["discrete"][k] for k in LV_METRIC_KEYS},
        }
        for name, c in centres.items()
    }


__all__ = [
    "LV_METRIC_KEYS",
    "lv_checks",
    "unstable_control",
    "centre_table",
    "roots_table",
    "lv_table",
    "stability_verdicts",
    "stability_metrics",
]
