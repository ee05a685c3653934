"""Tests of sde_utils.analysis.latent_noise: variants differ from the fit's latent SDE in
the observation noise only, are cached and reused, and the trade-off table reads the
intervals; plus the trade-off figure."""

from __future__ import annotations

import numpy as np
import pytest

from sde_utils.analysis import latent_noise
from sde_utils.extraction.store import load_store
from sde_utils.models import fits
from sde_utils.plots.diagnosis import plot_tradeoff

D = 4
PARAMS = dict(
    seed=0, pca_dim=2, dt=1.0, max_len=None, hidden=8, depth=1, activation="tanh",
    time_encoding="linear", time_scale=10.0, sigma_floor=1e-3, lam=1.0, epochs=2,
    batch_size=64, lr=1e-2, weight_decay=0.0, patience=None, horizons=[1],
    n_paths=2, n_eval_trajectories=3, multistep_epochs=1, latent_epochs=2,
    latent_window=4, latent_obs_frac=0.1,
)  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, ou_store):
    """A quick fit_all on 9 AR(1) sequences of 10 states in R^4."""
    root = tmp_path_factory.mktemp("noise")
    store = load_store(ou_store("ou", root, n_seqs=9, length=10, dim=D, seed=1))
    return store, fits.fit_all(store, PARAMS, root=root / "fits", progress=False), root


def test_variants_change_only_the_observation_noise_and_are_cached(fitted):
    store, fit, root = fitted
    first = latent_noise.latent_variants(store, fit, [0.1, 0.3], root=root / "v", progress=False)
    assert list(first) == ["latent_sde[s=0.1]", "latent_sde[s=0.3]"]
    assert first["latent_sde[s=0.1]"] is fit.models["latent_sde"]  # the fit's own, not refitted
    own, other = first.values()
    assert other.obs_scale == pytest.approx(3 * own.obs_scale, rel=1e-12)
    config = {k: v for k, v in other.config().items() if k != "obs_scale"}
    assert config == {k: v for k, v in own.config().items() if k != "obs_scale"}
    cached = root / "v" / f"{fit.path.name}-latent-obs0.3" / "model.pt"
    stamp = cached.stat().st_mtime_ns
    again = latent_noise.latent_variants(store, fit, [0.3], root=root / "v", progress=False)
    assert cached.stat().st_mtime_ns == stamp  # loaded, not refitted
    for a, b in zip(
        again["latent_sde[s=0.3]"].state_dict().values(), other.state_dict().values(), strict=True
    ):
        assert (a == b).all()
    with pytest.raises(ValueError, match="latent_obs_frac must be a finite number > 0"):
        latent_noise.latent_variants(store, fit, [0.0], root=root / "v", progress=False)


def test_tradeoff_table_and_figure():
    per = {
        name: {
            "nll": {"estimate": n, "low": n - 0.1, "high": n + 0.1},
            "energy_h16": {"estimate": e, "low": e / 2, "high": 2 * e},
        }
        for name, n, e in [("a", 2.0, 1.0), ("b[s=1]", 3.0, 0.5), ("b[s=2]", 300.0, 0.4)]
    }
    table = latent_noise.tradeoff_table(per, ["nll", "energy_h16"])
    assert table.loc["b[s=1]", "energy_h16_high"] == 1.0 and table.loc["a", "nll_low"] == 1.9
    fig = plot_tradeoff(table, "nll", "energy_h16", path=["b[s=1]", "b[s=2]"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"  # 2 to 300: more than a decade
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b[s=1]", "b[s=2]"]
    narrow = plot_tradeoff(table.loc[["a", "b[s=1]"]], "nll", "energy_h16")
    assert narrow.axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError, match="empty"):
        plot_tradeoff(table.iloc[:0], "nll", "energy_h16")


def test_window_nll_is_the_one_step_nll_for_markov_models_and_the_elbo_for_latent_ones():
    """A random walk (sigma = 1, dt = 1) on windows: exactly the mean of the one-step
    Gaussian NLLs. A latent SDE on one-step windows without control: its ELBO is exact
    there (tests/models/test_latent.py), so its window NLL is log N(x_1; x_0 + mu dt,
    sigma^2 dt + s^2), batch by batch, whatever the draws."""
    import torch

    from sde_utils.models.baselines import RandomWalk
    from sde_utils.models.latent import LatentSDE

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(50, 3, generator=g, dtype=torch.float64)
    xs = x0[:, None] + torch.randn(50, 4, 3, generator=g, dtype=torch.float64).cumsum(1)
    t0 = torch.zeros(50, dtype=torch.float64)
    rw = RandomWalk(3).double()
    rw.sigma_diag.fill_(1.0)
    steps = xs - torch.cat([x0[:, None], xs[:, :-1]], 1)
    want = (0.5 * np.log(2 * np.pi) + 0.5 * steps.pow(2)).mean((1, 2)).numpy()
    np.testing.assert_allclose(latent_noise.window_nll(rw, x0, t0, xs, 1.0), want, rtol=1e-12)
    torch.manual_seed(1)
    latent = LatentSDE(3, hidden=8, depth=1, obs_scale=1e-3).double()
    with torch.no_grad():
        latent.control_net[-1].weight.zero_()
        mu, sigma = latent.drift_diffusion(x0, t0)  # the prior is scored at x0 only
    var = sigma**2 + 1e-6  # sigma^2 dt + s^2
    one = xs[:, :1]
    exact = (0.5 * torch.log(2 * np.pi * var) + 0.5 * (one[:, 0] - x0 - mu) ** 2 / var).mean(1)
    got = latent_noise.window_nll(latent, x0, t0, one, 1.0, n_draws=2, batch_size=16)
    np.testing.assert_allclose(got, exact.numpy(), rtol=1e-10)  # exact for every draw


def test_sequence_scores_on_a_fit(fitted):
    store, fit, _ = fitted
    (x0, t0, xs), groups = latent_noise.heldout_windows(store, fit)
    assert xs.shape[1] == PARAMS["latent_window"] and groups.shape == (x0.shape[0],)
    assert set(groups) <= set(store.split("test").sequences["conv_id"])
    seq = latent_noise.sequence_scores(store, fit, fit.models, n_boot=50)
    assert set(seq["per_model"]) == set(fit.models) and "neural_sde" not in seq["paired"]
    for name, iv in seq["per_model"].items():
        assert iv["low"] <= iv["estimate"] <= iv["high"], name
        if name != "neural_sde":
            diff = iv["estimate"] - seq["per_model"]["neural_sde"]["estimate"]
            assert seq["paired"][name]["estimate"] == pytest.approx(diff, abs=1e-9)
    table = latent_noise.sequence_table(seq)
    assert table.loc["neural_sde", "minus_reference"] == "–"
    record = fits.training_record(fit)
    assert set(record) == {"neural_sde_training", "multistep_training", "latent_training"}
    assert record["neural_sde_training"]["epochs"] == PARAMS["epochs"]
