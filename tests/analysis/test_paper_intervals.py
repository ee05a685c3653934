"""Conversation-bootstrap intervals of figure 2-4 numbers: estimates equal the figures'
own numbers, and a conversation counts once however many responses it holds."""

import numpy as np
import pytest
import torch

from sde_utils.analysis import paper_intervals as pi
from sde_utils.analysis.paper_figures import trajectory_agreement
from sde_utils.models.baselines import LinearSDE
from sde_utils.models.simulate import drift_path

KEYS = ("skill_step1", "skill_early", "skill_late", "corr_early", "corr_late")


def _model(d=3):
    model = LinearSDE(d).double()
    model.A.copy_(-0.4 * torch.eye(d, dtype=torch.float64))
    return model


def _paths(model, actual, horizon):
    start = torch.as_tensor(actual[:, 0])
    return drift_path(model, start, horizon, dt=1.0).double().numpy().transpose(1, 0, 2)


def test_estimates_are_the_agreement_tables_numbers():
    rng = np.random.default_rng(0)
    actual = rng.normal(size=(12, 7, 3))  # 12 responses, horizon 6
    model = _model()
    iv = pi.agreement_intervals(_paths(model, actual, 6), actual, None, n_boot=200)
    table = trajectory_agreement(model, list(actual), horizon=6, dt=1.0)
    # float64 sums in another order: agreement to 1e-12 on O(1) numbers
    assert iv["skill_step1"]["estimate"] == pytest.approx(table["skill_vs_mean"][1], abs=1e-12)
    assert iv["skill_early"]["estimate"] == pytest.approx(table["skill_vs_mean"][1:4].mean())
    assert iv["skill_late"]["estimate"] == pytest.approx(table["skill_vs_mean"][4:7].mean())
    assert iv["corr_early"]["estimate"] == pytest.approx(table["corr_drift"][1:4].mean())
    for key in KEYS:  # noisy data: a proper interval around the estimate
        assert iv[key]["low"] < iv[key]["estimate"] < iv[key]["high"], key


def test_a_conversation_counts_once_however_many_responses():
    rng = np.random.default_rng(1)
    actual = rng.normal(size=(8, 5, 3))
    model = _model()
    pred = _paths(model, actual, 4)
    alone = pi.agreement_intervals(pred, actual, np.arange(8), n_boot=300, seed=4)
    # every response twice, both copies in one conversation: each replicate draws the same
    # conversations with the same counts, so every ratio (and interval) is unchanged
    twice = pi.agreement_intervals(
        np.repeat(pred, 2, 0),
        np.repeat(actual, 2, 0),
        np.repeat(np.arange(8), 2),
        n_boot=300,
        seed=4,
    )
    for key in KEYS:
        for bound in ("estimate", "low", "high"):
            assert twice[key][bound] == pytest.approx(alone[key][bound], abs=1e-12), key
    # control: the copies as separate conversations look like more data: narrower
    naive = pi.agreement_intervals(
        np.repeat(pred, 2, 0), np.repeat(actual, 2, 0), np.arange(16), n_boot=300, seed=4
    )
    width = [alone[k]["high"] - alone[k]["low"] for k in KEYS]
    narrow = [naive[k]["high"] - naive[k]["low"] for k in KEYS]
    assert np.mean(narrow) < 0.9 * np.mean(width)


def test_groups_checks_and_text():
    assert pi.response_groups(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="one label per"):
        pi.response_groups(["a"], 3)
    assert pi.row_groups(["a", "b"], [2, 1]).tolist() == ["a", "a", "b"]
    one = pi.agreement_intervals(np.zeros((2, 3, 2)), np.ones((2, 3, 2)), ["c", "c"])
    assert np.isnan(one["skill_step1"]["low"]) and "conversation" in one["skill_step1"]["reason"]
    text = pi.closing_sentence(
        {"a": {"estimate": 0.5, "low": 0.25, "high": 0.75}}, (({"a": "share"}, ".0%"),)
    )
    assert text == " 95% conversation-bootstrap intervals: share 50% [25%, 75%]."
