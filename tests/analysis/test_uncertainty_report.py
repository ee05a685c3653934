"""Notebook 08's steps (sections 1-3) on small synthetic tables and stores.

Each step is checked against the statistic it wraps called directly (same seed, so the
same group draws), or against a closed form: a linear SDE with constant diagonal sigma has
``|sigma|^2 = sum_i sigma_i^2`` everywhere, and without PCA or standardisation the
model-space trace equals it.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sde_utils.analysis import uncertainty_report as R
from sde_utils.analysis.intervals import means_by_level, slope_interval, spearman_interval
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.features import FeatureMap

KW = dict(n_boot=200, seed=3)


def token_table(n_conv=12, per=10, seed=0) -> pd.DataFrame:
    """Transitions of ``n_conv`` conversations at two temperatures; sigma2 rises with the
    next-token entropy, the realised step does not."""
    rng = np.random.default_rng(seed)
    n = n_conv * per
    entropy = rng.gamma(2.0, 1.0, n)
    return pd.DataFrame(
        {
            "conv_id": np.repeat([f"c{i}" for i in range(n_conv)], per),
            "k": np.tile(np.arange(per), n_conv),
            "temperature": np.repeat(np.where(np.arange(n_conv) % 2, 1.0, 0.7), per),
            "entropy_next": entropy,
            "surprisal_next": entropy + rng.exponential(1.0, n),
            "sigma2": entropy + 0.1 * rng.standard_normal(n),
            "sq_increment": rng.exponential(1.0, n),
            "sq_increment_model": rng.exponential(2.0, n),
        }
    )


def test_check_complexity_measure(make_store):
    store = make_store([3, 3])
    assert R.check_complexity_measure("mean_clauses", store) == "mean_clauses"
    with pytest.raises(ValueError, match="not allowed"):
        R.check_complexity_measure("words", store)
    with pytest.raises(ValueError, match="HelpSteer"):
        R.check_complexity_measure("complexity", store)
    annotated = make_store([3, 3], complexity=[1.0, 2.0])
    assert R.check_complexity_measure("complexity", annotated) == "complexity"


def test_correlations_are_the_wrapped_intervals():
    tokens = token_table()
    corr = R.uncertainty_correlations(tokens, min_groups=5, **KW)
    assert list(corr) == [
        "sigma2~entropy_next",
        "sigma2~surprisal_next",
        "sq_increment~entropy_next",
        "sq_increment~surprisal_next",
    ]
    assert list(corr["sigma2~entropy_next"]) == [
        "spearman",
        "partial_position",
        "partial_temperature",
        "partial_position_temperature",
    ]
    direct = spearman_interval(tokens["sigma2"], tokens["entropy_next"], tokens["conv_id"], **KW)
    assert corr["sigma2~entropy_next"]["spearman"] == direct
    assert direct["low"] > 0.9  # sigma2 is entropy plus small noise
    table = R.correlation_table(corr)
    assert len(table) == 16 and list(table.columns[:2]) == ["pair", "measure"]

    by_temp = R.sigma_entropy_by_temperature(tokens, min_groups=5, **KW)
    assert list(by_temp) == list(corr)  # every pair, within each temperature
    assert list(by_temp["sigma2~entropy_next"]) == ["0.7", "1"]
    hot = tokens[tokens["temperature"] == 1.0]
    assert by_temp["sigma2~entropy_next"]["1"]["spearman"] == spearman_interval(
        hot["sigma2"], hot["entropy_next"], hot["conv_id"], min_groups=5, **KW
    )
    side = R.side_by_side(corr, by_temp)
    assert list(side.columns) == [
        "T=0.7",
        "T=1",
        "pooled",
        "| temperature",
        "| position + temperature",
    ]
    est = by_temp["sigma2~entropy_next"]["1"]["spearman"]["estimate"]
    assert side.loc["sigma2~entropy_next", "T=1"].startswith(f"{est:+.3f} [")


def test_side_by_side_shows_a_sign_flip_the_pooled_number_hides():
    # sigma2 follows entropy at T=0.7 and falls with it at T=1.3: the within-temperature
    # cells have opposite signs, as on notebook 02's samples; a table of pooled numbers
    # alone could not show it (control: the same data with one sign show no flip)
    tokens = token_table(n_conv=16)
    hot = tokens["temperature"] == 1.0
    flipped = tokens.assign(sigma2=np.where(hot, -tokens["entropy_next"], tokens["sigma2"]))
    for frame, flip in ((flipped, True), (tokens, False)):
        corr = R.uncertainty_correlations(frame, min_groups=5, **KW)
        by_temp = R.sigma_entropy_by_temperature(frame, min_groups=5, **KW)
        side = R.side_by_side(corr, by_temp)
        assert side.shape == (4, 5)
        row = side.loc["sigma2~entropy_next"]
        assert (row["T=0.7"][0] != row["T=1"][0]) == flip  # the sign of each cell's estimate


def test_entropy_panels_skip_temperatures_without_two_conversations():
    tokens = token_table()
    tokens.loc[tokens["temperature"] == 1.0, "conv_id"] = "one"  # a single conversation
    sigma_entropy, sigma_surprisal, step_entropy = R.entropy_panels(tokens, bins=4, **KW)
    assert list(sigma_entropy) == [0.7] and list(step_entropy) == [0.7]
    assert len(sigma_surprisal[0.7]) == 4  # equal-count bins


def test_temperature_levels_wrap_means_and_slopes():
    tokens = token_table()
    levels = R.temperature_levels(tokens, min_groups=5, **KW)
    assert list(levels) == list(R.TEMPERATURE_LEVELS)
    want = means_by_level(tokens["temperature"], tokens["sq_increment"], tokens["conv_id"], **KW)
    pd.testing.assert_frame_equal(levels["increment"]["by_temperature"], want)
    slope = slope_interval(
        tokens["temperature"], tokens["sigma2"], tokens["conv_id"], min_groups=5, **KW
    )
    assert levels["sigma"]["slope"] == slope
    lines = R.slope_lines({**levels, "fitted": levels["sigma"]})
    assert len(lines) == 4 and lines[1].startswith("fitted     slope per unit temperature")


def test_fit_temperatures_projects_and_fits_each_seed(monkeypatch, make_store):
    calls = []

    def fake_fit(store, params):
        calls.append(params)
        return {0.7: f"fit-{params['seed']}"}, {1.0: "too few"}

    monkeypatch.setattr(R, "project_store", lambda store, features, tag: (store, tag))
    monkeypatch.setattr(R, "fit_by_temperature", fake_fit)
    fit = SimpleNamespace(params={"dt": 1.0, "pca_dim": 4}, features=None, path=Path("fit-x"))
    fits, skipped = R.fit_temperatures(
        make_store([3]), fit, [0, 5], epochs=7, hidden=16, patience=2
    )
    assert fits == {(0.7, 0): "fit-0", (0.7, 5): "fit-5"}
    assert skipped == {"1 (seed 0)": "too few", "1 (seed 5)": "too few"}
    assert [p["seed"] for p in calls] == [0, 5]
    assert calls[0]["pca_dim"] is None and calls[0]["epochs"] == 7 and calls[0]["dt"] == 1.0


def constant_sigma_fit(sigma: float, d: int = 2) -> SimpleNamespace:
    features = FeatureMap(pca_dim=None, standardize=False).fit(
        np.random.default_rng(0).normal(size=(20, d))
    )
    sde = LinearSDE(d).double()
    sde.sigma_diag.fill_(sigma)
    walk = RandomWalk(d).double()
    walk.sigma_diag.fill_(sigma)
    return SimpleNamespace(sde=sde, features=features, models={"random_walk": walk})


def test_common_states_and_fitted_sigma2_closed_form(make_store):
    store = make_store([4, 3, 5, 4], dim=2)
    fit = constant_sigma_fit(1.0)
    z, t, conv = R.common_states(store, fit, 0.5)
    x0, t0, _ = store.transitions(dt=0.5)
    np.testing.assert_allclose(z, fit.features.transform(x0.astype(np.float64)), atol=1e-12)
    np.testing.assert_array_equal(t, t0)
    assert list(conv[:3]) == ["c0"] * 3 and len(conv) == len(x0)
    # |sigma|^2 = d * sigma^2 = 2 * T: the fitted slope on temperature is exactly 2
    fits = {
        (temp, seed): constant_sigma_fit(float(np.sqrt(temp)))
        for temp in (0.5, 1.0)
        for seed in (0, 1)
    }
    fitted = R.fitted_sigma2(fits, z, t, conv)
    assert list(fitted.columns) == [
        "fit",
        "state",
        "sigma2_model",
        "temperature",
        "fit_seed",
        "conv_id",
    ]
    np.testing.assert_allclose(fitted["sigma2_model"], 2 * fitted["temperature"], rtol=1e-12)
    summary = R.fitted_temperature_summary(fitted, fits, {}, n_boot=50, seed=0, min_groups=2)
    assert summary["n_fits"] == 4 and summary["random_walk_sigma2"] == pytest.approx(
        {"0.5": 1.0, "1": 2.0}
    )
    assert summary["slope"]["estimate"] == pytest.approx(2.0)
    assert summary["slope_per_seed"] == pytest.approx({"0": 2.0, "1": 2.0})
    per_seed = R.per_seed_means(fitted)
    assert len(per_seed) == 4
    np.testing.assert_allclose(per_seed["sigma2_model"], 2 * per_seed["temperature"])


def test_first_step_table_and_group_count():
    summary = {
        "neural_sde": {
            "n_groups": 3,
            "n_degenerate": 1,
            **{
                stat: {
                    "mean": 1.0,
                    "null_mean": 0.5,
                    "excess": {"estimate": 0.5, "low": 0.1, "high": 0.9},
                    "share_p05": 0.0,
                }
                for stat in ("kl_gauss_diag", "energy")
            },
        }
    }
    table = R.first_step_table(summary)
    assert list(table["stat"]) == ["kl_gauss_diag", "energy"] and (table["excess"] == 0.5).all()
    assert R.count_first_groups(pd.DataFrame({"group": [0, 0, 2]})) == 2
    assert R.count_first_groups(pd.DataFrame()) == 0
