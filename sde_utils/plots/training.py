"""Figures of notebook 03: training losses and held-out paths against the model."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from sde_utils.checks import check_fraction

# the History's two loss columns, named after the objective that filled them
LOSS_LABELS = {
    "one_step": [("drift", "drift loss $L_\\mu$"), ("diffusion", "diffusion loss (NLL)")],
    "multi_step": [("drift", "drift loss $L_\\mu$"), ("diffusion", "k-step NLL")],
    "elbo": [("drift", "observation NLL"), ("diffusion", "KL (posterior | prior)")],
}


def plot_losses(history, *, title: str = "Training and validation losses") -> plt.Figure:
    """Figure 1: total, drift and diffusion loss per epoch, train and val, three panels
    (the two terms named after the History's objective: :data:`LOSS_LABELS`).

    ``history``: a :class:`sde_utils.models.train.History`. The best epoch (lowest val total) is
    marked. The diffusion loss is a Gaussian NLL and can be negative, so no log scale.
    """
    if history.n_epochs == 0:
        raise ValueError("history holds no epoch: nothing to plot")
    epochs = np.arange(1, history.n_epochs + 1)
    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    objective = history.params.get("objective", {}).get("name", "one_step")
    panels = [("total", "total loss"), *LOSS_LABELS.get(objective, LOSS_LABELS["one_step"])]
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
    The band holds the central ``band`` fraction of the simulated paths at each step.
    """
    if not (len(real) == len(drift) == len(samples)) or not real:
        raise ValueError(
            f"need equally many (>= 1) real, drift and sampled paths, got {len(real)}, "
            f"{len(drift)}, {len(samples)}"
        )
    band = check_fraction("band", band)
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


__all__ = ["plot_losses", "plot_paths_vs_real"]
