"""Tests of sde_utils.analysis.latent_noise: variants differ from the fit's latent SDE in
the observation noise only, are cached and reused, and the trade-off table reads the
intervals; plus the trade-off figure."""

from __future__ import annotations

import numpy as np
import pytest

from sde_utils.analysis import latent_noise
from sde_utils.extraction.store import load_store
from sde_utils.extraction.store_build import build_store
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
def fitted(tmp_path_factory):
    rng = np.random.default_rng(1)
    items, states = [], {}
    for i in range(9):
        x = np.zeros((10, D))
        for k in range(9):
            x[k + 1] = 0.7 * x[k] + 0.3 * rng.normal(size=D)
        states[f"p{i}"] = x.astype(np.float32)
        items.append(
            {"pair_id": f"p{i}", "conv_id": f"c{i}", "split": ("train", "val", "test")[i % 3]}
        )

    def embed(chunk):
        return [
            {"states": states[it["pair_id"]], "token_ids": list(range(10)), "tokens": ["t"] * 10}
            for it in chunk
        ]

    root = tmp_path_factory.mktemp("noise")
    store = load_store(build_store("ou", items, embed, params={}, root=root, progress=False))
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
