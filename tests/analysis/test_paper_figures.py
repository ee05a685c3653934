"""The numbers behind the paper figures, against closed forms on linear models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sde_utils.analysis.paper_figures import (
    data_extent,
    diffusion_magnitudes,
    drift_diffusion_along,
    drift_field,
    figure_record,
    nearest_token_ids,
    one_step_predictions,
    trajectory_agreement,
)
from sde_utils.captions import PAPER_FIGURES
from sde_utils.models.base import SDEModel
from sde_utils.models.baselines import LinearSDE

EXACT = 1e-12  # float64 arithmetic on O(1) numbers: only rounding separates the two sides


def linear_model(d: int, seed: int = 0) -> LinearSDE:
    g = torch.Generator().manual_seed(seed)
    model = LinearSDE(d).double()
    model.A.copy_(
        -0.3 * torch.eye(d, dtype=torch.float64)
        + 0.1 * torch.randn(d, d, generator=g, dtype=torch.float64)
    )
    model.b.copy_(torch.randn(d, generator=g, dtype=torch.float64))
    model.sigma_diag.copy_(torch.linspace(0.5, 2.0, d, dtype=torch.float64))
    return model


class TimeModel(SDEModel):
    """drift = t, diffusion = 1 + t in every coordinate: reveals the times a caller passes."""

    def drift(self, x, t):
        return t[:, None].expand_as(x).clone()

    def diffusion(self, x, t):
        return 1.0 + t[:, None].expand_as(x)


def test_drift_field_is_the_linear_drift_at_the_grid_points():
    d = 5
    model = linear_model(d)
    base = np.random.default_rng(1).normal(size=d)
    field = drift_field(model, base, (-2.0, 3.0, -1.0, 4.0), dims=(3, 1), n=7, t=2.5)
    assert field.dims == (3, 1) and field.u.shape == (7, 7) and field.t == 2.5
    np.testing.assert_allclose(field.x, np.linspace(-2, 3, 7), rtol=0, atol=EXACT)
    A, b = model.A.numpy(), model.b.numpy()
    for i, y in enumerate(field.y):
        for j, x in enumerate(field.x):
            state = base.copy()
            state[3], state[1] = x, y  # row i = y value, column j = x value
            mu = A @ state + b
            assert abs(field.u[i, j] - mu[3]) < EXACT and abs(field.v[i, j] - mu[1]) < EXACT
    np.testing.assert_allclose(field.speed, np.hypot(field.u, field.v), rtol=0, atol=EXACT)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dims": (1, 1)}, "two different coordinates"),
        ({"dims": (0, 5)}, "two different coordinates"),
        ({"dims": (0,)}, "two coordinate indices"),
        ({"n": 1}, "n must be an int >= 2"),
        ({"extent": (1.0, 0.0, 0.0, 1.0)}, "min < max"),
        ({"base": np.zeros((2, 5))}, "base must be a"),
    ],
)
def test_drift_field_bad_inputs(kwargs, message):
    args = {"base": np.zeros(5), "extent": (0.0, 1.0, 0.0, 1.0)}
    args |= {k: v for k, v in kwargs.items() if k in args}
    rest = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(ValueError, match=message):
        drift_field(linear_model(5), args["base"], args["extent"], **rest)


def test_data_extent_pads_the_central_range():
    pts = np.stack([np.linspace(0, 10, 101), np.linspace(-1, 1, 101)], axis=1)
    xmin, xmax, ymin, ymax = data_extent(pts, quantile=0.0, pad=0.1)
    assert (xmin, xmax) == pytest.approx((-1.0, 11.0)) and (ymin, ymax) == pytest.approx(
        (-1.2, 1.2)
    )
    with pytest.raises(ValueError, match="3 coordinates, expected 2"):
        data_extent(np.zeros((4, 3)))


def test_along_a_trajectory_times_and_values():
    x = np.random.default_rng(2).normal(size=(6, 3))
    mu, sigma = drift_diffusion_along(TimeModel(), x, dt=0.5, t0=2.0)
    t = 2.0 + 0.5 * np.arange(6)
    np.testing.assert_allclose(mu, np.repeat(t[:, None], 3, 1), rtol=0, atol=EXACT)
    np.testing.assert_allclose(sigma, 1 + np.repeat(t[:, None], 3, 1), rtol=0, atol=EXACT)
    model = linear_model(3)
    pred = one_step_predictions(model, x, dt=0.25)
    expected = x[:-1] + 0.25 * (x[:-1] @ model.A.numpy().T + model.b.numpy())
    np.testing.assert_allclose(pred, expected, rtol=0, atol=EXACT)
    with pytest.raises(ValueError, match=">= 2 states"):
        one_step_predictions(model, x[:1])
    with pytest.raises(ValueError, match="NaN"):
        drift_diffusion_along(model, np.full((3, 3), np.nan))


def test_diffusion_magnitudes_rms_and_padding():
    model = linear_model(4)
    sig = model.sigma_diag.numpy()
    rng = np.random.default_rng(3)
    trajs = [rng.normal(size=(n, 4)) for n in (5, 2, 7)]
    mags = diffusion_magnitudes(model, trajs, max_len=6)
    assert mags.shape == (3, 6)
    rms = np.sqrt((sig**2).mean())  # constant sigma: the same RMS at every token
    np.testing.assert_allclose(mags[0, :5], rms, rtol=0, atol=EXACT)
    assert np.isnan(mags[0, 5]) and np.isnan(mags[1, 2:]).all() and not np.isnan(mags[2]).any()
    with pytest.raises(ValueError, match="empty"):
        diffusion_magnitudes(model, [])


def test_trajectory_agreement_on_data_the_model_generated():
    d, dt, H = 3, 0.5, 5
    model = linear_model(d)
    A, b = model.A.numpy(), model.b.numpy()
    rng = np.random.default_rng(4)
    trajs = []
    for n in (8, 6, 3):  # the last is too short for H and is left out
        x = [rng.normal(size=d)]
        for _ in range(n - 1):
            x.append(x[-1] + dt * (A @ x[-1] + b))  # noise-free Euler: what drift_path does
        trajs.append(np.array(x))
    table = trajectory_agreement(model, trajs, horizon=H, dt=dt)
    assert list(table["step"]) == list(range(H + 1)) and (table["n"] == 2).all()
    np.testing.assert_allclose(table["rmse_drift"], 0, atol=1e-12)
    np.testing.assert_allclose(table["skill_vs_mean"], 1, atol=1e-12)
    np.testing.assert_allclose(table["corr_drift"], 1, atol=1e-12)
    actual = np.stack([t[: H + 1] for t in trajs[:2]])
    np.testing.assert_allclose(
        table["rmse_stay"], np.sqrt(((actual - actual[:, :1]) ** 2).mean(axis=(0, 2))), atol=EXACT
    )
    np.testing.assert_allclose(
        table["rmse_mean"], np.sqrt((actual**2).mean(axis=(0, 2))), atol=EXACT
    )
    with pytest.raises(ValueError, match="longer than horizon"):
        trajectory_agreement(model, trajs, horizon=20, dt=dt)


def test_nearest_token_ids_by_cosine(fake_llm, fake_vocab):
    weight = np.random.default_rng(6).normal(size=(len(fake_vocab), 8))
    llm = fake_llm(weight)
    scaled = weight[[3, 0, 7]] * np.array([[2.0], [0.1], [5.0]])  # cosine ignores the scale
    np.testing.assert_array_equal(nearest_token_ids(llm, scaled, chunk=2), [3, 0, 7])
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        nearest_token_ids(llm, weight[:, :4])
    with pytest.raises(ValueError, match="chunk"):
        nearest_token_ids(llm, weight, chunk=0)


def test_figure_record():
    rec = figure_record("fig4-drift-diffusion", " It points home. ", {"share": 0.9})
    assert rec == {
        "number": 4,
        "caption": PAPER_FIGURES["fig4-drift-diffusion"].caption,
        "finding": "It points home.",
        "numbers": {"share": 0.9},
    }
    with pytest.raises(ValueError, match="unknown figure 'fig9'"):
        figure_record("fig9", "x")
    with pytest.raises(ValueError, match="non-empty sentence"):
        figure_record("fig1-losses", "  ")
