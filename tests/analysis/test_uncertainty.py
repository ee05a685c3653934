"""Tests for sde_utils.analysis.uncertainty on small synthetic stores with known answers.

Stores are built in memory (``TrajectoryStore`` over a numpy array and a DataFrame), so no
LLM is involved. Closed forms used:
* a random walk's drift path stays at its start, so its squared error at horizon h is
  ``|z_h - z_0|^2 / k``;
* the feature map is affine, so the model-space noise trace equals
  ``sum_j sigma_j^2 |inverse(z + e_j) - inverse(z)|^2``;
* notebook 03's total loss is the mean over transitions of ``sq_residual + lam * nll``.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.analysis import stats
from sde_utils.analysis import uncertainty as U
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.features import FeatureMap
from sde_utils.models.metrics import one_step_nll
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.train import total_loss


def make_store(lengths, dim=3, seed=0, **columns) -> TrajectoryStore:
    """In-memory store: random float32 states; ``entropy[j] = 100 * row + j`` and
    ``logprob[j] = -(1000 * row + j)`` so every aligned value names its (row, step)."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    emb = rng.standard_normal((int(lengths.sum()), dim)).astype(np.float32)
    n = len(lengths)
    seqs = pd.DataFrame(
        {
            "seq_id": np.arange(n),
            "conv_id": [f"c{i}" for i in range(n)],
            "split": ["train"] * n,
            "offset": np.cumsum(lengths) - lengths,
            "length": lengths,
            "entropy": [list(100.0 * i + np.arange(L)) for i, L in enumerate(lengths)],
            "logprob": [list(-(1000.0 * i + np.arange(L))) for i, L in enumerate(lengths)],
        }
    )
    for key, value in columns.items():
        seqs[key] = value
    return TrajectoryStore(Path("mem-store"), {"content_hash": f"mem{seed}"}, emb, seqs)


# ---------------------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------------------
def test_next_step_values_pairs_step_k_with_k_plus_1():
    store = make_store([4, 2, 5])
    _, _, _, index = store.transitions(return_index=True)
    got = U.next_step_values(store.sequences, index, "entropy")
    np.testing.assert_array_equal(got, 100.0 * index[:, 0] + index[:, 1] + 1)
    now = U.next_step_values(store.sequences, index, "entropy", offset=0)
    np.testing.assert_array_equal(now, 100.0 * index[:, 0] + index[:, 1])


def test_next_step_values_rejects_missing_steps_and_columns():
    store = make_store([3, 2])
    with pytest.raises(IndexError, match="no step k \\+ 1"):
        U.next_step_values(store.sequences, np.array([[1, 1]]), "entropy")
    with pytest.raises(KeyError, match="no column 'nope'"):
        U.next_step_values(store.sequences, np.array([[0, 0]]), "nope")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        U.next_step_values(store.sequences, np.array([0, 0]), "entropy")


def test_transition_frame_aligns_entropy_surprisal_and_metadata():
    store = make_store([5, 3, 4], temperature=[0.5, 1.0, 1.5])
    fmap = FeatureMap(pca_dim=None, standardize=False).fit(store.states())
    model = RandomWalk(3).double()
    model.sigma_diag.copy_(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    table = U.transition_frame(store, fmap, model, dt=0.5)
    assert len(table) == 4 + 2 + 3
    np.testing.assert_array_equal(table["entropy_next"], 100.0 * table["row"] + table["k"] + 1)
    np.testing.assert_array_equal(table["surprisal_next"], 1000.0 * table["row"] + table["k"] + 1)
    np.testing.assert_array_equal(table["entropy_now"], 100.0 * table["row"] + table["k"])
    np.testing.assert_array_equal(table["temperature"], np.repeat([0.5, 1.0, 1.5], [4, 2, 3]))
    np.testing.assert_allclose(table["t"], 0.5 * table["k"])
    # constant sigma: |sigma|^2 = 1 + 4 + 9 at every step
    np.testing.assert_allclose(table["sigma2"], 14.0)
    # no PCA and no scaling: the state space is model space up to a shift
    np.testing.assert_allclose(table["sq_increment"], table["sq_increment_model"], rtol=1e-6)
    x = store.embeddings.astype(np.float64)
    direct = ((x[1] - x[0]) ** 2).sum()
    assert table["sq_increment_model"].iloc[0] == pytest.approx(direct, rel=1e-6)  # float32 data


def test_step_quantities_reproduce_the_training_losses():
    rng = np.random.default_rng(1)
    d, n, dt, lam = 4, 200, 0.5, 0.7
    model = LinearSDE(d).double()
    model.A.copy_(torch.as_tensor(-0.3 * np.eye(d)))
    model.b.copy_(torch.as_tensor(rng.standard_normal(d)))
    model.sigma_diag.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, d)))
    z0, z1 = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    t0 = rng.uniform(0, 5, n)
    q = U.step_quantities(model, z0, t0, z1, dt)
    np.testing.assert_allclose(q["sigma2"], (model.sigma_diag.numpy() ** 2).sum())
    np.testing.assert_allclose(q["sq_increment"], ((z1 - z0) ** 2).sum(1))
    expected_total = total_loss(
        model, *(torch.as_tensor(a) for a in (z0, t0, z1)), dt=dt, lam=lam
    ).item()
    # float64 throughout: agreement to rounding
    assert (q["sq_residual"] + lam * q["nll"]).mean() == pytest.approx(expected_total, rel=1e-12)
    assert q["nll"].mean() == pytest.approx(one_step_nll(model, z0, t0, z1, dt), rel=1e-12)


# ---------------------------------------------------------------------------------------
# intervals with too little data
# ---------------------------------------------------------------------------------------
def test_intervals_are_nan_with_a_reason_when_groups_are_too_few():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(30), rng.standard_normal(30)
    groups = np.repeat(np.arange(3), 10)
    for res in (
        U.spearman_interval(x, y, groups, min_groups=4),
        U.partial_spearman_interval(x, y, np.arange(30), groups, min_groups=4),
        U.slope_interval(x, y, groups, min_groups=4),
        U.mean_interval(y, groups, min_groups=4),
    ):
        assert math.isnan(res["low"]) and math.isnan(res["high"])
        assert math.isfinite(res["estimate"])  # the point estimate needs no resampling
        assert "3 groups" in res["reason"]
        assert U.verdict_row("c", "s", "stat", res)["verdict"] == U.INSUFFICIENT


def test_intervals_of_no_rows_are_nan():
    empty = np.array([])
    assert U.spearman_interval(empty, empty, empty)["reason"] == "0 rows (need >= 3)"
    assert math.isnan(U.slope_interval(empty, empty, empty)["estimate"])
    assert U.means_by_level(empty, empty, empty).empty


def test_spearman_interval_matches_stats_and_drops_non_finite_rows():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(120)
    y = x + rng.standard_normal(120)
    groups = np.repeat(np.arange(12), 10)
    x_nan = x.copy()
    x_nan[5] = np.nan
    got = U.spearman_interval(x_nan, y, groups, n_boot=200, seed=4)
    keep = np.arange(120) != 5
    want = stats.spearman_ci(x[keep], y[keep], groups[keep], n_boot=200, seed=4)
    for key in ("estimate", "low", "high", "n", "n_groups"):
        assert got[key] == want[key]
    assert got["reason"] is None


def test_partial_interval_with_constant_covariate_is_the_plain_interval():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(80)
    y = x + rng.standard_normal(80)
    groups = np.repeat(np.arange(8), 10)
    z = np.column_stack([np.full(80, 1.5), rng.standard_normal(80)])
    plain = U.spearman_interval(x, y, groups, n_boot=100, seed=0)
    only_constant = U.partial_spearman_interval(x, y, z[:, :1], groups, n_boot=100, seed=0)
    assert only_constant["covariates_used"] == []
    assert only_constant["estimate"] == plain["estimate"]
    assert (only_constant["low"], only_constant["high"]) == (plain["low"], plain["high"])
    mixed = U.partial_spearman_interval(x, y, z, groups, n_boot=100, seed=0)
    assert mixed["covariates_used"] == [1]
    want = stats.partial_spearman(x, y, z[:, 1])
    assert mixed["estimate"] == pytest.approx(want, abs=1e-12)  # same computation


def test_as_interval_renames_slope_and_blanks_undefined_estimates():
    out = U.as_interval({"slope": 2.0, "low": 1.0, "high": 3.0})
    assert out["estimate"] == 2.0 and out["reason"] is None
    const = U.spearman_interval(np.ones(40), np.arange(40.0), np.repeat(np.arange(8), 5))
    assert math.isnan(const["estimate"]) and math.isnan(const["low"])
    assert "constant" in const["reason"]
    flat = U.slope_interval(np.ones(40), np.arange(40.0), np.repeat(np.arange(8), 5))
    assert "constant" in flat["reason"]


def test_means_by_level_gives_level_means_and_nan_bounds_for_one_group():
    levels = np.array([0.5, 0.5, 1.0, 1.0, 1.5, 1.5] * 4)
    y = levels * 10 + np.tile([0.0, 1.0], 12)
    groups = np.repeat(np.arange(4), 6)
    table = U.means_by_level(levels, y, groups, n_boot=50)
    np.testing.assert_allclose(table["level"], [0.5, 1.0, 1.5])
    np.testing.assert_allclose(table["mean"], [5.5, 10.5, 15.5])
    # every group holds the same rows at each level: no resample changes a level's mean
    np.testing.assert_allclose(table["low"], table["mean"])
    np.testing.assert_allclose(table["high"], table["mean"])
    one = U.means_by_level(levels, y, np.zeros(24), n_boot=50)
    np.testing.assert_allclose(one["mean"], [5.5, 10.5, 15.5])
    assert one["low"].isna().all()


def test_binned_means_drop_non_finite_rows_and_need_two_groups():
    rng = np.random.default_rng(12)
    x, y = rng.uniform(0, 10, 60), rng.standard_normal(60)
    groups = np.repeat(np.arange(6), 10)
    y_nan = y.copy()
    y_nan[0] = np.nan
    got = U.binned_means(x, y_nan, groups, bins=3, n_boot=50)
    want = stats.binned_mean_ci(x[1:], y[1:], groups[1:], bins=3, n_boot=50)
    pd.testing.assert_frame_equal(got, want[list(U.BINNED_COLUMNS)])
    empty = U.binned_means(x, y, np.zeros(60), bins=3)
    assert empty.empty and list(empty.columns) == list(U.BINNED_COLUMNS)


def test_correlation_summary_recovers_a_monotone_relation():
    rng = np.random.default_rng(6)
    n = 400
    table = pd.DataFrame(
        {
            "k": np.tile(np.arange(20), 20),
            "conv_id": np.repeat(np.arange(20), 20),
            "entropy": rng.uniform(0, 5, n),
        }
    )
    table["sigma2"] = np.exp(table["entropy"]) + rng.uniform(0, 1, n)  # monotone, tiny noise
    res = U.correlation_summary(table, "sigma2", "entropy", n_boot=200)
    assert set(res) == {"spearman", "partial_position"}
    assert res["spearman"]["estimate"] > 0.95  # noise is tiny relative to exp(entropy)
    assert res["spearman"]["low"] > 0.9
    assert res["partial_position"]["estimate"] > 0.95


# ---------------------------------------------------------------------------------------
# temperature
# ---------------------------------------------------------------------------------------
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
    np.testing.assert_allclose(U.model_space_sigma2(fmap, sigma), (sigma**2) @ per_axis, rtol=1e-10)
    with pytest.raises(ValueError, match=f"\\(N, {k}\\)"):
        U.model_space_sigma2(fmap, np.ones((3, k + 1)))


def test_view_where_keeps_the_selected_sequences():
    store = make_store([3, 4, 5], temperature=[0.5, 1.0, 0.5])
    view = U.view_where(store, store.sequences["temperature"] == 0.5)
    assert view.sequences["seq_id"].tolist() == [0, 2]
    np.testing.assert_array_equal(view.trajectory(1), store.trajectory(2))
    with pytest.raises(ValueError, match=r"mask must be \(3,\)"):
        U.view_where(store, [True])


def test_project_store_maps_every_state_and_tags_the_hash():
    store = make_store([3, 4], dim=5, temperature=[0.5, 1.0])
    fmap = FeatureMap(pca_dim=2).fit(store.states())
    proj = U.project_store(store, fmap, "fit-abc")
    assert proj.dim == 2 and proj.embeddings.dtype == np.float32
    for i in range(2):
        want = fmap.transform(store.trajectory(i).astype(np.float64))
        np.testing.assert_allclose(proj.trajectory(i), want, rtol=1e-6)  # float32 storage
    assert proj.meta["content_hash"] == "mem0|projected:fit-abc"
    assert store.meta["content_hash"] == "mem0"  # the source is untouched
    with pytest.raises(ValueError, match="tag"):
        U.project_store(store, fmap, "")


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
}


def test_fit_by_temperature_fits_complete_views_and_rebuilds_the_initial_net(tmp_path):
    n = 9
    temps = [0.5] * 6 + [1.0] * 3
    splits = ["train", "train", "val", "val", "test", "test", "train", "val", "train"]
    store = make_store([6] * n, dim=4, temperature=temps)
    store.sequences["split"] = splits
    fits, skipped = U.fit_by_temperature(store, FIT_PARAMS, root=tmp_path)
    assert list(fits) == [0.5]
    assert list(skipped) == [1.0] and "no 'test' sequences" in skipped[1.0]
    fit = fits[0.5]
    assert Path(fit.store).name == "mem-store"
    init = U.initial_model(fit)
    trained = dict(fit.sde.state_dict())
    for name, value in init.state_dict().items():
        # lr = 1e-12 for one epoch (a few Adam steps of size ~lr): equal far below 1e-9
        torch.testing.assert_close(value, trained[name], atol=1e-9, rtol=0)


def test_initial_model_reseeds_the_architecture():
    torch.manual_seed(11)
    original = NeuralSDE(3, hidden=8, depth=1, sigma_init=0.5)
    snapshot = {k: v.clone() for k, v in original.state_dict().items()}
    with torch.no_grad():
        for p in original.parameters():
            p.add_(1.0)  # "training"
    rebuilt = U.initial_model(SimpleNamespace(params={"seed": 11}, sde=original))
    for name, value in rebuilt.state_dict().items():
        torch.testing.assert_close(value, snapshot[name], atol=0, rtol=0)
    assert rebuilt.config() == original.config()


def test_sigma2_by_fit_evaluates_every_fit_on_the_same_states():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((40, 3))
    fits = {}
    for temp, scale in ((0.5, 1.0), (1.5, 2.0)):
        fmap = FeatureMap(pca_dim=None, standardize=False).fit(x)
        rw = RandomWalk(3).double()
        rw.sigma_diag.fill_(scale)
        fits[temp] = SimpleNamespace(features=fmap, sde=rw)
    table = U.sigma2_by_fit(fits, x[:5], np.zeros(5))
    assert len(table) == 10
    got = table.groupby("fit")["sigma2_model"].mean()
    assert got[0.5] == pytest.approx(3.0) and got[1.5] == pytest.approx(12.0)
    tuple_keys = U.sigma2_by_fit({(0.5, 0): fits[0.5], (1.5, 0): fits[1.5]}, x[:5], np.zeros(5))
    assert tuple_keys["fit"].tolist() == [(0.5, 0)] * 5 + [(1.5, 0)] * 5
    empty = U.sigma2_by_fit({}, x[:5], np.zeros(5))
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
    res = U.fitted_slope_interval(table, n_boot=200)
    means = table.groupby("temperature")["sigma2_model"].mean()
    want = np.polyfit(means.index.to_numpy(), means.to_numpy(), 1)[0]
    assert res["estimate"] == pytest.approx(want, rel=1e-12)
    pooled = stats.slope_with_ci(table["temperature"], table["sigma2_model"])["slope"]
    assert res["estimate"] == pytest.approx(pooled, rel=1e-12)  # equal rows per level
    assert res["fits_per_level"] == {"0.5": 3, "1": 3, "1.5": 3} and res["n_levels"] == 3
    assert res["low"] <= res["high"]


def test_fitted_slope_interval_includes_the_spread_between_fits():
    # no fit-to-fit spread and identical state effects at every level: every replicate's
    # per-level means differ by exactly 3 T, so the interval is the point 3
    exact = U.fitted_slope_interval(fitted_table(fit_sd=0.0, state_sd=1.0), n_boot=100)
    assert exact["estimate"] == pytest.approx(3.0, rel=1e-12)
    assert exact["low"] == pytest.approx(3.0, rel=1e-12)
    assert exact["high"] == pytest.approx(3.0, rel=1e-12)
    # fit-to-fit spread: the states-only interval stays a point, this one widens
    spread = fitted_table(fit_sd=1.0, state_sd=1.0)
    res = U.fitted_slope_interval(spread, n_boot=400)
    averaged = spread.groupby(["temperature", "state", "conv_id"], as_index=False)["sigma2_model"]
    states_only = U.slope_interval(
        averaged.mean()["temperature"], averaged.mean()["sigma2_model"], averaged.mean()["conv_id"]
    )
    assert states_only["high"] - states_only["low"] < 1e-9
    assert res["high"] - res["low"] > 0.5  # fit sd 1 over a temperature range of 1


def test_fitted_slope_interval_needs_several_fits_per_level():
    one = fitted_table(fit_sd=0.5, state_sd=1.0, n_fits=1)
    res = U.fitted_slope_interval(one)
    assert math.isnan(res["low"]) and "fits per level" in res["reason"]
    assert res["estimate"] == pytest.approx(
        stats.slope_with_ci(one["temperature"], one["sigma2_model"])["slope"], rel=1e-12
    )
    single = fitted_table(0.5, 1.0).query("temperature == 0.5")
    assert "1 levels" in U.fitted_slope_interval(single)["reason"]


# ---------------------------------------------------------------------------------------
# the first generated step
# ---------------------------------------------------------------------------------------
def test_first_token_groups_group_by_prompt_temperature_and_first_token():
    seqs = pd.DataFrame(
        {
            "prompt_index": [0, 0, 0, 0, 1, 1],
            "temperature": [0.5, 0.5, 0.5, 1.0, 0.5, 0.5],
            "token_ids": [[7, 1], [7, 2], [8, 1], [7, 3], [7, 1], [7]],
            "length": [2, 2, 2, 2, 2, 1],
            "conv_id": ["a", "a", "a", "a", "b", "b"],
        }
    )
    groups = U.first_token_groups(seqs)
    assert len(groups) == 1  # prompt 1's second sample has no second state
    g = groups.iloc[0]
    assert (g["prompt_index"], g["temperature"], g["first_token"]) == (0, 0.5, 7)
    assert g["rows"] == [0, 1] and g["size"] == 2 and g["conv_id"] == "a"
    assert len(U.first_token_groups(seqs, min_size=3)) == 0


def first_step_store(second_states: np.ndarray, x0: np.ndarray) -> TrajectoryStore:
    """K sequences of length 2 sharing prompt 0, temperature 1 and first token 5."""
    k, d = second_states.shape
    emb = np.empty((2 * k, d), dtype=np.float64)
    emb[0::2] = x0
    emb[1::2] = second_states
    seqs = pd.DataFrame(
        {
            "prompt_index": 0,
            "temperature": 1.0,
            "token_ids": [[5, 100 + i] for i in range(k)],
            "length": 2,
            "offset": np.arange(k) * 2,
            "conv_id": "c0",
            "split": "test",
        }
    )
    return TrajectoryStore(Path("mem-first"), {}, emb, seqs)


def _right_and_wrong(seed: int, k: int = 60, n_null: int = 99) -> pd.DataFrame:
    """One group of K true second states ~ N(x0, diag(sigma^2)); a random walk with that
    sigma ("right") and one with 4 sigma ("wrong")."""
    rng = np.random.default_rng(seed)
    x0 = np.array([1.0, -2.0])
    sigma = np.array([0.5, 1.5])
    draws = x0 + sigma * rng.standard_normal((k, 2))
    store = first_step_store(draws, x0)
    fmap = FeatureMap(pca_dim=None, standardize=False).fit(np.vstack([draws, x0]))
    models = {}
    for name, factor in (("right", 1.0), ("wrong", 4.0)):
        models[name] = RandomWalk(2).double()
        models[name].sigma_diag.copy_(torch.as_tensor(factor * sigma))
    return U.first_step_comparison(store, fmap, models, 1.0, dims=2, n_null=n_null, seed=seed)


def test_first_step_comparison_is_calibrated_for_the_true_model():
    tables = [_right_and_wrong(seed, n_null=49).set_index("model") for seed in range(40)]
    for stat in ("kl_gauss_diag", "energy"):
        p_right = np.array([t.loc["right", f"{stat}_p"] for t in tables])
        # under the true model p is ~uniform: the mean of 40 has sd 0.29 / sqrt(40) = 0.046,
        # so [0.35, 0.65] is a +-3.3 sd band around 0.5
        assert 0.35 < p_right.mean() < 0.65
        p_wrong = np.array([t.loc["wrong", f"{stat}_p"] for t in tables])
        assert (p_wrong == 1 / 50).all()  # 4x too wide: beyond every one of the 49 null draws


def test_first_step_comparison_rows_and_summary():
    table = _right_and_wrong(0)
    assert table["model"].tolist() == ["right", "wrong"]
    assert (table["size"] == 60).all() and (table["temperature"] == 1.0).all()
    assert not table["degenerate"].any()
    by = table.set_index("model")
    assert by.loc["wrong", "kl_gauss_diag"] > 5 * by.loc["right", "kl_gauss_diag"]
    summary = U.summarise_first_step(table, n_boot=50)
    assert summary["right"]["n_groups"] == 1 and summary["right"]["n_degenerate"] == 0
    for stat in ("kl_gauss_diag", "energy"):
        excess = by.loc["wrong", stat] - by.loc["wrong", f"{stat}_null_mean"]
        assert summary["wrong"][stat]["excess"]["estimate"] == pytest.approx(excess)
        # one conversation: no group bootstrap
        assert math.isnan(summary["wrong"][stat]["excess"]["low"])
        assert summary["wrong"][stat]["share_p05"] == 1.0


def test_first_step_comparison_marks_identical_second_states_degenerate():
    x0 = np.zeros(2)
    store = first_step_store(np.ones((3, 2)), x0)
    fmap = FeatureMap(pca_dim=None, standardize=False).fit(np.vstack([np.ones((3, 2)), x0]))
    table = U.first_step_comparison(store, fmap, {"rw": RandomWalk(2).double()}, 1.0, dims=2)
    assert table["degenerate"].tolist() == [True]
    assert "kl_gauss" not in table or table["kl_gauss"].isna().all()
    summary = U.summarise_first_step(table)
    assert summary["rw"]["n_groups"] == 0 and summary["rw"]["n_degenerate"] == 1
    assert math.isnan(summary["rw"]["energy"]["excess"]["low"])


# ---------------------------------------------------------------------------------------
# horizons, complexity, verdicts
# ---------------------------------------------------------------------------------------
def test_horizon_errors_of_a_random_walk_are_distances_from_the_start():
    rng = np.random.default_rng(10)
    trajs = [rng.standard_normal((L, 3)) for L in (3, 9, 6)]
    table = U.horizon_errors(RandomWalk(3).double(), trajs, ["a", "b", "c"], [1, 2, 4, 8], 1.0)
    assert table.groupby("trajectory")["h"].apply(list).to_dict() == {
        0: [1, 2],
        1: [1, 2, 4, 8],
        2: [1, 2, 4],
    }
    for _, row in table.iterrows():
        z = trajs[row["trajectory"]]
        want = ((z[row["h"]] - z[0]) ** 2).mean()  # zero drift: the path stays at z[0]
        assert row["sq_error"] == pytest.approx(want, rel=1e-12)
        assert row["group"] == "abc"[row["trajectory"]]


def test_horizon_errors_follow_a_linear_drift_exactly():
    model = LinearSDE(2).double()
    model.A.copy_(torch.tensor([[-0.5, 0.0], [0.0, 0.1]], dtype=torch.float64))
    z = [np.array([1.0, 2.0])]
    for _ in range(4):
        z.append(z[-1] + (np.diag([-0.5, 0.1]) @ z[-1]) * 1.0)
    table = U.horizon_errors(model, [np.array(z)], [0], [1, 2, 4], 1.0)
    np.testing.assert_allclose(table["sq_error"], 0.0, atol=1e-24)  # exact Euler path


def test_response_complexity_uses_the_text_proxy_and_the_annotation():
    seqs = pd.DataFrame(
        {"response": ["One two three. Four five.", "If it rains, we stay; else we go."]},
        index=[4, 7],
    )
    seqs["complexity"] = [1, 3]
    out = U.response_complexity(seqs)
    assert out.index.tolist() == [4, 7]
    assert out["mean_sentence_length"].tolist() == [2.5, 8.0]
    assert out["mean_clauses"].tolist() == [1.0, 4.0]  # 1 + comma + semicolon + "if"
    assert out["complexity"].tolist() == [1, 3]
    with pytest.raises(KeyError, match="no 'text' column"):
        U.response_complexity(seqs, "text")


@pytest.mark.parametrize(
    ("low", "high", "direction", "want"),
    [
        (0.1, 0.3, "greater", "reproduced"),
        (-0.3, -0.1, "greater", "not reproduced"),
        (-0.1, 0.2, "greater", "mixed"),
        (-0.3, -0.1, "less", "reproduced"),
        (float("nan"), 0.2, "greater", U.INSUFFICIENT),
    ],
)
def test_verdict_row_follows_stats_verdict(low, high, direction, want):
    row = U.verdict_row(
        "claim", "4.2", "stat", {"estimate": 0.0, "low": low, "high": high}, direction=direction
    )
    assert row["verdict"] == want
    assert row["direction"] == direction and row["threshold"] == 0.0
