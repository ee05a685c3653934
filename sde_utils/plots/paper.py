"""Figures 2-7 of the paper (one function per figure) and their token labels.

Notebook 07 loads artefacts, computes the numbers with :mod:`sde_utils.analysis.paper_figures`
and calls these.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker as mticker
from matplotlib import transforms as mtransforms

from sde_utils.plots.style import ACTUAL, PREDICTED

if TYPE_CHECKING:
    from sde_utils.analysis.paper_figures import AnswerProcess, DriftField


# ----------------------------------------------------------------------------- helpers


def token_labels(tokens: Sequence[str], *, max_chars: int = 14) -> list[str]:
    """Raw byte-level BPE tokens as short plot labels.

    :func:`~sde_utils.extraction.llm.display_token` turns ``Ġ`` into a space (and ``Ċ`` into a
    newline); newlines then show as ``↵``, tabs as ``⇥``; surrounding spaces are stripped
    (a token of spaces only shows as ``␣``); control characters and characters the default
    font cannot draw show as ``U+XXXX``; a label longer than ``max_chars`` is cut with
    ``…``; ``$`` is escaped so matplotlib does not read it as math.
    """
    from sde_utils.extraction.llm import display_token

    if isinstance(tokens, str):
        raise TypeError("tokens must be a sequence of token strings, got a single string")
    out = []
    glyphs = _font_charmap()
    for tok in tokens:
        text = display_token(str(tok)).replace("\n", "↵").replace("\t", "⇥").replace("\r", "")
        text = text.strip() or "␣"
        text = "".join(  # control characters and glyphs the font lacks as code points
            ch if ord(ch) in glyphs and unicodedata.category(ch) != "Cc" else f"U+{ord(ch):04X}"
            for ch in text
        )
        if len(text) > max_chars:
            text = text[: max_chars - 1] + "…"
        out.append(text.replace("$", r"\$"))
    return out


@functools.cache
def _font_charmap() -> frozenset[int]:
    """Code points the default matplotlib font can draw."""
    from matplotlib.font_manager import FontProperties, findfont, get_font

    return frozenset(get_font(findfont(FontProperties())).get_charmap())


def _states(name: str, x, *, ndim: int = 2, min_len: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim or arr.shape[0] < min_len or arr.shape[-1] < 1:
        shape = "(L, d)" if ndim == 2 else "(T, n_paths, d)"
        raise ValueError(f"{name} must have shape {shape} with L >= {min_len}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _check_coords(coords, *arrays: np.ndarray) -> tuple[int, int]:
    d = min(a.shape[-1] for a in arrays)
    coords = tuple(coords)
    if (
        len(coords) != 2
        or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in coords)
        or coords[0] == coords[1]
        or not all(0 <= c < d for c in coords)
    ):
        raise ValueError(f"coords must be two different coordinates in 0..{d - 1}, got {coords}")
    return int(coords[0]), int(coords[1])


def _pc_labels(ax: plt.Axes, i: int, j: int) -> None:
    ax.set_xlabel(f"PC{i + 1}")
    ax.set_ylabel(f"PC{j + 1}")


def _limits(points: np.ndarray, pad: float = 0.06) -> tuple[tuple[float, float], ...]:
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (lo[0] - pad * span[0], hi[0] + pad * span[0]), (
        lo[1] - pad * span[1],
        hi[1] + pad * span[1],
    )


_NEAR = [(5, 5), (5, -11), (-5, 5), (-5, -11), (8, -3), (-8, -3), (0, 9), (0, -15)]
_FAR = [(16, 14), (16, -20), (-16, 14), (-16, -20), (22, -3), (-22, -3), (0, 22), (0, -28)]


def _place_labels(ax: plt.Axes, xy: np.ndarray, labels: Sequence[str], **text_kw) -> list:
    """Annotate ``xy[i]`` with ``labels[i]`` where it overlaps the fewest labels and points.

    Tries eight offsets next to the point, then eight further away (joined to the point by
    a hairline); earlier labels and the points themselves are obstacles. Axis limits and
    the figure layout must be final (placement is in display coordinates).
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    labels_placed = list(getattr(ax, "_sde_label_boxes", []))
    r = 3.0 * fig.dpi / 72  # a marker's half width in pixels
    markers = [
        mtransforms.Bbox([[px - r, py - r], [px + r, py + r]])
        for px, py in ax.transData.transform(np.asarray(xy, dtype=float))
    ]

    def area(a, b) -> float:
        return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(
            0.0, min(a.y1, b.y1) - max(a.y0, b.y0)
        )

    texts = []
    for (x, y), label in zip(xy, labels, strict=True):
        best, best_overlap = None, None
        for dx, dy in _NEAR + _FAR:
            far = (dx, dy) in _FAR
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            text = ax.annotate(
                label,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "grey"} if far else None,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
                **text_kw,
            )
            tight = text.get_window_extent(renderer)
            box = tight.padded(3.0 * fig.dpi / 72)  # keep labels a little apart
            overlap = sum(area(box, b) for b in labels_placed)
            overlap += sum(area(tight, b) for b in markers)
            overlap += 0.5 * far  # prefer a near spot when both are free
            if best_overlap is None or overlap < best_overlap:
                if best is not None:
                    best[0].remove()
                best, best_overlap = (text, box), overlap
            else:
                text.remove()
            if overlap == 0:
                break
        labels_placed.append(best[1])
        texts.append(best[0])
    ax._sde_label_boxes = labels_placed
    return texts


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
    actual = _states("actual", actual)
    drift = _states("drift", drift)
    arrays = [actual, drift]
    if samples is not None:
        samples = _states("samples", samples, ndim=3)
        if samples.shape[0] != drift.shape[0]:
            raise ValueError(
                f"samples has {samples.shape[0]} steps but drift has {drift.shape[0]}; "
                "both must cover the same time grid"
            )
        arrays.append(samples)
    i, j = _check_coords(coords, *arrays)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True, sharey=True)
    left.plot(actual[:, i], actual[:, j], "-o", color=ACTUAL, ms=3, lw=1.3, label="actual")
    right.plot(actual[:, i], actual[:, j], "--", color="grey", lw=0.8, alpha=0.5, label="actual")
    if samples is not None:
        for p in range(samples.shape[1]):
            right.plot(
                samples[:, p, i],
                samples[:, p, j],
                color=PREDICTED,
                lw=0.6,
                alpha=0.25,
                label="simulated paths" if p == 0 else None,
            )
    right.plot(drift[:, i], drift[:, j], "-o", color=PREDICTED, ms=3, lw=1.8, label="drift path")
    for ax, path in ((left, actual), (right, drift)):
        ax.plot(*path[0, [i, j]], "o", color="black", ms=7, zorder=5, label="start")
        ax.plot(*path[-1, [i, j]], "s", color="black", mfc="white", ms=6, zorder=5, label="end")
        _pc_labels(ax, i, j)
        ax.legend(fontsize=8, loc="best")
    pts = np.concatenate(
        [actual[:, [i, j]], drift[:, [i, j]]]
        + ([samples[:, :, [i, j]].reshape(-1, 2)] if samples is not None else [])
    )
    (x0, x1), (y0, y1) = _limits(pts)
    left.set(xlim=(x0, x1), ylim=(y0, y1))
    left.set_title(f"Actual ({len(actual)} tokens shown)")
    n_paths = 0 if samples is None else samples.shape[1]
    right.set_title(f"Predicted ({len(drift) - 1} steps, {n_paths} sampled paths)")
    right.tick_params(labelleft=True)
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


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
    actual = _states("actual", actual)
    predicted = _states("predicted", predicted)
    i, j = _check_coords(coords, actual, predicted)
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
    (x0, x1), (y0, y1) = _limits(np.concatenate([actual[:, [i, j]], predicted[:, [i, j]]]), 0.1)
    ax.set(xlim=(x0, x1), ylim=(y0, y1))
    _pc_labels(ax, i, j)
    ax.legend(loc="best", fontsize=9)
    ax.set_title(title)
    fig.tight_layout()  # final layout first: labels are placed in display coordinates
    labels = [f"{k}:{t}" for k, t in enumerate(token_labels(tokens))]
    _place_labels(ax, actual[:, [i, j]], labels, color=ACTUAL, fontsize=8, fontweight="bold")
    if predicted_labels is not None:
        _place_labels(
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
    _pc_labels(ax, *field.dims)
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
    trajectory = _states("trajectory", trajectory)
    i, j = _check_coords(field.dims, trajectory)
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
    left.plot(
        trajectory[:, i], trajectory[:, j], "-o", color=ACTUAL, ms=3, lw=1.4, label="a response"
    )
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
    sigma = _states("sigma", sigma)
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


# ----------------------------------------------------------------------------- figure 7


def plot_answer_process(
    process: AnswerProcess,
    *,
    coords: tuple[int, int] = (0, 1),
    n_decoded: int = 3,
    title: str = 'App. B: "What is the capital of France?"',
) -> plt.Figure:
    """Figure 7: the paper's process diagram beside the path in PCA space.

    Left: question -> ``Q_init`` -> ``A_1 .. A_n``, each step with the answer's token it
    should produce (blue) and the ``n_decoded`` nearest tokens of the drift path (red) and
    of the first sampled path (light red); a decoded token equal to the expected one is
    marked ✓. Right: the question's tokens (grey), ``Q_init`` (star), the drift path and
    samples (red, clipped to the region of the words) and the answer's tokens (blue) in
    coordinates ``coords``. Two axes.
    """
    from sde_utils.analysis.paper_figures import normalise_token
    from sde_utils.extraction.llm import display_token

    if n_decoded < 1:
        raise ValueError(f"n_decoded must be >= 1, got {n_decoded}")
    drift, samples = process.drift, process.samples
    i, j = _check_coords(coords, drift, process.z_answer)
    n_steps = drift.shape[0] - 1
    fig, (diag, ax) = plt.subplots(1, 2, figsize=(16, 7.2), gridspec_kw={"width_ratios": [1.05, 1]})

    # ---- the process diagram
    diag.set_axis_off()
    diag.set(xlim=(0, 1), ylim=(0, 1))
    rows = n_steps + 2
    ys = np.linspace(0.93, 0.05, rows)
    box = {"boxstyle": "round,pad=0.35", "fc": "white", "lw": 1.2}
    diag.text(
        0.02,
        ys[0],
        f"Question: “{process.question}”",
        fontsize=11,
        va="center",
        bbox=box | {"ec": "grey"},
    )
    q_words = " · ".join(token_labels(process.question_tokens))
    diag.text(
        0.02,
        ys[1],
        r"$Q_{init}$",
        fontsize=11,
        va="center",
        bbox=box | {"ec": "black"},
    )
    diag.text(
        0.12,
        ys[1],
        f"mean of {len(process.question_tokens)} embeddings ({q_words})",
        fontsize=8.5,
        va="center",
        color="dimgrey",
    )
    cols = {"expected": 0.12, "drift": 0.32, "sample": 0.66}
    head_y = (ys[1] + ys[2]) / 2
    diag.text(
        cols["expected"],
        head_y,
        "expected",
        color=ACTUAL,
        fontsize=9,
        fontweight="bold",
        va="center",
    )
    diag.text(
        cols["drift"],
        head_y,
        "decoded: drift path",
        color=PREDICTED,
        fontsize=9,
        fontweight="bold",
        va="center",
    )
    diag.text(
        cols["sample"],
        head_y,
        "decoded: a sampled path",
        color=PREDICTED,
        alpha=0.7,
        fontsize=9,
        fontweight="bold",
        va="center",
    )
    answer = token_labels(process.answer_tokens)
    answer_norm = [normalise_token(display_token(t)) for t in process.answer_tokens]
    for s in range(1, n_steps + 1):
        y = ys[s + 1]
        diag.text(0.02, y, f"$A_{s}$", fontsize=11, va="center", bbox=box | {"ec": PREDICTED})
        want = answer_norm[s - 1] if s - 1 < len(answer_norm) else None
        diag.text(
            cols["expected"],
            y,
            f"“{answer[s - 1]}”" if want else "–",
            color=ACTUAL,
            fontsize=10,
            va="center",
        )
        for key, decoded, alpha in (
            ("drift", process.decoded_drift[s], 1.0),
            ("sample", process.decoded_samples[0][s] if process.decoded_samples else [], 0.7),
        ):
            words = []
            for tok, _ in decoded[:n_decoded]:
                label = token_labels([tok])[0]
                hit = want is not None and normalise_token(display_token(tok)) == want
                words.append(f"{label} ✓" if hit else label)
            diag.text(
                cols[key],
                y,
                "  ·  ".join(words) or "–",
                color=PREDICTED,
                alpha=alpha,
                fontsize=9.5,
                va="center",
            )
    for a, b_ in zip(ys[:-1], ys[1:], strict=True):
        diag.annotate(
            "",
            xy=(0.045, b_ + 0.03),
            xytext=(0.045, a - 0.03),
            arrowprops={"arrowstyle": "-|>", "color": "grey", "lw": 1.0},
        )
    diag.text(
        0.055,
        (ys[2] + ys[3]) / 2,
        r"$A_{s+1} = A_s + \mu\,\Delta t+\sigma\,dW$",
        fontsize=8,
        color="grey",
        va="center",
    )
    diag.set_title("Process: embed, average, step the SDE, decode to nearest tokens", fontsize=11)

    # ---- the path in PCA space
    zq, za = process.z_question, process.z_answer
    ax.plot(zq[:, i], zq[:, j], "o", color="grey", ms=5, label="question tokens")
    for p in range(samples.shape[1]):
        ax.plot(
            samples[:, p, i],
            samples[:, p, j],
            "-",
            color=PREDICTED,
            lw=0.7,
            alpha=0.3,
            label="sampled paths" if p == 0 else None,
        )
    ax.plot(drift[:, i], drift[:, j], "-o", color=PREDICTED, ms=4, lw=1.8, label="drift path")
    ax.plot(za[:, i], za[:, j], "-o", color=ACTUAL, ms=5, lw=1.0, label="answer tokens")
    ax.plot(*process.z_init[[i, j]], "*", color="black", ms=14, zorder=5, label=r"$Q_{init}$")
    # limits from the words and the drift path; sampled paths that wander off are clipped
    pts = np.concatenate([zq[:, [i, j]], za[:, [i, j]], drift[:, [i, j]]])
    (x0, x1), (y0, y1) = _limits(pts, 0.15)
    ax.set(xlim=(x0, x1), ylim=(y0, y1))
    _pc_labels(ax, i, j)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("In the SDE's state space")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()  # final layout first: labels are placed in display coordinates
    _place_labels(ax, process.z_init[None, [i, j]], [r"$Q_{init}$"], fontsize=9)
    _place_labels(
        ax,
        drift[1:, [i, j]],
        [f"$A_{s}$" for s in range(1, n_steps + 1)],
        color=PREDICTED,
        fontsize=9,
        fontweight="bold",
    )
    _place_labels(ax, za[:, [i, j]], answer, color=ACTUAL, fontsize=9)
    _place_labels(
        ax, zq[:, [i, j]], token_labels(process.question_tokens), color="dimgrey", fontsize=8
    )
    return fig


__all__ = [
    "token_labels",
    "plot_actual_vs_predicted",
    "plot_trajectories_with_words",
    "plot_drift_and_diffusion",
    "plot_drift_pairs_and_uncertainty",
    "plot_importance_attention",
    "plot_answer_process",
]
