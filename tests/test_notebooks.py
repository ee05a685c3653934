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

from sde_utils.models.fits import MODEL_NAMES
from sde_utils.paths import NOTEBOOKS_DIR, PROJ_ROOT
from sde_utils.pipeline.run import discover_notebooks

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
    cmd = [sys.executable, "-m", "sde_utils.pipeline.run", "--profile", "quick", "--no-progress"]
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
    names = {"neural_sde", "random_walk", "linear_ou", "drift_only", "linear_mlp_sigma"}
    assert set(ev) == names | {"multistep_sde", "latent_sde"}
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
    # conversation-bootstrap intervals: around the table's own numbers, for every metric
    iv = m["intervals"]
    assert set(iv["per_model"]) == set(ev) and iv["n_groups"] >= 2
    for name, per in iv["per_model"].items():
        assert {"nll", "drift_r2", "coverage_0.5", "coverage_0.9"} <= set(per), name
        assert any(key.startswith("energy_h") for key in per), name
        for key, x in per.items():
            assert x["low"] <= x["estimate"] <= x["high"], (name, key, x)
            # same numbers up to summation order (cdist's matrix-product rounding ~1e-10)
            assert abs(x["estimate"] - ev[name][key]) <= 1e-6 * (1 + abs(ev[name][key])), key
    assert set(iv["paired"]) == set(ev) - {"neural_sde"}
    for other, diffs in iv["paired"].items():
        for key, x in diffs.items():
            assert x["low"] <= x["estimate"] <= x["high"], (other, key, x)
            assert abs(x["estimate"] - (ev["neural_sde"][key] - ev[other][key])) <= 1e-6, key
    # the verdict is the intervals': beats all = every paired upper bound below 0
    vi = m["verdicts_intervals"]
    for name, v in vi["models"].items():
        pairs = iv["pairwise"][name]
        below = all(pairs[o][c]["high"] < 0 for o in pairs for c in vi["criteria"])
        assert v["beats_all"] == below, name
    assert vi["winners"] == [n for n, v in vi["models"].items() if v["beats_all"]]
    assert vi["baselines"] == ["random_walk", "linear_ou", "drift_only", "linear_mlp_sigma"]
    for name in set(ev) - set(vi["baselines"]):  # an SDE wins iff below every baseline
        pairs = iv["pairwise"][name]
        below = all(pairs[b][c]["high"] < 0 for b in vi["baselines"] for c in vi["criteria"])
        assert (name in vi["sde_winners"]) == below, name
    # the diagnosis: one-step Jacobian spectra of every model; a random walk's map is I
    spectra = m["jacobian_spectra"]
    assert set(spectra) == set(ev)
    assert abs(spectra["random_walk"]["radius_median"] - 1) < 1e-9
    for name, row in spectra.items():
        assert 0 <= row["radius_median"] <= row["radius_q90"], name
        assert row["radius_median"] <= row["norm_median"] + 1e-9, name  # radius <= norm
    assert 1 <= m["multistep_training"]["n_epochs"] <= p["multistep_epochs"]
    assert 1 <= m["latent_training"]["n_epochs"] <= p["latent_epochs"]
    # the observation-noise study: one latent SDE per noise, the fit's own among them
    noise = m["latent_noise"]["tradeoff"]
    variants = [f"latent_sde[s={f:g}]" for f in sorted(p["latent_obs_fracs"])]
    assert [n for n in noise if n.startswith("latent_sde[")] == variants
    own = f"latent_sde[s={p['latent_obs_frac']:g}]"
    if own in noise:
        assert abs(noise[own]["nll"] - ev["latent_sde"]["nll"]) <= 1e-6 * (
            1 + abs(ev["latent_sde"]["nll"])
        )
    for name, row in noise.items():
        for key in [k for k in row if not k.endswith(("_low", "_high"))]:
            assert row[f"{key}_low"] <= row[key] <= row[f"{key}_high"], (name, key)
    # every model's NLL of whole held-out windows, paired against the neural SDE
    seq = m["latent_noise"]["sequence"]
    assert set(ev) | set(variants) == set(seq["per_model"])
    assert set(seq["paired"]) == set(seq["per_model"]) - {"neural_sde"}
    for name, iv in seq["paired"].items():
        diff = seq["per_model"][name]["estimate"] - seq["per_model"]["neural_sde"]["estimate"]
        assert abs(iv["estimate"] - diff) <= 1e-9 and iv["low"] <= iv["estimate"] <= iv["high"]


@check("07-paper-figures")
def _(m, p):
    from sde_utils.captions import PAPER_FIGURES

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
    # App. B as the paper describes it: a Q->A model against two controls, ranks per step
    assert set(f7["controls"]) == {"Q→A, shuffled pairs", "response only"}
    assert len(f7["rank_drift"]) == 6 and min(f7["rank_drift"]) >= 1
    assert all(r >= 1 for r in f7["rank_roundtrip"])
    for row in f7["heldout_first_answer"]:
        assert row["low"] <= row["estimate"] <= row["high"], row
        if row["model"] == "Q→A, shuffled pairs":  # the reference of the paired differences
            assert row["diff"] == 0.0
    # rollouts read back as text, every number with its interval
    ro = m["rollouts"]["numbers"]
    scores = ro["scores"]
    assert {"real", "real, PCA round trip", "real, shuffled"} <= set(scores)
    assert ro["horizon"] == p["rollout_horizon"] and ro["n_responses"] <= p["rollout_starts"]
    for source, per in scores.items():
        for key, x in per.items():
            assert x["low"] <= x["estimate"] <= x["high"], (source, key)
            assert x["estimate"] <= 0 if key == "logprob" else 0 <= x["estimate"] <= 1
    assert scores["real"]["accuracy"]["estimate"] == 1.0  # the real text is itself
    # a permutation keeps the words, so distinct-1 cannot change; the order it breaks costs
    # log-probability (the control that shows the scorer reads order)
    assert scores["real, shuffled"]["distinct_1"]["estimate"] == pytest.approx(
        scores["real"]["distinct_1"]["estimate"]
    )
    assert scores["real"]["logprob"]["low"] > scores["real, shuffled"]["logprob"]["high"]
    assert m["rollouts"]["finding"]


MODELS = set(MODEL_NAMES)  # the model set notebook 03 fits; 04-06 must cover every one


def _le(a, b, rel=1e-9):
    """a <= b up to float rounding (an SVD-based lower bound and a norm-based upper bound of
    the same linear map differ in the last bits)."""
    return a <= b + rel * max(1.0, abs(b))


@check("04-lipschitz-growth")
def _(m, p):
    lip, growth, verdicts = m["lipschitz"], m["growth"], m["verdicts"]
    assert set(lip) == set(growth) == set(verdicts) == MODELS
    assert len(m["times"]) == p["n_times"] and m["n_states"] <= p["max_states"]
    for name, br in lip.items():
        for key in ("K_mu", "K_sigma", "K"):
            e = br[key]
            assert e["upper"] is not None, (name, key)  # every model here has a certificate
            assert 0.0 <= e["lower"] and _le(e["lower"], e["upper"]), (name, key, e)
        for key in ("K_mu", "K_sigma"):  # the search only adds to what the data gave
            assert _le(br[key]["lower_data"], br[key]["lower"]), (name, key)
        assert br["K"]["upper"] == pytest.approx(br["K_mu"]["upper"] + br["K_sigma"]["upper"])
        assert br["K"]["lower"] == pytest.approx(br["K_mu"]["lower"] + br["K_sigma"]["lower"])
        assert _le(max(br["K_mu"]["lower"], br["K_sigma"]["lower"]), br["K_min_lower"])
        assert _le(br["K_min_lower"], br["K"]["upper"])
        g = growth[name]
        assert len(g["sup_sphere"]) == len(p["growth_radii"])
        assert g["sup_data"] <= g["C_empirical"] and max(g["f0_sq"]) <= g["C_empirical"]
        assert _le(g["C_empirical"], g["C_certified"]) and _le(g["C_certified"], g["C_simple"])
        # certified for every t in [0, T], T the last grid time, not just at the grid times
        assert g["certified_for"] == f"all t in [0, {g['horizon']:g}]", (name, g["certified_for"])
        assert g["horizon"] == pytest.approx(max(m["times"]))
        assert _le(max(g["f0_sq"]), g["f0_sq_sup"]) and _le(g["f0_sq_sup"], g["C_certified"])
        v = verdicts[name]
        assert v["lipschitz_holds"] and v["linear_growth_holds"] and v["consistent"], name
        assert (v["K_lower"], v["K_upper"]) == (br["K"]["lower"], br["K"]["upper"])
    # structure: zero drift and constant sigma are exact zeros; a linear map is bracketed tightly
    assert lip["random_walk"]["K_mu"]["upper"] == 0.0 == lip["random_walk"]["K_sigma"]["upper"]
    assert lip["linear_ou"]["K_mu"]["ratio"] == pytest.approx(1.0, abs=1e-9)  # ||A||_2, both ways
    assert lip["drift_only"]["K_sigma"]["upper"] == 0.0
    for key in ("K_mu", "K_sigma"):
        e = lip["neural_sde"][key]
        assert e["upper_method"] == "combined" and 0.0 < e["lower"]
        assert _le(e["upper"], e["upper_bounds"]["naive"])  # never worse than the textbook bound
    # random walk: C = |sigma|^2 exactly, attained at x = 0
    rw = growth["random_walk"]
    assert rw["C_empirical"] == pytest.approx(rw["C_certified"], rel=1e-9)


@check("05-lyapunov-stability")
def _(m, p):
    def consistent(f):
        """One lv_bound_check result: d covers LV(x*), and pass / fail follows its criteria."""
        assert f["c"] > 0 and f["level"] == pytest.approx(f["d"] / f["c"])
        # x* is in the fit, so d >= LV(x*) by construction (up to float rounding)
        assert f["d"] >= f["LV_at_x_star"] - 1e-9 * abs(f["d"])
        assert len(f["EV"]) == len(f["bound"]) == len(f["t"])
        assert f["bound"][0] == pytest.approx(f["EV"][0])  # the bound starts at E V(0)
        assert f["n_fit"] > 0 and f["n_check"] > 0  # fitted on one part, checked on another
        for key in ("fraction_violating_check", "fraction_violating_sim"):
            assert 0.0 <= f[key] <= 1.0
        failed = (
            f["fraction_violating_check"] > f["max_violation"],
            f["fraction_violating_sim"] > f["max_violation"],
            not f["bound_holds"],
            not f["level_over_max_V_fit"] < 1.0,
        )
        assert f["passes"] == (not any(failed)) and len(f["failed"]) == sum(failed)

    models, verdicts = m["models"], m["verdicts"]
    assert set(models) == set(verdicts) == MODELS
    for name, r in models.items():
        v = verdicts[name]
        assert r["P_min_eigenvalue"] > 0, name  # V is positive definite, whatever its source
        assert r["P_source"] in ("lyapunov", "identity")
        if r["P_source"] == "lyapunov":
            assert r["hurwitz"] and r["lyapunov_residual"] < 1e-8, name
        assert v["hurwitz"] == (r["max_real_eigenvalue"] < 0)
        assert v["equilibrium_found"] == (r["n_converged"] > 0)
        if r["n_converged"]:
            assert r["best_residual"] <= p["residual_tol"]
        # LV(x*) = Tr(sigma^T P sigma) > 0 (sigma > 0 everywhere): LV <= 0 fails near x*
        assert r["LV_at_x_star"] > 0 and v["paper_condition_fails_near_x_star"]
        assert r["continuous"]["LV_at_x_star"] == pytest.approx(r["LV_at_x_star"])
        for form in ("continuous", "discrete"):
            f = r[form]
            for key in ("fraction_LV_nonpositive_data", "fraction_LV_nonpositive_sim"):
                assert 0.0 <= f[key] <= 1.0
            consistent(f)
            if p["quantile"] == 1.0:
                assert f["fraction_satisfied"] == 1.0  # on the fit states (and x*) only
        assert r["discrete"]["c"] * m["dt"] <= 1.0 + 1e-12  # the discrete bound needs c dt <= 1
        assert (v["passes_continuous"], v["passes_discrete"]) == (
            r["continuous"]["passes"],
            r["discrete"]["passes"],
        )
        assert (
            v["paper_fraction_LV_nonpositive_data"]
            == r["continuous"]["fraction_LV_nonpositive_data"]
        )
    lin = models["linear_ou"]
    assert lin["n_converged"] == 1 and lin["hurwitz"] and lin["P_source"] == "lyapunov"
    # a stable linear drift: LV <= -c V + d holds for every x once c <= 1 / max eig P, so the
    # check must pass where it was not fitted, in both forms (the check can pass)
    assert lin["continuous"]["passes"] and lin["discrete"]["passes"]
    rw = models["random_walk"]  # zero drift: singular Lyapunov equation, LV = Tr sigma^2 > 0
    assert rw["P_source"] == "identity" and not rw["hurwitz"]
    assert rw["continuous"]["fraction_LV_nonpositive_data"] == 0.0
    # the controls the check must fail: the random walk (E V grows without bound; any level
    # covering the fit states exceeds their largest V) and linear_ou made unstable
    for form in ("continuous", "discrete"):
        assert not rw[form]["passes"] and rw[form]["level_over_max_V_fit"] >= 1.0
    un = m["controls"]["unstable_linear"]
    assert un["max_real_eigenvalue"] == pytest.approx(p["unstable_rate"], rel=1e-6)
    assert not un["hurwitz"] and not un["verdict"]["hurwitz"]
    for form in ("continuous", "discrete"):
        consistent(un[form])
        assert not un[form]["passes"] and not un[form]["bound_holds"], form


@check("06-moments-picard")
def _(m, p):
    lin = m["linear"]
    # the ODEs agree with continuous-time Monte Carlo (Bonferroni-corrected 3 SE)
    assert lin["continuous"]["all"]["agree"]
    assert lin["continuous"]["all"]["fraction_within_3se"] >= 0.98
    assert lin["token_vs_euler_chain"]["agree"]  # the exact Euler-chain moments hold per token
    assert ("Euler chain" in lin["matching_forms"]) == lin["token_vs_euler_chain"]["agree"]
    assert ("continuous ODEs" in lin["matching_forms"]) == lin["token_vs_odes"]["agree"]
    assert lin["discretisation_bias_max_z"] < 2.0  # the small step's own bias is below the MC error
    assert set(m["one_step"]) == set(m["recursion"]) == set(m["picard"]) == MODELS
    for name, o in m["one_step"].items():
        assert all(t >= 0 for t in o["dt2_term"]), name
        assert o["sim_euler"]["agree"], name  # the Euler one-step identity is exact
    assert max(m["one_step"]["random_walk"]["dt2_term"]) == 0.0  # no drift, no dt^2 term
    for name, r in m["recursion"].items():
        tok = r["token"]
        assert len(tok["max_abs_z_euler"]) == p["n_moments"]
        # the exact Euler-step expectation holds: pure Monte Carlo noise. Not the Bonferroni
        # flag: per-path X^4 is heavy-tailed, so its SE (and z) fluctuates more than normal;
        # 5 SE is a generous bound for that
        assert tok["euler"]["max_abs_z"] < 5.0, name
        # n = 1: the two forms coincide (n E[mu])
        assert tok["max_abs_z_ito"][0] == pytest.approx(tok["max_abs_z_euler"][0])
        assert all(g is None or g > 1.0 for g in r["gap_shrink"]), name  # Ito gap is O(dt)
        if name != "random_walk":  # n = 2: the Ito form misses E[mu^2] dt, the Euler form not
            assert tok["max_abs_z_ito"][1] > max(5.0, tok["max_abs_z_euler"][1]), name
    for name, pc in m["picard"].items():
        assert pc["bound_holds"], name
        assert len(pc["sup_diff"]) == pc["n_steps"] + 1 == p["picard_steps"] + 1
        # Picard reaches the Euler-Maruyama path: exact after n_steps iterations at most
        assert pc["converged"] and pc["iterations_to_em"] <= pc["n_steps"]
        assert pc["sup_diff"][-1] <= 1e-9 * (1.0 + max(pc["sup_diff"]))
        assert pc["dist_to_em"][-1] == pc["final_distance"]
    assert m["picard"]["random_walk"]["iterations_to_em"] == 1  # no drift, constant sigma
    v = m["verdicts"]
    assert v["linear_moment_odes_match_continuous_monte_carlo"] == lin["continuous"]["all"]["agree"]
    assert v["picard_converges_to_em"] == {n: pc["converged"] for n, pc in m["picard"].items()}


@check("08-diffusion-vs-uncertainty")
def _(m, p):
    import math

    from sde_utils.analysis.verdicts import INSUFFICIENT, verdict

    def num(v):  # save_metrics writes NaN as null
        return math.nan if v is None else float(v)

    def interval_ok(iv, lo=-math.inf, hi=math.inf):
        est, low, high = (num(iv[k]) for k in ("estimate", "low", "high"))
        if math.isnan(low) or math.isnan(high):
            assert math.isnan(low) and math.isnan(high) and iv["reason"], iv  # says why
        else:
            assert lo <= low <= high <= hi, iv
            assert not math.isnan(est), iv  # an interval always comes with its estimate
        if not math.isnan(est):
            assert lo <= est <= hi, iv
        # (a percentile interval need not contain its estimate, so that is not asserted)

    def rows_ok(rows, nonnegative=True):
        for r in rows:
            assert r["n"] > 0 and r["n_groups"] >= 1
            if nonnegative:  # squared errors, |sigma|^2, squared increments
                assert r["mean"] >= 0
            if r["low"] is not None:
                assert r["low"] <= r["high"]

    temps = m["temperatures"]
    assert m["n_tokens"] > 0 and m["n_conversations"] >= 1 and len(temps) >= 1
    assert m["n_folds"] == p["n_folds"] == len(m["fits_08"])
    tested = [r for r in m["folds"] if r["split"] == "test"]  # every prompt held out once
    assert sorted(r["fold"] for r in tested) == list(range(p["n_folds"]))
    assert sum(r["prompts"] for r in tested) == m["n_conversations"]
    partials = {"spearman", "partial_position", "partial_temperature"}
    for results in m["correlations"].values():
        assert set(results) == partials | {"partial_position_temperature"}
        for iv in results.values():
            interval_ok(iv, -1.0, 1.0)
            assert iv["n"] == m["n_tokens"]
    assert set(m["sigma_entropy_by_temperature"]) == set(m["correlations"])
    for per_temp in m["sigma_entropy_by_temperature"].values():
        assert sorted(float(t) for t in per_temp) == temps
        assert sum(r["spearman"]["n"] for r in per_temp.values()) == m["n_tokens"]
        for res in per_temp.values():
            for iv in res.values():
                interval_ok(iv, -1.0, 1.0)

    temp = m["temperature"]
    for name in ("sigma", "increment", "increment_model_space", "fitted"):
        interval_ok(temp[name]["slope"])
        rows_ok(temp[name]["by_temperature"])
    for name in ("sigma", "increment", "increment_model_space"):
        assert [r["level"] for r in temp[name]["by_temperature"]] == temps
        assert sum(r["n"] for r in temp[name]["by_temperature"]) == m["n_tokens"]
    fitted = temp["fitted"]
    n_seeds = len(p["temperature_fit_seeds"])
    assert fitted["n_fits"] + len(fitted["skipped"]) == len(temps) * n_seeds
    assert all(v > 0 for v in fitted["random_walk_sigma2"].values())
    if n_seeds < 2:  # one fit per temperature: no interval that includes fitting noise
        assert fitted["slope"]["low"] is None

    first = m["first_step"]
    assert first["dims"] == p["kl_dims"] and first["n_groups"] >= 0
    if first["n_groups"]:
        assert MODELS <= set(first["by_model"])  # every model of 03's set (more may join)
    for res in first["by_model"].values():
        assert res["n_groups"] + res["n_degenerate"] == first["n_groups"]
        for stat in ("kl_gauss_diag", "energy"):
            interval_ok(res[stat]["excess"])
            if res["n_groups"]:
                assert 0.0 <= res[stat]["share_p05"] <= 1.0
        if res["n_groups"]:
            assert res["kl_gauss_diag"]["mean"] >= 0 and res["kl_gauss_diag"]["null_mean"] >= 0

    comp = m["complexity"]
    assert comp["measure"] == p["complexity_measure"]
    assert comp["n_responses"] > 0 and comp["n_test_transitions"] > 0
    interval_ok(comp["slope"])
    rows_ok(comp["by_position"])
    rows_ok(comp["by_complexity"])
    assert sum(r["n"] for r in comp["by_position"]) == comp["n_test_transitions"]
    assert sum(r["n"] for r in comp["by_complexity"]) <= comp["n_responses"]

    hz = m["horizons"]
    interval_ok(hz["slope"])
    for name in ("neural_sde", "random_walk"):
        rows = hz[f"{name}_by_horizon"]
        rows_ok(rows)
        levels = [r["level"] for r in rows]
        assert levels == sorted(levels) and set(levels) <= set(p["horizons"])

    losses = m["losses"]
    interval_ok(losses["drop"])
    drop = losses["test_total_before"] - losses["test_total_after"]
    assert math.isclose(losses["drop"]["estimate"], drop, rel_tol=1e-9, abs_tol=1e-9)
    assert losses["val_total_best"] <= losses["val_total_first_epoch"]  # a min includes epoch 1
    assert 1 <= losses["best_epoch"] <= losses["epochs"]

    rows = m["verdicts"]
    n_t = len(temps)
    sections = ["4.2.1", "4.2.2", "4.2.2"] + ["4.2.3"] * (4 + n_t) + ["beyond"] * 2
    assert [r["section"] for r in rows] == sections
    for row in rows:
        low, high = num(row["low"]), num(row["high"])
        if math.isnan(low) or math.isnan(high):
            assert row["verdict"] == INSUFFICIENT, row
        else:
            want = verdict((low, high), threshold=row["threshold"], direction=row["direction"])
            assert row["verdict"] == want, row
    # each verdict rests on the interval recorded above
    rho = m["correlations"]["sigma2~entropy_next"]
    sources = [
        losses["drop"],
        hz["slope"],
        comp["slope"],
        rho["spearman"],
        *(r["spearman"] for r in m["sigma_entropy_by_temperature"]["sigma2~entropy_next"].values()),
        rho["partial_temperature"],
        rho["partial_position_temperature"],
        m["correlations"]["sigma2~surprisal_next"]["partial_position_temperature"],
        temp["sigma"]["slope"],
        fitted["slope"],
    ]
    for row, iv in zip(rows, sources, strict=True):
        assert (row["estimate"], row["low"], row["high"]) == (
            iv["estimate"],
            iv["low"],
            iv["high"],
        )


@check("09-layer-sweep")
def _(m, p):
    llms = p["llms"]
    assert m["llms"] == llms and m["n_pairs"] == p["n_pairs"]
    records = m["records"]
    assert len(records) == len(llms) * p["n_depths"]  # the depths are distinct for both LLMs
    for llm in llms:
        mine = [r for r in records if r["llm"] == llm]
        assert [r["kind"] for r in mine][0] == "input" and mine[-1]["kind"] == "hidden"
        assert [r["depth"] for r in mine] == sorted(r["depth"] for r in mine)
        assert mine[0]["depth"] == 0.0 and mine[-1]["depth"] == 1.0
    for r in records:
        assert r["beats_all"] in (True, False) and r["best_baseline"] in r["models"]
        assert "neural_sde" in r["models"] and len(r["models"]) >= 5  # notebook 03's model set
        for key, iv in r["metrics"].items():
            if iv["estimate"] is not None and iv["low"] is not None:
                assert iv["low"] <= iv["estimate"] + 1e-9 and iv["estimate"] <= iv["high"] + 1e-9, (
                    key
                )
        assert 0 < r["metrics"]["pca_variance"]["estimate"] <= 1
        for level in ("0.5", "0.9"):
            assert 0 <= r["metrics"][f"coverage_{level}"]["estimate"] <= 1
    v = m["verdict"]
    winners = {llm: [x["kind"] for x in v["per_llm"].get(llm, [])] for llm in llms}
    # the verdict is computed from the records it sits beside
    assert winners == {
        llm: [r["kind"] for r in records if r["llm"] == llm and r["beats_all"]] for llm in llms
    }
    assert v["any"] == any(r["beats_all"] for r in records)
    assert m["findings"] and v["text"] in m["findings"][0]


# ----------------------------------------------------------------------------- reading


NOISE = (
    "TqdmWarning",
    "IProgress not found",
    "Loading weights",
    "Writing model shards",
    "dequantiz",
    "Kernel is running over TCP",
)


def _outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            yield cell, cell.get("outputs", [])


def _text(output):
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    return "".join(data.get("text/plain", "")) if isinstance(data, dict) else ""


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_executed_notebook_shows_every_figure_and_no_noise(stem, quick_run):
    _, _, out = quick_run
    executed = out / "reports" / "notebooks" / f"{stem}.ipynb"
    images, shows, problems = 0, 0, []
    for cell, outputs in _outputs(executed):
        source = "".join(cell["source"])
        shows += source.count("show(")
        images += sum("image/png" in o.get("data", {}) for o in outputs)
        for o in outputs:
            text = _text(o)
            if "PosixPath(" in text:
                problems.append(f"a path shown instead of a figure: {text[:80]}")
            problems += [f"noise {n!r}: {text[:120]}" for n in NOISE if n in text]
            for root in {str(out), str(PROJ_ROOT)}:
                if root in text:
                    problems.append(f"machine path {root} in an output: {text[:120]}")
    # every show(...) call displays its figure inline (a call may sit in a loop: >=)
    assert images >= shows, f"{stem}: {shows} show() calls but {images} inline images"
    assert not problems, "\n".join(problems[:10])
