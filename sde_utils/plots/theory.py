"""Figures of notebooks 04-06 (the theory checks), one function per figure.

Each takes the results of :mod:`sde_utils.theory` (dicts ``{model name: result}`` in
the fit's order) and returns a Figure; the notebook hands it to
:func:`sde_utils.plots.show`. Nothing here computes a result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

Results = Mapping[str, Mapping[str, Any]]


# ----------------------------------------------------------------------------- 04


def _bracket_marks(ax, brackets: Results, keys, floor: float) -> None:
    for j, (key, label) in enumerate(keys):
        for i, name in enumerate(brackets):
            e = brackets[name][key]
            x = i + (j - 1) * 0.25
            lo, up = e["lower"], e["upper"]
            if up is not None and up > 0:
                ax.plot(
                    [x, x],
                    [max(lo, floor), up],
                    color=f"C{j}",
                    lw=5,
                    alpha=0.45,
                    solid_capstyle="butt",
                )
                ax.plot(x, up, marker="v", color=f"C{j}", ms=8, label=label if i == 0 else None)
            if lo > 0:
                ax.plot(x, lo, marker="^", color=f"C{j}", ms=8)
            if up == 0.0:
                ax.plot(
                    x,
                    floor,
                    marker="o",
                    mfc="white",
                    color=f"C{j}",
                    ms=7,
                    label=label if i == 0 else None,
                )


def plot_lipschitz_brackets(brackets: Results, times: Sequence[float]) -> plt.Figure:
    """Left: the bracket [lower, upper] of K_mu, K_sigma and K per model (log scale, an
    exact 0 drawn as a circle at the bottom). Right: the largest Jacobian norm on the
    held-out states at each time of ``times (T,)`` (``lower_by_time``).

    ``brackets``: :func:`~sde_utils.theory.lipschitz_bracket` results by model.
    """
    names = list(brackets)
    keys = [("K_mu", "K_μ (drift)"), ("K_sigma", "K_σ (diffusion)"), ("K", "K = K_μ + K_σ")]
    positive = [
        v
        for br in brackets.values()
        for k, _ in keys
        for v in (br[k]["lower"], br[k]["upper"])
        if v
    ]
    floor = min(positive) / 3.0 if positive else 1e-3
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1.6, 1]})
    _bracket_marks(ax, brackets, keys, floor)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("Lipschitz constant in x")
    ax.set_title("Brackets: ▼ certified upper, ▲ searched lower")
    ax.set_xlabel("○ at the bottom: exactly 0 (zero drift, or constant σ)", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    for name in names:
        for key, ls in (("K_mu", "-"), ("K_sigma", "--")):
            by_t = np.asarray(brackets[name][key]["lower_by_time"])
            if by_t.max() > 0:
                ax_t.plot(times, by_t, ls, marker="o", ms=3, label=f"{name} {key}")
    ax_t.set_xlabel("t (tokens)")
    ax_t.set_ylabel("max ‖J(x, t)‖₂ over held-out states")
    ax_t.set_title("Largest Jacobian norm on held-out states, by t")
    ax_t.legend(fontsize=7)
    return fig


def plot_linear_growth(
    growth: Results,
    norms: np.ndarray,
    ratios: Mapping[str, np.ndarray],
    radii: Sequence[float],
) -> plt.Figure:
    """One panel per model (a 2 x 2 grid, shared log axes): the growth ratio
    (|mu|^2 + |sigma|^2) / (1 + |x|^2) at held-out states against their norm, the sup on
    each sphere, the value at x = 0 and the certified C.

    Args:
        growth: :func:`~sde_utils.theory.linear_growth` results by model (at most 4).
        norms: ``(N,)`` the held-out states' norms, in units of ``radii``.
        ratios: ``{name: (N,)}`` the ratio at each held-out state
            (:func:`~sde_utils.theory.growth_ratio`).
        radii: ``(R,)`` the sphere radii of ``growth`` in the same units as ``norms``.
    """
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True, sharey=True)
    for i, (ax, (name, g)) in enumerate(zip(axes.ravel(), growth.items(), strict=False)):
        ax.scatter(
            norms, ratios[name], s=4, alpha=0.3, color="0.5", label="held-out states (own t)"
        )
        ax.plot(
            radii,
            g["sup_sphere"],
            marker="o",
            ms=4,
            color=f"C{i}",
            label="sup on the sphere (t grid)",
        )
        ax.plot(
            radii[0] / 2,
            np.max(g["f0_sq"]),
            marker="D",
            ms=7,
            color=f"C{i}",
            ls="none",
            label="x = 0 (drawn at the left)",
        )
        if g["C_certified"] is not None:
            ax.axhline(
                g["C_certified"],
                color=f"C{i}",
                ls="--",
                lw=1.2,
                label=f"certified C = {g['C_certified']:.3g}",
            )
        ax.set_title(name)
        ax.legend(fontsize=7, loc="lower left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for ax in axes[1]:
        ax.set_xlabel("‖x‖ / RMS norm of the held-out states")
    for ax in axes[:, 0]:
        ax.set_ylabel("(‖μ‖² + ‖σ‖²) / (1 + ‖x‖²)")
    fig.suptitle(
        "Linear growth: the ratio against the radius, and the certified C", fontweight="bold"
    )
    return fig


# ----------------------------------------------------------------------------- 05


def plot_eigenvalues(centres: Results) -> plt.Figure:
    """One panel per model: the eigenvalues of A = dmu/dx at x* in the complex plane.

    ``centres``: :func:`~sde_utils.theory.report.lyapunov_centre` results by model.
    """
    fig, axes = plt.subplots(
        1,
        len(centres),
        figsize=(3.2 * len(centres), 3.5),
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    axes = axes[0]
    for i, (ax, (name, c)) in enumerate(zip(axes, centres.items(), strict=True)):
        ev = c["stability"]["eigenvalues"]
        left = min(-0.1, 1.15 * float(ev.real.min()))
        ax.set_xlim(left, 0.1 * abs(left))
        ax.axvline(0.0, color="k", lw=0.8)
        ax.scatter(ev.real, ev.imag, color=f"C{i}", s=30, zorder=3)
        ax.set_title(
            f"{name}\n{'Hurwitz' if c['stability']['hurwitz'] else 'not Hurwitz'}", fontsize=10
        )
        ax.set_xlabel("Re λ")
    axes[0].set_ylabel("Im λ")
    fig.suptitle("Eigenvalues of A = ∂μ/∂x at x*", fontweight="bold")
    return fig


def _lv_histogram(ax, r: Mapping[str, Any], i: int) -> None:
    both = np.concatenate([r["LV_data"], r["LV_sim"]])
    lo, hi = np.percentile(both, [0.5, 99.5])
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):  # LV constant (zero drift, constant sigma)
        lo, hi = lo - 1.0, hi + 1.0
    bins = np.linspace(lo, hi, 60)
    ax.hist(
        np.clip(r["LV_sim"], lo, hi),
        bins=bins,
        density=True,
        alpha=0.5,
        color="0.55",
        label="simulated",
    )
    ax.hist(
        np.clip(r["LV_data"], lo, hi),
        bins=bins,
        density=True,
        alpha=0.6,
        color=f"C{i}",
        label="held-out",
    )
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel("LV (clipped to the 0.5–99.5% range)")
    ax.set_title(
        f"LV ≤ 0 on {r['fraction_LV_nonpositive_data']:.0%} of held-out states", fontsize=9
    )


def plot_lv(checks: Results, lv_star: Mapping[str, float], seed: int) -> plt.Figure:
    """Top row: LV against ||x - x*|| on held-out and (at most 4000, drawn with ``seed``)
    simulated states, symlog scale, LV(x*) starred. Bottom row: histograms of LV.

    ``checks``: ``{name: {"continuous": lv_bound_check result, ...}}``
    (:func:`~sde_utils.theory.lyapunov_summary.lv_checks`); ``lv_star``: LV(x*) by model.
    """
    fig, axes = plt.subplots(
        2, len(checks), figsize=(3.6 * len(checks), 7.4), layout="constrained", squeeze=False
    )
    for i, (name, ch) in enumerate(checks.items()):
        r = ch["continuous"]
        ax = axes[0, i]
        sub = np.random.default_rng(seed).choice(
            len(r["LV_sim"]), size=min(4000, len(r["LV_sim"])), replace=False
        )
        ax.scatter(
            r["dist_sim"][sub], r["LV_sim"][sub], s=3, alpha=0.25, color="0.55", label="simulated"
        )
        ax.scatter(r["dist_data"], r["LV_data"], s=4, alpha=0.5, color=f"C{i}", label="held-out")
        ax.plot(0.0, lv_star[name], marker="*", ms=13, color="k", ls="none", label="LV(x*)")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_yscale("symlog", linthresh=10.0)
        ax.set_title(name)
        ax.set_xlabel("‖x − x*‖")
        _lv_histogram(axes[1, i], r, i)
    axes[0, 0].set_ylabel("LV(x)  (symlog)")
    axes[1, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(
        "The paper's condition LV ≤ 0: LV against the distance to x*, and its histogram",
        fontweight="bold",
    )
    return fig


def plot_ultimate_bound(checks: Results, fine_steps: int) -> plt.Figure:
    """Monte Carlo E V(t) (band: ±3 SE) against the bound and the level d/c, per model:
    top row continuous time (step dt / ``fine_steps``), bottom row the Euler chain; each
    title ends with the check's pass / fail (``lv_bound_check``'s ``passes``) when given."""
    fig, axes = plt.subplots(
        2,
        len(checks),
        figsize=(3.6 * len(checks), 6.6),
        sharex=True,
        layout="constrained",
        squeeze=False,
    )
    for i, (name, ch) in enumerate(checks.items()):
        for row, form in enumerate(("continuous", "discrete")):
            r = ch[form]
            ax = axes[row, i]
            ax.fill_between(
                r["t"],
                r["EV"] - 3 * r["EV_se"],
                r["EV"] + 3 * r["EV_se"],
                color=f"C{i}",
                alpha=0.25,
            )
            ax.plot(r["t"], r["EV"], color=f"C{i}", label="Monte Carlo E V(t)")
            ax.plot(r["t"], r["bound"], "k--", lw=1.2, label="bound")
            ax.axhline(r["level"], color="0.5", ls=":", lw=1, label="level d/c")
            ax.set_yscale("log")
            step = "dt/" + str(fine_steps) if form == "continuous" else "one step per token"
            verdict = {True: ": passes", False: ": fails"}.get(r.get("passes"), "")
            ax.set_title(f"{name}: {step}{verdict}", fontsize=9)
        axes[1, i].set_xlabel("t (tokens)")
    axes[0, 0].set_ylabel("continuous form\nE V(t)")
    axes[1, 0].set_ylabel("Euler chain, Δt = 1 token\nE V(t)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        "E V(t) ≤ V(0) e^{−ct} + d/c (1 − e^{−ct}) (top) and its Euler-chain form (bottom)",
        fontweight="bold",
    )
    return fig


# ----------------------------------------------------------------------------- 06


def plot_linear_moments(
    continuous: Mapping[str, Any], token: Mapping[str, Any], fine_steps: int
) -> plt.Figure:
    """Mean (top) and variance (bottom) of PC1 and PC2 of the linear fit: the ODE on the
    fine grid, Monte Carlo at the fine step and at one step per token (±3 SE) and the
    exact Euler chain.

    ``continuous``, ``token``: :func:`~sde_utils.theory.moments_summary.continuous_moment_check`
    and :func:`~sde_utils.theory.moments_summary.token_moment_check` results.
    """
    tokens, t_fine = continuous["tokens"], continuous["t_fine"]
    mc_fine, mc_tok = continuous["mc"], token["mc"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.6), sharex=True, layout="constrained")
    for j in range(2):
        panels = (  # label, ODE, Monte Carlo keys, chain, the entry of coordinate j
            (f"mean of PC{j + 1}", "m_ode_fine", "means", "se_means", "m_chain", (slice(None), j)),
            (
                f"variance of PC{j + 1}",
                "S_ode_fine",
                "covs",
                "se_covs",
                "S_chain",
                (slice(None), j, j),
            ),
        )
        for row, (label, ode_key, key, se_key, chain_key, idx) in enumerate(panels):
            ax = axes[row, j]
            ode, chain = continuous[ode_key][idx], token[chain_key][idx]
            mc, se = mc_fine[key][idx], mc_fine[se_key][idx]
            ax.plot(t_fine, ode, color="k", lw=1.2, label="ODE (continuous)")
            ax.fill_between(
                tokens,
                mc - 3 * se,
                mc + 3 * se,
                color="C0",
                alpha=0.3,
                label=f"Monte Carlo, step 1/{fine_steps} (±3 SE)",
            )
            ax.errorbar(
                tokens,
                mc_tok[key][idx],
                yerr=3 * mc_tok[se_key][idx],
                fmt="o",
                color="C3",
                ms=4,
                capsize=2,
                label="Monte Carlo, one step per token",
            )
            ax.plot(tokens, chain, "--", color="C3", lw=1, label="exact Euler chain (Δt = 1)")
            ax.set_ylabel(label)
    for ax in axes[1]:
        ax.set_xlabel("t (tokens)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        "Linear fit: moment ODEs against Monte Carlo, in continuous time and per token",
        fontweight="bold",
    )
    return fig


def plot_moment_recursion(res: Mapping[str, Any], title: str) -> plt.Figure:
    """One panel per moment n: the finite difference (E X^n_{k+1} - E X^n_k)/dt (band:
    ±3 SE) against the paper's Itô form and the exact Euler step.

    ``res``: one :func:`~sde_utils.theory.moment_recursion_check` result with ``step``
    (e.g. ``recursion_check(...)["token"]``).
    """
    n_moments = res["lhs"].shape[0]
    k = np.arange(res["lhs"].shape[1]) * res["step"]
    fig, axes = plt.subplots(1, n_moments, figsize=(3.4 * n_moments, 3.6), layout="constrained")
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.fill_between(
            k,
            res["lhs"][i] - 3 * res["lhs_se"][i],
            res["lhs"][i] + 3 * res["lhs_se"][i],
            color="0.6",
            alpha=0.4,
            label="finite difference (±3 SE)",
        )
        ax.plot(k, res["lhs"][i], color="0.3", lw=1)
        ax.plot(k, res["rhs_ito"][i], "o-", ms=3, color="C3", label="paper (Itô form)")
        ax.plot(k, res["rhs_euler"][i], "s--", ms=3, color="C0", label="Euler step (exact)")
        ax.set_title(f"n = {i + 1}: d/dt E X^{i + 1}", fontsize=10)
        ax.set_xlabel("t (tokens)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(title, fontweight="bold")
    return fig


def plot_picard(picard: Results, floor: float = 1e-16) -> plt.Figure:
    """One panel per model (shared log y): the Picard differences, the distances to the
    Euler–Maruyama path and both pathwise bounds; exact zeros are drawn at ``floor``.

    ``picard``: :func:`~sde_utils.theory.picard_summary.picard_check` results by model.
    """
    fig, axes = plt.subplots(
        1,
        len(picard),
        figsize=(3.6 * len(picard), 3.8),
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    axes = axes[0]
    for i, (ax, (name, pc)) in enumerate(zip(axes, picard.items(), strict=True)):
        m = np.arange(len(pc["sup_diff"]))
        ax.plot(
            m,
            np.maximum(pc["sup_diff"], floor),
            "o-",
            ms=3,
            color=f"C{i}",
            label="sup ‖X^(m+1) − X^(m)‖",
        )
        ax.plot(
            pc["iteration"],
            np.maximum(pc["dist_to_em"], floor),
            "s",
            ms=3,
            mfc="none",
            color="k",
            label="sup ‖X^(m) − Y‖ (Y: EM)",
        )
        with np.errstate(over="ignore"):
            bound = 10.0 ** np.clip(pc["log10_bound_diff"], -300, 300)
        ax.plot(m, bound, "--", color="0.3", label="bound Δ₀ e_m(w)")
        ax.plot(m, pc["bound_diff_factorial"], ":", color="0.3", label="Δ₀ (Σw)^m / m!")
        ax.set_yscale("log")
        ax.set_ylim(floor / 10, None)
        ax.set_title(f"{name}\nK_μ = {pc['K_mu']:.3g}, K_σ = {pc['K_sigma']:.3g}", fontsize=9)
        ax.set_xlabel("iteration m")
    axes[0].set_ylabel("sup norm over the grid")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    n_steps = next(iter(picard.values()))["n_steps"]
    fig.suptitle(f"Picard iteration on one Brownian path, {n_steps} tokens", fontweight="bold")
    return fig


__all__ = [
    "plot_lipschitz_brackets",
    "plot_linear_growth",
    "plot_eigenvalues",
    "plot_lv",
    "plot_ultimate_bound",
    "plot_linear_moments",
    "plot_moment_recursion",
    "plot_picard",
]
