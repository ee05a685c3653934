"""save_metrics: the record's shape, the run stamp, and non-finite values said out loud."""

import json
import math

import numpy as np

from sde_utils import paths
from sde_utils.io import to_jsonable
from sde_utils.pipeline.results import save_metrics


def test_record_holds_run_parameters_and_metrics_and_names_non_finite_values(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(paths, "METRICS_DIR", tmp_path)
    monkeypatch.setenv("SDE_RUN_PROFILE", "quick")
    monkeypatch.setenv("SDE_RUN_COMMIT", "abc123")
    out = save_metrics(
        "03-train-sde",
        {"nll": np.float64(2.5), "rho": {"low": math.nan, "high": np.inf}, "xs": [1.0, math.nan]},
        {"epochs": np.int64(3)},
    )
    assert out is None  # a notebook cell ending with save_metrics shows no path
    said = capsys.readouterr().out
    assert said.startswith("metrics saved: reports/metrics/03-train-sde.json")
    assert "3 value(s) not finite, recorded as null: /rho/low, /rho/high, /xs[1]" in said
    record = json.loads((tmp_path / "03-train-sde.json").read_text())
    assert record["run"] == {"profile": "quick", "git_commit": "abc123"}
    assert record["parameters"] == {"epochs": 3}
    assert record["metrics"] == {"nll": 2.5, "rho": {"low": None, "high": None}, "xs": [1.0, None]}


def test_finite_records_say_nothing_more(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "METRICS_DIR", tmp_path)
    save_metrics("01-x", {"n": 3, "ok": True}, {})
    assert capsys.readouterr().out.strip() == "metrics saved: reports/metrics/01-x.json"


def test_to_jsonable_can_keep_non_finite_values_for_inspection():
    value = {"a": np.array([1.0, np.nan]), "c": 1 + 2j}
    assert to_jsonable(value) == {"a": [1.0, None], "c": [1.0, 2.0]}
    kept = to_jsonable(value, keep_non_finite=True)
    assert math.isnan(kept["a"][1])
