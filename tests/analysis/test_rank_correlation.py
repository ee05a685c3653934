"""Tests for sde_utils.analysis.rank_correlation on synthetic data with known answers.

Population values used below:
* Spearman correlation of a bivariate normal with correlation ``r``: ``6/pi asin(r/2)``.
* For one covariate the partial Spearman correlation is the partial-correlation formula
  applied to the three Spearman correlations, so Gaussian data give its population value
  from the three ``6/pi asin(r/2)`` terms.
* The vectorised intervals draw the same groups as ``bootstrap_by_group`` for a seed, so
  their replicates agree with the generic path up to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from sde_utils.analysis.rank_correlation import (
    partial_spearman,
    partial_spearman_ci,
    spearman,
    spearman_ci,
)
from sde_utils.analysis.stats import bootstrap_by_group
from sde_utils.analysis.verdicts import verdict


def rho_s(r):
    """Population Spearman correlation of a bivariate normal with Pearson correlation r."""
    return 6.0 / math.pi * math.asin(r / 2.0)


def partial_formula(rxy, rxz, ryz):
    return (rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2))


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
