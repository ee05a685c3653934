"""Figures of notebook 03's diagnosis: one-step Jacobian spectra of every model."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np


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


__all__ = ["plot_jacobian_spectra"]
