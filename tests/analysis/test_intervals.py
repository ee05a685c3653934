"""Tests for sde_utils.analysis.intervals: NaN intervals with a reason when data are lacking,
and agreement with the statistics they wrap on the finite rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sde_utils.analysis.intervals import (
    BINNED_COLUMNS,
    as_interval,
    binned_means,
    correlation_summary,
    count_groups,
    finite_rows,
    lacking_reason,
    mean_interval,
    means_by_level,
    partial_spearman_interval,
    slope_interval,
    spearman_interval,
)
from sde_utils.analysis.rank_correlation import partial_spearman, spearman_ci
from sde_utils.analysis.stats import binned_mean_ci
from sde_utils.analysis.verdicts import INSUFFICIENT, verdict_row


def test_intervals_are_nan_with_a_reason_when_groups_are_too_few():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(30), rng.standard_normal(30)
    groups = np.repeat(np.arange(3), 10)
    for res in (
        spearman_interval(x, y, groups, min_groups=4),
        partial_spearman_interval(x, y, np.arange(30), groups, min_groups=4),
        slope_interval(x, y, groups, min_groups=4),
        mean_interval(y, groups, min_groups=4),
    ):
        assert math.isnan(res["low"]) and math.isnan(res["high"])
        assert math.isfinite(res["estimate"])  # the point estimate needs no resampling
        assert "3 groups" in res["reason"]
        assert verdict_row("c", "s", "stat", res)["verdict"] == INSUFFICIENT


def test_intervals_of_no_rows_are_nan():
    empty = np.array([])
    assert spearman_interval(empty, empty, empty)["reason"] == "0 rows (need >= 3)"
    assert math.isnan(slope_interval(empty, empty, empty)["estimate"])
    assert means_by_level(empty, empty, empty).empty


def test_spearman_interval_matches_stats_and_drops_non_finite_rows():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(120)
    y = x + rng.standard_normal(120)
    groups = np.repeat(np.arange(12), 10)
    x_nan = x.copy()
    x_nan[5] = np.nan
    got = spearman_interval(x_nan, y, groups, n_boot=200, seed=4)
    keep = np.arange(120) != 5
    want = spearman_ci(x[keep], y[keep], groups[keep], n_boot=200, seed=4)
    for key in ("estimate", "low", "high", "n", "n_groups"):
        assert got[key] == want[key]
    assert got["reason"] is None


def test_partial_interval_with_constant_covariate_is_the_plain_interval():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(80)
    y = x + rng.standard_normal(80)
    groups = np.repeat(np.arange(8), 10)
    z = np.column_stack([np.full(80, 1.5), rng.standard_normal(80)])
    plain = spearman_interval(x, y, groups, n_boot=100, seed=0)
    only_constant = partial_spearman_interval(x, y, z[:, :1], groups, n_boot=100, seed=0)
    assert only_constant["covariates_used"] == []
    assert only_constant["estimate"] == plain["estimate"]
    assert (only_constant["low"], only_constant["high"]) == (plain["low"], plain["high"])
    mixed = partial_spearman_interval(x, y, z, groups, n_boot=100, seed=0)
    assert mixed["covariates_used"] == [1]
    want = partial_spearman(x, y, z[:, 1])
    assert mixed["estimate"] == pytest.approx(want, abs=1e-12)  # same computation


def test_as_interval_renames_slope_and_blanks_undefined_estimates():
    out = as_interval({"slope": 2.0, "low": 1.0, "high": 3.0})
    assert out["estimate"] == 2.0 and out["reason"] is None
    const = spearman_interval(np.ones(40), np.arange(40.0), np.repeat(np.arange(8), 5))
    assert math.isnan(const["estimate"]) and math.isnan(const["low"])
    assert "constant" in const["reason"]
    flat = slope_interval(np.ones(40), np.arange(40.0), np.repeat(np.arange(8), 5))
    assert "constant" in flat["reason"]


def test_means_by_level_gives_level_means_and_nan_bounds_for_one_group():
    levels = np.array([0.5, 0.5, 1.0, 1.0, 1.5, 1.5] * 4)
    y = levels * 10 + np.tile([0.0, 1.0], 12)
    groups = np.repeat(np.arange(4), 6)
    table = means_by_level(levels, y, groups, n_boot=50)
    np.testing.assert_allclose(table["level"], [0.5, 1.0, 1.5])
    np.testing.assert_allclose(table["mean"], [5.5, 10.5, 15.5])
    # every group holds the same rows at each level: no resample changes a level's mean
    np.testing.assert_allclose(table["low"], table["mean"])
    np.testing.assert_allclose(table["high"], table["mean"])
    one = means_by_level(levels, y, np.zeros(24), n_boot=50)
    np.testing.assert_allclose(one["mean"], [5.5, 10.5, 15.5])
    assert one["low"].isna().all()


def test_binned_means_drop_non_finite_rows_and_need_two_groups():
    rng = np.random.default_rng(12)
    x, y = rng.uniform(0, 10, 60), rng.standard_normal(60)
    groups = np.repeat(np.arange(6), 10)
    y_nan = y.copy()
    y_nan[0] = np.nan
    got = binned_means(x, y_nan, groups, bins=3, n_boot=50)
    want = binned_mean_ci(x[1:], y[1:], groups[1:], bins=3, n_boot=50)
    pd.testing.assert_frame_equal(got, want[list(BINNED_COLUMNS)])
    empty = binned_means(x, y, np.zeros(60), bins=3)
    assert empty.empty and list(empty.columns) == list(BINNED_COLUMNS)


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
    res = correlation_summary(table, "sigma2", "entropy", n_boot=200)
    assert set(res) == {"spearman", "partial_position"}
    assert res["spearman"]["estimate"] > 0.95  # noise is tiny relative to exp(entropy)
    assert res["spearman"]["low"] > 0.9
    assert res["partial_position"]["estimate"] > 0.95


def test_group_counts_reasons_and_finite_rows():
    assert count_groups(["a", "b", "a", 3]) == 3
    assert lacking_reason(2, 5, 3, 2) == "2 rows (need >= 3)"
    assert lacking_reason(10, 1, 3, 2) == "1 groups (need >= 2 for a group bootstrap)"
    assert lacking_reason(10, 5, 3, 2) is None
    keep = finite_rows(
        np.array([1.0, np.nan, 3.0]), np.array([[1.0, 2.0], [3.0, 4.0], [np.inf, 0]])
    )
    np.testing.assert_array_equal(keep, [True, False, False])
    assert finite_rows(np.zeros(0)).shape == (0,)
