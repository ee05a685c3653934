"""The layer sweep (notebook 09): where along two LLMs' depth does the SDE lens hold?

For each LLM and each state kind (one trajectory store per kind, built by
:func:`sde_utils.extraction.layers.extract_layers` from the same pairs), notebook 03's
models are fitted with one fixed budget (:func:`sde_utils.models.fits.fit_all`, every
model it returns) and evaluated on the held-out conversations. :func:`evaluate_depth`
turns one fit into one record of the sweep; every number is an interval dict of
:mod:`sde_utils.analysis.heldout` (95% conversation bootstrap):

* ``nll_gap``: one-step NLL of the neural SDE **minus** that of the best baseline (of
  :data:`~sde_utils.models.fits.BASELINE_NAMES`, the one with the lowest held-out NLL
  estimate; the multi-step and latent SDEs are SDEs, not baselines), a paired interval
  (negative: the neural SDE is better);
* ``drift_r2``, ``energy_h<k>`` (k in ``horizons``), ``coverage_0.5``, ``coverage_0.9``:
  the neural SDE's held-out values;
* ``energy_gap_h<k>``: the neural SDE's energy distance minus the best baseline's at k
  (best by that horizon's estimate);
* ``pca_variance``: the share of the held-out states' standardised variance (around the
  training mean) that the ``pca_dim`` training components keep, bootstrapped over the
  same conversations (per-conversation sums, a ratio of weighted sums).

``beats_all``: does the neural SDE beat **every** baseline on one-step NLL and on the
energy distance at ``verdict_horizon`` (16, or the longest horizon evaluated when the
responses are shorter), with each paired interval (neural SDE minus baseline) entirely
below zero (:func:`sde_utils.analysis.heldout.intervals_verdict`)? ``sde_winners``: every
SDE of the model set that does. :func:`sweep_verdict` lists the depths where they do, per
LLM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sde_utils.analysis.heldout import (
    heldout_intervals,
    heldout_trajectories,
    heldout_transitions,
    intervals_verdict,
)
from sde_utils.analysis.intervals import as_interval
from sde_utils.analysis.stats import GroupIndex, bootstrap_settings, interval_summary
from sde_utils.extraction.layers import (
    check_store_llm,
    depth_kinds,
    extract_layers,
    relative_depth,
)
from sde_utils.extraction.store import load_store
from sde_utils.models.fits import BASELINE_NAMES, fit_all

__all__ = [
    "REFERENCE",
    "SHOWN",
    "pca_variance_interval",
    "evaluate_depth",
    "sweep_llm",
    "sweep_table",
    "sweep_verdict",
]

REFERENCE = "neural_sde"
SHOWN = ("nll_gap", "drift_r2", "energy_h1", "energy_h4", "energy_h16")
"""Metrics of the sweep's main figure (the others are in the table and the metrics)."""


def pca_variance_interval(
    features, states, groups, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Held-out share of standardised variance kept by ``features``' PCA, with an interval.

    ``states (n, d)``: held-out states in model space; ``groups (n,)``: their conversation.
    ``s = (x - mean) / scale - pca_mean`` (standardised, centred on the training data);
    kept ``= sum ||C s||^2 / sum ||s||^2`` over the (resampled) conversations, ``C`` the
    kept components (all of them, i.e. 1, for ``pca_dim=None``).
    """
    level, n_boot, rng = bootstrap_settings(level, n_boot, seed)
    x = np.asarray(states, dtype=np.float64)
    s = (x - features.mean_) / features.scale_ - features.pca_mean_
    total = (s**2).sum(1)
    kept = total if features.components_ is None else ((s @ features.components_.T) ** 2).sum(1)
    grp = GroupIndex(groups, x.shape[0])
    w = np.vstack([np.ones(grp.n_groups), grp.counts(grp.draws(n_boot, rng))])
    kept_g = np.bincount(grp.inv, weights=kept, minlength=grp.n_groups)
    total_g = np.bincount(grp.inv, weights=total, minlength=grp.n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (w @ kept_g) / (w @ total_g)
    return as_interval(interval_summary(ratio[0], ratio[1:], level, grp.n_groups, x.shape[0]))


def _best_other(per_model: Mapping, metric: str, among: Sequence[str]) -> str | None:
    scores = {
        name: per[metric]["estimate"]
        for name, per in per_model.items()
        if name in among and metric in per and np.isfinite(per[metric]["estimate"])
    }
    return min(scores, key=scores.get) if scores else None


def evaluate_depth(
    store,
    fitted,
    *,
    llm: str,
    kind: str,
    depth: float,
    dt: float,
    max_len,
    horizons: Sequence[int],
    n_paths: int,
    n_eval_trajectories: int,
    seed: int,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """One record of the sweep (module docstring) for the fit ``fitted`` of ``store``.

    ``fitted``: :func:`~sde_utils.models.fits.fit_all`'s result on ``store`` (its models
    are all compared); the other arguments are the fit's (the same choice of held-out
    trajectories and simulated paths as its evaluation). Returns a JSON-able dict with
    ``llm, kind, depth, store, fit, best_baseline, verdict_horizon, beats_all,
    metrics {name: interval}``, ``sde_winners`` and ``largest_upper`` (per criterion, the
    largest upper bound of the neural SDE's paired intervals against the baselines).
    """
    transitions, tr_groups = heldout_transitions(store, fitted.features, dt, max_len)
    trajs, traj_groups = heldout_trajectories(store, fitted.features, n_eval_trajectories, seed)
    kw = dict(horizons=horizons, n_paths=n_paths, seed=seed, n_boot=n_boot, boot_seed=seed)
    iv = heldout_intervals(
        fitted.models, transitions, tr_groups, trajs, traj_groups, dt, reference=REFERENCE, **kw
    )
    per, paired = iv["per_model"], iv["paired"]
    mine = per[REFERENCE]
    reached = [k for k in sorted(set(horizons)) if f"energy_h{k}" in mine and k <= 16]
    h = 16 if 16 in reached else (max(reached) if reached else None)
    baselines = [name for name in BASELINE_NAMES if name in per]
    best = _best_other(per, "nll", baselines)
    metrics = {"nll_gap": paired[best]["nll"]} if best else {}
    for key in ("drift_r2", "coverage_0.5", "coverage_0.9"):
        metrics[key] = mine[key]
    for k in sorted(set(horizons)):
        key = f"energy_h{k}"
        if key in mine:
            metrics[key] = mine[key]
            other = _best_other(per, key, baselines)
            if other is not None:
                metrics[f"energy_gap_h{k}"] = paired[other][key]
    test = store.split("test")
    metrics["pca_variance"] = pca_variance_interval(
        fitted.features,
        test.states(),
        np.repeat(test.sequences["conv_id"].to_numpy(), test.sequences["length"].to_numpy()),
        n_boot=n_boot,
        seed=seed,
    )
    criteria = ["nll"] + ([f"energy_h{h}"] if h is not None else [])
    against = intervals_verdict(iv, criteria, baselines)
    verdict = against["against_baselines"][REFERENCE]
    return {
        "llm": llm,
        "kind": kind,
        "depth": float(depth),
        "store": store.path.name,
        "fit": fitted.path.name,
        "models": list(fitted.models),
        "best_baseline": best,
        "verdict_horizon": h,
        "criteria": criteria,
        "beats_all": bool(verdict["beats_all"] and h is not None),
        "sde_winners": against["sde_winners"] if h is not None else [],
        "largest_upper": {c: max(verdict[c].values()) for c in criteria if verdict[c]},
        "metrics": metrics,
        "n_groups": iv["n_groups"],
    }


def sweep_llm(
    model,
    tokenizer,
    *,
    llm: str,
    pairs,
    splits,
    n_depths: int,
    store_params: Mapping[str, Any],
    fit_params: Mapping[str, Any],
    n_boot: int = 1000,
    batch_size: int = 8,
    store_root=None,
    fit_root=None,
) -> list[dict[str, Any]]:
    """The sweep of one LLM: :func:`~sde_utils.extraction.layers.depth_kinds` (``n_depths``
    kinds from the input embedding to the final state), one store per kind from one
    forward pass per batch, :func:`~sde_utils.models.fits.fit_all` with ``fit_params`` on
    each (stores and fits with the same parameters are reused), and
    :func:`evaluate_depth` of each. Returns the records, shallowest first."""
    kinds = depth_kinds(model, n_depths)
    stores = extract_layers(
        pairs,
        splits,
        model,
        tokenizer,
        llm=llm,
        kinds=kinds,
        params=store_params,
        batch_size=batch_size,
        root=store_root,
    )
    records = []
    for kind in kinds:
        store = load_store(stores[kind])
        check_store_llm(store, llm)
        fitted = fit_all(store, fit_params, root=fit_root, progress=False)
        records.append(
            evaluate_depth(
                store,
                fitted,
                llm=llm,
                kind=kind,
                depth=relative_depth(model, kind),
                dt=fit_params["dt"],
                max_len=fit_params.get("max_len"),
                horizons=fit_params["horizons"],
                n_paths=fit_params["n_paths"],
                n_eval_trajectories=fit_params["n_eval_trajectories"],
                seed=fit_params["seed"],
                n_boot=n_boot,
            )
        )
    return records


def sweep_table(records: Sequence[Mapping[str, Any]], digits: int = 3) -> pd.DataFrame:
    """One row per (LLM, kind): depth, best baseline, the verdict and every metric as
    ``"estimate [low, high]"``."""
    rows = []
    for r in records:
        row = {
            "llm": r["llm"],
            "kind": r["kind"],
            "depth": round(r["depth"], 3),
            "best_baseline": r["best_baseline"],
            "beats_all": r["beats_all"],
        }
        for key, iv in r["metrics"].items():
            row[key] = (
                f"{iv['estimate']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index(["llm", "kind"])


def sweep_verdict(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """At which depths does the neural SDE beat every baseline on one-step NLL and on the
    verdict horizon's energy distance, intervals excluding zero; and at which does any SDE
    of the model set (``sde_winners``) do so? JSON-able: ``{"per_llm": {llm: [{"kind",
    "depth"} ...]}, "both_llms": [relative depths where both LLMs pass], "any": bool,
    "sde_per_llm": {llm: [{"kind", "depth", "models"} ...]}, "criteria": [...], "text":
    one sentence}``."""
    per_llm: dict[str, list] = {}
    sde_per_llm: dict[str, list] = {}
    for r in records:
        per_llm.setdefault(r["llm"], [])
        sde_per_llm.setdefault(r["llm"], [])
        if r["beats_all"]:
            per_llm[r["llm"]].append({"kind": r["kind"], "depth": r["depth"]})
        if r.get("sde_winners"):
            sde_per_llm[r["llm"]].append(
                {"kind": r["kind"], "depth": r["depth"], "models": list(r["sde_winners"])}
            )
    depth_sets = [{round(x["depth"], 2) for x in v} for v in per_llm.values()]
    both = sorted(set.intersection(*depth_sets)) if depth_sets else []
    horizons = sorted({r["verdict_horizon"] for r in records if r["verdict_horizon"]})
    if any(per_llm.values()):
        parts = [
            f"{llm}: {', '.join(x['kind'] for x in v) or 'no depth'}" for llm, v in per_llm.items()
        ]
        text = "the neural SDE beats every baseline at " + "; ".join(parts)
    else:
        text = "at no depth of either LLM does the neural SDE beat every baseline on both"
    if any(sde_per_llm.values()):
        parts = [
            f"{llm}: "
            + (", ".join(f"{x['kind']} ({', '.join(x['models'])})" for x in v) or "no depth")
            for llm, v in sde_per_llm.items()
        ]
        text += "; an SDE of the model set does at " + "; ".join(parts)
    else:
        text += ", and neither does any other SDE of the model set"
    return {
        "criteria": ["nll", *[f"energy_h{h}" for h in horizons]],
        "per_llm": per_llm,
        "sde_per_llm": sde_per_llm,
        "both_llms": both,
        "any": bool(any(per_llm.values())),
        "text": text,
    }
