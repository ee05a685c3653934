"""Notebook 09's figure: the held-out metrics of the layer sweep against relative depth.

``records`` are :func:`sde_utils.analysis.layer_sweep.evaluate_depth` results (one per LLM
and state kind); every metric is an interval dict (``estimate``, ``low``, ``high``; 95%
conversation bootstrap). Depth is relative (0 = input embedding, 1 = final normed state),
so LLMs of different depth share the x axis; one line per LLM, bars are the intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["PANELS", "plot_sweep"]

PANELS = (
    ("nll_gap", "one-step NLL: neural SDE − best baseline", 0.0),
    ("energy_gap_h16", "energy h=16: neural SDE − best baseline", 0.0),
    ("drift_r2", "drift R² (neural SDE)", None),
    ("energy_h1", "energy distance h=1 (neural SDE)", None),
    ("energy_h4", "energy distance h=4 (neural SDE)", None),
    ("energy_h16", "energy distance h=16 (neural SDE)", None),
    ("coverage", "coverage of the 50% / 90% intervals", None),
    ("pca_variance", "held-out variance kept by the PCA", None),
)
"""``(metric, title, reference line)`` of each panel; ``coverage`` draws both levels."""


def _series(records: Sequence[Mapping[str, Any]], llm: str, key: str) -> tuple[np.ndarray, ...]:
    rows = sorted((r for r in records if r["llm"] == llm), key=lambda r: r["depth"])
    rows = [r for r in rows if key in r["metrics"]]
    x = np.array([r["depth"] for r in rows], dtype=float)
    est, low, high = (
        np.array([r["metrics"][key][f] for r in rows], dtype=float)
        for f in ("estimate", "low", "high")
    )
    return x, est, low, high


def _line(ax: plt.Axes, x, est, low, high, **style) -> None:
    if x.size == 0:
        return
    err = np.vstack([np.clip(est - low, 0, None), np.clip(high - est, 0, None)])
    err = np.where(np.isfinite(err), err, 0.0)
    ax.errorbar(x, est, yerr=err, marker="o", ms=4, capsize=2, **style)


def plot_sweep(records: Sequence[Mapping[str, Any]]) -> plt.Figure:
    """A 2x4 grid of :data:`PANELS` against relative depth, one line per LLM; a marker ring
    shows the depths where the neural SDE beats every baseline (the verdict)."""
    llms = list(dict.fromkeys(r["llm"] for r in records))
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.6), sharex=True)
    colors = {llm: f"C{i}" for i, llm in enumerate(llms)}
    for ax, (key, title, ref) in zip(axes.ravel(), PANELS, strict=True):
        for llm in llms:
            if key == "coverage":
                for level, ls in ((0.5, "-"), (0.9, "--")):
                    _line(
                        ax,
                        *_series(records, llm, f"coverage_{level:g}"),
                        color=colors[llm],
                        ls=ls,
                        label=f"{llm} ({level:.0%})",
                    )
                    ax.axhline(level, color="0.6", lw=0.8, ls=ls)
                continue
            _line(ax, *_series(records, llm, key), color=colors[llm], label=llm)
            if key == "nll_gap":
                wins = [r["depth"] for r in records if r["llm"] == llm and r["beats_all"]]
                ys = [
                    r["metrics"][key]["estimate"]
                    for r in records
                    if r["llm"] == llm and r["beats_all"]
                ]
                ax.plot(wins, ys, "o", ms=11, mfc="none", color=colors[llm])
        if ref is not None:
            ax.axhline(ref, color="0.3", lw=0.8)
        ax.set_title(title, fontsize=9)
        if not ax.has_data():
            ax.text(
                0.5,
                0.5,
                "not evaluated\n(responses too short)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
    for ax in axes[1]:
        ax.set_xlabel("relative depth (0 input, 1 final)")
    axes[0, 0].legend(fontsize=8)
    axes[1, 2].legend(fontsize=7)
    fig.suptitle("Held-out fit of the SDE lens along the depth of two LLMs (95% intervals)")
    fig.tight_layout()
    return fig
