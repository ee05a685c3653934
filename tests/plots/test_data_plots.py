"""Figures of notebooks 01-02 (sde_utils.plots.data) on small float64 inputs whose drawn
values are known: what each figure draws is read back from its artists and compared
exactly (or to 1e-12 where a mean of float64 numbers is recomputed in another order)."""

import matplotlib

matplotlib.use("Agg")
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sde_utils.extraction.store import TrajectoryStore  # noqa: E402
from sde_utils.plots.data import (  # noqa: E402
    answer_spread,
    plot_entropy_by_position,
    plot_lengths,
    plot_norms,
    plot_pca_variance,
    plot_spread,
    plot_token_trajectory,
    spread_by_position,
)
from sde_utils.plots.style import use_style  # noqa: E402


@pytest.fixture(autouse=True)
def _style_and_close():
    use_style()
    yield
    plt.close("all")


def test_lengths_histogram_counts_every_response_and_marks_the_median():
    lengths = np.array([3, 5, 5, 8, 40])
    fig = plot_lengths(lengths)
    (ax,) = fig.axes
    assert sum(p.get_height() for p in ax.patches) == len(lengths)
    (median,) = ax.get_lines()
    assert median.get_xdata()[0] == 5.0
    assert ax.get_legend().get_texts()[0].get_text() == "median 5"


def test_norms_by_position_pool_positions_beyond_the_cap():
    lengths = np.array([3, 2])  # positions 0 1 2 | 0 1
    norms = np.array([1.0, 2.0, 3.0, 5.0, 6.0])
    fig = plot_norms(norms, lengths, cap=1)
    hist, by_pos = fig.axes
    assert sum(p.get_height() for p in hist.patches) == 5
    (line,) = by_pos.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [0, 1])
    # position 0: (1 + 5) / 2; position >= 1 pooled at the cap: (2 + 3 + 6) / 3
    np.testing.assert_allclose(line.get_ydata(), [3.0, 11 / 3], rtol=0, atol=1e-12)
    assert "capped at 1" in by_pos.get_xlabel()


def test_pca_variance_curve_and_one_mark_per_fraction():
    cumulative = np.array([0.5, 0.8, 0.95, 1.0])
    fig = plot_pca_variance(cumulative, {0.5: 1, 0.9: 3})
    (ax,) = fig.axes
    curve = ax.get_lines()[0]
    np.testing.assert_array_equal(curve.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(curve.get_ydata(), cumulative)
    assert [t.get_text() for t in ax.texts] == ["1 PCs → 50%", "3 PCs → 90%"]
    assert ax.get_xscale() == "log"


def test_token_trajectory_labels_are_display_text():
    traj = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, -1.0]])
    fig = plot_token_trajectory(traj, ["Hello", "Ġworld", "Ċ"], n_labels=20)
    ax = fig.axes[0]
    # "Ġworld" is " world" (stripped), "Ċ" a newline: whitespace only shows as "␣"
    assert [t.get_text() for t in ax.texts] == ["Hello", "world", "␣"]
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), traj)
    assert len(fig.axes) == 2  # the colour bar of positions
    assert "first 20 tokens" in ax.get_title()


def test_entropy_by_position_one_mean_line_per_temperature():
    steps = pd.DataFrame(
        {
            "temperature": [0.5, 0.5, 0.5, 1.0, 1.0, 1.0],
            "position": [0, 0, 1, 0, 0, 1],
            "entropy": [1.0, 3.0, 2.0, 4.0, 6.0, 5.0],
        }
    )
    fig = plot_entropy_by_position(steps)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["T = 0.5", "T = 1"]
    np.testing.assert_array_equal(lines[0].get_ydata(), [2.0, 2.0])
    np.testing.assert_array_equal(lines[1].get_ydata(), [5.0, 5.0])
    assert len(ax.collections) == 2  # one ±1 SE band per temperature


def test_spread_by_position_is_the_mean_distance_over_ordered_pairs():
    a = np.array([[0.0], [0.0], [7.0]])
    b = np.array([[3.0], [1.0]])
    c = np.array([[1.0]])  # one state: only at position 0
    # position 0: points 0, 3, 1 -> distances 3, 1, 2, each counted twice over 3 * 2 pairs
    # position 1: points 0, 1 -> 1; position 2: only `a` reaches it, so the series stops
    out = spread_by_position([a, b, c])
    np.testing.assert_allclose(out.to_numpy(), [2.0, 1.0], rtol=0, atol=1e-12)
    # a 3-4-5 triangle in the plane: mean of 3, 4, 5
    tri = [np.array([[0.0, 0.0]]), np.array([[3.0, 0.0]]), np.array([[0.0, 4.0]])]
    np.testing.assert_allclose(spread_by_position(tri).to_numpy(), [4.0], rtol=0, atol=1e-12)


def small_sampled_store() -> TrajectoryStore:
    """Two prompts, two temperatures, two answers each; 1-d states with known distances."""
    states = {  # (prompt, temperature) -> the two answers
        (0, 0.5): ([0.0, 1.0], [2.0, 1.0]),
        (1, 0.5): ([0.0, 0.0], [4.0, 2.0]),
        (0, 1.0): ([0.0], [6.0]),
        (1, 1.0): ([1.0, 1.0], [1.0, 9.0]),
    }
    rows, chunks, offset = [], [], 0
    for (p, temp), answers in states.items():
        for s, values in enumerate(answers):
            rows.append(
                {
                    "prompt_index": p,
                    "temperature": temp,
                    "sample_index": s,
                    "offset": offset,
                    "length": len(values),
                    "split": "train",
                }
            )
            chunks.append(np.array(values)[:, None])
            offset += len(values)
    emb = np.concatenate(chunks).astype(np.float32)
    return TrajectoryStore(Path("fake"), {}, emb, pd.DataFrame(rows))


def test_answer_spread_averages_prompts_per_temperature():
    spread = answer_spread(small_sampled_store())
    assert list(spread) == [0.5, 1.0]
    # T=0.5: prompt 0 spreads [2, 0], prompt 1 [4, 2] -> mean [3, 1]
    np.testing.assert_allclose(spread[0.5].to_numpy(), [3.0, 1.0], rtol=0, atol=1e-12)
    # T=1: prompt 0 [6] (its answers have one token), prompt 1 [0, 8] -> [3, 8]
    np.testing.assert_allclose(spread[1.0].to_numpy(), [3.0, 8.0], rtol=0, atol=1e-12)


def test_spread_figure_draws_each_answer_in_its_temperature_colour():
    spread = {0.5: pd.Series([3.0, 1.0]), 1.0: pd.Series([3.0, 8.0])}
    answers = [np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0]])]
    fig = plot_spread(spread, answers, [1.0, 0.5])
    left, right = fig.axes
    np.testing.assert_array_equal(left.get_lines()[1].get_ydata(), [3.0, 8.0])
    drawn = right.get_lines()[: len(answers)]
    np.testing.assert_array_equal(drawn[0].get_xydata(), answers[0])
    # colours follow the sorted temperatures: 0.5 -> C0, 1.0 -> C1
    assert drawn[0].get_color() == "C1" and drawn[1].get_color() == "C0"
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["T = 0.5", "T = 1"]
    with pytest.raises(ValueError):  # one temperature per answer
        plot_spread(spread, answers, [0.5])
