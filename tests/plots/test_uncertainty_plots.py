"""Notebook 08's figure functions on small synthetic tables: axes, what is drawn, titles."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sde_utils.plots.style import use_style  # noqa: E402
from sde_utils.plots.uncertainty import (  # noqa: E402
    plot_error_by_position_complexity,
    plot_first_step_excess,
    plot_sigma_by_temperature,
    plot_sigma_vs_entropy,
)


@pytest.fixture(autouse=True)
def _style_and_close():
    use_style()
    yield
    plt.close("all")


def interval(estimate, low, high):
    return {"estimate": estimate, "low": low, "high": high}


def binned(x_mean, mean, half=0.1):
    x_mean, mean = np.asarray(x_mean, float), np.asarray(mean, float)
    return pd.DataFrame({"x_mean": x_mean, "mean": mean, "low": mean - half, "high": mean + half})


def by_level(levels, mean, half=0.1):
    levels, mean = np.asarray(levels, float), np.asarray(mean, float)
    return pd.DataFrame({"level": levels, "mean": mean, "low": mean - half, "high": mean + half})


def correlations():
    r = {"spearman": interval(0.25, 0.1, 0.4)}
    return {"sigma2~entropy_next": r, "sigma2~surprisal_next": r, "sq_increment~entropy_next": r}


def test_sigma_vs_entropy_one_curve_per_temperature():
    panel = {0.7: binned([0.5, 1.0, 2.0], [1.0, 1.1, 1.3]), 1.0: binned([0.8, 1.5], [1.2, 1.4])}
    fig = plot_sigma_vs_entropy(panel, panel, {0.7: panel[0.7]}, correlations())
    axes = fig.axes
    assert len(axes) == 3
    assert [len(ax.lines) for ax in axes] == [2, 2, 1]  # one mean line per temperature
    assert [len(ax.collections) for ax in axes] == [2, 2, 1]  # and one band each
    np.testing.assert_array_equal(axes[0].lines[0].get_ydata(), [1.0, 1.1, 1.3])
    assert axes[0].get_title() == "σ² vs entropy\nSpearman 0.25 [0.10, 0.40]"
    assert "surprisal" in axes[1].get_xlabel() and "entropy" in axes[2].get_xlabel()
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["T = 0.7", "T = 1"]


def test_sigma_by_temperature_panels_fits_and_random_walk():
    table = by_level([0.7, 1.0], [2.0, 2.5])
    slope = interval(1.5, 0.5, 2.5)
    temperature = {
        name: {"by_temperature": table, "slope": slope} for name in ("sigma", "fitted", "increment")
    }
    per_seed = pd.DataFrame({"temperature": [0.7, 0.7, 1.0], "sigma2_model": [1.9, 2.1, 2.5]})
    fig = plot_sigma_by_temperature(temperature, per_seed, {"0.7": 1.0, "1": 1.2})
    left, middle, right = fig.axes
    assert "slope 1.5 [0.5, 2.5]" in left.get_title()
    np.testing.assert_array_equal(left.get_xticks(), [0.7, 1.0])
    # middle: the error-bar line, the seeds' crosses and one grey square per temperature
    markers = [line.get_marker() for line in middle.lines if line.get_marker() in ("x", "s")]
    assert markers == ["x", "s", "s"]
    assert middle.get_legend() is not None and right.get_legend() is None


def test_sigma_by_temperature_without_fits_has_no_legend():
    empty = by_level([], [])
    slope = interval(float("nan"), float("nan"), float("nan"))
    temperature = {
        name: {"by_temperature": empty, "slope": slope} for name in ("sigma", "fitted", "increment")
    }
    per_seed = pd.DataFrame({"temperature": [], "sigma2_model": []})
    fig = plot_sigma_by_temperature(temperature, per_seed, {})
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert "slope nan [nan, nan]" in fig.axes[1].get_title()


def test_first_step_excess_bars_per_model_and_empty_message():
    summary = {
        name: {
            stat: {"excess": interval(value, value - 0.1, value + 0.2)}
            for stat in ("kl_gauss_diag", "energy")
        }
        for name, value in (("neural_sde", 0.5), ("random_walk", 1.5))
    }
    fig = plot_first_step_excess(summary, n_groups=4, dims=2)
    assert len(fig.axes) == 2
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([0.5, 1.5])
    assert "(4 groups, 2 PCA coordinates)" in fig._suptitle.get_text()
    empty = plot_first_step_excess({}, n_groups=0, dims=2)
    assert "no group of samples" in empty.axes[0].texts[0].get_text()
    assert not empty.axes[0].patches


def test_error_by_position_complexity_three_panels():
    errors = {
        "by_position": binned([1, 4, 9], [0.2, 0.3, 0.35]),
        "horizon_by": {
            "neural_sde": by_level([1, 2, 4], [0.5, 0.8, 1.0]),
            "random_walk": by_level([1, 2, 4], [0.6, 0.9, 1.2]),
        },
        "horizon_slope": interval(0.12, 0.05, 0.2),
        "responses": pd.DataFrame(
            {"mean_sentence_length": [8.0, 12.0, 20.0], "sq_error": [0.3, 0.25, 0.4]}
        ),
        "by_complexity": binned([9.0, 18.0], [0.28, 0.38]),
        "complexity_slope": interval(0.01, -0.02, 0.03),
    }
    fig = plot_error_by_position_complexity(
        errors, horizons=[1, 2, 4], complexity_measure="mean_sentence_length"
    )
    position, horizon, complexity = fig.axes
    np.testing.assert_array_equal(position.lines[0].get_ydata(), [0.2, 0.3, 0.35])
    assert horizon.get_xscale() == "log" and len(horizon.lines) == 2
    assert [t.get_text() for t in horizon.get_xticklabels()] == ["1", "2", "4"]
    assert "slope 0.12 [0.05, 0.2] per token" in horizon.get_title()
    assert complexity.get_xlabel() == "mean sentence length"
    assert len(complexity.collections[0].get_offsets()) == 3  # one point per response
