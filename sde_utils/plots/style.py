"""The project's figure style and the one way a figure leaves a notebook.

``show(fig, name)`` saves ``reports/figures/<name>.png`` (and other formats on request)
at a fixed dpi, shows the figure inline when called inside a notebook, and closes it,
so an executed notebook shows every figure it saved. ``savefig`` only saves (scripts,
tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves

from sde_utils import paths

ACTUAL = "C0"  # blue: what the LLM's text did
PREDICTED = "C3"  # red: what the SDE predicts

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


def show(
    fig: plt.Figure,
    name: str,
    *,
    formats: Iterable[str] = ("png",),
    folder: Path | None = None,
) -> None:
    """Save ``fig`` (see :func:`savefig`), show it inline in a notebook, then close it.

    Returns None, so a notebook cell that ends with ``show(...)`` displays the figure and
    nothing else. Outside IPython it only saves.
    """
    savefig(fig, name, formats=formats, folder=folder, close=False)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: nothing to show on
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(fig)
    plt.close(fig)


__all__ = ["ACTUAL", "PREDICTED", "DPI", "STYLE", "use_style", "savefig", "show"]
