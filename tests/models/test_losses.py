"""Tests of sde_utils.models.losses: hand-computed values, the Gaussian log-density, the
gradient path of the NLL, batch-size independence (float64, fixed seeds)."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from sde_utils.models.baselines import LinearSDE
from sde_utils.models.losses import (
    HALF_LOG_2PI,
    diffusion_loss,
    drift_loss,
    evaluate_losses,
    mean_losses,
    step_losses,
    total_loss,
)
from sde_utils.models.neural import NeuralSDE

DT = 0.5


def small_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return NeuralSDE(2, hidden=8, depth=1, time_scale=10.0, **kwargs).double()


@pytest.fixture(scope="module")
def small():
    """1,000 training and 300 validation transitions of x1 = 0.8 x0 + 0.5 sqrt(dt) z."""

    def split(n, seed):
        g = torch.Generator().manual_seed(seed)
        x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
        x1 = 0.8 * x0 + 0.5 * math.sqrt(DT) * torch.randn(n, 2, generator=g, dtype=torch.float64)
        return x0, (torch.arange(n, dtype=torch.float64) % 20) * DT, x1

    return split(1000, 10), split(300, 11)


def _linear(mu, sigma):
    m = LinearSDE(2).double()
    m.b.copy_(torch.tensor(mu, dtype=torch.float64))
    m.sigma_diag.copy_(torch.tensor(sigma, dtype=torch.float64))
    return m  # drift = x @ 0 + mu, diffusion = sigma


TINY_X0 = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
TINY_X1 = torch.tensor([[1.0, 1.0], [2.0, 1.0]], dtype=torch.float64)
TINY_T0 = torch.zeros(2, dtype=torch.float64)


def test_losses_hand_computed():
    """mu = (2, -2), sigma = (1, 2), dt = 0.5: mu dt = (1, -1), so the residuals
    x1 - x0 - mu dt are (0, 1) and (-1, 3).
    drift: mean over samples and dims = (0 + 1 + 1 + 9) / 4 = 2.75 (per dimension).
    NLL per element: 0.5 log(2 pi) + log sigma + 0.5 log dt + r^2 / (2 sigma^2 dt); with
    dt = 0.5 the last term is r^2 / sigma^2: 0, 1/4, 1, 9/4 (mean 0.875); mean log sigma is
    log(2) / 2, which cancels 0.5 log(0.5). So diffusion = 0.5 log(2 pi) + 0.875."""
    m = _linear([2.0, -2.0], [1.0, 2.0])
    ld = drift_loss(m, TINY_X0, TINY_T0, TINY_X1, 0.5)
    ln = diffusion_loss(m, TINY_X0, TINY_T0, TINY_X1, 0.5)
    assert ld.item() == pytest.approx(2.75, abs=1e-15)  # exact in binary but for rounding
    assert ln.item() == pytest.approx(0.5 * math.log(2 * math.pi) + 0.875, abs=1e-15)
    tot = total_loss(m, TINY_X0, TINY_T0, TINY_X1, 0.5, lam=0.3)
    assert tot.item() == pytest.approx(
        2.75 + 0.3 * (0.5 * math.log(2 * math.pi) + 0.875), abs=1e-14
    )
    ev = evaluate_losses(m, TINY_X0, TINY_T0, TINY_X1, 0.5, lam=0.3, batch_size=1)
    assert ev["drift"] == pytest.approx(2.75, abs=1e-14)
    assert ev["total"] == pytest.approx(tot.item(), abs=1e-14)


def test_nll_equals_gaussian_logpdf():
    """The diffusion loss is -mean log N(x1; x0 + mu dt, sigma^2 dt) for a state-dependent
    sigma (scipy's closed-form density; float64 rounding only)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(200, 2, generator=g, dtype=torch.float64)
    x1 = x0 + 0.4 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    t0 = torch.rand(200, generator=g, dtype=torch.float64) * 10
    m = small_model(seed=5, sigma_init=0.5)
    with torch.no_grad():
        m.diffusion_net[-1].weight.normal_(
            0.0, 1.0, generator=g
        )  # make sigma clearly state-dependent
        mu, sigma = m.drift(x0, t0), m.diffusion(x0, t0)
        ln = diffusion_loss(m, x0, t0, x1, 0.7)
    assert sigma.std() > 0.05
    ref = -scipy.stats.norm.logpdf(
        x1.numpy(), loc=(x0 + mu * 0.7).numpy(), scale=(sigma * math.sqrt(0.7)).numpy()
    ).mean()
    assert ln.item() == pytest.approx(ref, rel=1e-12)


def test_drift_is_trained_by_the_nll_too():
    """Decision documented in diffusion_loss: the drift is not detached inside the NLL."""
    m = small_model()
    diffusion_loss(m, TINY_X0, TINY_T0, TINY_X1, 0.5).backward()
    assert m.drift_net[0].weight.grad.abs().sum() > 0
    assert m.diffusion_net[0].weight.grad.abs().sum() > 0


def test_evaluate_losses_independent_of_batch_size(small):
    (x0, t0, x1), _ = small
    m = small_model()
    full = evaluate_losses(m, x0, t0, x1, DT, lam=2.0, batch_size=10**6)
    parts = evaluate_losses(m, x0, t0, x1, DT, lam=2.0, batch_size=37)  # 37 does not divide N
    for k in ("total", "drift", "diffusion"):
        assert parts[k] == pytest.approx(full[k], rel=1e-12)  # weighted means: rounding only
    assert full["total"] == pytest.approx(full["drift"] + 2.0 * full["diffusion"], rel=1e-14)


def test_step_losses_and_mean_losses_agree_with_the_public_losses(small):
    (x0, t0, x1), _ = small
    m = small_model(seed=2)
    ld, ln = step_losses(m, x0, t0, x1, DT)
    assert torch.equal(ld, drift_loss(m, x0, t0, x1, DT))  # the same arithmetic: bit-exact
    assert torch.equal(ln, diffusion_loss(m, x0, t0, x1, DT))
    means = mean_losses(m, (x0, t0, x1), DT, 2.0, 10**6)  # one batch: the same numbers
    assert means["drift"] == ld.item() and means["diffusion"] == ln.item()
    assert HALF_LOG_2PI == 0.5 * math.log(2 * math.pi)


def test_public_losses_check_their_arguments():
    m = small_model()
    x0, t0, x1 = TINY_X0, TINY_T0, TINY_X1
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got 0"):
        drift_loss(m, x0, t0, x1, 0)
    with pytest.raises(ValueError, match=r"total_loss: x1 must have x0's shape \(2, 2\)"):
        total_loss(m, x0, t0, x1[:1], DT)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0, got -1"):
        evaluate_losses(m, x0, t0, x1, DT, lam=-1)
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got 2.0"):
        evaluate_losses(m, x0, t0, x1, DT, batch_size=2.0)
