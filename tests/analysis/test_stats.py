"""Tests for sde_utils.analysis.stats on synthetic data with known answers.

Population values used below:
* Spearman correlation of a bivariate normal with correlation ``r``: ``6/pi asin(r/2)``.
* For one covariate the partial Spearman correlation is the partial-correlation formula
  applied to the three Spearman correlations, so Gaussian data give its population value
  from the three ``6/pi asin(r/2)`` terms.
* Cluster bootstrap of a mean with equal group sizes: its SE is ``sd(group means) / sqrt(G)``
  (population sd over the G observed groups).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from sde_utils.analysis.stats import (
    _energy,
    binned_mean_ci,
    bootstrap_by_group,
    empirical_vs_gaussian,
    gaussian_kl,
    partial_spearman,
    partial_spearman_ci,
    slope_with_ci,
    spearman,
    spearman_ci,
    text_complexity,
    verdict,
)
from sde_utils.models.metrics import energy_distance


def rho_s(r):
    """Population Spearman correlation of a bivariate normal with Pearson correlation r."""
    return 6.0 / math.pi * math.asin(r / 2.0)


def partial_formula(rxy, rxz, ryz):
    return (rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2))


def clustered(rng, n_groups, size, tau=1.0, s=1.0, mu=0.0):
    """y = mu + u_g + e with u_g ~ N(0, tau^2), e ~ N(0, s^2); equal group sizes."""
    g = np.repeat(np.arange(n_groups), size)
    y = mu + tau * rng.standard_normal(n_groups)[g] + s * rng.standard_normal(g.shape[0])
    return y, g


# ---------------------------------------------------------------------------------------
# spearman / partial_spearman
# ---------------------------------------------------------------------------------------
def test_spearman_monotone_transforms_and_ties():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(500)
    # Identical ranks: only rounding in the Pearson step separates these from +-1.
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0, abs=1e-12)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0, abs=1e-12)
    # Heavy ties: the same average-rank definition as scipy, so equal to rounding.
    xt, yt = np.round(x), np.round(x + rng.standard_normal(500))
    assert spearman(xt, yt) == pytest.approx(sps.spearmanr(xt, yt)[0], abs=1e-12)
    assert math.isnan(spearman(np.ones(10), np.arange(10.0)))


def test_spearman_gaussian_population_value():
    rng = np.random.default_rng(1)
    r, n = 0.6, 20_000
    x = rng.standard_normal(n)
    y = r * x + math.sqrt(1 - r * r) * rng.standard_normal(n)
    # SE of Spearman's rho here is about (1 - 0.58^2) / sqrt(n) = 0.005; 0.025 is ~5 SE.
    assert spearman(x, y) == pytest.approx(rho_s(r), abs=0.025)


def test_spearman_input_errors():
    with pytest.raises(ValueError, match="y must have length 2"):
        spearman([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-finite"):
        spearman([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(ValueError, match="n >= 2"):
        spearman([1.0], [2.0])


def test_partial_spearman_common_cause_only_is_near_zero():
    # x and y depend on z only: corr(x, z) = corr(y, z) = 0.9, corr(x, y) = 0.81.
    rng = np.random.default_rng(2)
    n, r = 20_000, 0.9
    z = rng.standard_normal(n)
    x = r * z + math.sqrt(1 - r * r) * rng.standard_normal(n)
    y = r * z + math.sqrt(1 - r * r) * rng.standard_normal(n)
    truth = partial_formula(rho_s(r * r), rho_s(r), rho_s(r))  # 0.0074, not exactly 0
    assert abs(truth) < 0.01
    assert spearman(x, y) > 0.75  # the raw association is strong
    # SE of a partial correlation ~ 1 / sqrt(n) = 0.007; 0.03 is ~4 SE.
    assert partial_spearman(x, y, z) == pytest.approx(truth, abs=0.03)


def test_partial_spearman_direct_effect_survives():
    # x = z + e, y = x + e': var z = 1, var x = 2, var y = 3, cov(x,z) = cov(y,z) = 1,
    # cov(x,y) = 2 -> Pearson r_xz = 1/sqrt2, r_yz = 1/sqrt3, r_xy = 2/sqrt6.
    rng = np.random.default_rng(3)
    n = 20_000
    z = rng.standard_normal(n)
    x = z + rng.standard_normal(n)
    y = x + rng.standard_normal(n)
    truth = partial_formula(rho_s(2 / math.sqrt(6)), rho_s(1 / math.sqrt(2)), rho_s(1 / 3**0.5))
    assert truth > 0.5
    est = partial_spearman(x, y, z)
    # SE ~ (1 - 0.55^2) / sqrt(n) = 0.005; 0.03 is ~6 SE.
    assert est == pytest.approx(truth, abs=0.03)


def test_partial_spearman_identities():
    rng = np.random.default_rng(4)
    n = 300
    z = rng.standard_normal(n)
    x = z + rng.standard_normal(n)
    y = np.round(x + rng.standard_normal(n), 1)  # with ties
    est = partial_spearman(x, y, z)
    # One covariate: residual correlation == the formula on Spearman correlations (algebra;
    # only rounding differs).
    formula = partial_formula(spearman(x, y), spearman(x, z), spearman(y, z))
    assert est == pytest.approx(formula, abs=1e-12)
    # Rank based: a monotone transform of z (or of x) changes nothing (same ranks).
    assert partial_spearman(np.exp(x), y, z**3) == pytest.approx(est, abs=1e-12)
    # A second covariate: equals the partial from the inverse rank correlation matrix.
    z2 = np.column_stack([z, rng.standard_normal(n)])
    ranks = np.column_stack([sps.rankdata(v) for v in (x, y, *z2.T)])
    prec = np.linalg.inv(np.corrcoef(ranks, rowvar=False))
    expected = -prec[0, 1] / math.sqrt(prec[0, 0] * prec[1, 1])
    assert partial_spearman(x, y, z2) == pytest.approx(expected, abs=1e-10)
    # x a monotone function of z: nothing left after partialling out -> NaN.
    assert math.isnan(partial_spearman(np.exp(z), y, z))
    with pytest.raises(ValueError, match="z must be"):
        partial_spearman(x, y, z[:-1])


def test_partial_spearman_two_covariates_removes_both():
    rng = np.random.default_rng(5)
    n = 20_000
    z = rng.standard_normal((n, 2))
    x = z @ [1.0, 1.0] + rng.standard_normal(n)
    y = z @ [1.0, -0.5] + rng.standard_normal(n)
    # Given both causes, x and y are independent; the rank-linear partial is near 0 (its
    # population value is not exactly 0 for ranks, but small like the 1-covariate case).
    # 0.04 allows that bias (< 0.01) plus ~4 SE (SE ~ 1/sqrt(n) = 0.007).
    assert abs(partial_spearman(x, y, z)) < 0.04
    # Given only the first cause, the second one still links them (negatively).
    assert partial_spearman(x, y, z[:, 0]) < -0.1


# ---------------------------------------------------------------------------------------
# bootstrap_by_group
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# vectorised paths == generic bootstrap
# ---------------------------------------------------------------------------------------
def _tied_grouped(seed, n=400):
    rng = np.random.default_rng(seed)
    g = rng.choice([f"p{i}" for i in range(23)], size=n)  # unequal sizes, string labels
    z = rng.integers(0, 30, size=n).astype(float)  # positions: many ties
    x = np.round(z / 10 + rng.standard_normal(n), 1)  # ties
    y = np.round(x + z / 20 + rng.standard_normal(n), 1)
    return x, y, z, g


def test_spearman_ci_matches_generic_bootstrap():
    x, y, _, g = _tied_grouped(20)
    fast = spearman_ci(x, y, g, n_boot=200, seed=5, return_replicates=True)
    slow = bootstrap_by_group(spearman, (x, y), g, n_boot=200, seed=5, return_replicates=True)
    # Same draws; weighted average ranks equal rankdata on the expanded resample, so the
    # replicates agree to float rounding.
    np.testing.assert_allclose(fast["replicates"], slow["replicates"], rtol=0, atol=1e-12)
    for key in ("estimate", "low", "high", "se"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-12)


def test_partial_spearman_ci_matches_generic_bootstrap():
    x, y, z, g = _tied_grouped(21)
    z2 = np.column_stack([z, np.round(np.sin(z) + x / 3, 1)])
    for cov in (z, z2):
        fast = partial_spearman_ci(x, y, cov, g, n_boot=100, seed=6, return_replicates=True)
        slow = bootstrap_by_group(
            partial_spearman, (x, y, cov), g, n_boot=100, seed=6, return_replicates=True
        )
        # Precision-matrix route vs least-squares residuals: the same number in exact
        # arithmetic; 1e-10 leaves room for the different rounding of the two routes.
        np.testing.assert_allclose(fast["replicates"], slow["replicates"], rtol=0, atol=1e-10)
        assert fast["estimate"] == slow["estimate"]


def test_spearman_ci_on_clustered_data():
    # Within a group x and y share a group effect u: marginally (x, y) is bivariate normal
    # with r = 1/2, so the population Spearman correlation is 6/pi asin(1/4) = 0.483.
    truth = rho_s(0.5)
    rng = np.random.default_rng(22)

    def draw(n_groups, size):
        g = np.repeat(np.arange(n_groups), size)
        u = rng.standard_normal(n_groups)[g]
        return u + rng.standard_normal(g.size), u + rng.standard_normal(g.size), g

    x, y, g = draw(60, 30)
    res = spearman_ci(x, y, g, n_boot=500, seed=0)
    # Within 4 bootstrap SEs of the truth (fails ~1 in 16000 by chance); 0 lies far below.
    assert abs(res["estimate"] - truth) < 4 * res["se"]
    assert verdict(res) == "reproduced"
    # Coverage of the 90% interval over 100 data sets of 150 groups x 6 rows. Binomial SE
    # sqrt(0.9 * 0.1 / 100) = 0.03, band 3 SE. (Percentile intervals for a correlation
    # undercover a little at small G; at 150 groups the shortfall is ~0.01.)
    hits = 0
    for i in range(100):
        x, y, g = draw(150, 6)
        res = spearman_ci(x, y, g, n_boot=200, level=0.9, seed=i)
        hits += res["low"] <= truth <= res["high"]
    assert abs(hits / 100 - 0.9) <= 3 * 0.03, hits


# ---------------------------------------------------------------------------------------
# slope_with_ci
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# binned_mean_ci
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# gaussian_kl
# ---------------------------------------------------------------------------------------
def test_gaussian_kl_hand_computed():
    # 1-D: KL(N(0,1) || N(1,4)) = log(2/1) + (1 + 1^2) / (2 * 4) - 1/2.
    assert gaussian_kl(0.0, 1.0, 1.0, 4.0) == pytest.approx(math.log(2) + 0.25 - 0.5, abs=1e-14)
    # 2-D: S0 = [[2,1],[1,2]] (det 3), S1 = [[4,2],[2,3]] (det 8, inverse [[3,-2],[-2,4]]/8),
    # mu1 - mu0 = (1, -1). tr(S1^-1 S0) = (4 + 6) / 8; quad = (3 + 4 + 4) / 8.
    s0, s1 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([[4.0, 2.0], [2.0, 3.0]])
    expected = 0.5 * (10 / 8 + 11 / 8 - 2 + math.log(8 / 3))
    assert gaussian_kl([0.0, 0.0], s0, [1.0, -1.0], s1) == pytest.approx(expected, abs=1e-14)
    # Mixed diagonal (1-D array) and full forms agree with the all-full computation.
    v = np.array([0.5, 2.0])
    assert gaussian_kl([0, 0], v, [1, -1], s1) == pytest.approx(
        gaussian_kl([0, 0], np.diag(v), [1, -1], s1), abs=1e-14
    )
    assert gaussian_kl([0, 0], v, [1, -1], v * 3) == pytest.approx(
        gaussian_kl([0, 0], np.diag(v), [1, -1], np.diag(v * 3)), abs=1e-14
    )


def test_gaussian_kl_is_zero_for_equal_laws_and_matches_monte_carlo():
    rng = np.random.default_rng(50)
    a0, a1 = rng.standard_normal((2, 3, 3))
    s0, s1 = a0 @ a0.T + 0.5 * np.eye(3), a1 @ a1.T + 0.5 * np.eye(3)
    m0, m1 = rng.standard_normal((2, 3))
    # Same law: tr = d and the log-determinants cancel exactly up to rounding.
    assert abs(gaussian_kl(m0, s0, m0, s0)) < 1e-12
    assert abs(gaussian_kl(m0, np.diag(s0), m0, np.diag(s0))) < 1e-12
    # KL = E_0[log p0(X) - log p1(X)]: Monte Carlo with 200k draws, within 4 of its SEs.
    xs = rng.multivariate_normal(m0, s0, size=200_000)
    llr = sps.multivariate_normal(m0, s0).logpdf(xs) - sps.multivariate_normal(m1, s1).logpdf(xs)
    kl = gaussian_kl(m0, s0, m1, s1)
    assert kl == pytest.approx(llr.mean(), abs=4 * llr.std() / math.sqrt(xs.shape[0]))
    assert kl > 0


def test_gaussian_kl_errors():
    good = np.eye(2)
    with pytest.raises(ValueError, match="not positive definite"):
        gaussian_kl([0, 0], np.array([[1.0, 2.0], [2.0, 1.0]]), [0, 0], good)
    with pytest.raises(ValueError, match="not positive definite"):
        gaussian_kl([0, 0], good, [0, 0], [1.0, 0.0])
    with pytest.raises(ValueError, match="not symmetric"):
        gaussian_kl([0, 0], np.array([[1.0, 0.5], [0.0, 1.0]]), [0, 0], good)
    with pytest.raises(ValueError, match="same dimension"):
        gaussian_kl([0, 0], good, [0, 0, 0], np.eye(3))
    with pytest.raises(ValueError, match=r"cov \(d,\)"):
        gaussian_kl([0, 0], np.eye(3), [0, 0], good)


# ---------------------------------------------------------------------------------------
# empirical_vs_gaussian
# ---------------------------------------------------------------------------------------
def test_empirical_vs_gaussian_null_and_shift():
    rng = np.random.default_rng(60)
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, 2.0])
    same = mean + std * rng.standard_normal((2000, 3))
    res = empirical_vs_gaussian(same, mean, std, seed=0, n_model=300, n_null=50)
    # Fitted-Gaussian KL under the null: bias d(d+3)/(4K) = 0.002, sd of the same order;
    # 0.02 is > 10 of either.
    assert 0 <= res["kl_gauss"] < 0.02 and res["kl_gauss_diag"] < 0.02
    assert res["ridge_applied"] is False
    # The statistic is the KL of the sample mean/covariance fit, exactly.
    fit = gaussian_kl(same.mean(0), np.cov(same, rowvar=False), mean, std**2)
    assert res["kl_gauss"] == pytest.approx(fit, abs=1e-14)
    # Under the null the p-values are uniform: below 0.02 for only 2% of seeds.
    assert res["energy_p"] > 0.02 and res["kl_gauss_p"] > 0.02
    assert abs(res["energy"] - res["energy_null_mean"]) < 4 * res["energy_null_sd"]

    shifted = same + std  # one standard deviation in every coordinate
    res2 = empirical_vs_gaussian(shifted, mean, std, seed=0, n_model=300, n_null=50)
    # Known: KL(N(m + std, S) || N(m, S)) = 3 * 1^2 / 2 = 1.5 for the true S. The fitted
    # mean adds a term (1,1,1).eps with eps ~ N(0, I/K): sd sqrt(3/2000) = 0.04; the
    # fitted covariance adds ~0.002. 0.15 is ~4 sd.
    assert res2["kl_gauss"] == pytest.approx(1.5, abs=0.15)
    assert res2["energy"] > res2["energy_null_mean"] + 20 * res2["energy_null_sd"]
    assert res2["kl_gauss_p"] == res2["energy_p"] == pytest.approx(1 / 51)
    assert json.loads(json.dumps(res2)) == res2


def test_empirical_vs_gaussian_small_k_ridge_and_errors():
    rng = np.random.default_rng(61)
    x = rng.standard_normal((4, 6))  # K <= d: singular covariance
    res = empirical_vs_gaussian(x, np.zeros(6), np.ones(6), n_null=20, seed=1)
    assert res["ridge_applied"] is True and math.isfinite(res["kl_gauss"])
    # The null replicates face the same ridge, so a perfect model is not flagged.
    assert res["kl_gauss_p"] > 0.02
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        empirical_vs_gaussian(x, np.zeros(6), np.zeros(6))
    with pytest.raises(ValueError, match="length 6"):
        empirical_vs_gaussian(x, np.zeros(5), np.ones(6))
    with pytest.raises(ValueError, match="identical"):
        empirical_vs_gaussian(np.ones((5, 2)), np.zeros(2), np.ones(2))


def test_energy_helper_matches_metrics_energy_distance():
    rng = np.random.default_rng(62)
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((200, 4)) + 0.3
    within_b = np.linalg.norm(b[:, None] - b[None], axis=-1).sum() / (200 * 199)  # i != j
    # Both are the exact U-statistic; they differ only in summation order.
    assert _energy(a, b, within_b) == pytest.approx(energy_distance(a, b), abs=1e-12)


# ---------------------------------------------------------------------------------------
# text_complexity
# ---------------------------------------------------------------------------------------
def test_text_complexity_hand_made():
    simple = text_complexity("The cat sat. The dog ran fast.")
    # 2 sentences of 3 and 4 words, no commas/conjunctions; 6 distinct of 7 words.
    assert simple == {
        "n_sentences": 2,
        "n_words": 7,
        "mean_sentence_length": 3.5,
        "mean_clauses": 1.0,
        "type_token_ratio": 6 / 7,
    }
    hard = text_complexity("I stayed home because it rained, and I read a book; then I slept.")
    # 14 words, 1 comma + 1 semicolon + "because" -> 4 clauses; "i" thrice -> 12 distinct.
    assert hard["n_sentences"] == 1 and hard["n_words"] == 14
    assert hard["mean_clauses"] == 4.0 and hard["type_token_ratio"] == 12 / 14
    assert hard["mean_sentence_length"] > simple["mean_sentence_length"]


def test_text_complexity_lists_apostrophes_and_empty():
    text = "Steps:\n1. Open it, if needed!\n2. Don't close it.\n\n"
    res = text_complexity(text)
    # Sentences: "Steps:", "Open it, if needed!", "Don't close it." (the bare list numbers
    # carry no letter and are dropped); "Don't" is one word.
    assert res["n_sentences"] == 3 and res["n_words"] == 1 + 4 + 3
    assert res["mean_clauses"] == pytest.approx((1 + 3 + 1) / 3)  # comma + "if" in one
    assert text_complexity(text) == res  # deterministic
    empty = text_complexity("  \n ... ")
    assert empty["n_words"] == 0 and math.isnan(empty["mean_sentence_length"])
    with pytest.raises(TypeError, match="str"):
        text_complexity(None)


# ---------------------------------------------------------------------------------------
# verdict
# ---------------------------------------------------------------------------------------
def test_verdict_rules():
    assert verdict((0.3, 0.1, 0.5)) == "reproduced"
    assert verdict((-0.3, -0.5, -0.1)) == "not reproduced"
    assert verdict((0.1, -0.1, 0.3)) == "mixed"
    assert verdict((0.2, 0.0, 0.4)) == "mixed"  # touching the threshold is not "entirely"
    assert verdict((0.1, 0.3), threshold=0.2) == "mixed"
    assert verdict({"low": -2.0, "high": -1.0}, direction="less") == "reproduced"
    assert verdict({"low": 1.0, "high": 2.0}, direction="less") == "not reproduced"
    assert verdict((1.5, 1.0, 2.0), threshold=1.0, direction="less") == "mixed"
    with pytest.raises(ValueError, match="direction"):
        verdict((0, 1), direction="above")
    with pytest.raises(ValueError, match="finite"):
        verdict((float("nan"), 1.0))
    with pytest.raises(ValueError, match="low must be <= high"):
        verdict((1.0, 0.0))
    with pytest.raises(TypeError):
        verdict(0.5)
