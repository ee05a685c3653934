"""Tests for sde_utils.theory.lipschitz_summary: notebook 04's tables, verdicts and metrics
on a certified linear model and an uncertified one (float64, fixed seeds)."""

import json

import numpy as np
import pytest
from toy_models import SineModel, ToyLinear

from sde_utils.theory import linear_growth, lipschitz_bracket, to_jsonable
from sde_utils.theory.lipschitz_summary import (
    BRACKET_METRIC_KEYS,
    GROWTH_METRIC_KEYS,
    bracket_details,
    bracket_summary,
    growth_metrics,
    growth_table,
    lipschitz_metrics,
    lipschitz_verdicts,
)

A = np.array([[-1.0, 0.4], [0.0, -0.5]])


@pytest.fixture(scope="module")
def results():
    models = {"linear": ToyLinear(A, [0.1, 0.2], [0.3, 0.4]), "sine": SineModel()}
    states = np.random.default_rng(0).normal(size=(30, 2))
    kw = dict(n_explore=8, n_ascent=2, progress=False)
    brackets = {n: lipschitz_bracket(m, states, [0.0, 1.0], **kw) for n, m in models.items()}
    growth = {
        n: linear_growth(
            m, states, [0.0, 1.0], [1.0, 4.0], n_directions=8,
            K_mu=brackets[n]["K_mu"]["upper"], K_sigma=brackets[n]["K_sigma"]["upper"],
        )
        for n, m in models.items()
    }  # fmt: skip
    return brackets, growth


def test_bracket_tables(results):
    brackets, _ = results
    table = bracket_summary(brackets)
    assert list(table.columns) == ["lower", "upper", "ratio", "method", "K_min_lower"]
    assert table.loc[("linear", "K"), "K_min_lower"] == brackets["linear"]["K_min_lower"]
    assert np.isnan(table.loc[("linear", "K_mu"), "K_min_lower"])  # only K has one
    details = bracket_details(brackets)
    assert len(details) == 4  # K_mu and K_sigma of two models
    row = details.loc[("linear", "K_mu")]
    assert row["method"] == "spectral_norm_A"
    assert row["upper (used)"] == pytest.approx(np.linalg.norm(A, 2), rel=1e-12)  # SVD rounding
    assert np.isnan(row["naive"])  # the chain bounds exist only for MLPs
    assert np.isnan(details.loc[("sine", "K_mu"), "upper (used)"])  # uncertified


def test_growth_table_and_verdicts(results):
    brackets, growth = results
    table = growth_table(growth)
    assert list(table.index) == ["linear", "sine"]
    assert table.loc["linear", "C_certified"] == growth["linear"]["C_certified"]
    verdicts, lines = lipschitz_verdicts(brackets, growth, max_radius=4.0)
    assert verdicts["linear"]["lipschitz_holds"] and verdicts["linear"]["linear_growth_holds"]
    assert verdicts["linear"]["consistent"]
    # sin has no certified constant: neither condition is certified, and the text says so
    assert not verdicts["sine"]["lipschitz_holds"] and verdicts["sine"]["K_upper"] is None
    assert not verdicts["sine"]["linear_growth_holds"]
    assert len(lines) == 4 and "not certified" in lines[2] and "K in [" in lines[2]
    assert "r = 4" in lines[1]


def test_metrics_keep_the_recorded_keys_and_are_json_ready(results):
    brackets, growth = results
    lip = lipschitz_metrics(brackets)
    assert set(lip["linear"]) == {"K_mu", "K_sigma", "K", "K_min_lower"}
    assert set(lip["linear"]["K_mu"]) == set(BRACKET_METRIC_KEYS)
    assert set(lip["linear"]["K"]) == {"lower", "upper", "ratio"}  # K has only these
    assert set(growth_metrics(growth)["sine"]) == set(GROWTH_METRIC_KEYS)
    json.dumps(to_jsonable({"lipschitz": lip, "growth": growth_metrics(growth)}))
