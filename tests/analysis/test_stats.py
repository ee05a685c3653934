"""Tests for sde_utils.analysis.stats (cluster bootstrap, slopes, binned means) on synthetic
data with known answers.

* Cluster bootstrap of a mean with equal group sizes: its SE is ``sd(group means) / sqrt(G)``
  (population sd over the G observed groups).
* OLS slope without groups: ``scipy.stats.linregress`` and the t interval.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from sde_utils.analysis.rank_correlation import spearman
from sde_utils.analysis.stats import (
    binned_mean_ci,
    bootstrap_by_group,
    bootstrap_settings,
    finite_covariates,
    finite_vector,
    slope_with_ci,
)


def clustered(rng, n_groups, size, tau=1.0, s=1.0, mu=0.0):
    """y = mu + u_g + e with u_g ~ N(0, tau^2), e ~ N(0, s^2); equal group sizes."""
    g = np.repeat(np.arange(n_groups), size)
    y = mu + tau * rng.standard_normal(n_groups)[g] + s * rng.standard_normal(g.shape[0])
    return y, g


def test_group_bootstrap_covers_true_mean_at_nominal_rate():
    # 200 replicated clustered data sets (100 groups x 5 rows, intra-group correlation 0.5);
    # count how often the 90% interval for the mean covers the true mean 1.5.
    rng = np.random.default_rng(10)
    n_rep, level, mu = 200, 0.90, 1.5
    hits = 0
    for i in range(n_rep):
        y, g = clustered(rng, 100, 5, mu=mu)
        res = bootstrap_by_group(np.mean, y, g, n_boot=300, level=level, seed=i)
        hits += res["low"] <= mu <= res["high"]
    coverage = hits / n_rep
    # Binomial SE of the coverage over 200 data sets: sqrt(0.9 * 0.1 / 200) = 0.021; the
    # band is 3 SE. (The percentile interval's own coverage with G groups is a little below
    # nominal -- its SE is sqrt((G-1)/G) of the truth and it uses z, not t_{G-1} -- about
    # 0.895 at G = 100; a row bootstrap of the same data covers only ~0.5.)
    se = math.sqrt(level * (1 - level) / n_rep)
    assert abs(coverage - level) <= 3 * se, coverage


def test_group_bootstrap_is_wider_than_row_bootstrap_on_clustered_data():
    rng = np.random.default_rng(11)
    n_groups, size = 50, 20
    y, g = clustered(rng, n_groups, size)  # intra-group correlation 0.5
    grouped = bootstrap_by_group(np.mean, y, g, n_boot=2000, seed=0)
    rows = bootstrap_by_group(np.mean, y, np.arange(y.shape[0]), n_boot=2000, seed=0)
    # Known bootstrap SEs: sd(group means) / sqrt(G) resp. sd(rows) / sqrt(n) (ddof 0).
    # The Monte Carlo error of an SE from 2000 replicates is 1/sqrt(2 * 2000) = 1.6%;
    # 6% is ~4 of those.
    se_groups = y.reshape(n_groups, size).mean(1).std() / math.sqrt(n_groups)
    se_rows = y.std() / math.sqrt(y.shape[0])
    assert grouped["se"] == pytest.approx(se_groups, rel=0.06)
    assert rows["se"] == pytest.approx(se_rows, rel=0.06)
    # Design effect 1 + (m - 1) ICC = 10.5 -> intervals sqrt(10.5) = 3.2x wider in theory.
    ratio = (grouped["high"] - grouped["low"]) / (rows["high"] - rows["low"])
    assert ratio > 2.0, ratio
    assert grouped["estimate"] == rows["estimate"] == pytest.approx(y.mean(), abs=1e-15)
    assert grouped["n_groups"] == n_groups and rows["n_groups"] == y.shape[0]


def test_group_bootstrap_resamples_whole_groups():
    rng = np.random.default_rng(12)
    sizes = rng.integers(1, 9, size=25)  # unequal group sizes
    labels = np.array([f"conv-{i:02d}" for i in range(25)])
    g = rng.permutation(np.repeat(labels, sizes))  # rows of a group are not contiguous
    row_id = np.arange(g.shape[0])
    members = {lab: set(row_id[g == lab]) for lab in labels}

    def check(gid, rid):
        # Every drawn group arrives whole: each of its rows the same number of times.
        for lab in np.unique(gid):
            got = rid[gid == lab]
            ids, counts = np.unique(got, return_counts=True)
            assert set(ids) == members[lab] and (counts == counts[0]).all()
        return float(len(np.unique(gid)))

    res = bootstrap_by_group(
        check, {"gid": g, "rid": row_id}, g, n_boot=200, seed=3, return_replicates=True
    )
    assert res["estimate"] == 25.0 and res["n_valid"] == 200
    # Distinct groups among G = 25 uniform draws: mean G (1 - (1 - 1/G)^G) = 16.0, variance
    # G(G-1)(1-2/G)^G + G(1-1/G)^G - G^2(1-1/G)^(2G) = 2.45; the replicate mean is within 4
    # of its SEs (sqrt(2.45 / 200) = 0.11).
    n = 25
    mean = n * (1 - (1 - 1 / n) ** n)
    var = n * (n - 1) * (1 - 2 / n) ** n + n * (1 - 1 / n) ** n - n * n * (1 - 1 / n) ** (2 * n)
    assert res["replicates"].mean() == pytest.approx(mean, abs=4 * math.sqrt(var / 200))


def test_group_bootstrap_data_forms_seeds_and_failures():
    rng = np.random.default_rng(13)
    y, g = clustered(rng, 30, 5)
    x = y + rng.standard_normal(y.shape[0])
    a = bootstrap_by_group(spearman, (x, y), g, n_boot=100, seed=7, return_replicates=True)
    b = bootstrap_by_group(
        lambda u, v: spearman(u, v),
        {"u": x, "v": y},
        g,
        n_boot=100,
        seed=7,
        return_replicates=True,
    )
    c = bootstrap_by_group(
        lambda xy: spearman(xy[:, 0], xy[:, 1]),
        np.column_stack([x, y]),
        g,
        n_boot=100,
        seed=7,
        return_replicates=True,
    )
    # Same draws in every form: identical replicates (bit for bit).
    np.testing.assert_array_equal(a["replicates"], b["replicates"])
    np.testing.assert_array_equal(a["replicates"], c["replicates"])
    d = bootstrap_by_group(spearman, (x, y), g, n_boot=100, seed=8, return_replicates=True)
    assert not np.array_equal(a["replicates"], d["replicates"])
    a.pop("replicates")
    assert json.loads(json.dumps(a)) == a  # plain floats and ints

    # Non-finite replicates are dropped and counted.
    def sometimes_nan(v):
        return float("nan") if v.mean() > np.mean(y) else float(v.mean())

    res = bootstrap_by_group(sometimes_nan, y, g, n_boot=200, seed=0)
    assert 0 < res["n_valid"] < 200 and math.isfinite(res["low"])

    with pytest.raises(ValueError, match=">= 2 groups"):
        bootstrap_by_group(np.mean, y, np.zeros(y.shape[0]))
    with pytest.raises(ValueError, match="one label per row"):
        bootstrap_by_group(np.mean, y, g[:-1])
    with pytest.raises(ValueError, match="same first-axis length"):
        bootstrap_by_group(spearman, (x, y[:-1]), g)
    with pytest.raises(TypeError, match="scalar"):
        bootstrap_by_group(lambda v: v[:2], y, g)
    with pytest.raises(ValueError, match="level"):
        bootstrap_by_group(np.mean, y, g, level=95)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_by_group(np.mean, y, g, n_boot=1)


def _slope_data(rng, n_groups=40, per=6, slope=0.7):
    g = np.repeat(np.arange(n_groups), per)
    temp = np.tile(np.linspace(0.5, 1.5, per), n_groups)  # each prompt at every temperature
    y = 2.0 + slope * temp + rng.standard_normal(n_groups)[g] + 0.3 * rng.standard_normal(g.size)
    return temp, y, g


def test_slope_recovers_known_slope_and_matches_generic():
    rng = np.random.default_rng(30)
    x, y, g = _slope_data(rng)
    res = slope_with_ci(x, y, g, n_boot=1000, seed=1, return_replicates=True)
    assert res["method"] == "group-bootstrap"
    assert res["low"] <= 0.7 <= res["high"]
    assert res["slope"] == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-12)
    assert res["intercept"] == pytest.approx(np.polyfit(x, y, 1)[1], abs=1e-12)
    slow = bootstrap_by_group(
        lambda a, b: np.polyfit(a, b, 1)[0],
        (x, y),
        g,
        n_boot=1000,
        seed=1,
        return_replicates=True,
    )
    # Same draws; sums of centred sufficient statistics vs polyfit: rounding only.
    np.testing.assert_allclose(res["replicates"], slow["replicates"], rtol=0, atol=1e-10)


def test_slope_group_interval_coverage():
    rng = np.random.default_rng(31)
    n_rep, level = 200, 0.90
    hits = 0
    for i in range(n_rep):
        x, y, g = _slope_data(rng)
        res = slope_with_ci(x, y, g, n_boot=400, level=level, seed=i)
        hits += res["low"] <= 0.7 <= res["high"]
    # Binomial 3-SE band around 0.90 for 200 data sets (SE 0.021), as for the mean.
    assert abs(hits / n_rep - level) <= 3 * math.sqrt(level * (1 - level) / n_rep), hits


def test_slope_without_groups_is_the_ols_t_interval():
    rng = np.random.default_rng(32)
    x = rng.uniform(0, 2, 80)
    y = 1.0 - 0.5 * x + 0.2 * rng.standard_normal(80)
    res = slope_with_ci(x, y, level=0.9)
    # Hand formula: se = sqrt(RSS / (n - 2) / Sxx), half width t_{0.95, 78} * se.
    xc = x - x.mean()
    b = (xc @ (y - y.mean())) / (xc @ xc)
    resid = y - y.mean() - b * xc
    se = math.sqrt(resid @ resid / 78 / (xc @ xc))
    half = sps.t.ppf(0.95, 78) * se
    assert res["method"] == "ols-t" and res["n_groups"] is None
    assert res["slope"] == pytest.approx(b, abs=1e-12)
    assert res["se"] == pytest.approx(se, rel=1e-10)
    assert (res["low"], res["high"]) == pytest.approx((b - half, b + half), rel=1e-10)
    assert json.loads(json.dumps(res)) == res


def test_binned_means_match_numpy_and_generic_bootstrap():
    rng = np.random.default_rng(40)
    g = np.repeat(np.arange(50), 20)
    pos = np.tile(np.arange(20.0), 50)
    truth = 0.1 * pos  # the error grows with position
    y = truth + rng.standard_normal(50)[g] * 0.5 + rng.standard_normal(g.size)
    edges = [0, 5, 10, 15, 19]  # last bin [15, 19] closed; nothing is dropped
    df = binned_mean_ci(pos, y, g, bins=edges, n_boot=500, seed=2)
    assert list(df["n"]) == [250, 250, 250, 250]
    for row in df.itertuples():
        inside = (pos >= row.left) & ((pos < row.right) | (row.bin == 3) & (pos == row.right))
        assert row.mean == pytest.approx(y[inside].mean(), abs=1e-12)
        assert row.x_mean == pytest.approx(pos[inside].mean(), abs=1e-12)
        true_mean = truth[inside].mean()
        # The estimate is within 4 bootstrap SEs of the true bin mean (~1 in 16000 by chance).
        assert abs(row.mean - true_mean) < 4 * row.se
        slow = bootstrap_by_group(
            lambda p, v, m=inside: v[m[p]].mean(),
            (np.arange(pos.size), y),
            g,
            n_boot=500,
            seed=2,
        )
        # Same draws, same replicate means; only the summation order differs.
        assert (row.low, row.high, row.se) == pytest.approx(
            (slow["low"], slow["high"], slow["se"]), abs=1e-10
        )
    assert (df["mean"].diff().dropna() > 0).all()  # increasing error by position
    json.dumps(df.to_dict("records"))


def test_binned_mean_quantile_bins_and_dropping():
    rng = np.random.default_rng(41)
    g = np.repeat(np.arange(20), 10)
    x = rng.integers(0, 3, size=200).astype(float)  # 3 distinct values
    y = rng.standard_normal(200)
    df = binned_mean_ci(x, y, g, bins=10, n_boot=50, seed=0)
    # Quantile edges of {0, 1, 2} collapse to at most 3 distinct edges -> 2 bins.
    assert len(df) <= 2 and df["n"].sum() == 200
    df2 = binned_mean_ci(x, y, g, bins=[0.5, 1.5, 2.5], n_boot=50, seed=0)
    assert df2["n"].sum() == (x > 0.5).sum()  # x == 0 lies outside and is dropped
    with pytest.raises(ValueError, match="strictly increasing"):
        binned_mean_ci(x, y, g, bins=[1.0, 1.0, 2.0])


def test_bootstrap_settings_and_input_checks():
    level, n_boot, rng = bootstrap_settings(0.9, 50, 4)
    assert (level, n_boot) == (0.9, 50)
    np.testing.assert_array_equal(rng.integers(0, 9, 5), np.random.default_rng(4).integers(0, 9, 5))
    with pytest.raises(TypeError, match="n_boot must be an int >= 2"):
        bootstrap_settings(0.9, 50.0, 4)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        bootstrap_settings(0.9, 50, -1)
    with pytest.raises(TypeError, match="level"):
        bootstrap_settings(True, 50, 0)
    np.testing.assert_array_equal(finite_vector("x", [1, 2]), [1.0, 2.0])
    with pytest.raises(ValueError, match="x must be 1-D"):
        finite_vector("x", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        finite_vector("x", [1.0, np.inf])
    assert finite_covariates(np.arange(3.0), 3).shape == (3, 1)
    with pytest.raises(ValueError, match="z must be"):
        finite_covariates(np.zeros((2, 1)), 3)
