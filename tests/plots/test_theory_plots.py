"""Figures of notebooks 04-06 on small synthetic inputs (dicts shaped like the theory
results): each returns a Figure with the expected panels, labels and titles."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sde_utils.plots.style import use_style  # noqa: E402
from sde_utils.plots.theory import (  # noqa: E402
    plot_eigenvalues,
    plot_linear_growth,
    plot_linear_moments,
    plot_lipschitz_brackets,
    plot_lv,
    plot_moment_recursion,
    plot_picard,
    plot_ultimate_bound,
)

NAMES = ("neural_sde", "linear_ou", "random_walk", "drift_only")


@pytest.fixture(autouse=True)
def _style_and_close():
    use_style()
    yield
    plt.close("all")


def rng(seed=0):
    return np.random.default_rng(seed)


def bracket(lower, upper, n_times=3):
    e = {"lower": lower, "upper": upper, "lower_by_time": np.linspace(0.5, 1.0, n_times) * lower}
    return e


def brackets():
    out = {}
    for i, name in enumerate(NAMES):
        mu = bracket(1.0 + i, 2.0 + i) if name != "random_walk" else bracket(0.0, 0.0)
        sg = bracket(0.1, 0.3) if name == "neural_sde" else bracket(0.0, 0.0)
        k = {"lower": mu["lower"] + sg["lower"], "upper": mu["upper"] + sg["upper"]}
        out[name] = {"K_mu": mu, "K_sigma": sg, "K": k}
    return out


def test_lipschitz_brackets_two_panels():
    fig = plot_lipschitz_brackets(brackets(), [0.0, 5.0, 10.0])
    ax, ax_t = fig.axes
    assert isinstance(fig, plt.Figure)
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "Lipschitz constant in x"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(NAMES)
    assert ax_t.get_xlabel() == "t (tokens)"
    # K_mu of 3 models and K_sigma of the neural SDE are positive by time: 4 lines
    assert len(ax_t.get_lines()) == 4


def test_linear_growth_one_panel_per_model():
    radii = [0.5, 1.0, 2.0]
    growth = {
        n: {"sup_sphere": np.array([1.0, 0.8, 0.6]), "f0_sq": np.array([2.0, 2.1]),
            "C_certified": 3.0 if n != "drift_only" else None}
        for n in NAMES
    }  # fmt: skip
    norms = rng().uniform(0.1, 3.0, 20)
    ratios = {n: rng(1).uniform(0.1, 2.0, 20) for n in NAMES}
    fig = plot_linear_growth(growth, norms, ratios, radii)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == list(NAMES)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    assert fig.axes[2].get_xlabel() == "‖x‖ / RMS norm of the held-out states"
    assert fig.axes[0].get_ylabel() == "(‖μ‖² + ‖σ‖²) / (1 + ‖x‖²)"
    assert "certified C = 3" in fig.axes[0].get_legend().get_texts()[-1].get_text()


def centres():
    return {
        "ou": {"stability": {"eigenvalues": np.array([-1.0 + 0.5j, -1.0 - 0.5j]), "hurwitz": True}},
        "rw": {"stability": {"eigenvalues": np.array([0.0, 0.0]), "hurwitz": False}},
    }


def test_eigenvalues_one_panel_per_model():
    fig = plot_eigenvalues(centres())
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "ou\nHurwitz" and fig.axes[1].get_title() == "rw\nnot Hurwitz"
    assert fig.axes[0].get_xlabel() == "Re λ" and fig.axes[0].get_ylabel() == "Im λ"


def lv_result(seed):
    g = rng(seed)
    t = np.arange(6.0)
    ev = 2.0 + np.exp(-t)
    return {
        "LV_data": g.normal(size=30), "LV_sim": g.normal(size=50),
        "dist_data": g.uniform(0, 3, 30), "dist_sim": g.uniform(0, 3, 50),
        "fraction_LV_nonpositive_data": 0.5, "t": t, "EV": ev, "EV_se": 0.01 * ev,
        "bound": ev + 0.5, "level": 2.5,
    }  # fmt: skip


def checks():
    return {n: {"continuous": lv_result(i), "discrete": lv_result(i + 10)} for i, n in enumerate(("ou", "rw"))}  # fmt: skip


def test_lv_two_rows_per_model():
    fig = plot_lv(checks(), {"ou": 1.5, "rw": 2.0}, seed=0)
    assert len(fig.axes) == 4  # 2 rows x 2 models
    assert fig.axes[0].get_yscale() == "symlog" and fig.axes[0].get_title() == "ou"
    assert fig.axes[0].get_ylabel() == "LV(x)  (symlog)"
    assert fig.axes[2].get_ylabel() == "density"
    assert "LV ≤ 0 on 50% of held-out states" == fig.axes[2].get_title()


def test_lv_constant_generator_still_draws():
    ch = checks()
    for form in ("continuous", "discrete"):
        ch["rw"][form]["LV_data"] = np.full(30, 0.36)  # zero drift, constant sigma
        ch["rw"][form]["LV_sim"] = np.full(50, 0.36)
    fig = plot_lv(ch, {"ou": 1.5, "rw": 0.36}, seed=0)
    assert fig.axes[3].get_xlim()[0] < 0.36 < fig.axes[3].get_xlim()[1]


def test_ultimate_bound_two_forms_per_model():
    fig = plot_ultimate_bound(checks(), fine_steps=10)
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title() == "ou: dt/10"
    assert fig.axes[2].get_title() == "ou: one step per token"
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    assert fig.axes[2].get_xlabel() == "t (tokens)"


def moment_mc(g, T, d):
    """A stand-in for mc_mean_cov: means, covariances and their standard errors."""
    return {
        "means": g.normal(size=(T, d)), "se_means": np.full((T, d), 0.1),
        "covs": np.abs(g.normal(size=(T, d, d))), "se_covs": np.full((T, d, d), 0.1),
    }  # fmt: skip


def test_linear_moments_mean_and_variance_of_two_coordinates():
    T, F, d = 5, 21, 2  # 4 tokens, 5 substeps per token
    g = rng(2)
    continuous = {
        "tokens": np.arange(T, dtype=float), "t_fine": np.linspace(0, T - 1, F),
        "m_ode_fine": g.normal(size=(F, d)), "S_ode_fine": np.abs(g.normal(size=(F, d, d))),
        "mc": moment_mc(g, T, d),
    }  # fmt: skip
    token = {
        "mc": moment_mc(g, T, d),
        "m_chain": g.normal(size=(T, d)),
        "S_chain": np.abs(g.normal(size=(T, d, d))),
    }
    fig = plot_linear_moments(continuous, token, fine_steps=5)
    assert len(fig.axes) == 4
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "mean of PC1", "mean of PC2", "variance of PC1", "variance of PC2"
    ]  # fmt: skip
    assert fig.axes[2].get_xlabel() == "t (tokens)"


def test_moment_recursion_one_panel_per_moment():
    g = rng(3)
    res = {k: g.normal(size=(3, 4)) for k in ("lhs", "rhs_ito", "rhs_euler")}
    res["lhs_se"] = np.full((3, 4), 0.1)
    res["step"] = 1.0
    fig = plot_moment_recursion(res, "the n-th moment equation")
    assert len(fig.axes) == 3
    assert fig.axes[1].get_title() == "n = 2: d/dt E X^2"
    assert fig._suptitle.get_text() == "the n-th moment equation"


def test_picard_one_panel_per_model_with_a_shared_legend():
    n = 4
    picard = {
        name: {
            "sup_diff": np.array([1.0, 0.1, 0.0, 0.0]), "iteration": np.arange(n + 1),
            "dist_to_em": np.array([2.0, 0.5, 0.01, 0.0, 0.0]),
            "log10_bound_diff": np.array([0.1, -0.5, 250.0, -np.inf]),
            "bound_diff_factorial": np.array([1.2, 0.6, 0.2, 0.05]),
            "K_mu": 1.0, "K_sigma": 0.5, "n_steps": n,
        }
        for name in ("ou", "neural_sde")
    }  # fmt: skip
    fig = plot_picard(picard)
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_ylabel() == "sup norm over the grid"
    assert fig.axes[1].get_title().startswith("neural_sde\nK_μ = 1")
    assert len(fig.legends) == 1 and "4 tokens" in fig._suptitle.get_text()
