"""Figures of notebooks 01 and 02: what the extracted and the sampled trajectories look like.

One function per figure, each returning the :class:`~matplotlib.figure.Figure`; the
notebook hands it to :func:`sde_utils.plots.style.show`. Arrays are read as given (float32
states from a store are fine); nothing here changes a recorded number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sde_utils.extraction.store import TrajectoryStore
from sde_utils.extraction.tokens import display_token

# --------------------------------------------------------------------------- notebook 01


def plot_lengths(lengths: np.ndarray) -> plt.Figure:
    """Histogram of trajectory lengths ``(n_sequences,)`` (tokens), median marked."""
    lengths = np.asarray(lengths)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.hist(lengths, bins=30, color="C0", alpha=0.8)
    ax.axvline(
        np.median(lengths), color="k", ls="--", lw=1, label=f"median {np.median(lengths):.0f}"
    )
    ax.set(xlabel="response length (tokens)", ylabel="responses", title="Trajectory lengths")
    ax.legend()
    return fig


def plot_norms(norms: np.ndarray, lengths: np.ndarray, *, cap: int = 127) -> plt.Figure:
    """Two panels: the histogram of every state's norm ``‖X(t)‖``, and its mean by position.

    ``norms``: ``(N_tokens,)`` in store order; ``lengths``: ``(n_sequences,)``, so that
    position ``k`` of each sequence is known. Positions beyond ``cap`` are pooled into ``cap``.
    """
    position = np.concatenate([np.arange(n) for n in lengths])
    by_pos = pd.Series(norms).groupby(np.minimum(position, cap)).mean()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    a.hist(norms, bins=60, color="C1", alpha=0.8)
    a.set(xlabel="‖X(t)‖", ylabel="tokens", title="Norm of every state")
    b.plot(by_pos.index, by_pos.values, color="C1")
    b.set(
        xlabel=f"position in response (capped at {cap})",
        ylabel="mean ‖X(t)‖",
        title="Norm by position",
    )
    return fig


def plot_pca_variance(
    cumulative: np.ndarray, needed: Mapping[float, int], *, title: str = "PCA of training states"
) -> plt.Figure:
    """Cumulative explained variance ``(n_components,)`` against the number of components
    (log axis), with the components ``needed[fraction]`` for each marked fraction."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(np.arange(1, len(cumulative) + 1), cumulative, color="C2")
    for frac, k in needed.items():
        ax.axhline(frac, color="grey", lw=0.6, ls=":")
        ax.annotate(
            f"{k} PCs → {frac:.0%}",
            (k, frac),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=8,
        )
    ax.set(xscale="log", xlabel="principal components", ylabel="variance explained", title=title)
    return fig


def plot_token_trajectory(
    traj: np.ndarray, tokens: Sequence[str], *, n_labels: int = 20
) -> plt.Figure:
    """One response in the plane of two principal components: ``traj`` ``(L, 2)``, points
    coloured by position, the first ``n_labels`` labelled with their raw BPE ``tokens``
    (shown as text by :func:`~sde_utils.extraction.tokens.display_token`)."""
    shown = [display_token(t) for t in tokens]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(traj[:, 0], traj[:, 1], color="grey", lw=0.8, alpha=0.6)
    sc = ax.scatter(traj[:, 0], traj[:, 1], c=np.arange(len(traj)), cmap="viridis", s=18, zorder=3)
    for i in range(min(n_labels, len(traj))):
        ax.annotate(
            shown[i].strip() or "␣", traj[i], fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    fig.colorbar(sc, ax=ax, label="token position")
    ax.set(
        xlabel="PC1",
        ylabel="PC2",
        title=f"One response as a trajectory (first {n_labels} tokens labelled)",
    )
    return fig


# --------------------------------------------------------------------------- notebook 02


def plot_entropy_by_position(steps: pd.DataFrame) -> plt.Figure:
    """Mean next-token entropy by position, one line per temperature, ±1 standard error.

    ``steps``: one row per sampled step with columns ``temperature``, ``position`` and
    ``entropy`` (nats).
    """
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (temp, g) in enumerate(steps.groupby("temperature")):
        stats = g.groupby("position")["entropy"].agg(["mean", "sem"])
        ax.plot(stats.index, stats["mean"], color=f"C{i}", label=f"T = {temp:g}")
        ax.fill_between(
            stats.index,
            stats["mean"] - stats["sem"],
            stats["mean"] + stats["sem"],
            color=f"C{i}",
            alpha=0.2,
            lw=0,
        )
    ax.set(
        xlabel="position in answer",
        ylabel="entropy (nats)",
        title="Next-token entropy along the answer",
    )
    ax.legend()
    return fig


def spread_by_position(trajs: Sequence[np.ndarray]) -> pd.Series:
    """Mean pairwise Euclidean distance between the states ``trajs[i]`` ``(L_i, d)`` at the
    same position, over the ordered pairs ``i != j``; it stops at the first position fewer
    than two trajectories reach. Index: position."""
    out = []
    for pos in range(max(len(t) for t in trajs)):
        here = np.stack([t[pos] for t in trajs if len(t) > pos]) if trajs else None
        if here is None or len(here) < 2:
            break
        diff = here[:, None, :] - here[None, :, :]
        n = len(here)
        out.append(np.sqrt((diff**2).sum(-1)).sum() / (n * (n - 1)))
    return pd.Series(out, dtype=float)


def answer_spread(store: TrajectoryStore) -> dict[float, pd.Series]:
    """Per temperature, :func:`spread_by_position` of each prompt's answers, averaged over
    prompts. ``store``: a sampled store (columns ``temperature``, ``prompt_index``)."""
    seqs = store.sequences
    return {
        temp: pd.concat(
            [
                spread_by_position([store.trajectory(int(i)) for i in g.index])
                for _, g in sub.groupby("prompt_index")
            ],
            axis=1,
        ).mean(axis=1)
        for temp, sub in seqs.groupby("temperature")
    }


def plot_spread(
    spread: Mapping[float, pd.Series], answers: Sequence[np.ndarray], temperatures: Sequence[float]
) -> plt.Figure:
    """Two panels: the spread of answers by position per temperature (from
    :func:`answer_spread`), and the answers to one prompt in a 2-d projection.

    ``answers[i]``: ``(L_i, 2)`` projected states of answer i, sampled at
    ``temperatures[i]``; colours follow the sorted distinct temperatures; black dots mark
    the first tokens.
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (temp, s) in enumerate(spread.items()):
        a.plot(s.index, s.values, color=f"C{i}", label=f"T = {temp:g}")
    a.set(
        xlabel="position",
        ylabel="mean pairwise distance",
        title="Distance between answers to one prompt",
    )
    a.legend()
    temps = sorted(set(temperatures))
    for z, temp in zip(answers, temperatures, strict=True):
        b.plot(z[:, 0], z[:, 1], color=f"C{temps.index(temp)}", lw=0.8, alpha=0.7)
        b.scatter(z[:1, 0], z[:1, 1], color="k", s=12, zorder=3)
    for i, temp in enumerate(temps):
        b.plot([], [], color=f"C{i}", label=f"T = {temp:g}")
    b.legend()
    b.set(xlabel="PC1", ylabel="PC2", title="Answers to one prompt (black: first token)")
    return fig


__all__ = [
    "plot_lengths",
    "plot_norms",
    "plot_pca_variance",
    "plot_token_trajectory",
    "plot_entropy_by_position",
    "spread_by_position",
    "answer_spread",
    "plot_spread",
]
