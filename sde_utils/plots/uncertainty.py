"""Notebook 08's figures: sigma against the LLM's uncertainty, sigma by sampling
temperature, the first generated step against each model's Gaussian, and held-out error
by position, horizon and text complexity. One function per figure, each returning a
Figure for ``sde_utils.plots.show``; the numbers come from
:mod:`sde_utils.analysis.uncertainty_report` and :mod:`sde_utils.analysis.uncertainty_verdicts`.

Tables are the DataFrames of :mod:`sde_utils.analysis.intervals` (columns ``mean``,
``low``, ``high`` and ``x_mean`` or ``level``); intervals are dicts with ``estimate``,
``low``, ``high``. Bands and error bars are 95% conversation-bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

X_LABELS = {
    "entropy_next": r"entropy of $p_{k+1}$ (nats)",
    "surprisal_next": r"surprisal $-\log p_{k+1}(y_{k+1})$ (nats)",
}


def _band(ax: plt.Axes, table: pd.DataFrame, x: str, label: str | None = None, **style) -> None:
    """``table["mean"]`` against ``table[x]`` with its interval as a shaded band."""
    if len(table):
        ax.plot(table[x], table["mean"], "o-", ms=4, label=label, **style)
        ax.fill_between(
            table[x].astype(float),
            table["low"].astype(float),
            table["high"].astype(float),
            alpha=0.2,
            **style,
        )


def _interval_text(r: Mapping[str, Any], fmt: str = ".2f") -> str:
    return f"{r['estimate']:{fmt}} [{r['low']:{fmt}}, {r['high']:{fmt}}]"


# ----------------------------------------------------------------------------- sigma vs entropy


def _binned_panel(
    ax: plt.Axes, by_temperature: Mapping[float, pd.DataFrame], x: str, label_y: str
) -> None:
    for temp, b in by_temperature.items():
        ax.plot(b["x_mean"], b["mean"], "o-", ms=4, label=f"T = {temp:g}")
        ax.fill_between(
            b["x_mean"].astype(float), b["low"].astype(float), b["high"].astype(float), alpha=0.2
        )
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(label_y)


def plot_sigma_vs_entropy(
    sigma_entropy: Mapping[float, pd.DataFrame],
    sigma_surprisal: Mapping[float, pd.DataFrame],
    step_entropy: Mapping[float, pd.DataFrame],
    correlations: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> plt.Figure:
    """Three panels of binned means per sampling temperature (temperature -> table of
    :func:`~sde_utils.analysis.uncertainty_report.binned_by_temperature`): ``|sigma|^2``
    against next-token entropy and surprisal, and the realised step against entropy. Each
    title quotes the Spearman interval ``correlations["<x>~<y>"]["spearman"]``. Three axes.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    _binned_panel(
        axes[0], sigma_entropy, "entropy_next", r"$|\sigma(x_k, t_k)|^2$ (cross-fitted SDE)"
    )
    _binned_panel(axes[1], sigma_surprisal, "surprisal_next", r"$|\sigma(x_k, t_k)|^2$")
    _binned_panel(axes[2], step_entropy, "entropy_next", r"realised step $|z_{k+1} - z_k|^2$")
    r = correlations["sigma2~entropy_next"]["spearman"]
    axes[0].set_title(f"σ² vs entropy\nSpearman {_interval_text(r)}")
    r = correlations["sigma2~surprisal_next"]["spearman"]
    axes[1].set_title(f"σ² vs surprisal\nSpearman {_interval_text(r)}")
    r = correlations["sq_increment~entropy_next"]["spearman"]
    axes[2].set_title(f"model-free: realised step vs entropy\nSpearman {_interval_text(r)}")
    axes[0].legend(title="sampling temperature")
    fig.suptitle("Means per equal-count bin with 95% conversation-bootstrap bands", y=1.02)
    return fig


# ----------------------------------------------------------------------------- temperature

TEMPERATURE_PANELS = (
    (
        "sigma",
        "σ fitted on the samples,\non held-out prompts",
        r"$|\sigma|^2$ (03's PCA space)",
    ),
    (
        "fitted",
        "σ fitted per temperature,\nat common held-out states",
        r"$|\sigma|^2$ (03's PCA space)",
    ),
    ("increment", "model-free:\nmean squared increment", r"$|z_{k+1} - z_k|^2$ (03's PCA space)"),
)


def plot_sigma_by_temperature(
    temperature: Mapping[str, Mapping[str, Any]],
    per_seed: pd.DataFrame,
    random_walk_sigma2: Mapping[str, float],
) -> plt.Figure:
    """Three panels, mean per sampling temperature with error bars and the slope interval
    in the title: ``temperature[name]`` (``by_temperature`` table and ``slope`` interval)
    for the cross-fitted sigma, the per-temperature fits and the model-free increment. The
    middle panel adds each single fit (``per_seed``: ``temperature``, ``sigma2_model``) as
    crosses and each temperature's random-walk ``|sigma|^2`` (temperature label -> value)
    as grey squares. Three axes.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (name, title, ylabel) in zip(axes, TEMPERATURE_PANELS, strict=True):
        table = temperature[name]["by_temperature"]
        if len(table):
            err = np.vstack([table["mean"] - table["low"], table["high"] - table["mean"]]).astype(
                float
            )
            ax.errorbar(table["level"], table["mean"], yerr=np.nan_to_num(err), fmt="o-", capsize=4)
        s = temperature[name]["slope"]
        ax.set_title(f"{title}\nslope {_interval_text(s, '.3g')}", fontsize=10)
        ax.set_xticks(table["level"] if len(table) else [])
        ax.set_xlabel("sampling temperature")
        ax.set_ylabel(ylabel)
    if len(per_seed):
        axes[1].plot(
            per_seed["temperature"],
            per_seed["sigma2_model"],
            "x",
            color="C0",
            ms=7,
            label="one fit (seed)",
        )
    for i, (temp, value) in enumerate(random_walk_sigma2.items()):
        axes[1].plot(
            float(temp), value, "s", color="grey", label=None if i else "random-walk σ² of the fit"
        )
    if random_walk_sigma2:  # one entry per fitted temperature: there are fits to explain
        axes[1].legend()
    return fig


# ----------------------------------------------------------------------------- first step

FIRST_STEP_LABELS = {
    "kl_gauss_diag": "Gaussian KL (diagonal), excess over null",
    "energy": "energy distance, excess over null",
}


def plot_first_step_excess(
    first_summary: Mapping[str, Mapping[str, Any]], *, n_groups: int, dims: int
) -> plt.Figure:
    """Two panels (diagonal Gaussian KL, energy distance): per model, the mean excess of
    the statistic over its null reference with its interval (bars; 0 is as good as the true
    model), from :func:`~sde_utils.analysis.first_step.summarise_first_step`. ``n_groups``
    and ``dims`` (PCA coordinates compared) go into the title. Two axes.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (stat, label) in zip(axes, FIRST_STEP_LABELS.items(), strict=True):
        names = list(first_summary)
        if names:
            excess = [first_summary[n][stat]["excess"] for n in names]
            est = np.array([e["estimate"] for e in excess], dtype=float)
            low = np.array([e["low"] for e in excess], dtype=float)
            high = np.array([e["high"] for e in excess], dtype=float)
            ax.bar(names, est, color=[f"C{i}" for i in range(len(names))], alpha=0.8)
            ax.errorbar(
                names,
                est,
                yerr=np.nan_to_num(np.vstack([est - low, high - est])),
                fmt="none",
                ecolor="k",
                capsize=4,
            )
            ax.axhline(0, color="k", lw=0.8)
        else:
            ax.text(
                0.5,
                0.5,
                "no group of samples sharing\nprompt, temperature and first token",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_title(label)
        ax.set_ylabel("mean over groups (0: as good as the true model)")
    fig.suptitle(
        f"First generated step: true draws vs each model's Gaussian ({n_groups} groups, {dims} PCA coordinates)",
        y=1.02,
    )
    return fig


# ----------------------------------------------------------------------------- held-out error


def plot_error_by_position_complexity(
    errors: Mapping[str, Any], *, horizons: Sequence[int], complexity_measure: str
) -> plt.Figure:
    """Three panels from :func:`~sde_utils.analysis.uncertainty_verdicts.error_study`'s
    ``errors``: one-step error by position (``by_position``); the drift path's error ``h``
    steps ahead for the neural SDE and the random walk (``horizon_by``, log2 axis with
    ``horizons`` as ticks, ``horizon_slope`` in the title); each response's mean error
    against ``complexity_measure`` (``responses``) with binned means (``by_complexity``)
    and ``complexity_slope``. Three axes.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    _band(axes[0], errors["by_position"], "x_mean")
    axes[0].set(
        xlabel="position k in the response",
        ylabel="one-step squared error per coordinate",
        title="One-step drift error by position\n(notebook 01's test responses)",
    )
    horizon_by, horizon_slope = errors["horizon_by"], errors["horizon_slope"]
    _band(axes[1], horizon_by["neural_sde"], "level", label="neural SDE drift path", color="C3")
    _band(
        axes[1],
        horizon_by["random_walk"],
        "level",
        label="random walk (stays at start)",
        color="C7",
    )
    axes[1].set(
        xlabel="horizon h (tokens)",
        ylabel="squared error per coordinate",
        title=f"Error h steps ahead (drift path)\nslope {_interval_text(horizon_slope, '.3g')} per token",
    )
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(horizons, [str(k) for k in horizons])
    axes[1].legend()
    responses = errors["responses"]
    axes[2].scatter(
        responses[complexity_measure],
        responses["sq_error"],
        s=12,
        alpha=0.4,
        color="C0",
        label="responses",
    )
    _band(axes[2], errors["by_complexity"], "x_mean", label="binned mean", color="C1")
    axes[2].set(
        xlabel=complexity_measure.replace("_", " "),
        ylabel="mean one-step squared error",
        title=f"Error by complexity\nslope {_interval_text(errors['complexity_slope'], '.3g')}",
    )
    axes[2].legend()
    return fig


__all__ = [
    "plot_error_by_position_complexity",
    "plot_first_step_excess",
    "plot_sigma_by_temperature",
    "plot_sigma_vs_entropy",
]
