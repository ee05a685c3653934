"""Figures of notebook 03 (sde_utils.plots.training) on small float64 inputs: the drawn
values are read back from the artists and compared exactly with what was passed in."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sde_utils.models.train import History  # noqa: E402
from sde_utils.plots.style import use_style  # noqa: E402
from sde_utils.plots.training import plot_losses, plot_paths_vs_real  # noqa: E402


@pytest.fixture(autouse=True)
def _style_and_close():
    use_style()
    yield
    plt.close("all")


def history(best_epoch: int) -> History:
    h = History()
    for e in range(4):
        h.append(
            {"total": 3.0 - e, "drift": 2.0 - e, "diffusion": -0.5 * e},
            {"total": 3.5 - e, "drift": 2.0, "diffusion": 1.5},
        )
    h.best_epoch = best_epoch
    return h


def test_losses_draw_train_and_val_per_panel_and_mark_the_best_epoch():
    h = history(best_epoch=3)
    fig = plot_losses(h, title="losses")
    assert len(fig.axes) == 3
    for ax, key in zip(fig.axes, ("total", "drift", "diffusion"), strict=True):
        train, val, best = ax.get_lines()
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(train.get_ydata(), getattr(h, f"train_{key}"))
        np.testing.assert_array_equal(val.get_ydata(), getattr(h, f"val_{key}"))
        assert best.get_xdata()[0] == 3
    assert fig.axes[0].get_title() == "losses"
    assert fig.axes[0].get_legend().get_title().get_text() == "best epoch 3"
    assert fig.axes[2].get_yscale() == "linear"  # the NLL can be negative: no log scale


def test_losses_without_a_best_epoch_draw_no_marker():
    fig = plot_losses(history(best_epoch=0))
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
    with pytest.raises(ValueError, match="no epoch"):
        plot_losses(History())


def test_paths_vs_real_one_panel_per_coordinate_and_trajectory():
    rng = np.random.default_rng(0)
    real = [rng.normal(size=(6, 3)), rng.normal(size=(3, 3))]
    drift = [rng.normal(size=(5, 3)), rng.normal(size=(5, 3))]
    samples = [rng.normal(size=(5, 50, 3)), rng.normal(size=(5, 50, 3))]
    fig = plot_paths_vs_real(real, drift, samples, coords=(0, 2), band=0.5)
    axes = np.array(fig.axes).reshape(2, 2)  # rows: coordinates, columns: trajectories
    for j in range(2):
        for i, c in enumerate((0, 2)):
            one, mean, actual = axes[i, j].get_lines()
            np.testing.assert_array_equal(one.get_ydata(), samples[j][:, 0, c])
            np.testing.assert_array_equal(mean.get_ydata(), drift[j][:, c])
            # the actual path is cut to the simulated horizon (5 steps) when longer
            n = min(len(real[j]), 5)
            np.testing.assert_array_equal(actual.get_ydata(), real[j][:n, c])
    assert axes[1, 0].get_ylabel() == "PC3"
    # the band: the 25% and 75% quantiles of the 50 paths at each step
    lo, hi = np.quantile(samples[0][:, :, 0], [0.25, 0.75], axis=1)
    verts = axes[0, 0].collections[0].get_paths()[0].vertices[:, 1]
    assert np.isin(lo, verts).all() and np.isin(hi, verts).all()


def test_paths_vs_real_errors():
    x = [np.zeros((3, 2))]
    with pytest.raises(ValueError, match="equally many"):
        plot_paths_vs_real(x, [], [np.zeros((3, 4, 2))])
    with pytest.raises(ValueError, match="band must lie in"):
        plot_paths_vs_real(x, [np.zeros((3, 2))], [np.zeros((3, 4, 2))], band=1.0)


def test_template_figure_draws_sample_and_density():
    import numpy as np

    from sde_utils.plots.template import plot_sample_vs_density

    x = np.random.default_rng(0).normal(0.0, 2.0, size=500)
    fig = plot_sample_vs_density(x, 2.0)
    (ax,) = fig.axes
    assert len(ax.patches) == 60 and len(ax.lines) == 1
    # the drawn density is N(0, 4)'s: its peak is 1 / (2 sqrt(2 pi))
    assert abs(ax.lines[0].get_ydata().max() - 1 / (2 * np.sqrt(2 * np.pi))) < 1e-3
