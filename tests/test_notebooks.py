"""Every notebook in notebooks/ runs through the runner on the quick profile.

Notebooks are discovered, so one added later is covered automatically; each must also
have a checker below that asserts on the numbers it recorded in reports/metrics/ (a
notebook without one fails here, on purpose). The run writes into a scratch
SDE_OUTPUT_ROOT so the committed default-profile reports are never touched; model
caches under data/interim are shared with the checkout.
"""

import json
import os
import subprocess
import sys

import pytest

from sde_utils.paths import NOTEBOOKS_DIR, PROJ_ROOT
from sde_utils.run import discover_notebooks

NOTEBOOKS = [nb.stem for nb in discover_notebooks(NOTEBOOKS_DIR)]

# notebook stem -> function(metrics: dict, parameters: dict) that asserts on the numbers
CHECKS = {}


def check(stem):
    def register(fn):
        CHECKS[stem] = fn
        return fn

    return register


@check("01-extract-embeddings")
def _(m, p):
    assert m["n_sequences"] == p["n_pairs"]
    assert m["dim"] == 576  # SmolLM2-135M's hidden size
    sizes = m["split_sizes"]
    assert sum(s["sequences"] for s in sizes.values()) == p["n_pairs"]
    assert sum(s["tokens"] for s in sizes.values()) == m["n_tokens"]
    assert sum(m["conversations_per_split"].values()) <= p["n_pairs"]
    lo, hi = p["min_response_tokens"], p["max_response_tokens"]
    assert lo <= m["length_median"] <= hi
    k = m["pca_components_for"]
    assert 1 <= k["0.5"] < k["0.9"] < k["0.99"] <= m["dim"]
    assert m["peak_rss_mb"] < 4096  # the memory budget for notebook 01


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    env = os.environ | {"SDE_OUTPUT_ROOT": str(out)}
    cmd = [sys.executable, "-m", "sde_utils.run", "--profile", "quick", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJ_ROOT, timeout=1800)
    summary = json.loads((out / "reports" / "run_summary.json").read_text())
    return proc, summary, out


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_notebook_runs_and_records_sane_numbers(stem, quick_run):
    proc, summary, out = quick_run
    statuses = {nb["notebook"]: nb for nb in summary["notebooks"]}
    assert statuses[stem]["status"] == "ok", (
        f"{stem}: {statuses[stem].get('error')}\n{proc.stderr[-3000:]}"
    )
    assert stem in CHECKS, f"add a checker for {stem} to tests/test_notebooks.py"
    record = json.loads((out / "reports" / "metrics" / f"{stem}.json").read_text())
    injected = statuses[stem]["parameters"]
    recorded = {k: record["parameters"].get(k) for k in injected}
    assert recorded == injected  # what the runner injected is what the notebook recorded
    CHECKS[stem](record["metrics"], record["parameters"])


@check("03-train-sde")
def _(m, p):
    ev = m["evaluation"]
    assert set(ev) == {"neural_sde", "random_walk", "linear_ou", "drift_only"}
    for name, row in ev.items():
        assert row["n_transitions"] > 0
        assert all(row[k] is not None for k in ("nll", "drift_mse", "drift_r2")), name
        assert 0.0 <= row["coverage_0.5"] <= row["coverage_0.9"] <= 1.0, name
    assert abs(ev["random_walk"]["drift_r2"]) < 0.05  # zero drift explains ~nothing
    assert ev["linear_ou"]["drift_r2"] > 0.1  # token states revert to their mean
    training = m["neural_sde_training"]
    assert training["best_val_total"] < training["first_val_total"]  # training helped
    assert m["state_dim"] == p["pca_dim"]
    # the verdicts are the table's numbers, not typed in
    for name, v in m["verdicts"].items():
        assert v["beats_on_nll"] == (ev[name]["nll"] > ev["neural_sde"]["nll"])
