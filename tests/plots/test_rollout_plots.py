"""Rollout and App. B rank figures on small synthetic inputs: what is drawn, and errors."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sde_utils.analysis.app_b import AnswerProcess  # noqa: E402
from sde_utils.plots.rollouts import plot_answer_ranks, plot_rollout_scores  # noqa: E402
from sde_utils.plots.style import ACTUAL, PREDICTED  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _summary():
    rows = []
    for k, source in enumerate(["real", "real, shuffled", "neural_sde"]):
        for j, score in enumerate(["logprob", "accuracy"]):
            est = -k - j
            rows.append(dict(source=source, score=score, estimate=est, low=est - 0.5, high=est + 1))
    return pd.DataFrame(rows)


def test_scores_drawn_at_their_estimates_with_intervals():
    fig = plot_rollout_scores(_summary())
    assert len(fig.axes) == 2  # one panel per score present
    ax = fig.axes[0]  # logprob
    lines = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert [float(ln.get_xdata()[0]) for ln in lines] == [0.0, -1.0, -2.0]
    # sources top to bottom (y ticks run bottom up); the model red, the references blue
    assert [t.get_text() for t in ax.get_yticklabels()] == ["real", "real, shuffled", "neural_sde"]
    assert [matplotlib.colors.to_hex(ln.get_color()) for ln in lines] == [
        matplotlib.colors.to_hex(c) for c in (ACTUAL, ACTUAL, PREDICTED)
    ]
    with pytest.raises(ValueError, match="columns"):
        plot_rollout_scores(pd.DataFrame())


def test_answer_ranks_drawn_per_step():
    z = np.zeros((3, 2))
    proc = AnswerProcess(
        question="q", answer="a", question_tokens=["x"], answer_tokens=["The", "ĠParis"],
        z_question=z[:1], z_init=z[0], z_answer=z[:2], drift=z, samples=np.zeros((3, 2, 2)),
        decoded_drift=[], decoded_samples=[], decoded_roundtrip=[], top_k=1, dt=1.0, seed=0,
        rank_drift=np.array([3, 40]), rank_samples=np.array([[2, 30], [5, 90]]),
        rank_roundtrip=np.array([1, 7]),
    )  # fmt: skip
    fig = plot_answer_ranks({"Q→A": proc, "control": proc})
    ax = fig.axes[0]
    drawn = [ln.get_ydata().tolist() for ln in ax.lines]
    assert drawn == [[3, 40], [3, 40], [1, 7]]  # two models and the round trip
    assert ax.get_yscale() == "log" and ax.yaxis_inverted()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A_1\nThe", "A_2\nParis"]
    with pytest.raises(ValueError, match="empty"):
        plot_answer_ranks({})
