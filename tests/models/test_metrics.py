"""Tests for sde_utils.models.metrics: closed forms, calibration bands, two-sample distances."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import energy_distance as scipy_energy
from scipy.stats import norm

from sde_utils.models.base import SDEModel
from sde_utils.models.metrics import (
    drift_mse_r2,
    energy_distance,
    evaluate_model,
    interval_coverage,
    median_bandwidth,
    mmd_rbf,
    multistep_distances,
    one_step_nll,
)
from sde_utils.models.simulate import drift_path, euler_maruyama

DT64 = torch.float64


class OU(SDEModel):
    """Drift ``A x + b``, constant diagonal sigma; float64 parameters."""

    def __init__(self, A, b, sigma):
        super().__init__()
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=DT64))
        self.b = torch.nn.Parameter(torch.as_tensor(b, dtype=DT64))
        self.log_sigma = torch.nn.Parameter(torch.as_tensor(sigma, dtype=DT64).log())

    def drift(self, x, t):
        return x @ self.A.T + self.b

    def diffusion(self, x, t):
        return self.log_sigma.exp().expand_as(x)


A = np.array([[-0.4, 0.1, 0.0], [0.0, -0.2, 0.3], [0.1, 0.0, -0.5]])
B = np.array([0.2, -0.1, 0.0])
SIGMA = np.array([0.3, 0.6, 1.2])


def ou_steps(model, n, dt, seed):
    """Transitions drawn exactly from the model's Euler–Maruyama step."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 3, dtype=DT64, generator=gen) * 2
    t0 = torch.rand(n, dtype=DT64, generator=gen) * 10
    with torch.no_grad():
        mean = x0 + model.drift(x0, t0) * dt
        sd = model.diffusion(x0, t0) * math.sqrt(dt)
    x1 = mean + sd * torch.randn(n, 3, dtype=DT64, generator=gen)
    return x0, t0, x1


def test_nll_equals_closed_form():
    model, dt = OU(A, B, SIGMA), 0.5
    x0, t0, x1 = ou_steps(model, 500, dt, seed=0)
    loc = x0.numpy() + (x0.numpy() @ A.T + B) * dt
    scale = SIGMA * math.sqrt(dt)
    expected = -norm.logpdf(x1.numpy(), loc=loc, scale=scale).mean()
    # two float64 evaluations of the same formula: 1e-12 relative
    assert one_step_nll(model, x0, t0, x1, dt, batch_size=64) == pytest.approx(expected, rel=1e-12)
    # for the true model E[NLL] = 0.5 log 2 pi + mean log s + 1/2; the average of
    # 0.5 z^2 over n*d coordinates has SE sqrt(0.5 / (n d)): 3 SE band
    nll = one_step_nll(model, x0, t0, x1, dt)
    target = 0.5 * math.log(2 * math.pi) + np.log(scale).mean() + 0.5
    assert abs(nll - target) < 3 * math.sqrt(0.5 / x0.numel())


def test_coverage_is_calibrated_for_the_true_model():
    model, dt = OU(A, B, SIGMA), 1.0
    x0, t0, x1 = ou_steps(model, 4000, dt, seed=1)
    cov = interval_coverage(model, x0, t0, x1, dt, levels=(0.5, 0.8, 0.9), batch_size=999)
    m = x0.numel()  # independent coordinates
    for level, c in cov.items():
        # binomial 3-SE band around the nominal level
        assert abs(c - level) < 3 * math.sqrt(level * (1 - level) / m), (level, c)
    # a model with twice the true sigma over-covers clearly: the check can fail
    wide = OU(A, B, 2 * SIGMA)
    assert interval_coverage(wide, x0, t0, x1, dt)[0.5] > 0.5 + 20 * math.sqrt(0.25 / m)


def test_r2_perfect_drift_and_zero_drift():
    model, dt = OU(A, B, SIGMA), 0.3
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randn(1000, 3, dtype=DT64, generator=gen)
    t0 = torch.zeros(1000, dtype=DT64)
    with torch.no_grad():
        x1 = x0 + model.drift(x0, t0) * dt  # zero noise
    out = drift_mse_r2(model, x0, t0, x1, dt, batch_size=100)
    assert out["r2"] == pytest.approx(1.0, abs=1e-12)  # residuals are rounding only
    assert out["mse"] < 1e-28
    # zero drift on pure noise: R^2 = -n ||mean D||^2 / SS_tot exactly, i.e. about
    # -chi2_d / ((n - 1) d): |R^2| < 0.01 unless chi2_3 > 30 (p < 1e-6)
    zero = OU(np.zeros((3, 3)), np.zeros(3), SIGMA)
    noise = torch.randn(1000, 3, dtype=DT64, generator=gen)
    out = drift_mse_r2(zero, x0, t0, x0 + noise, dt)
    ss_tot = float(((noise - noise.mean(0)) ** 2).sum())
    assert out["r2"] == pytest.approx(-1000 * float((noise.mean(0) ** 2).sum()) / ss_tot, rel=1e-9)
    assert abs(out["r2"]) < 0.01
    assert out["mse"] == pytest.approx(float((noise**2).mean()), rel=1e-12)


def test_one_step_metrics_accept_scalar_t0_and_check_shapes():
    model = OU(A, B, SIGMA)
    x0, _, x1 = ou_steps(model, 10, 1.0, seed=3)
    assert one_step_nll(model, x0, 0.0, x1, 1.0) == one_step_nll(
        model, x0, torch.zeros(10, dtype=DT64), x1, 1.0
    )
    with pytest.raises(ValueError, match=r"x0 and x1 must both be \(N, d\)"):
        one_step_nll(model, x0, 0.0, x1[:5], 1.0)
    with pytest.raises(ValueError, match=r"t0 must be a scalar or \(10,\)"):
        one_step_nll(model, x0, torch.zeros(3), x1, 1.0)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        drift_mse_r2(model, x0, 0.0, x1, 0.0)
    with pytest.raises(ValueError, match=r"levels must lie in \(0, 1\)"):
        interval_coverage(model, x0, 0.0, x1, 1.0, levels=(1.0,))


# ----------------------------------------------------------------------- two-sample distances
def mean_abs_normal(m, v):
    """E|Z| for Z ~ N(m, v) (folded normal mean)."""
    s = math.sqrt(v)
    return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * v)) + m * (1 - 2 * norm.cdf(-m / s))


def test_energy_distance_v_statistic_matches_scipy_in_1d():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.5, 2.0, size=200)
    # scipy returns sqrt(2 int (F - G)^2) = sqrt(V-statistic); 1e-9: cdist rounding
    assert energy_distance(a, b, unbiased=False) == pytest.approx(scipy_energy(a, b) ** 2, rel=1e-9)


def test_energy_distance_chunking_is_exact():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(101, 4)), rng.normal(size=(57, 4)) + 0.3
    full = energy_distance(a, b, chunk_size=10_000)
    # summation order differs only: float64 rounding
    assert energy_distance(a, b, chunk_size=7) == pytest.approx(full, rel=1e-12)
    assert mmd_rbf(a, b, 1.0, chunk_size=5) == pytest.approx(mmd_rbf(a, b, 1.0), rel=1e-12)


def repeated(stat, shift, d, n=100, reps=400, seed=0):
    rng = np.random.default_rng(seed)
    vals = [stat(rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift) for _ in range(reps)]
    return np.mean(vals), np.std(vals, ddof=1) / math.sqrt(reps)


def test_energy_distance_unbiased_against_closed_form():
    # 1-D N(0,1) vs N(delta,1): D = 2 E|N(delta,2)| - 2 E|N(0,2)|. The U-statistic is
    # unbiased, so the mean of 400 independent replicates (n = 100 each) lies within 3 SE
    # (estimated from the replicates) of the closed form. Many replicates: at delta = 0
    # the statistic is a degenerate U-statistic with a strongly right-skewed law, and
    # the mean of a few dozen replicates with its estimated SE under-covers.
    for delta in (0.0, 1.0):
        mean, se = repeated(energy_distance, delta, d=1)
        exact = 2 * mean_abs_normal(delta, 2.0) - 2 * mean_abs_normal(0.0, 2.0)
        assert abs(mean - exact) < 3 * se, (delta, mean, exact, se)
    assert exact > 10 * se  # the shifted case is clearly away from 0


def test_mmd_unbiased_against_closed_form():
    # For N(0, I) vs N(delta, I) in d dims and bandwidth h:
    # E k(X, Y) = (h^2 / (h^2 + 2))^(d/2) exp(-|delta|^2 / (2 (h^2 + 2))), so
    # MMD^2 = 2 (h^2 / (h^2 + 2))^(d/2) (1 - exp(-|delta|^2 / (2 (h^2 + 2)))).
    # Same 400-replicate 3-SE band as for the energy distance (unbiased U-statistic).
    d, h = 3, 1.5
    c = (h * h / (h * h + 2)) ** (d / 2)
    for delta in (0.0, 0.7):
        mean, se = repeated(lambda a, b: mmd_rbf(a, b, h), delta, d=d)
        exact = 2 * c * (1 - math.exp(-d * delta**2 / (2 * (h * h + 2))))
        assert abs(mean - exact) < 3 * se, (delta, mean, exact, se)
    assert exact > 10 * se


@pytest.mark.parametrize("stat", [energy_distance, mmd_rbf])
def test_shift_detected_by_permutation(stat):
    # A shifted sample beats every one of 99 label permutations (permutation p = 0.01),
    # while a pair from the same law stays below the permutations' 99th percentile (which
    # it exceeds with probability ~1%; the seed is fixed).
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(100, 5)), rng.normal(size=(100, 5)) + 0.6
    pooled = np.vstack([a, b])
    perms = []
    for _ in range(99):
        idx = rng.permutation(200)
        perms.append(stat(pooled[idx[:100]], pooled[idx[100:]]))
    assert stat(a, b) > max(perms)
    same = stat(a, rng.normal(size=(100, 5)))
    assert same < np.quantile(perms, 0.99)


def test_median_bandwidth():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(20, 2))
    pooled = np.vstack([a, b])
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))[np.triu_indices(50, 1)]
    # torch's median of an even count is the lower middle value
    assert median_bandwidth(a, b) == pytest.approx(np.sort(d)[(d.size - 1) // 2], rel=1e-12)
    with pytest.raises(ValueError, match="bandwidth must be"):
        mmd_rbf(a, b, bandwidth="silverman")
    with pytest.raises(ValueError, match="same width"):
        energy_distance(a, rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="n >= 2"):
        energy_distance(a[:1], b)


# ----------------------------------------------------------------------- multi-step distances
def test_multistep_counts_and_pairing():
    # deterministic model (sigma = 0), real trajectories = its own drift path: with one
    # path per start the simulated set equals the real set, so the distance equals
    # energy_distance(real, real) computed here independently; horizons only count
    # trajectories with L > k.
    model = OU(A, B, np.ones(3))
    with torch.no_grad():
        model.log_sigma.fill_(-math.inf)  # sigma = exp(-inf) = 0
    gen = torch.Generator().manual_seed(5)
    lengths = [2, 3, 5, 9, 9, 17]
    trajs = [
        drift_path(model, torch.randn(3, dtype=DT64, generator=gen), L - 1).numpy() for L in lengths
    ]
    out = multistep_distances(model, trajs, horizons=(1, 2, 4, 8, 16, 32), n_paths=1)
    assert {k: v["n"] for k, v in out.items()} == {1: 6, 2: 5, 4: 4, 8: 3, 16: 1, 32: 0}
    for k in (16, 32):
        assert out[k]["energy"] is None and out[k]["mmd"] is None
    for k in (1, 2, 4, 8):
        real = np.stack([x[k] for x in trajs if len(x) > k])
        assert out[k]["n_sim"] == len(real)
        # same points, same arithmetic up to order: 1e-10 absolute
        assert out[k]["energy"] == pytest.approx(energy_distance(real, real), abs=1e-10)
        assert out[k]["mmd"] == pytest.approx(mmd_rbf(real, real), abs=1e-10)


def real_ou_trajectories(model, n, L, seed):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 3, dtype=DT64, generator=gen)
    paths = euler_maruyama(model, x0, n_steps=L - 1, n_paths=1, seed=seed + 100)
    return [paths[:, i, 0].numpy() for i in range(n)]


def test_multistep_true_model_beats_wrong_model():
    # Real trajectories come from the true OU model (other seed). The true model's
    # simulated states have the real states' law, so its energy distance is near 0
    # (unbiased, up to O(1/n) from paths sharing a start); a model whose drift offset
    # is off by 1 per unit time moves the mean by ~k, so its distance grows with k.
    true = OU(A, B, SIGMA)
    wrong = OU(A, B + 1.0, SIGMA)
    trajs = real_ou_trajectories(true, n=150, L=9, seed=6)
    good = multistep_distances(true, trajs, horizons=(1, 4, 8), n_paths=4, seed=1)
    bad = multistep_distances(wrong, trajs, horizons=(1, 4, 8), n_paths=4, seed=1)
    for k in (1, 4, 8):
        assert good[k]["n"] == 150 and good[k]["n_sim"] == 600
        assert bad[k]["energy"] > 5 * abs(good[k]["energy"])
        assert bad[k]["mmd"] > 5 * abs(good[k]["mmd"])
    assert bad[8]["energy"] > bad[1]["energy"]


def test_evaluate_model_bundles_everything():
    model, dt = OU(A, B, SIGMA), 1.0
    x0, t0, x1 = ou_steps(model, 300, dt, seed=7)
    trajs = real_ou_trajectories(model, n=20, L=5, seed=8)
    row = evaluate_model(model, {"x0": x0, "t0": t0, "x1": x1}, trajs, dt, horizons=(1, 4, 8))
    json.dumps(row)  # JSON-able
    assert row["n_transitions"] == 300
    assert row["nll"] == one_step_nll(model, x0, t0, x1, dt)
    r2 = drift_mse_r2(model, x0, t0, x1, dt)
    assert (row["drift_mse"], row["drift_r2"]) == (r2["mse"], r2["r2"])
    cov = interval_coverage(model, x0, t0, x1, dt)
    assert (row["coverage_0.5"], row["coverage_0.9"]) == (cov[0.5], cov[0.9])
    ms = multistep_distances(model, trajs, horizons=(1, 4, 8), n_paths=8, seed=0)
    assert row["energy_h4"] == ms[4]["energy"] and row["mmd_h1"] == ms[1]["mmd"]
    assert row["n_h4"] == 20 and row["n_h8"] == 0 and row["energy_h8"] is None
    no_traj = evaluate_model(model, (x0, t0, x1), None, dt)
    assert "energy_h1" not in no_traj and no_traj["nll"] == row["nll"]
    with pytest.raises(TypeError, match="split_transitions must be"):
        evaluate_model(model, (x0, x1), None, dt)


def test_one_step_rows_average_to_the_pooled_metrics():
    """Per-row pieces: their means are one_step_nll / interval_coverage and their sums give
    drift_mse_r2 (float64 sums in another order: 1e-12 relative)."""
    from sde_utils.models.metrics import one_step_rows

    model, dt = OU(A, B, SIGMA), 0.5
    x0, t0, x1 = ou_steps(model, 300, dt, seed=5)
    rows = one_step_rows(model, x0, t0, x1, dt, levels=(0.5, 0.9))
    assert rows["nll"].shape == rows["sq_res"].shape == (300,) and rows["inc"].shape == (300, 3)
    assert rows["nll"].mean() == pytest.approx(one_step_nll(model, x0, t0, x1, dt), rel=1e-12)
    cov = interval_coverage(model, x0, t0, x1, dt, levels=(0.5, 0.9))
    for c in (0.5, 0.9):
        assert rows[f"coverage_{c:g}"].mean() == pytest.approx(cov[c], rel=1e-12)
    inc = rows["inc"]
    r2 = 1 - rows["sq_res"].sum() / ((inc - inc.mean(0)) ** 2).sum()
    assert r2 == pytest.approx(drift_mse_r2(model, x0, t0, x1, dt)["r2"], rel=1e-12)
