"""The layer sweep's numbers: the held-out PCA variance against its closed form, and the
verdict over depths."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from sde_utils.analysis.layer_sweep import pca_variance_interval, sweep_table, sweep_verdict
from sde_utils.models.features import FeatureMap
from sde_utils.plots.layers import plot_sweep

matplotlib.use("Agg")


def _data(seed=0, n=400, d=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ np.diag([5.0, 3.0, 2.0, 1.0, 0.5, 0.2])
    groups = np.repeat(np.arange(n // 10), 10)
    return x, groups


def test_pca_variance_on_the_training_rows_is_the_explained_ratio():
    x, groups = _data()
    fmap = FeatureMap(pca_dim=2, standardize=False).fit(x)
    iv = pca_variance_interval(fmap, x, groups, n_boot=200, seed=0)
    # on its own training rows the kept share is exactly the PCA's explained ratio (the
    # ddof of the variances cancels); float64 sums: 1e-10
    assert iv["estimate"] == pytest.approx(fmap.explained_variance_ratio_.sum(), abs=1e-10)
    assert iv["low"] <= iv["estimate"] <= iv["high"] and iv["n_groups"] == 40
    full = FeatureMap(pca_dim=None, standardize=False).fit(x)
    assert pca_variance_interval(full, x, groups, n_boot=50)["estimate"] == pytest.approx(1.0)
    # control: on other data (held-out rows with another spectrum) the share differs
    other = np.random.default_rng(1).normal(size=(400, 6))
    assert pca_variance_interval(fmap, other, groups, n_boot=50)["estimate"] < 0.5


def _iv(est, low, high):
    return {"estimate": est, "low": low, "high": high}


def _record(llm, kind, depth, wins):
    gap = _iv(-0.2, -0.3, -0.1) if wins else _iv(0.1, -0.05, 0.2)
    return {
        "llm": llm,
        "kind": kind,
        "depth": depth,
        "best_baseline": "linear_ou",
        "beats_all": wins,
        "sde_winners": ["neural_sde", "latent_sde"] if wins else [],
        "verdict_horizon": 16,
        "largest_upper": {"nll": gap["high"], "energy_h16": gap["high"]},
        "metrics": {
            "nll_gap": gap,
            "drift_r2": _iv(0.5, 0.4, 0.6),
            "energy_h16": _iv(1.0, 0.5, 1.5),
            "energy_gap_h16": gap,
            "coverage_0.5": _iv(0.5, 0.45, 0.55),
            "coverage_0.9": _iv(0.9, 0.85, 0.95),
            "pca_variance": _iv(0.4, 0.35, 0.45),
        },
    }


def test_verdict_names_the_depths_where_the_neural_sde_wins():
    records = [
        _record("a", "input", 0.0, False),
        _record("a", "layer:5", 0.5, True),
        _record("a", "hidden", 1.0, True),
        _record("b", "input", 0.0, False),
        _record("b", "layer:9", 0.5, True),
        _record("b", "hidden", 1.0, False),
    ]
    v = sweep_verdict(records)
    assert v["any"] and v["both_llms"] == [0.5]
    assert v["per_llm"]["a"] == [
        {"kind": "layer:5", "depth": 0.5},
        {"kind": "hidden", "depth": 1.0},
    ]
    assert v["criteria"] == ["nll", "energy_h16"]
    assert v["sde_per_llm"]["b"] == [
        {"kind": "layer:9", "depth": 0.5, "models": ["neural_sde", "latent_sde"]}
    ]
    assert "layer:9 (neural_sde, latent_sde)" in v["text"]
    # another SDE can win where the neural SDE does not
    other = sweep_verdict(
        [dict(r, beats_all=False) for r in records[:1]]
        + [dict(records[0], sde_winners=["latent_sde"], kind="layer:1")]
    )
    assert not other["any"] and "layer:1 (latent_sde)" in other["text"]
    # control: no winner anywhere gives the negative verdict
    none = sweep_verdict([dict(r, beats_all=False, sde_winners=[]) for r in records])
    assert not none["any"] and none["both_llms"] == [] and "no depth" in none["text"]
    assert "neither does any other SDE" in none["text"]
    table = sweep_table(records)
    assert table.loc[("a", "layer:5"), "nll_gap"] == "-0.200 [-0.300, -0.100]"
    fig = plot_sweep(records)
    assert len(fig.axes) == 8 and fig.axes[0].has_data()
