"""The figure of ``notebooks/template.ipynb``: the skeleton every notebook follows."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def plot_sample_vs_density(x, true_std: float) -> plt.Figure:
    """A histogram of the sample ``x (n,)`` against the density of N(0, true_std²)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"x must be a 1-D sample of at least 2 values, got shape {x.shape}")
    fig, ax = plt.subplots()
    ax.hist(x, bins=60, density=True, alpha=0.7, label=f"sample (n={x.size:,})")
    grid = np.linspace(x.min(), x.max(), 400)
    density = np.exp(-(grid**2) / (2 * true_std**2)) / (true_std * np.sqrt(2 * np.pi))
    ax.plot(grid, density, label="N(0, true_std²)")
    ax.set(xlabel="x", ylabel="density", title="A seeded sample against its true density")
    ax.legend()
    return fig


__all__ = ["plot_sample_vs_density"]
