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


@check("02-sample-trajectories")
def _(m, p):
    assert m["n_sequences"] == p["n_prompts"] * p["k"] * len(p["temperatures"])
    assert m["dim"] == 576
    temps = [f"{t:g}" for t in p["temperatures"]]
    assert sorted(m["entropy_by_temperature"]) == sorted(temps)
    for t in temps:
        assert 0 <= m["entropy_by_temperature"][t] <= 10.81  # log(49152): the vocabulary
        assert 1 <= m["mean_length_by_temperature"][t] <= p["max_new_tokens"]
    # flatter distributions at higher temperature: a property of softmax(logits / T)
    assert m["entropy_rises_with_temperature"]


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


@check("07-paper-figures")
def _(m, p):
    from sde_utils.figures import PAPER_FIGURES

    figs = m["figures"]
    assert list(figs) == list(PAPER_FIGURES)  # all seven, in the paper's order
    for stem, rec in figs.items():
        assert rec["caption"] == PAPER_FIGURES[stem].caption and rec["finding"], stem
    f1 = figs["fig1-losses"]["numbers"]
    assert f1["best_val_total"] <= min(f1["first_val_total"], f1["last_val_total"])
    assert 0 <= f1["val_rises"] <= f1["epochs"] - 1
    f2 = figs["fig2-actual-vs-predicted"]["numbers"]
    assert f2["n_responses"] >= 1 and 1 <= f2["horizon"] <= p["horizon"]
    assert -1 <= f2["corr_early"] <= 1 and -1 <= f2["corr_late"] <= 1
    assert 0 < f2["skill_step1"] <= 1  # one drift step beats the mean (03: drift R2 > 0)
    f3 = figs["fig3-trajectories-words"]["numbers"]
    assert f3["n_steps"] > 0
    for key in ("closer_than_current", "closer_than_mean", "decoded_is_next_token"):
        assert 0 <= f3[key] <= 1, key
    assert 0 < f3["roundtrip_is_next_token"] <= 1  # the PCA keeps some tokens apart
    assert 0 <= f3["example_decoded_hits"] <= f3["example_steps"] <= p["words_shown"] - 1
    f4 = figs["fig4-drift-diffusion"]["numbers"]
    assert f4["n_states"] > 0 and 0 <= f4["toward_mean_share"] <= 1
    assert 0 < f4["sigma_min"] <= f4["sigma_first5_mean"] <= f4["sigma_max"]
    assert -1 <= f4["sigma_position_spearman"] <= 1
    f5 = figs["fig5-drift-pairs-uncertainty"]["numbers"]
    assert len(f5["mean_speed_by_pair"]) == min(3, m["state_dim"] // 2)
    assert f5["strongest_pair"] in f5["mean_speed_by_pair"]
    shares = f5["log_sigma_share_between_pcs"], f5["log_sigma_share_between_tokens"]
    assert min(shares) >= 0 and sum(shares) <= 1 + 1e-9  # two-way split of one variance
    assert f5["token_sigma_ratio"] >= 1
    f6 = figs["fig6-importance-attention"]["numbers"]
    assert f6["n_tokens"] >= 1 and 0 < f6["norm_min"] <= f6["norm_max"]
    assert 0 < f6["attention_within_response"] <= 1 + 1e-5  # float32 softmax rows
    f7 = figs["fig7-capital-of-france"]["numbers"]
    assert f7["n_steps"] == p["app_b_steps"] and f7["top_k"] == p["top_k"]
    assert f7["answer_words"] == ["capital", "france", "is", "of", "paris", "the"]
    assert 0 <= f7["roundtrip_hits"] <= f7["n_answer_tokens"] == 6
    assert f7["n_step_hits"] == len(f7["step_hits"]) and 0 <= f7["drift_overlap"] <= 1
    # the verdict follows the numbers
    answered = f7["n_step_hits"] == min(f7["n_steps"], f7["n_answer_tokens"])
    assert figs["fig7-capital-of-france"]["finding"].startswith("Yes" if answered else "No")
