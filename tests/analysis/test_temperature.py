"""Tests for sde_utils.analysis.temperature on small synthetic stores.

Stores are built in memory (``TrajectoryStore`` over a numpy array and a DataFrame), so no
LLM is involved. Closed form used: the feature map is affine, so the model-space noise trace
equals ``sum_j sigma_j^2 |inverse(z + e_j) - inverse(z)|^2``.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.analysis.intervals import slope_interval
from sde_utils.analysis.prediction_error import initial_model
from sde_utils.analysis.stats import slope_with_ci
from sde_utils.analysis.temperature import (
    fit_by_temperature,
    fitted_slope_interval,
    model_space_sigma2,
    project_store,
    sigma2_by_fit,
    view_where,
)
from sde_utils.models.baselines import RandomWalk
from sde_utils.models.features import FeatureMap


@pytest.mark.parametrize("pca_dim", [2, None])
def test_model_space_sigma2_matches_the_inverse_map(pca_dim):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((50, 5)) * np.array([1.0, 3.0, 0.5, 2.0, 1.0]) + 4.0
    fmap = FeatureMap(pca_dim=pca_dim).fit(x)
    k = fmap.output_dim
    sigma = rng.uniform(0.1, 2.0, (3, k))
    z = rng.standard_normal((1, k))
    cols = [fmap.inverse_transform(z + np.eye(k)[j]) - fmap.inverse_transform(z) for j in range(k)]
    per_axis = np.array([float((c**2).sum()) for c in cols])
    np.testing.assert_allclose(model_space_sigma2(fmap, sigma), (sigma**2) @ per_axis, rtol=1e-10)
    with pytest.raises(ValueError, match=f"\\(N, {k}\\)"):
        model_space_sigma2(fmap, np.ones((3, k + 1)))


def test_view_where_keeps_the_selected_sequences(make_store):
    store = make_store([3, 4, 5], temperature=[0.5, 1.0, 0.5])
    view = view_where(store, store.sequences["temperature"] == 0.5)
    assert view.sequences["seq_id"].tolist() == [0, 2]
    np.testing.assert_array_equal(view.trajectory(1), store.trajectory(2))
    with pytest.raises(ValueError, match=r"mask must be \(3,\)"):
        view_where(store, [True])


def test_project_store_maps_every_state_and_tags_the_hash(make_store):
    store = make_store([3, 4], dim=5, temperature=[0.5, 1.0])
    fmap = FeatureMap(pca_dim=2).fit(store.states())
    proj = project_store(store, fmap, "fit-abc")
    assert proj.dim == 2 and proj.embeddings.dtype == np.float32
    for i in range(2):
        want = fmap.transform(store.trajectory(i).astype(np.float64))
        np.testing.assert_allclose(proj.trajectory(i), want, rtol=1e-6)  # float32 storage
    assert proj.meta["content_hash"] == "mem0|projected:fit-abc"
    assert store.meta["content_hash"] == "mem0"  # the source is untouched
    with pytest.raises(ValueError, match="tag"):
        project_store(store, fmap, "")


FIT_PARAMS = {
    "seed": 3,
    "pca_dim": 2,
    "dt": 1.0,
    "max_len": None,
    "hidden": 8,
    "depth": 1,
    "activation": "tanh",
    "time_encoding": "linear",
    "time_scale": 10.0,
    "sigma_floor": 0.001,
    "lam": 1.0,
    "epochs": 1,
    "batch_size": 64,
    "lr": 1e-12,  # one epoch at this rate leaves the weights at their initial values
    "weight_decay": 0.0,
    "patience": 5,
    "horizons": [1],
    "n_paths": 2,
    "n_eval_trajectories": 2,
    "latent_window": 4,  # the test's sequences hold 5 transitions
}


def test_fit_by_temperature_fits_complete_views_and_rebuilds_the_initial_net(make_store, tmp_path):
    n = 9
    temps = [0.5] * 6 + [1.0] * 3
    splits = ["train", "train", "val", "val", "test", "test", "train", "val", "train"]
    store = make_store([6] * n, dim=4, temperature=temps)
    store.sequences["split"] = splits
    fits, skipped = fit_by_temperature(store, FIT_PARAMS, root=tmp_path)
    assert list(fits) == [0.5]
    assert list(skipped) == [1.0] and "no 'test' sequences" in skipped[1.0]
    fit = fits[0.5]
    assert Path(fit.store).name == "mem-store"
    init = initial_model(fit)
    trained = dict(fit.sde.state_dict())
    for name, value in init.state_dict().items():
        # lr = 1e-12 for one epoch (a few Adam steps of size ~lr): equal far below 1e-9
        torch.testing.assert_close(value, trained[name], atol=1e-9, rtol=0)


def test_sigma2_by_fit_evaluates_every_fit_on_the_same_states():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((40, 3))
    fits = {}
    for temp, scale in ((0.5, 1.0), (1.5, 2.0)):
        fmap = FeatureMap(pca_dim=None, standardize=False).fit(x)
        rw = RandomWalk(3).double()
        rw.sigma_diag.fill_(scale)
        fits[temp] = SimpleNamespace(features=fmap, sde=rw)
    table = sigma2_by_fit(fits, x[:5], np.zeros(5))
    assert len(table) == 10
    got = table.groupby("fit")["sigma2_model"].mean()
    assert got[0.5] == pytest.approx(3.0) and got[1.5] == pytest.approx(12.0)
    tuple_keys = sigma2_by_fit({(0.5, 0): fits[0.5], (1.5, 0): fits[1.5]}, x[:5], np.zeros(5))
    assert tuple_keys["fit"].tolist() == [(0.5, 0)] * 5 + [(1.5, 0)] * 5
    empty = sigma2_by_fit({}, x[:5], np.zeros(5))
    assert empty.empty and list(empty.columns) == ["fit", "state", "sigma2_model"]


def fitted_table(fit_sd: float, state_sd: float, n_fits: int = 3, seed: int = 13) -> pd.DataFrame:
    """Value = 2 + 3 T + fit effect (sd fit_sd) + state effect (sd state_sd, shared by all
    fits, as every fit is evaluated at the same states); 30 states in 10 conversations."""
    rng = np.random.default_rng(seed)
    state_effect = state_sd * rng.standard_normal(30)
    rows = []
    for temp in (0.5, 1.0, 1.5):
        for f in range(n_fits):
            shift = fit_sd * rng.standard_normal()
            for st in range(30):
                rows.append([temp, f, st, st // 3, 2 + 3 * temp + shift + state_effect[st]])
    return pd.DataFrame(
        rows, columns=["temperature", "fit_seed", "state", "conv_id", "sigma2_model"]
    )


def test_fitted_slope_interval_estimate_is_the_slope_of_level_means():
    table = fitted_table(fit_sd=0.5, state_sd=1.0)
    res = fitted_slope_interval(table, n_boot=200)
    means = table.groupby("temperature")["sigma2_model"].mean()
    want = np.polyfit(means.index.to_numpy(), means.to_numpy(), 1)[0]
    assert res["estimate"] == pytest.approx(want, rel=1e-12)
    pooled = slope_with_ci(table["temperature"], table["sigma2_model"])["slope"]
    assert res["estimate"] == pytest.approx(pooled, rel=1e-12)  # equal rows per level
    assert res["fits_per_level"] == {"0.5": 3, "1": 3, "1.5": 3} and res["n_levels"] == 3
    assert res["low"] <= res["high"]


def test_fitted_slope_interval_includes_the_spread_between_fits():
    # no fit-to-fit spread and identical state effects at every level: every replicate's
    # per-level means differ by exactly 3 T, so the interval is the point 3
    exact = fitted_slope_interval(fitted_table(fit_sd=0.0, state_sd=1.0), n_boot=100)
    assert exact["estimate"] == pytest.approx(3.0, rel=1e-12)
    assert exact["low"] == pytest.approx(3.0, rel=1e-12)
    assert exact["high"] == pytest.approx(3.0, rel=1e-12)
    # fit-to-fit spread: the states-only interval stays a point, this one widens
    spread = fitted_table(fit_sd=1.0, state_sd=1.0)
    res = fitted_slope_interval(spread, n_boot=400)
    averaged = spread.groupby(["temperature", "state", "conv_id"], as_index=False)["sigma2_model"]
    states_only = slope_interval(
        averaged.mean()["temperature"], averaged.mean()["sigma2_model"], averaged.mean()["conv_id"]
    )
    assert states_only["high"] - states_only["low"] < 1e-9
    assert res["high"] - res["low"] > 0.5  # fit sd 1 over a temperature range of 1


def test_fitted_slope_interval_needs_several_fits_per_level():
    one = fitted_table(fit_sd=0.5, state_sd=1.0, n_fits=1)
    res = fitted_slope_interval(one)
    assert math.isnan(res["low"]) and "fits per level" in res["reason"]
    assert res["estimate"] == pytest.approx(
        slope_with_ci(one["temperature"], one["sigma2_model"])["slope"], rel=1e-12
    )
    single = fitted_table(0.5, 1.0).query("temperature == 0.5")
    assert "1 levels" in fitted_slope_interval(single)["reason"]
