"""Figure 7 of the paper: the App. B "capital of France" example, the process diagram
beside the path in PCA space (:class:`~sde_utils.analysis.app_b.AnswerProcess`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from sde_utils.checks import check_int
from sde_utils.plots.labels import (
    check_coords,
    padded_limits,
    pc_labels,
    place_labels,
    token_labels,
)
from sde_utils.plots.style import ACTUAL, PREDICTED

if TYPE_CHECKING:
    from sde_utils.analysis.app_b import AnswerProcess


_BOX = {"boxstyle": "round,pad=0.35", "fc": "white", "lw": 1.2}
_COLUMNS = {"expected": 0.12, "drift": 0.32, "sample": 0.66}  # x of the diagram's columns


def _diagram_head(diag: plt.Axes, process: AnswerProcess, ys: np.ndarray) -> None:
    """The question, ``Q_init`` with what it averages, and the column headings."""
    diag.text(
        0.02,
        ys[0],
        f"Question: “{process.question}”",
        fontsize=11,
        va="center",
        bbox=_BOX | {"ec": "grey"},
    )
    q_words = " · ".join(token_labels(process.question_tokens))
    diag.text(0.02, ys[1], r"$Q_{init}$", fontsize=11, va="center", bbox=_BOX | {"ec": "black"})
    diag.text(
        0.12,
        ys[1],
        f"mean of {len(process.question_tokens)} embeddings ({q_words})",
        fontsize=8.5,
        va="center",
        color="dimgrey",
    )
    head_y = (ys[1] + ys[2]) / 2
    headings = (
        ("expected", "expected", ACTUAL, 1.0),
        ("drift", "decoded: drift path", PREDICTED, 1.0),
        ("sample", "decoded: a sampled path", PREDICTED, 0.7),
    )
    for key, text, color, alpha in headings:
        diag.text(
            _COLUMNS[key],
            head_y,
            text,
            color=color,
            alpha=alpha,
            fontsize=9,
            fontweight="bold",
            va="center",
        )


def _decoded_words(decoded, want: str | None, n_decoded: int) -> str:
    """The first ``n_decoded`` decoded tokens as labels, ✓ on the one equal to ``want``."""
    from sde_utils.analysis.app_b import normalise_token
    from sde_utils.extraction.tokens import display_token

    words = []
    for tok, _ in decoded[:n_decoded]:
        label = token_labels([tok])[0]
        hit = want is not None and normalise_token(display_token(tok)) == want
        words.append(f"{label} ✓" if hit else label)
    return "  ·  ".join(words) or "–"


def _diagram_steps(diag: plt.Axes, process: AnswerProcess, ys: np.ndarray, n_decoded: int) -> None:
    """One row per step ``A_s``: the expected answer token and the decoded tokens."""
    from sde_utils.analysis.app_b import normalise_token
    from sde_utils.extraction.tokens import display_token

    answer = token_labels(process.answer_tokens)
    answer_norm = [normalise_token(display_token(t)) for t in process.answer_tokens]
    for s in range(1, process.drift.shape[0]):
        y = ys[s + 1]
        diag.text(0.02, y, f"$A_{s}$", fontsize=11, va="center", bbox=_BOX | {"ec": PREDICTED})
        want = answer_norm[s - 1] if s - 1 < len(answer_norm) else None
        diag.text(
            _COLUMNS["expected"],
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
            diag.text(
                _COLUMNS[key],
                y,
                _decoded_words(decoded, want, n_decoded),
                color=PREDICTED,
                alpha=alpha,
                fontsize=9.5,
                va="center",
            )


def _draw_process_diagram(diag: plt.Axes, process: AnswerProcess, n_decoded: int) -> None:
    """Left panel of figure 7: question -> ``Q_init`` -> ``A_1 .. A_n`` joined by arrows."""
    diag.set_axis_off()
    diag.set(xlim=(0, 1), ylim=(0, 1))
    ys = np.linspace(0.93, 0.05, process.drift.shape[0] + 1)  # question, Q_init, A_1..A_n
    _diagram_head(diag, process, ys)
    _diagram_steps(diag, process, ys, n_decoded)
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


def _draw_answer_path(ax: plt.Axes, process: AnswerProcess, i: int, j: int) -> None:
    """Right panel of figure 7: question and answer tokens, ``Q_init``, drift and sampled
    paths in coordinates ``(i, j)``; limits from the words and the drift path."""
    drift, samples = process.drift, process.samples
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
    (x0, x1), (y0, y1) = padded_limits(pts, 0.15)
    ax.set(xlim=(x0, x1), ylim=(y0, y1))
    pc_labels(ax, i, j)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("In the SDE's state space")


def _label_answer_path(ax: plt.Axes, process: AnswerProcess, i: int, j: int) -> None:
    """Labels of the right panel (after the final layout: placed in display coordinates)."""
    drift, za, zq = process.drift, process.z_answer, process.z_question
    place_labels(ax, process.z_init[None, [i, j]], [r"$Q_{init}$"], fontsize=9)
    place_labels(
        ax,
        drift[1:, [i, j]],
        [f"$A_{s}$" for s in range(1, drift.shape[0])],
        color=PREDICTED,
        fontsize=9,
        fontweight="bold",
    )
    place_labels(ax, za[:, [i, j]], token_labels(process.answer_tokens), color=ACTUAL, fontsize=9)
    place_labels(
        ax, zq[:, [i, j]], token_labels(process.question_tokens), color="dimgrey", fontsize=8
    )


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
    coordinates ``coords``. ``process``: an :class:`~sde_utils.analysis.app_b.AnswerProcess`.
    Two axes.
    """
    n_decoded = check_int("n_decoded", n_decoded, minimum=1)
    i, j = check_coords(coords, process.drift, process.z_answer)
    fig, (diag, ax) = plt.subplots(1, 2, figsize=(16, 7.2), gridspec_kw={"width_ratios": [1.05, 1]})
    _draw_process_diagram(diag, process, n_decoded)
    _draw_answer_path(ax, process, i, j)
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()  # final layout first: labels are placed in display coordinates
    _label_answer_path(ax, process, i, j)
    return fig


__all__ = ["plot_answer_process"]
