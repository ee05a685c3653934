"""Conversation-bootstrap intervals of the held-out metrics of notebook 03.

:func:`sde_utils.models.metrics.evaluate_model` gives one number per metric and model
(one seed, one split). Here every such number gets a 95% percentile interval from a
**cluster bootstrap over conversations** (``conv_id``; the machinery of
:mod:`sde_utils.analysis.stats`: :class:`~sde_utils.analysis.stats.GroupIndex` draws,
:func:`~sde_utils.analysis.stats.interval_summary`), and every paired difference
``model minus other`` an interval from the *same* resamples (one draw of conversations
per replicate, both models' metric on it).

Each metric is a function of per-conversation sums, so a replicate is a weighted sum with
the draw counts ``w (G,)`` of the conversations:

* one-step (over the transitions of all test conversations, :func:`one_step_sums`):
  ``nll = sum w nll_g / sum w n_g`` (``nll_g``: the conversation's sum of per-row NLLs,
  ``n_g`` its transitions), coverage likewise, ``drift_r2 = 1 - SS_res / SS_tot`` with
  ``SS_tot = sum ||D||^2 - ||sum D||^2 / N`` of the resampled increments ``D``;
* energy distance at horizon ``k`` (over the evaluated trajectories,
  :func:`energy_pieces`): trajectory-level sums of pairwise distances ``C`` (simulated to
  real), ``S`` (simulated to simulated), ``R`` (real to real) with trajectory weights
  ``w``: ``2 w'Cw / (P W^2) - w'Sw / ((PW)^2 - P sum w^2) - w'Rw / (W^2 - sum w^2)``
  (``W = sum w``, ``P`` paths). The denominators leave out the zero distances between a
  point and its own copy, so with every weight 1 this is exactly the unbiased
  :func:`~sde_utils.models.metrics.energy_distance` of the evaluation.

With all weights 1 every formula gives the evaluation's own number (the ``estimate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from sde_utils.analysis.intervals import as_interval
from sde_utils.analysis.stats import GroupIndex, bootstrap_settings, interval_summary
from sde_utils.models.metrics import multistep_samples, one_step_rows

GROUP_COLUMN = "conv_id"  # the resampled unit: a conversation (all its responses together)


def heldout_trajectories(store, features, limit: int, seed: int) -> tuple[list, np.ndarray]:
    """The test trajectories the fit's multi-step metrics used (same choice as
    :func:`sde_utils.models.fits.fit_all`: a ``seed`` permutation's first ``limit``, in
    store order), in PCA space ``(L_i, d)``, and their conversation labels ``(n,)``."""
    view = store.split("test")
    order = sorted(np.random.default_rng(seed).permutation(len(view))[:limit])
    trajs = [features.transform(np.asarray(view.trajectory(int(i)))) for i in order]
    return trajs, view.sequences[GROUP_COLUMN].to_numpy()[np.asarray(order, dtype=np.int64)]


def heldout_transitions(store, features, dt: float, max_len) -> tuple[tuple, np.ndarray]:
    """The fit's test transitions ``(z0 (N, d), t0 (N,), z1 (N, d))`` in PCA space, in the
    order of ``store.transitions``, and each row's conversation label ``(N,)``."""
    view = store.split("test")
    x0, t0, x1, index = view.transitions(dt=dt, max_len=max_len, return_index=True)
    z0, z1 = features.transform_transitions(x0, x1)
    groups = view.sequences[GROUP_COLUMN].to_numpy()[index[:, 0]]
    return (z0, t0, z1), groups


def one_step_sums(rows: Mapping[str, np.ndarray], gid: np.ndarray, n_groups: int) -> dict:
    """Per-conversation sums of :func:`~sde_utils.models.metrics.one_step_rows` output:
    ``n, nll, sq_res, inc2, coverage_<c>`` ``(G,)`` and ``inc`` ``(G, d)``; ``gid (N,)``
    is each row's conversation id in ``0..G-1``."""

    def add(v):
        return np.bincount(gid, weights=v, minlength=n_groups)

    inc = rows["inc"]
    out = {
        "n": add(np.ones(gid.shape[0])),
        "nll": add(rows["nll"]),
        "sq_res": add(rows["sq_res"]),
        "inc2": add((inc**2).sum(1)),
        "inc": np.stack([add(inc[:, j]) for j in range(inc.shape[1])], 1),
    }
    out.update({k: add(v) for k, v in rows.items() if k.startswith("coverage_")})
    return out


def one_step_metrics(sums: Mapping[str, np.ndarray], w: np.ndarray) -> dict:
    """``{metric: (B,)}`` for group weights ``w (B, G)``: ``nll``, ``drift_r2``,
    ``coverage_<c>`` (the definitions of :func:`~sde_utils.models.metrics.evaluate_model`)."""
    n = w @ sums["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ss_tot = w @ sums["inc2"] - ((w @ sums["inc"]) ** 2).sum(1) / n
        out = {"nll": w @ sums["nll"] / n, "drift_r2": 1.0 - (w @ sums["sq_res"]) / ss_tot}
        for key in sums:
            if key.startswith("coverage_"):
                out[key] = w @ sums[key] / n
    return out


def energy_pieces(real, sim) -> dict:
    """Trajectory-level distance sums of one horizon: ``real (n, d)``, ``sim (n, P, d)`` ->
    ``{"C", "S", "R"}`` each ``(n, n)`` float64 and ``"P"``: ``C_ij = sum_p ||sim_ip -
    real_j||``, ``S_ij = sum_pq ||sim_ip - sim_jq||``, ``R_ij = ||real_i - real_j||``."""
    real = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    sim = torch.as_tensor(sim, dtype=torch.float64)
    n, p, d = sim.shape
    flat = sim.reshape(n * p, d)
    cross = torch.cdist(flat, real).reshape(n, p, n).sum(1)
    within = torch.cdist(flat, flat).reshape(n, p, n, p).sum((1, 3))
    return {
        "C": cross.numpy(),
        "S": within.numpy(),
        "R": torch.cdist(real, real).numpy(),
        "P": p,
    }


def energy_from_pieces(pieces: Mapping, w: np.ndarray) -> np.ndarray:
    """Energy distance ``(B,)`` for trajectory weights ``w (B, n)`` (module docstring);
    NaN where fewer than two distinct trajectories are drawn."""
    p = pieces["P"]
    big_w = w.sum(1)
    w2 = (w**2).sum(1)

    def quad(m):
        return np.einsum("bi,ij,bj->b", w, m, w)

    with np.errstate(divide="ignore", invalid="ignore"):
        out = (
            2 * quad(pieces["C"]) / (p * big_w**2)
            - quad(pieces["S"]) / ((p * big_w) ** 2 - p * w2)
            - quad(pieces["R"]) / (big_w**2 - w2)
        )
    return np.where(big_w**2 - w2 > 0, out, np.nan)


def _interval(estimate, reps, level, n_groups, n) -> dict:
    return as_interval(interval_summary(float(estimate), reps, level, n_groups, n))


def heldout_intervals(
    models: Mapping,
    transitions: Sequence,
    transition_groups,
    trajectories: Sequence,
    trajectory_groups,
    dt: float,
    *,
    horizons: Sequence[int] = (1, 2, 4, 8, 16),
    n_paths: int = 16,
    seed: int = 0,
    levels: Sequence[float] = (0.5, 0.9),
    n_boot: int = 1000,
    level: float = 0.95,
    boot_seed: int = 0,
    reference: str = "neural_sde",
) -> dict:
    """Intervals of every held-out metric of every model and of paired differences.

    Args:
        models: ``{name: SDEModel}`` in the state space of the data.
        transitions: test ``(x0 (N, d), t0 (N,), x1 (N, d))``; ``transition_groups (N,)``
            their conversation labels. trajectories: the test trajectories ``(L_i, d)`` of
            the multi-step metrics, ``trajectory_groups (n,)`` their labels (a subset of
            the transitions' labels).
        dt, horizons, n_paths, seed: as in :func:`~sde_utils.models.metrics.evaluate_model`
            (the same ``seed`` simulates the same paths, so estimates equal its numbers).
        n_boot, level, boot_seed: the bootstrap (conversations drawn once per replicate
            and shared by every metric and model).
        reference: the model of the ``paired`` differences ``reference minus other``.

    Returns ``{"per_model": {name: {metric: interval}}, "pairwise": {a: {b: {metric:
    interval of a minus b}}}, "paired": pairwise[reference], "level", "n_boot",
    "n_groups", "group_column"}``; metrics: ``nll``, ``drift_r2``, ``coverage_<c>``,
    ``energy_h<k>`` (horizons that at least two trajectories reach). Intervals are dicts
    ``{"estimate", "low", "high", "se", "level", "n_boot", "n_valid", "n_groups", "n",
    "reason"}``.
    """
    level, n_boot, rng = bootstrap_settings(level, n_boot, boot_seed)
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not a model; models: {sorted(models)}")
    x0, t0, x1 = transitions
    grp = GroupIndex(transition_groups, np.asarray(x0).shape[0])
    labels = np.unique(np.asarray(transition_groups))
    tg = np.asarray(trajectory_groups)
    traj_gid = np.searchsorted(labels, tg)
    if tg.shape[0] != len(trajectories) or not np.array_equal(
        labels[np.minimum(traj_gid, labels.shape[0] - 1)], tg
    ):
        raise ValueError(
            "trajectory_groups must label each trajectory with a conversation of the "
            f"transitions; got {tg.shape[0]} labels for {len(trajectories)} trajectories"
        )
    counts = np.vstack([np.ones(grp.n_groups), grp.counts(grp.draws(n_boot, rng))])
    n_tr = int(np.asarray(x0).shape[0])
    trajs = [np.asarray(x) for x in trajectories]
    values: dict[str, dict[str, np.ndarray]] = {}
    sizes: dict[str, int] = {}
    for name, model in models.items():
        rows = one_step_rows(model, x0, t0, x1, dt, levels)
        vals = one_step_metrics(one_step_sums(rows, grp.inv, grp.n_groups), counts)
        sizes.update(dict.fromkeys(vals, n_tr))
        samples = multistep_samples(
            trajs,
            model,
            horizons=sorted(set(horizons)),
            n_paths=n_paths,
            dt=dt,
            seed=seed,
            method="euler",
        )
        for k, s in samples.items():
            if s["real"] is None:
                continue
            w = counts[:, traj_gid[s["rows"]]]
            vals[f"energy_h{k}"] = energy_from_pieces(energy_pieces(s["real"], s["sim"]), w)
            sizes[f"energy_h{k}"] = s["n"]
        values[name] = vals

    def summary(v, key):
        return _interval(v[0], v[1:], level, grp.n_groups, sizes[key])

    per_model = {n: {k: summary(v, k) for k, v in vals.items()} for n, vals in values.items()}
    pairwise = {
        a: {
            b: {k: summary(values[a][k] - values[b][k], k) for k in values[a] if k in values[b]}
            for b in values
            if b != a
        }
        for a in values
    }
    return {
        "per_model": per_model,
        "pairwise": pairwise,
        "paired": pairwise[reference],
        "reference": reference,
        "level": level,
        "n_boot": n_boot,
        "n_groups": grp.n_groups,
        "group_column": GROUP_COLUMN,
    }


def beats_all(
    intervals: Mapping, metrics: Sequence[str], against: Sequence[str] | None = None
) -> dict:
    """Per model: does it beat every other model (every model of ``against`` but itself,
    when given) on every metric in ``metrics`` (lower is better) with the paired interval
    of ``model minus other`` entirely below 0?

    ``intervals``: :func:`heldout_intervals`' result. Returns ``{name: {"beats_all": bool,
    "<metric>": {other: high of the paired interval}}}``; a NaN bound never beats, and a
    model with no other model to beat does not either.
    """
    out = {}
    for a, pairs in intervals["pairwise"].items():
        others = [b for b in pairs if against is None or b in against]
        row = {m: {b: pairs[b][m]["high"] for b in others if m in pairs[b]} for m in metrics}
        row["beats_all"] = bool(
            others
            and all(
                len(row[m]) == len(others) and all(h < 0 for h in row[m].values()) for m in metrics
            )
        )
        out[a] = row
    return out


def intervals_verdict(
    intervals: Mapping, criteria: Sequence[str], baselines: Sequence[str] = ()
) -> dict:
    """``{"criteria", "level", "models": beats_all(...), "winners": [models that beat
    every other on every criterion], "baselines": those present, "against_baselines":
    beats_all(..., against=baselines), "sde_winners": [models outside ``baselines`` that
    beat every model of ``baselines`` on every criterion]}``, JSON-able (notebook 03's
    ``verdicts_intervals``)."""
    models = beats_all(intervals, criteria)
    present = [b for b in baselines if b in intervals["pairwise"]]
    against = beats_all(intervals, criteria, against=present)
    return {
        "criteria": list(criteria),
        "level": intervals["level"],
        "models": models,
        "winners": [name for name, v in models.items() if v["beats_all"]],
        "baselines": present,
        "against_baselines": against,
        "sde_winners": [
            name for name, v in against.items() if name not in present and v["beats_all"]
        ],
    }


def interval_table(per: Mapping[str, Mapping[str, Mapping]], digits: int = 4) -> pd.DataFrame:
    """``{row: {column: interval}}`` (e.g. ``intervals["per_model"]`` or ``["paired"]``) as
    a table of ``"estimate [low, high]"`` strings, one row per model, one column per metric."""
    return pd.DataFrame(
        {
            row: {
                key: f"{iv['estimate']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"
                for key, iv in cols.items()
            }
            for row, cols in per.items()
        }
    ).T


def point_verdicts(
    evaluation: Mapping[str, Mapping[str, float]],
    horizons: Sequence[int],
    reference: str = "neural_sde",
    tolerance: float = 0.05,
) -> tuple[pd.DataFrame, dict, int]:
    """Point-estimate verdicts of ``reference`` against every other model of
    ``evaluation`` (``fit.evaluation``): NLL gain and energy gain at the last horizon with
    a value (both ``other - reference``: positive favours ``reference``) and whether it
    beats the other on each; the calibration of its 50% and 90% intervals (within
    ``tolerance`` of the level). Returns ``(table, calibration, last horizon)``."""
    ref = evaluation[reference]
    h_last = max(k for k in horizons if ref.get(f"energy_h{k}") is not None)
    key = f"energy_h{h_last}"
    rows = {
        name: {
            "nll_gain": ev["nll"] - ref["nll"],
            f"energy_gain_h{h_last}": ev[key] - ref[key],
            "beats_on_nll": bool(ev["nll"] > ref["nll"]),
            "beats_on_energy": bool(ev[key] > ref[key]),
        }
        for name, ev in evaluation.items()
        if name != reference
    }
    calibration = {}
    for level in (0.5, 0.9):
        got = ref[f"coverage_{level:g}"]
        calibration[f"{level:g}"] = {
            "coverage": (got, level),
            "calibrated": bool(abs(got - level) <= tolerance),
        }
    return pd.DataFrame(rows).T, calibration, h_last


__all__ = [
    "point_verdicts",
    "GROUP_COLUMN",
    "beats_all",
    "interval_table",
    "intervals_verdict",
    "energy_from_pieces",
    "energy_pieces",
    "heldout_intervals",
    "heldout_trajectories",
    "heldout_transitions",
    "one_step_metrics",
    "one_step_sums",
]
