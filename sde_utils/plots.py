"""Figures: one style, one way to save.

``savefig(fig, name)`` writes ``reports/figures/<name>.png`` (and ``.pdf`` on request)
at a fixed dpi, closes the figure and returns the PNG path. The paper-figure functions
live here too (one per figure), so notebooks only load artefacts and call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves

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


__all__ = ["savefig", "use_style", "DPI"]
