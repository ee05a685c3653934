"""Shared pieces of the paper's figures: token labels, their placement without overlap,
and checks and axes helpers for states in PCA space.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import transforms as mtransforms

from sde_utils.checks import check_int


def token_labels(tokens: Sequence[str], *, max_chars: int = 14) -> list[str]:
    """Raw byte-level BPE tokens as short plot labels.

    :func:`~sde_utils.extraction.tokens.display_token` turns ``Ġ`` into a space (and ``Ċ`` into a
    newline); newlines then show as ``↵``, tabs as ``⇥``; surrounding spaces are stripped
    (a token of spaces only shows as ``␣``); control characters and characters the default
    font cannot draw show as ``U+XXXX``; a label longer than ``max_chars`` is cut with
    ``…``; ``$`` is escaped so matplotlib does not read it as math.
    """
    from sde_utils.extraction.tokens import display_token

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


def checked_states(name: str, x, *, ndim: int = 2, min_len: int = 1) -> np.ndarray:
    """``x`` as finite float64 ``(L, d)`` (``ndim=2``) or ``(T, n_paths, d)`` (``ndim=3``)
    states with ``L >= min_len``, else ValueError."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim or arr.shape[0] < min_len or arr.shape[-1] < 1:
        shape = "(L, d)" if ndim == 2 else "(T, n_paths, d)"
        raise ValueError(f"{name} must have shape {shape} with L >= {min_len}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def check_coords(coords, *arrays: np.ndarray) -> tuple[int, int]:
    """``coords`` as two different coordinate indices valid for every array's last axis."""
    d = min(a.shape[-1] for a in arrays)
    coords = tuple(coords)
    if len(coords) == 2:
        i, j = check_int("coords[0]", coords[0]), check_int("coords[1]", coords[1])
        if i != j and 0 <= i < d and 0 <= j < d:
            return i, j
    raise ValueError(f"coords must be two different coordinates in 0..{d - 1}, got {coords}")


def pc_labels(ax: plt.Axes, i: int, j: int) -> None:
    """Axis labels ``PC{i+1}``, ``PC{j+1}``."""
    ax.set_xlabel(f"PC{i + 1}")
    ax.set_ylabel(f"PC{j + 1}")


def padded_limits(points: np.ndarray, pad: float = 0.06) -> tuple[tuple[float, float], ...]:
    """``((xmin, xmax), (ymin, ymax))`` of ``points (N, 2)``, widened by ``pad`` times the range."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (lo[0] - pad * span[0], hi[0] + pad * span[0]), (
        lo[1] - pad * span[1],
        hi[1] + pad * span[1],
    )


_NEAR = [(5, 5), (5, -11), (-5, 5), (-5, -11), (8, -3), (-8, -3), (0, 9), (0, -15)]
_FAR = [(16, 14), (16, -20), (-16, 14), (-16, -20), (22, -3), (-22, -3), (0, 22), (0, -28)]


def place_labels(ax: plt.Axes, xy: np.ndarray, labels: Sequence[str], **text_kw) -> list:
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


__all__ = [
    "check_coords",
    "checked_states",
    "padded_limits",
    "pc_labels",
    "place_labels",
    "token_labels",
]
