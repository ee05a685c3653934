"""Figures 2-6 of the paper (one function per figure); figure 7 is in
:mod:`sde_utils.plots.app_b`, token labels in :mod:`sde_utils.plots.labels`.

Notebook 07 loads artefacts, computes the numbers with
:mod:`sde_utils.analysis.paper_figures` and :mod:`sde_utils.analysis.paper_findings` and
calls these; each returns a Figure for ``sde_utils.plots.show``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker as mticker

from sde_utils.plots.labels import (
    check_coords,
    checked_states,
    padded_limits,
    pc_labels,
    place_labels,
    token_labels,
)
from sde_utils.plots.style import ACTUAL, PREDICTED

if TYPE_CHECKING:
    from sde_utils.analysis.paper_figures import DriftField


# ----------------------------------------------------------------------------- figure 2


def plot_actual_vs_predicted(
    actual,
    drift,
    samples=None,
    *,
    coords: tuple[int, int] = (0, 1),
    title: str = "Actual vs predicted trajectory",
) -> plt.Figure:
    """Figure 2: the actual trajectory (left) and the predicted one (right), same limits.

    ``actual (L, d)``: the response's states; ``drift (T, d)``: the drift path from
    ``actual[0]``; ``samples (T, n_paths, d)`` (optional): paths simulated from
    ``actual[0]``. Coordinates ``coords`` are drawn; the right panel repeats the actual
    path faintly for reference. Two axes.
    """
    actual = checked_states("actual", actual)
    drift = checked_states("drift", drift)
    arrays = [actual, drift]
    if samples is not None:
        samples = checked_states("samples", samples, ndim=3)
        if samples.shape[0] != drift.shape[0]:
            raise ValueError(
                f"samples has {samples.shape[0]} steps but drift has {drift.shape[0]}; "
                "both must cover the same time grid"
            )
        arrays.append(samples)
    i, j = check_coords(coords, *arrays)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True, sharey=True)
    left.plot(actual[:, i], actual[:, j], "-o", color=ACTUAL, ms=3, lw=1.3, label="actual")
    right.plot(actual[:, i], actual[:, j], "--", color="grey", lw=0.8, alpha=0.5, label="actual")
    if samples is not None:  # the simulated states as a cloud, not a tangle of paths
        cloud = samples[1:, :, [i, j]].reshape(-1, 2)
        right.scatter(
            cloud[:, 0], cloud[:, 1], s=5, color=PREDICTED, alpha=0.18, lw=0,
            label=f"simulated states ({samples.shape[1]} paths)",
        )  # fmt: skip
        if samples.shape[1] >= 3:
            _draw_region(right, samples[-1, :, [i, j]].T, level=0.9)
    right.plot(drift[:, i], drift[:, j], "-o", color=PREDICTED, ms=3, lw=1.8, label="drift path")
    for ax, path in ((left, actual), (right, drift)):
        ax.plot(*path[0, [i, j]], "o", color="black", ms=7, zorder=5, label="start")
        ax.plot(*path[-1, [i, j]], "s", color="black", mfc="white", ms=6, zorder=5, label="end")
        pc_labels(ax, i, j)
        ax.legend(fontsize=8, loc="best")
    pts = np.concatenate(
        [actual[:, [i, j]], drift[:, [i, j]]]
        + ([samples[:, :, [i, j]].reshape(-1, 2)] if samples is not None else [])
    )
    (x0, x1), (y0, y1) = padded_limits(pts)
    left.set(xlim=(x0, x1), ylim=(y0, y1))
    left.set_title(f"Actual ({len(actual)} tokens shown)")
    n_paths = 0 if samples is None else samples.shape[1]
    right.set_title(f"Predicted ({len(drift) - 1} steps, {n_paths} sampled paths)")
    right.tick_params(labelleft=True)
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def _draw_region(ax: plt.Axes, points: np.ndarray, *, level: float) -> None:
    """The ``level`` region of a Gaussian fitted to ``points (n, 2)``: an ellipse."""
    from matplotlib.patches import Ellipse
    from scipy.stats import chi2

    cov = np.cov(points, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 0.0, None)
    radius = np.sqrt(chi2.ppf(level, df=2))
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    ax.add_patch(
        Ellipse(
            points.mean(axis=0), 2 * radius * np.sqrt(values[-1]), 2 * radius * np.sqrt(values[0]),
            angle=angle, fill=False, color=PREDICTED, lw=1.2, ls=":",
            label=f"{level:.0%} region, last step",
        )
    )  # fmt: skip


# ----------------------------------------------------------------------------- figure 3


def plot_trajectories_with_words(
    actual,
    predicted,
    tokens: Sequence[str],
    *,
    predicted_labels: Sequence[str] | None = None,
    coords: tuple[int, int] = (0, 1),
    title: str = "Trajectories with words",
) -> plt.Figure:
    """Figure 3: actual (blue) and predicted (red) paths with each point's token.

    ``actual (L, d)`` with ``tokens`` (``L`` raw BPE tokens). ``predicted (M, d)``, ``M <= L``,
    is aligned to the end: ``predicted[m]`` predicts ``actual[L - M + m]`` (one-step
    predictions have ``M = L - 1``; a drift path from ``actual[0]`` has ``M = L``); a dotted
    line joins each prediction to its target. ``predicted_labels`` (``M`` raw tokens,
    e.g. the nearest token of each predicted state) label the red points. One axes.
    """
    actual = checked_states("actual", actual)
    predicted = checked_states("predicted", predicted)
    i, j = check_coords(coords, actual, predicted)
    L, M = len(actual), len(predicted)
    if len(tokens) != L:
        raise ValueError(f"tokens has {len(tokens)} entries but actual has {L} states")
    if M > L:
        raise ValueError(f"predicted has {M} states, more than actual's {L}")
    if predicted_labels is not None and len(predicted_labels) != M:
        raise ValueError(
            f"predicted_labels has {len(predicted_labels)} entries, predicted has {M} states"
        )
    targets = actual[L - M :]
    fig, ax = plt.subplots(figsize=(10, 7))
    for p, q in zip(predicted, targets, strict=True):
        ax.plot([p[i], q[i]], [p[j], q[j]], ":", color="grey", lw=0.8, zorder=1)
    ax.plot(actual[:, i], actual[:, j], "-o", color=ACTUAL, ms=4, lw=1.2, label="actual", zorder=3)
    ax.plot(
        predicted[:, i],
        predicted[:, j],
        "-o",
        color=PREDICTED,
        ms=4,
        lw=0.8,
        alpha=0.85,
        label="predicted",
        zorder=3,
    )
    ax.plot(*actual[0, [i, j]], "o", color="black", ms=7, zorder=4, label="first token")
    (x0, x1), (y0, y1) = padded_limits(
        np.concatenate([actual[:, [i, j]], predicted[:, [i, j]]]), 0.1
    )
    ax.set(xlim=(x0, x1), ylim=(y0, y1))
    pc_labels(ax, i, j)
    ax.legend(loc="best", fontsize=9)
    ax.set_title(title)
    fig.tight_layout()  # final layout first: labels are placed in display coordinates
    labels = [f"{k}:{t}" for k, t in enumerate(token_labels(tokens))]
    place_labels(ax, actual[:, [i, j]], labels, color=ACTUAL, fontsize=8, fontweight="bold")
    if predicted_labels is not None:
        place_labels(
            ax,
            predicted[:, [i, j]],
            token_labels(predicted_labels),
            color=PREDICTED,
            fontsize=7.5,
            fontstyle="italic",
        )
    return fig


# ----------------------------------------------------------------------------- figures 4, 5


def _draw_field(ax: plt.Axes, field: DriftField, norm, *, style: str, cmap: str):
    speed = field.speed
    if style == "stream":
        artist = ax.streamplot(
            field.x,
            field.y,
            field.u,
            field.v,
            color=speed,
            cmap=cmap,
            norm=norm,
            density=1.0,
            linewidth=1.0,
            arrowsize=0.9,
        ).lines
    elif style == "quiver":
        gx, gy = np.meshgrid(field.x, field.y)
        artist = ax.quiver(gx, gy, field.u, field.v, speed, cmap=cmap, norm=norm, pivot="mid")
    else:
        raise ValueError(f"style must be 'stream' or 'quiver', got {style!r}")
    ax.set(xlim=(field.x[0], field.x[-1]), ylim=(field.y[0], field.y[-1]))
    pc_labels(ax, *field.dims)
    ax.grid(False)
    return artist


def _check_field(field) -> None:
    for name in ("x", "y", "u", "v", "dims"):
        if not hasattr(field, name):
            raise TypeError(
                f"expected a DriftField (sde_utils.analysis.paper_figures.drift_field), got {field!r}"
            )
    if field.u.shape != (len(field.y), len(field.x)) or field.v.shape != field.u.shape:
        raise ValueError(
            f"field u/v must have shape (ny, nx) = ({len(field.y)}, {len(field.x)}), "
            f"got {field.u.shape} and {field.v.shape}"
        )


def plot_drift_and_diffusion(
    field: DriftField,
    trajectory,
    magnitudes,
    *,
    style: str = "stream",
    title: str = "Drift field and diffusion magnitude",
) -> plt.Figure:
    """Figure 4. Left: the drift field (:func:`sde_utils.analysis.paper_figures.drift_field`) coloured by its
    in-plane magnitude, ``trajectory (L, d)`` overlaid (blue). Right: ``magnitudes (n, T)``,
    the diffusion magnitude of ``n`` sequences by token position (NaN = no token).
    Four axes: two panels, two colour bars.
    """
    _check_field(field)
    trajectory = checked_states("trajectory", trajectory)
    i, j = check_coords(field.dims, trajectory)
    mags = np.asarray(magnitudes, dtype=np.float64)
    if mags.ndim != 2 or mags.size == 0 or not np.isfinite(mags).any():
        raise ValueError(f"magnitudes must be a non-empty (n, T) array, got shape {mags.shape}")
    if np.nanmin(mags) < 0:
        raise ValueError("magnitudes must be >= 0 (they are |sigma|)")
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.15]}
    )
    speed = field.speed
    norm = mcolors.Normalize(vmin=float(speed.min()), vmax=float(speed.max()) or 1.0)
    artist = _draw_field(left, field, norm, style=style, cmap="viridis")
    fig.colorbar(artist, ax=left, label=f"|drift| in the PC{i + 1}–PC{j + 1} plane")
    # the response's tokens as points: joined by lines they would hide the field
    left.plot(
        trajectory[:, i], trajectory[:, j], "o", color=ACTUAL, ms=3.5, alpha=0.7,
        markeredgecolor="white", markeredgewidth=0.4, label="tokens of a response",
    )  # fmt: skip
    left.plot(*trajectory[0, [i, j]], "o", color="black", ms=7, label="first token")
    left.set(xlim=(field.x[0], field.x[-1]), ylim=(field.y[0], field.y[-1]))
    left.legend(loc="upper right", fontsize=8, frameon=True)
    left.set_title(f"Drift field at t = {field.t:g} (other PCs at the mean)")

    cmap = plt.get_cmap("magma").with_extremes(bad="#eeeeee")
    image = right.imshow(
        np.ma.masked_invalid(mags), aspect="auto", cmap=cmap, interpolation="nearest"
    )
    fig.colorbar(image, ax=right, label=r"$\|\sigma(x_t, t)\| / \sqrt{d}$")
    right.set(xlabel="token position", ylabel="sequence")
    right.grid(False)
    right.set_title("Diffusion magnitude")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def plot_drift_pairs_and_uncertainty(
    fields: Sequence[DriftField],
    sigma,
    tokens: Sequence[str],
    *,
    style: str = "stream",
    title: str = "Drift across principal components and per-token uncertainty",
) -> plt.Figure:
    """Figure 5. Left: one drift field per PC pair in ``fields`` (shared colour scale).
    Right: ``sigma (L, d) > 0``, the diffusion of each PC (rows) at each of the ``L`` tokens
    of one response (columns, labelled with ``tokens``), on a log colour scale.
    ``len(fields) + 3`` axes: the fields, the heatmap and two colour bars.
    """
    fields = list(fields)
    if not fields:
        raise ValueError("fields is empty: pass at least one DriftField")
    for f in fields:
        _check_field(f)
    sigma = checked_states("sigma", sigma)
    if (sigma <= 0).any():
        raise ValueError("sigma must be > 0 everywhere (log colour scale)")
    if len(tokens) != len(sigma):
        raise ValueError(f"tokens has {len(tokens)} entries but sigma has {len(sigma)} rows")
    n = len(fields)
    fig = plt.figure(figsize=(14, max(6.0, 3.4 * n)), layout="constrained")
    grid = fig.add_gridspec(n, 2, width_ratios=[1, 2.1])
    top = max(float(f.speed.max()) for f in fields) or 1.0
    norm = mcolors.Normalize(vmin=0.0, vmax=top)
    artist = None
    axes = []
    for r, f in enumerate(fields):
        ax = fig.add_subplot(grid[r, 0])
        artist = _draw_field(ax, f, norm, style=style, cmap="viridis")
        ax.set_title(f"PC{f.dims[0] + 1}–PC{f.dims[1] + 1}", fontsize=10)
        axes.append(ax)
    fig.colorbar(artist, ax=axes, label="|drift| in the plane", shrink=0.9, aspect=35)
    heat = fig.add_subplot(grid[:, 1])
    image = heat.imshow(
        sigma.T,
        aspect="auto",
        cmap="magma",
        norm=mcolors.LogNorm(vmin=float(sigma.min()), vmax=float(sigma.max())),
        interpolation="nearest",
    )
    bar = fig.colorbar(image, ax=heat, label=r"$\sigma_i(x_t, t)$ (log scale)", aspect=35)
    plain = mticker.FuncFormatter(lambda value, _: f"{value:g}")
    bar.ax.yaxis.set_major_formatter(plain)
    bar.ax.yaxis.set_minor_formatter(plain)
    L, d = sigma.shape
    step = max(1, int(np.ceil(L / 60)))
    heat.set_xticks(np.arange(0, L, step))
    heat.set_xticklabels(token_labels(tokens)[::step], rotation=90, fontsize=8)
    heat.set_yticks(np.arange(d))
    heat.set_yticklabels([f"PC{k + 1}" for k in range(d)], fontsize=8 if d <= 32 else 5)
    heat.grid(False)
    heat.set_title("Uncertainty over the tokens of one response")
    fig.suptitle(title, fontweight="bold")
    return fig


# ----------------------------------------------------------------------------- figure 6


def plot_importance_attention(
    tokens: Sequence[str],
    norms,
    attention,
    *,
    attention_label: str = "last layer, mean of heads",
    title: str = "Word importance and attention weights",
) -> plt.Figure:
    """Figure 6. (a) ``norms (L,)``: the L2 norm of each token's embedding (bars, the three
    largest darker). (b) ``attention (L, L)``: weight of query token i (row) on key token j
    (column), square-root colour scale; causal zeros above the diagonal left blank.
    Three axes: two panels and a colour bar.
    """
    norms = np.asarray(norms, dtype=np.float64)
    attention = np.asarray(attention, dtype=np.float64)
    L = len(tokens)
    if norms.shape != (L,):
        raise ValueError(f"norms must have shape ({L},) like tokens, got {norms.shape}")
    if attention.shape != (L, L):
        raise ValueError(f"attention must have shape ({L}, {L}), got {attention.shape}")
    if not (np.isfinite(norms).all() and np.isfinite(attention).all()):
        raise ValueError("norms and attention must be finite")
    if (attention < 0).any() or (attention.sum(axis=1) > 1 + 1e-4).any():
        raise ValueError("attention rows must be non-negative weights summing to at most 1")
    labels = token_labels(tokens)
    fig, (a, b) = plt.subplots(
        1, 2, figsize=(max(12, 0.55 * L + 4), 6), gridspec_kw={"width_ratios": [1, 1.1]}
    )
    colors = np.array([mcolors.to_rgba(ACTUAL, 0.55)] * L)
    colors[np.argsort(norms)[::-1][:3]] = mcolors.to_rgba(ACTUAL, 1.0)
    a.bar(np.arange(L), norms, color=colors)
    a.set_xticks(np.arange(L))
    a.set_xticklabels(labels, rotation=90, fontsize=8)
    a.set(ylabel="‖embedding‖₂", xlim=(-0.6, L - 0.4))
    a.set_title("(a) Word importance: embedding norm")
    a.grid(axis="x", visible=False)
    shown = np.ma.masked_where(np.triu(np.ones((L, L), bool), k=1), attention)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    image = b.imshow(shown, cmap=cmap, norm=mcolors.PowerNorm(0.5), interpolation="nearest")
    fig.colorbar(image, ax=b, label="attention weight (sqrt scale)", shrink=0.85)
    b.set_xticks(np.arange(L))
    b.set_xticklabels(labels, rotation=90, fontsize=8)
    b.set_yticks(np.arange(L))
    b.set_yticklabels(labels, fontsize=8)
    b.set(xlabel="key token (attended to)", ylabel="query token")
    b.grid(False)
    b.set_title(f"(b) Attention weights ({attention_label})")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


__all__ = [
    "plot_actual_vs_predicted",
    "plot_trajectories_with_words",
    "plot_drift_and_diffusion",
    "plot_drift_pairs_and_uncertainty",
    "plot_importance_attention",
]
