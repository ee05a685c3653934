"""Figures: one style, one way to save.

``savefig(fig, name)`` writes ``reports/figures/<name>.png`` (and ``.pdf`` on request)
at a fixed dpi, closes the figure and returns the PNG path. The paper-figure functions
live here too (one per figure), so notebooks only load artefacts and call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import numpy as np

from . import paths

DPI = 150
STYLE = {
    "figure.figsize": (7.0, 4.2),
    "figure.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.titleweight": "bold",
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.frameon": False,
    "savefig.bbox": "tight",
}


def use_style() -> None:
    """Apply the project's matplotlib style (seaborn's colour palette, light grid)."""
    import seaborn as sns

    sns.set_palette("colorblind")
    plt.rcParams.update(STYLE)


def savefig(
    fig: plt.Figure,
    name: str,
    *,
    formats: Iterable[str] = ("png",),
    folder: Path | None = None,
    close: bool = True,
) -> Path:
    """Save ``fig`` as ``<folder>/<name>.<fmt>`` for each format; return the PNG path.

    ``folder`` defaults to ``reports/figures/`` (created if missing). ``name`` is a bare
    file stem such as ``"fig1-losses"``; a suffix or a path separator is an error.
    """
    if not name or "/" in name or "\\" in name or Path(name).suffix:
        raise ValueError(f"name must be a bare file stem like 'fig1-losses', got {name!r}")
    formats = list(formats)
    unknown = sorted(set(formats) - {"png", "pdf", "svg"})
    if not formats or unknown:
        raise ValueError(f"formats must be a non-empty subset of png, pdf, svg; got {formats}")
    folder = Path(folder or paths.FIGURES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        fig.savefig(folder / f"{name}.{fmt}", dpi=DPI, format=fmt)
    if close:
        plt.close(fig)
    return folder / f"{name}.{formats[0] if 'png' not in formats else 'png'}"


def plot_losses(history, *, title: str = "Training and validation losses") -> plt.Figure:
    """Figure 1: total, drift and diffusion loss per epoch, train and val, three panels.

    ``history``: a :class:`sde_utils.train.History`. The best epoch (lowest val total) is
    marked. The diffusion loss is a Gaussian NLL and can be negative, so no log scale.
    """
    if history.n_epochs == 0:
        raise ValueError("history holds no epoch: nothing to plot")
    epochs = np.arange(1, history.n_epochs + 1)
    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    panels = [
        ("total", "total loss"),
        ("drift", "drift loss $L_\\mu$"),
        ("diffusion", "diffusion loss (NLL)"),
    ]
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.plot(epochs, getattr(history, f"train_{key}"), label="train", color="C0")
        ax.plot(epochs, getattr(history, f"val_{key}"), label="validation", color="C1")
        if history.best_epoch:
            ax.axvline(history.best_epoch, color="grey", ls=":", lw=1)
        ax.set_ylabel(label)
    axes[0].legend(title=f"best epoch {history.best_epoch}" if history.best_epoch else None)
    axes[0].set_title(title)
    axes[-1].set_xlabel("epoch")
    return fig


def plot_paths_vs_real(
    real: list[np.ndarray],
    drift: list[np.ndarray],
    samples: list[np.ndarray],
    *,
    coords: tuple[int, ...] = (0, 1),
    band: float = 0.9,
    title: str = "Held-out trajectories against the model",
) -> plt.Figure:
    """Real coordinates over time against the drift path and a band of simulated paths.

    One column per trajectory, one row per coordinate in ``coords``. ``real[i]``: (L, d);
    ``drift[i]``: (T, d); ``samples[i]``: (T, n_paths, d), all started at ``real[i][0]``.
    """
    if not (len(real) == len(drift) == len(samples)) or not real:
        raise ValueError(
            f"need equally many real, drift and sampled paths, got {len(real)}, {len(drift)}, {len(samples)}"
        )
    lo_q, hi_q = (1 - band) / 2, 1 - (1 - band) / 2
    fig, axes = plt.subplots(
        len(coords),
        len(real),
        figsize=(3.2 * len(real), 2.4 * len(coords)),
        squeeze=False,
        sharex="col",
    )
    for j, (x, m, s) in enumerate(zip(real, drift, samples, strict=True)):
        for i, c in enumerate(coords):
            ax = axes[i, j]
            steps = np.arange(s.shape[0])
            lo, hi = np.quantile(s[:, :, c], [lo_q, hi_q], axis=1)
            ax.fill_between(
                steps, lo, hi, color="C3", alpha=0.18, lw=0, label=f"{band:.0%} of simulated"
            )
            ax.plot(steps, s[:, 0, c], color="C3", lw=0.7, alpha=0.7, label="one simulated path")
            ax.plot(steps, m[:, c], color="C3", lw=1.6, ls="--", label="drift path")
            ax.plot(
                np.arange(min(len(x), len(steps))),
                x[: len(steps), c],
                color="C0",
                lw=1.4,
                label="actual",
            )
            if j == 0:
                ax.set_ylabel(f"PC{c + 1}")
            if i == len(coords) - 1:
                ax.set_xlabel("token step")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return fig


__all__ = ["savefig", "use_style", "DPI", "plot_losses", "plot_paths_vs_real"]
