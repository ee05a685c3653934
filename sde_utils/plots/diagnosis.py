"""Figures of notebook 03's diagnosis: one-step Jacobian spectra of every model, and the
trade-off between one-step and multi-step fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def plot_jacobian_spectra(
    spectra: Mapping[str, Mapping[str, np.ndarray]],
    *,
    title: str = "One-step map x -> x + mu dt at held-out states",
) -> plt.Figure:
    """Box plots of the spectral radius and the spectral norm of ``I + J_mu dt`` per model
    (``spectra``: :func:`sde_utils.analysis.jacobians.spectra_of_models`), with the line 1
    that separates contraction (below) from amplification (above)."""
    if not spectra:
        raise ValueError("spectra is empty: nothing to plot")
    names = list(spectra)
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(names) + 2.0), sharey=True)
    for ax, key, label in zip(
        axes, ("radius", "norm"), ("spectral radius", "spectral norm"), strict=True
    ):
        data = [np.asarray(spectra[n][key]) for n in names]
        ax.boxplot(data, vert=False, whis=(5, 95), showfliers=False)
        ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.set_xlabel(f"{label} of I + J_mu dt")
    axes[0].set_yticks(np.arange(1, len(names) + 1), names)
    axes[0].set_xlabel("spectral radius of I + J_mu dt  (> 1: perturbations grow)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# axis labels of the trade-off figure's metrics (others are shown by name)
TRADEOFF_LABELS = {
    "nll": "one-step NLL from the observed state",
    "window_nll": "NLL of whole windows (latent SDE: -ELBO)",
}


def plot_tradeoff(
    table: pd.DataFrame,
    x: str | Sequence[str],
    y: str,
    *,
    path: list[str] | None = None,
    title: str = "One step against many",
) -> plt.Figure:
    """Each model (rows of ``table``: :func:`sde_utils.analysis.latent_noise.tradeoff_table`)
    at its held-out ``x`` and ``y`` with their 95% intervals as error bars, one panel per
    metric of ``x`` (sharing ``y``); ``path`` (row names, in order) is drawn as a line, e.g.
    one model along a parameter. Lower is better on both axes (NLL, energy distance): the
    best corner is the lower left. An ``x`` axis is logarithmic when its values are
    positive and spread over more than a decade."""
    if table.empty:
        raise ValueError("table is empty: nothing to plot")
    xs = [x] if isinstance(x, str) else list(x)
    fig, axes = plt.subplots(1, len(xs), figsize=(5.5 * len(xs) + 3.0, 5.0), sharey=True)
    axes = np.atleast_1d(axes)
    path = list(path or [])
    others = [n for n in table.index if n not in path]
    markers = "osD^vP*X"
    styles = {n: (f"C{k % 10}", markers[k % len(markers)]) for k, n in enumerate(others)}
    reds = plt.cm.Reds(np.linspace(0.45, 0.95, max(len(path), 1)))
    styles |= {n: (reds[k], "o") for k, n in enumerate(path)}
    for ax, metric in zip(axes, xs, strict=True):
        for name, row in table.iterrows():
            xerr = [[row[metric] - row[f"{metric}_low"]], [row[f"{metric}_high"] - row[metric]]]
            yerr = [[row[y] - row[f"{y}_low"]], [row[f"{y}_high"] - row[y]]]
            color, marker = styles[name]
            ax.errorbar(
                row[metric], row[y], xerr=xerr, yerr=yerr, fmt=marker, color=color,
                capsize=3, markersize=7, label=name,
            )  # fmt: skip
        if path:
            ax.plot(table.loc[path, metric], table.loc[path, y], color=reds[-1], lw=1, ls="--")
        lows = table[f"{metric}_low"].to_numpy(dtype=float)
        if np.all(lows > 0) and table[metric].max() > 10 * table[metric].min():
            ax.set_xscale("log")  # values spread over decades (a collapsed sigma's NLL)
        ax.set_xlabel(f"{TRADEOFF_LABELS.get(metric, metric)} (lower is better)")
    axes[0].set_ylabel(f"{y} (held-out, lower is better)")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["TRADEOFF_LABELS", "plot_jacobian_spectra", "plot_tradeoff"]
