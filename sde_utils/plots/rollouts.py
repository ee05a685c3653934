"""Notebook 07's rollouts read back as text and the App. B ranks: scores with intervals.

:func:`plot_rollout_scores` draws :func:`~sde_utils.analysis.rollout_text.rollout_summary`
(one panel per score, one row per source, the 95% conversation-bootstrap interval as a
bar); :func:`plot_answer_ranks` the rank of the expected word at every App. B step per
model (:func:`~sde_utils.analysis.app_b.rank_table`'s processes).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sde_utils.plots.labels import token_labels
from sde_utils.plots.style import ACTUAL, PREDICTED

SCORE_LABELS = {
    "logprob": "LLM log-prob per token (nats)",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "accuracy": "next-token accuracy",
}
REFERENCES = ("real", "real, PCA round trip", "real, shuffled")


def plot_rollout_scores(summary: pd.DataFrame, *, title: str | None = None) -> plt.Figure:
    """One panel per score of ``summary`` (columns ``source, score, estimate, low, high``):
    a dot per source at its mean with its interval; the real text and its two controls in
    blue, the models' rollouts in red; a dotted line at the real text's mean."""
    need = {"source", "score", "estimate", "low", "high"}
    if not need <= set(summary.columns) or summary.empty:
        raise ValueError(f"summary needs rows with columns {sorted(need)}")
    scores = [s for s in SCORE_LABELS if s in set(summary["score"])]
    sources = list(dict.fromkeys(summary["source"]))
    fig, axes = plt.subplots(
        1, len(scores), figsize=(3.2 * len(scores) + 1.5, 0.35 * len(sources) + 1.6), sharey=True
    )
    axes = np.atleast_1d(axes)
    y = np.arange(len(sources))[::-1]
    for ax, score in zip(axes, scores, strict=True):
        rows = summary[summary["score"] == score].set_index("source").loc[sources]
        colors = [ACTUAL if s in REFERENCES else PREDICTED for s in sources]
        err = np.vstack([rows["estimate"] - rows["low"], rows["high"] - rows["estimate"]])
        for yi, est, e0, e1, c in zip(y, rows["estimate"], err[0], err[1], colors, strict=True):
            ax.errorbar(est, yi, xerr=[[e0], [e1]], fmt="o", color=c, capsize=3)
        if "real" in rows.index:
            ax.axvline(rows.loc["real", "estimate"], color=ACTUAL, ls=":", lw=1)
        ax.set_xlabel(SCORE_LABELS[score])
    axes[0].set_yticks(y, sources)
    fig.suptitle(title or "Rollouts decoded to tokens, scored (95% conversation-bootstrap)")
    fig.tight_layout()
    return fig


def plot_answer_ranks(processes: Mapping, *, title: str | None = None) -> plt.Figure:
    """Rank (log scale, 1 = nearest) of the expected word ``A_s`` at step ``s`` for each
    model of ``processes`` (name -> :class:`~sde_utils.analysis.app_b.AnswerProcess`): the
    drift path as a line, the sampled paths' range as a band; the answer's own PCA round
    trip dashed (the best any state could do)."""
    if not processes:
        raise ValueError("processes is empty: pass at least one AnswerProcess")
    fig, ax = plt.subplots(figsize=(7.5, 4))
    first = next(iter(processes.values()))
    steps = np.arange(1, len(first.rank_drift) + 1)
    for k, (name, proc) in enumerate(processes.items()):
        color = PREDICTED if k == 0 else f"C{k + 3}"
        ax.plot(steps, proc.rank_drift, "o-", color=color, label=f"{name} (drift path)")
        if proc.rank_samples.size:
            r = proc.rank_samples
            ax.fill_between(steps, r.min(0), r.max(0), color=color, alpha=0.12)
    ax.plot(steps, first.rank_roundtrip[: len(steps)], "s--", color=ACTUAL, label="PCA round trip")
    ax.set_yscale("log")
    ax.invert_yaxis()  # better ranks on top
    labels = token_labels(first.answer_tokens[: len(steps)])
    ax.set_xticks(steps, [f"A_{s}\n{w}" for s, w in zip(steps, labels, strict=True)])
    ax.set(ylabel="rank of the expected word", title=title or "App. B: rank of the expected word")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["SCORE_LABELS", "plot_answer_ranks", "plot_rollout_scores"]
