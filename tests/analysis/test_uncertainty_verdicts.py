"""Notebook 08's sections 4-5 on small synthetic stores and hand-made intervals.

Closed forms: a neural SDE rebuilt from its own seed is its initial network, so the loss
"before" equals the loss "after" and the drop is exactly 0; the one-step squared error
per coordinate is ``sq_residual / k``; a verdict follows its interval's position against
the threshold.
"""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.analysis import uncertainty_verdicts as V
from sde_utils.analysis.verdicts import INSUFFICIENT
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.features import FeatureMap
from sde_utils.models.losses import drift_loss, total_loss
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.train import History

TEXTS = [
    "Short one. Tiny.",
    "This sentence is a little longer, with a comma.",
    "A long sentence with many words goes on and on because it can.",
    "Two words. Three more words.",
    "Because it rains, we stay inside, and we read.",
    "Yes.",
]


def small_fit(store, d=3, seed=7):
    features = FeatureMap(pca_dim=None, standardize=False).fit(np.asarray(store.embeddings))
    torch.manual_seed(seed)
    sde = NeuralSDE(d, hidden=8, depth=1)  # float32, as initial_model rebuilds it
    history = History(
        train_total=[2.0, 1.5], val_total=[2.2, 1.9], val_diffusion=[1.0, 0.9], best_epoch=2
    )
    return SimpleNamespace(
        features=features,
        sde=sde,
        params={"seed": seed, "lam": 0.5},
        histories={"neural_sde": history},
        models={"neural_sde": LinearSDE(d).double(), "random_walk": RandomWalk(d).double()},
    )


def test_error_study_tables_and_closed_forms(make_store):
    store = make_store([6, 5, 7, 6, 8, 5], dim=3, response=TEXTS)
    fit = small_fit(store)
    errors = V.error_study(
        store,
        fit,
        1.0,
        horizons=[1, 2, 4],
        position_bins=3,
        complexity_measure="mean_sentence_length",
        complexity_bins=2,
        n_boot=50,
        seed=0,
        min_groups=2,
    )
    steps = errors["test_steps"]
    np.testing.assert_allclose(steps["sq_error"], steps["sq_residual"] / 3, rtol=1e-15)
    assert len(errors["responses"]) == 6 and errors["responses"]["n_steps"].sum() == len(steps)
    assert errors["responses"].loc[5, "mean_sentence_length"] == 1.0  # "Yes."
    assert set(errors["horizon_by"]) == {"neural_sde", "random_walk"}
    assert list(errors["horizon_by"]["random_walk"]["level"]) == [1, 2, 4]
    # the linear SDE starts at zero drift: its path equals the random walk's
    pd.testing.assert_frame_equal(
        errors["horizon_by"]["neural_sde"], errors["horizon_by"]["random_walk"]
    )
    lines = V.error_lines(errors, "mean_sentence_length")
    assert lines[0].startswith(f"{len(steps)} test transitions, 6 responses in 6 conversations")
    assert lines[1].startswith("error vs mean_sentence_length: slope")


def test_loss_study_of_an_untrained_network_drops_nothing(make_store):
    store = make_store([6, 5, 7, 6], dim=3)
    fit = small_fit(store)
    _, _, _, index = store.transitions(return_index=True)
    conv = store.sequences["conv_id"].to_numpy()[index[:, 0]]
    losses = V.loss_study(fit, store, 1.0, conv, n_boot=50, seed=0, min_groups=2)
    assert losses["test_total_before"] == losses["test_total_after"]
    assert losses["drop"]["estimate"] == 0.0 and losses["drop"]["low"] == 0.0
    assert (losses["val_total_best"], losses["best_epoch"], losses["epochs"]) == (1.9, 2, 2)


def test_loss_study_totals_are_notebook_03s_loss(make_store):
    # the held-out total equals models.losses.total_loss (drift error per dimension + lam *
    # NLL per dimension) of the same network on the same transitions; float32 network, so
    # 1e-5 relative. Control: the old sum over dimensions is off by the factor the test sees.
    store = make_store([6, 5, 7, 6], dim=3)
    fit = small_fit(store)
    x0, t0, x1, index = store.transitions(return_index=True)
    conv = store.sequences["conv_id"].to_numpy()[index[:, 0]]
    losses = V.loss_study(fit, store, 1.0, conv, n_boot=50, seed=0, min_groups=2)
    z0, z1 = (torch.as_tensor(fit.features.transform(x.astype(np.float64))) for x in (x0, x1))
    expected = total_loss(
        fit.sde.double(), z0, torch.as_tensor(t0, dtype=torch.float64), z1, 1.0, lam=0.5
    ).item()
    fit.sde.float()
    assert losses["test_total_after"] == pytest.approx(expected, rel=1e-5)
    summed = (
        total_loss(
            fit.sde.double(), z0, torch.as_tensor(t0, dtype=torch.float64), z1, 1.0, lam=0.5
        ).item()
        + 2 * drift_loss(fit.sde, z0, torch.as_tensor(t0, dtype=torch.float64), z1, 1.0).item()
    )
    fit.sde.float()
    assert losses["test_total_after"] != pytest.approx(summed, rel=1e-3)


def interval(estimate, low, high, **extra):
    return {"estimate": estimate, "low": low, "high": high, "n": 10, "n_groups": 5, **extra}


def test_verdict_rows_follow_their_intervals():
    corr = {
        "spearman": interval(0.3, 0.1, 0.5),
        "partial_position": interval(0.0, -0.1, 0.1),
        "partial_position_temperature": interval(-0.3, -0.5, -0.1),
    }
    correlations = {
        "sigma2~entropy_next": corr,
        "sigma2~surprisal_next": corr,
        "sq_increment~entropy_next": corr,
    }
    nan = float("nan")
    corr["partial_temperature"] = interval(0.2, 0.05, 0.35)
    by_temperature = {
        "sigma2~entropy_next": {
            "0.7": {"spearman": interval(0.2, 0.1, 0.3), "partial_position": interval(0, 0, 0)},
            "1.3": {"spearman": interval(-0.2, -0.3, -0.1), "partial_position": interval(0, 0, 0)},
        }
    }
    temperature = {
        "sigma": {"slope": interval(-1.0, -2.0, -0.5)},
        "fitted": {"slope": interval(nan, nan, nan), "n_fits": 2, "slope_per_seed": {"0": 1.0}},
        "increment": {"slope": interval(0.5, 0.1, 0.9)},
    }
    errors = {
        "horizon_by": {"neural_sde": pd.DataFrame({"level": [1, 2], "mean": [0.1, 0.2]})},
        "horizon_slope": interval(0.05, 0.01, 0.09),
        "responses": pd.DataFrame({"mean_clauses": [1.0, 3.0]}),
        "complexity_slope": interval(0.2, -0.1, 0.5),
    }
    losses = {
        "drop": interval(1.0, 0.5, 1.5),
        "test_total_before": 3.0,
        "test_total_after": 2.0,
        "val_total_first_epoch": 2.5,
        "val_total_best": 1.5,
        "val_total_last": 1.6,
        "best_epoch": 4,
        "epochs": 5,
    }
    rows = V.verdict_rows(
        losses,
        correlations,
        temperature,
        errors,
        by_temperature=by_temperature,
        complexity_measure="mean_clauses",
    )
    assert [r["verdict"] for r in rows] == [
        "reproduced",  # losses drop
        "reproduced",  # horizon slope
        "mixed",  # complexity
        "reproduced",  # pooled Spearman
        "reproduced",  # within T=0.7
        "not reproduced",  # within T=1.3: the sign flip gets its own verdict
        "reproduced",  # given temperature
        "not reproduced",  # given position and temperature
        "not reproduced",  # surprisal, given position and temperature
        "not reproduced",  # held-out sigma falls with temperature
        INSUFFICIENT,  # per-temperature fits without an interval
    ]
    # 80% power at 95%: 2.80 standard errors, the se read off the interval's width
    se = (1.5 - 0.5) / (2 * 1.959964)
    assert rows[0]["detectable_80"] == pytest.approx((1.959964 + 0.841621) * se, rel=1e-5)
    assert math.isnan(rows[-1]["detectable_80"])
    assert "(epoch 4 of 5)" in rows[0]["numbers"] and rows[1]["numbers"].endswith("h=2: 0.2")
    lines = V.verdict_lines(rows)
    assert lines[0].startswith("[reproduced] Training lowers the losses: ")
    assert len(lines) == 11 and "detectable at 80% power" in lines[0]


def test_uncertainty_metrics_layout():
    tokens = pd.DataFrame({"conv_id": ["a", "a", "b"], "temperature": [1.0, 1.0, 0.7]})
    table = pd.DataFrame({"level": [0.7, 1.0], "mean": [1.0, 2.0]})
    errors = {
        "responses": pd.DataFrame({"x": [1, 2]}),
        "complexity_slope": {"estimate": 0.1},
        "by_complexity": table,
        "by_position": table,
        "test_steps": pd.DataFrame({"k": [0, 1, 2]}),
        "horizon_slope": {"estimate": 0.2},
        "horizon_by": {"neural_sde": table},
    }
    metrics = V.uncertainty_metrics(
        names={"store_02": "s2", "store_01": "s1", "fit_03": "f", "held_out_splits": ["test"]},
        tokens=tokens,
        correlations={},
        by_temperature={},
        temperature={"sigma": {"by_temperature": table, "slope": {"estimate": 1.0}}},
        first_step={"n_groups": 0},
        complexity_measure="mean_clauses",
        errors=errors,
        losses={},
        verdicts=[],
    )
    assert list(metrics)[:8] == [
        "store_02",
        "store_01",
        "fit_03",
        "held_out_splits",
        "n_tokens",
        "n_conversations",
        "temperatures",
        "correlations",
    ]
    assert (metrics["n_tokens"], metrics["n_conversations"]) == (3, 2)
    assert metrics["temperatures"] == [0.7, 1.0]
    assert metrics["temperature"]["sigma"] == {
        "slope": {"estimate": 1.0},
        "by_temperature": [{"level": 0.7, "mean": 1.0}, {"level": 1.0, "mean": 2.0}],
    }
    assert metrics["complexity"]["n_test_transitions"] == 3
    assert metrics["horizons"]["neural_sde_by_horizon"][1] == {"level": 1.0, "mean": 2.0}
