"""Tests for sde_utils.analysis.gaussian: the closed-form Gaussian KL (hand-computed and Monte
Carlo checks) and the samples-vs-model comparison with its null reference.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from sde_utils.analysis.gaussian import _energy, empirical_vs_gaussian, gaussian_kl
from sde_utils.models.metrics import energy_distance


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
