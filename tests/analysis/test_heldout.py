"""Tests of sde_utils.analysis.heldout: conversation-bootstrap intervals of held-out metrics.

Known answers: with every weight 1 the estimates are exactly the evaluation's numbers
(:func:`evaluate_model`, same simulation seed); weights 0/1 give the energy distance of the
kept trajectories; a model against its own copy differs by exactly 0 in every replicate;
a random walk with sigma = 1 on N(0, 1) steps has expected NLL ``0.5 log(2 pi) + 0.5``.
Tolerance 1e-8 relative where only the computation order differs: ``torch.cdist`` uses
the matrix-product form ``|a|^2 + |b|^2 - 2 a.b`` for large inputs, whose float64 rounding
(~1e-16 of ``|a|^2``, divided by distances ~1) differs between blockings by ~1e-10;
energies near 0 (differences of O(1) means) get the same 1e-8 as an absolute tolerance.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from sde_utils.analysis.heldout import (
    beats_all,
    energy_from_pieces,
    energy_pieces,
    heldout_intervals,
    interval_table,
    intervals_verdict,
    point_verdicts,
)
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.metrics import energy_distance, evaluate_model

D = 2
A_TRUE = np.array([[-0.5, 0.1], [0.0, -0.4]])
B_TRUE = np.array([1.0, -1.0])
SIGMA = np.array([0.2, 0.3])


def ou_conversations(n_conv=24, per_conv=2, seed=0):
    """Euler-Maruyama OU paths (dt = 1) from 0; two responses per conversation.
    Returns (trajectories, their labels, (x0, t0, x1), transition labels), float64."""
    rng = np.random.default_rng(seed)
    trajs, labels = [], []
    for g in range(n_conv):
        for _ in range(per_conv):
            x = np.zeros((int(rng.integers(18, 30)), D))
            for k in range(1, x.shape[0]):
                x[k] = x[k - 1] + x[k - 1] @ A_TRUE.T + B_TRUE + SIGMA * rng.standard_normal(D)
            trajs.append(x)
            labels.append(100 + g)  # any labels
    x0 = np.concatenate([x[:-1] for x in trajs])
    x1 = np.concatenate([x[1:] for x in trajs])
    t0 = np.concatenate([np.arange(x.shape[0] - 1.0) for x in trajs])
    tr_labels = np.concatenate([[g] * (x.shape[0] - 1) for x, g in zip(trajs, labels, strict=True)])
    return trajs, np.array(labels), (x0, t0, x1), tr_labels


def true_ou():
    m = LinearSDE(D).double()
    m.A.copy_(torch.as_tensor(A_TRUE))
    m.b.copy_(torch.as_tensor(B_TRUE))
    m.sigma_diag.copy_(torch.as_tensor(SIGMA))
    return m


KW = dict(horizons=(1, 4, 16), n_paths=4, seed=3, n_boot=300, boot_seed=0)


@pytest.fixture(scope="module")
def data():
    return ou_conversations()


def test_estimates_are_the_evaluation_numbers(data):
    trajs, labels, tr, tr_labels = data
    rw = RandomWalk.fit_closed_form(*(torch.as_tensor(a) for a in tr), 1.0)
    models = {"ou": true_ou(), "rw": rw}
    out = heldout_intervals(models, tr, tr_labels, trajs, labels, 1.0, reference="ou", **KW)
    for name, model in models.items():
        ev = evaluate_model(model, tr, trajs, 1.0, horizons=KW["horizons"], n_paths=4, seed=3)
        per = out["per_model"][name]
        assert set(per) == {"nll", "drift_r2", "coverage_0.5", "coverage_0.9"} | {
            f"energy_h{k}" for k in KW["horizons"]
        }
        for key, iv in per.items():
            assert iv["estimate"] == pytest.approx(ev[key], rel=1e-8, abs=1e-8), (name, key)
            assert iv["low"] <= iv["estimate"] <= iv["high"], (name, key)
            assert iv["n_groups"] == 24 and iv["n_valid"] == KW["n_boot"]
    # control: another simulation seed gives other energies (the seed is really used)
    other = heldout_intervals(
        models, tr, tr_labels, trajs, labels, 1.0, reference="ou", **{**KW, "seed": 4}
    )
    assert other["per_model"]["rw"]["energy_h16"]["estimate"] != pytest.approx(
        out["per_model"]["rw"]["energy_h16"]["estimate"], rel=1e-6
    )


def test_energy_from_pieces_exact_for_all_and_for_a_subset():
    rng = np.random.default_rng(1)
    real, sim = rng.normal(size=(7, 3)), rng.normal(size=(7, 5, 3)) + 0.5
    pieces = energy_pieces(real, sim)
    w = np.ones((1, 7))
    full = energy_distance(sim.reshape(-1, 3), real)
    assert energy_from_pieces(pieces, w)[0] == pytest.approx(full, rel=1e-8)
    keep = np.array([0, 2, 3, 6])
    w_sub = np.zeros((1, 7))
    w_sub[0, keep] = 1
    sub = energy_distance(sim[keep].reshape(-1, 3), real[keep])
    assert energy_from_pieces(pieces, w_sub)[0] == pytest.approx(sub, rel=1e-8)
    one = np.zeros((1, 7))
    one[0, 2] = 3  # a single trajectory drawn three times: no pair of distinct ones
    assert np.isnan(energy_from_pieces(pieces, one)[0])


def test_identical_models_differ_by_exactly_zero(data):
    trajs, labels, tr, tr_labels = data
    m = true_ou()
    out = heldout_intervals(
        {"a": m, "b": copy.deepcopy(m)}, tr, tr_labels, trajs, labels, 1.0, reference="a", **KW
    )
    for key, iv in out["paired"]["b"].items():
        assert iv["estimate"] == iv["low"] == iv["high"] == 0.0, key
    assert not beats_all(out, ["nll", "energy_h16"])["a"]["beats_all"]  # 0 is not < 0


def test_a_clearly_better_model_has_intervals_below_zero(data):
    trajs, labels, tr, tr_labels = data
    bad = RandomWalk(D).double()
    bad.sigma_diag.fill_(1.0)  # no drift toward the mean (at 2.5, -2.5) and 3-5x the noise
    out = heldout_intervals(
        {"ou": true_ou(), "rw": bad}, tr, tr_labels, trajs, labels, 1.0, reference="ou", **KW
    )
    for key in ("nll", "energy_h16"):
        assert out["paired"]["rw"][key]["high"] < 0, key
        assert out["pairwise"]["rw"]["ou"][key]["low"] > 0, key  # and the mirror image
    verdict = beats_all(out, ["nll", "energy_h16"])
    assert verdict["ou"]["beats_all"] and not verdict["rw"]["beats_all"]
    summary = intervals_verdict(out, ["nll", "energy_h16"])
    assert summary["winners"] == ["ou"] and summary["models"] == verdict
    # against a set of baselines: the model beats the baseline; a baseline is not a winner
    # against itself, and an empty comparison set beats nothing
    assert intervals_verdict(out, ["nll", "energy_h16"], baselines=["rw"])["sde_winners"] == ["ou"]
    assert intervals_verdict(out, ["nll", "energy_h16"], baselines=["ou"])["sde_winners"] == []
    assert not beats_all(out, ["nll"], against=[])["ou"]["beats_all"]
    table = interval_table(out["paired"])
    assert list(table.index) == ["rw"] and table.loc["rw", "nll"].startswith("-")


def test_nll_interval_covers_the_known_mean():
    """RandomWalk(sigma = 1) on N(0, 1) steps: E[NLL] = 0.5 log(2 pi) + 0.5 per coordinate.
    60 conversations x 20 steps x 2 dims: se = sqrt(0.5 / 2400) ~ 0.014 (Var(z^2 / 2) =
    1/2), so the 95% interval is ~ +-0.03 wide; truth + 0.1 is ~7 se away (the control)."""
    rng = np.random.default_rng(7)
    n_conv, steps = 60, 20
    trajs = [np.cumsum(rng.standard_normal((steps + 1, D)), 0) for _ in range(n_conv)]
    x0 = np.concatenate([x[:-1] for x in trajs])
    x1 = np.concatenate([x[1:] for x in trajs])
    t0 = np.zeros(x0.shape[0])
    labels = np.arange(n_conv)
    tr_labels = np.repeat(labels, steps)
    model = RandomWalk(D).double()
    out = heldout_intervals(
        {"rw": model},
        (x0, t0, x1),
        tr_labels,
        trajs,
        labels,
        1.0,
        reference="rw",
        horizons=(1,),
        n_paths=2,
        n_boot=500,
    )
    iv = out["per_model"]["rw"]["nll"]
    truth = 0.5 * math.log(2 * math.pi) + 0.5
    assert iv["low"] < truth < iv["high"]
    assert not iv["low"] < truth + 0.1 < iv["high"]
    assert iv["se"] == pytest.approx(math.sqrt(0.5 / (n_conv * steps * D)), rel=0.3)


def test_bad_inputs_are_named(data):
    trajs, labels, tr, tr_labels = data
    with pytest.raises(ValueError, match="reference"):
        heldout_intervals({"a": true_ou()}, tr, tr_labels, trajs, labels, 1.0, reference="x")
    with pytest.raises(ValueError, match="trajectory_groups"):
        heldout_intervals({"a": true_ou()}, tr, tr_labels, trajs, labels + 1000, 1.0, reference="a")


def test_point_verdicts_compare_every_model_with_the_reference():
    ev = {
        "neural_sde": {"nll": 2.0, "energy_h4": 1.0, "energy_h16": None,
                       "coverage_0.5": 0.52, "coverage_0.9": 0.80},
        "linear_ou": {"nll": 2.5, "energy_h4": 0.5},
        "latent_sde": {"nll": 1.9, "energy_h4": 2.0},
    }  # fmt: skip
    table, calibration, h_last = point_verdicts(ev, [1, 4, 16])
    assert h_last == 4  # the last horizon with a value
    assert table.loc["linear_ou", "nll_gain"] == pytest.approx(0.5)
    assert table.loc["linear_ou", "energy_gain_h4"] == pytest.approx(-0.5)
    assert table.loc["linear_ou", "beats_on_nll"] and not table.loc["linear_ou", "beats_on_energy"]
    assert (
        not table.loc["latent_sde", "beats_on_nll"] and table.loc["latent_sde", "beats_on_energy"]
    )
    assert "neural_sde" not in table.index
    assert calibration["0.5"]["calibrated"] and not calibration["0.9"]["calibrated"]
