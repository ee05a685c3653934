"""Tests for sde_utils.theory.picard_summary on a linear SDE (float64, fixed seeds): the
iteration reaches the Euler–Maruyama path after n_steps iterations and stays below its
pathwise bound."""

import json

import numpy as np
import pytest
from toy_models import SineModel, linear_sde

from sde_utils.theory import euler_maruyama_path, to_jsonable
from sde_utils.theory.picard_summary import (
    PICARD_METRIC_KEYS,
    picard_check,
    picard_lines,
    picard_metrics,
    picard_table,
)

A = np.array([[-1.0, 0.3], [-0.2, -0.7]])


def test_picard_check_on_a_linear_sde():
    model = linear_sde(A, [0.5, -1.0], [0.6, 0.4])
    dw = np.random.default_rng(0).normal(size=(6, 2)) * np.sqrt(0.5)
    pc = picard_check(model, [1.0, -0.5], dw, 0.5)
    em = euler_maruyama_path(model, [1.0, -0.5], dw, 0.5)
    np.testing.assert_allclose(pc["em_path"], em, rtol=1e-15)  # the same float64 recursion
    assert pc["K_mu"] == pytest.approx(np.linalg.norm(A, 2), rel=1e-12) and pc["K_sigma"] == 0.0
    assert pc["bound_holds"] and pc["converged"]
    # X^(m)_k = Y_k for k <= m: the iteration reaches the EM path by iteration n_steps
    assert pc["iterations_to_em"] is not None and pc["iterations_to_em"] <= 6
    table = picard_table({"ou": pc})
    assert table.loc["ou", "diffs below bound"] and table.loc["ou", "Σ w"] == pc["weights_sum"]
    assert "every difference below its bound: True" in picard_lines({"ou": pc})[0]
    metrics = picard_metrics({"ou": pc})
    assert set(metrics["ou"]) == set(PICARD_METRIC_KEYS)
    json.dumps(to_jsonable(metrics))


def test_an_uncertified_model_is_refused():
    with pytest.raises(ValueError, match="no certified K_mu"):
        picard_check(SineModel(), [0.1, 0.2], np.zeros((3, 2)), 0.1)
