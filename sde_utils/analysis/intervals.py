"""Intervals that may lack data: NaN-safe wrappers around the statistics (notebook 08).

Every function here drops non-finite rows first and, when too few rows or groups remain
for a cluster bootstrap, returns an interval with NaN bounds and the ``reason``
(:func:`nan_interval`) instead of raising, so a notebook's verdict can say "insufficient
data" (:data:`~sde_utils.analysis.verdicts.INSUFFICIENT`).

Intervals are dicts ``{"estimate", "low", "high", "n", "n_groups", "reason", ...}`` from
:mod:`sde_utils.analysis.stats` and :mod:`sde_utils.analysis.rank_correlation` (cluster
bootstrap over ``groups``, percentile interval); tables are DataFrames. Randomness comes
only from ``seed`` arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sde_utils.analysis.rank_correlation import (
    partial_spearman,
    partial_spearman_ci,
    spearman,
    spearman_ci,
)
from sde_utils.analysis.stats import binned_mean_ci, bootstrap_by_group, slope_with_ci


def nan_interval(reason: str, n: int = 0, n_groups: int = 0, estimate: float = math.nan) -> dict:
    """An interval with NaN bounds and the ``reason`` there is none (the point ``estimate``
    may still be known, e.g. a correlation over too few groups to resample)."""
    nan = float("nan")
    return {
        "estimate": float(estimate),
        "low": nan,
        "high": nan,
        "n": int(n),
        "n_groups": int(n_groups),
        "reason": str(reason),
    }


def as_interval(result: Mapping[str, Any]) -> dict:
    """Normalise a :mod:`sde_utils.analysis.stats` result to the interval convention of this module (``reason`` None when the interval exists).

    ``slope_with_ci``'s ``slope`` becomes ``estimate``; other keys are kept. An undefined
    estimate (NaN, e.g. a constant variable) makes the whole interval NaN, with a reason.
    """
    out = dict(result)
    if "estimate" not in out:
        if "slope" not in out:
            raise KeyError(f"result has neither 'estimate' nor 'slope': keys {sorted(out)}")
        out["estimate"] = out["slope"]
    out.setdefault("reason", None)
    if not math.isfinite(float(out["estimate"])):
        out.update(low=float("nan"), high=float("nan"))
        out["reason"] = out["reason"] or "statistic undefined (a variable is constant)"
    elif not (math.isfinite(float(out["low"])) and math.isfinite(float(out["high"]))):
        out["reason"] = out["reason"] or "too few finite bootstrap replicates"
    return out


def count_groups(groups) -> int:
    """Number of distinct labels in ``groups (n,)``."""
    return int(pd.unique(np.asarray(groups)).shape[0])


def lacking_reason(n: int, n_groups: int, min_n: int, min_groups: int) -> str | None:
    """Why ``n`` rows in ``n_groups`` groups are too few for an interval, or None."""
    if n < min_n:
        return f"{n} rows (need >= {min_n})"
    if n_groups < min_groups:
        return f"{n_groups} groups (need >= {min_groups} for a group bootstrap)"
    return None


def finite_rows(*arrays) -> np.ndarray:
    """``(n,)`` bool: rows where every array (``(n,)`` or ``(n, m)``) is finite."""
    n = len(arrays[0])
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    for a in arrays:
        keep &= np.isfinite(np.asarray(a, dtype=np.float64).reshape(n, -1)).all(axis=1)
    return keep


def spearman_interval(x, y, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2) -> dict:
    """:func:`~sde_utils.analysis.rank_correlation.spearman_ci` on the finite rows, or :func:`nan_interval` when lacking."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    keep = finite_rows(x, y)
    x, y, groups = x[keep], y[keep], groups[keep]
    why = lacking_reason(len(x), count_groups(groups), 3, max(2, min_groups))
    if why:
        est = spearman(x, y) if len(x) >= 2 else math.nan
        return nan_interval(why, len(x), count_groups(groups), est)
    return as_interval(spearman_ci(x, y, groups, n_boot=n_boot, level=level, seed=seed))


def partial_spearman_interval(
    x, y, z, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2
) -> dict:
    """:func:`~sde_utils.analysis.rank_correlation.partial_spearman_ci` given covariates ``z (n,)`` or ``(n, m)``.

    Rows with a non-finite value are dropped. Covariate columns that are constant (a
    single temperature, say) remove nothing and are dropped; with none left this is the
    plain Spearman interval (``covariates_used`` says which columns were used).
    """
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    z = np.asarray(z, float)
    z = z[:, None] if z.ndim == 1 else z
    keep = finite_rows(x, y, z)
    x, y, z, groups = x[keep], y[keep], z[keep], groups[keep]
    used = [j for j in range(z.shape[1]) if len(x) and np.ptp(z[:, j]) > 0]
    why = lacking_reason(len(x), count_groups(groups), len(used) + 4, max(2, min_groups))
    if why:
        if len(x) >= len(used) + 3 and used:
            est = partial_spearman(x, y, z[:, used])
        else:
            est = spearman(x, y) if len(x) >= 2 else math.nan
        out = nan_interval(why, len(x), count_groups(groups), est)
    elif not used:
        out = as_interval(spearman_ci(x, y, groups, n_boot=n_boot, level=level, seed=seed))
    else:
        res = partial_spearman_ci(x, y, z[:, used], groups, n_boot=n_boot, level=level, seed=seed)
        out = as_interval(res)
    out["covariates_used"] = used
    return out


def slope_interval(x, y, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2) -> dict:
    """Group-bootstrap OLS slope of ``y`` on ``x`` (:func:`~sde_utils.analysis.stats.slope_with_ci`), or NaN."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    keep = finite_rows(x, y)
    x, y, groups = x[keep], y[keep], groups[keep]
    why = lacking_reason(len(x), count_groups(groups), 3, max(2, min_groups))
    if why is None and np.ptp(x) == 0:
        why = "x is constant (a single level)"
    if why:
        est = math.nan
        if len(x) >= 3 and np.ptp(x) > 0:
            est = slope_with_ci(x, y)["slope"]
        return nan_interval(why, len(x), count_groups(groups), est)
    res = slope_with_ci(x, y, groups, n_boot=n_boot, level=level, seed=seed)
    return as_interval(res)


def mean_interval(y, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2) -> dict:
    """Mean of ``y`` with a group-bootstrap interval (:func:`~sde_utils.analysis.stats.bootstrap_by_group`)."""
    y, groups = np.asarray(y, float), np.asarray(groups)
    keep = np.isfinite(y)
    y, groups = y[keep], groups[keep]
    why = lacking_reason(len(y), count_groups(groups), 2, max(2, min_groups))
    if why:
        return nan_interval(why, len(y), count_groups(groups), y.mean() if len(y) else math.nan)
    res = bootstrap_by_group(np.mean, y, groups, n_boot=n_boot, level=level, seed=seed)
    return as_interval(res)


def means_by_level(levels, y, groups, *, n_boot=1000, seed=0, level=0.95) -> pd.DataFrame:
    """Mean of ``y`` at each distinct value of ``levels`` (e.g. temperature), with intervals.

    One row per level: ``level, n, n_groups, mean, low, high`` (:func:`~sde_utils.analysis.stats.binned_mean_ci`
    with one bin per level, so all levels share the group draws). Bounds are NaN when
    fewer than 2 groups hold data.
    """
    levels, y, groups = np.asarray(levels, float), np.asarray(y, float), np.asarray(groups)
    keep = finite_rows(levels, y)
    levels, y, groups = levels[keep], y[keep], groups[keep]
    values = np.unique(levels)
    cols = ["level", "n", "n_groups", "mean", "low", "high"]
    if values.size == 0:
        return pd.DataFrame(columns=cols)
    if count_groups(groups) < 2:
        rows = []
        for v in values:
            sel = levels == v
            rows.append(
                [v, int(sel.sum()), count_groups(groups[sel]), y[sel].mean(), np.nan, np.nan]
            )
        return pd.DataFrame(rows, columns=cols)
    if values.size == 1:
        edges = np.array([values[0] - 0.5, values[0] + 0.5])
    else:
        mids = (values[1:] + values[:-1]) / 2
        edges = np.concatenate([[2 * values[0] - mids[0]], mids, [2 * values[-1] - mids[-1]]])
    table = binned_mean_ci(levels, y, groups, bins=edges, n_boot=n_boot, level=level, seed=seed)
    table["level"] = values[table["bin"].to_numpy()]
    return table[cols].reset_index(drop=True)


BINNED_COLUMNS = ("bin", "left", "right", "x_mean", "n", "n_groups", "mean", "low", "high")


def binned_means(x, y, groups, *, bins=10, n_boot=1000, seed=0, level=0.95) -> pd.DataFrame:
    """:func:`~sde_utils.analysis.stats.binned_mean_ci` on the finite rows; an empty table (same columns) when
    fewer than 2 groups remain, since then no bin has an interval."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    keep = finite_rows(x, y)
    if count_groups(groups[keep]) < 2:
        return pd.DataFrame(columns=list(BINNED_COLUMNS))
    table = binned_mean_ci(
        x[keep], y[keep], groups[keep], bins=bins, n_boot=n_boot, level=level, seed=seed
    )
    return table[list(BINNED_COLUMNS)]


def correlation_summary(
    table: pd.DataFrame,
    x: str,
    y: str,
    *,
    group: str = "conv_id",
    covariate_sets: Mapping[str, Sequence[str]] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_groups: int = 2,
) -> dict:
    """Spearman of ``table[x]`` and ``table[y]`` and partial versions, each with an interval.

    Returns ``{"spearman": interval, "partial_<name>": interval, ...}`` with one partial
    correlation per entry of ``covariate_sets`` (name -> covariate columns; default
    ``{"position": ["k"]}``). Intervals resample ``table[group]`` (:func:`spearman_interval`,
    :func:`partial_spearman_interval`).
    """
    covariate_sets = {"position": ["k"]} if covariate_sets is None else covariate_sets
    kw = dict(n_boot=n_boot, seed=seed, min_groups=min_groups)
    g = table[group].to_numpy()
    out = {"spearman": spearman_interval(table[x], table[y], g, **kw)}
    for name, cols in covariate_sets.items():
        z = table[list(cols)].to_numpy(np.float64)
        out[f"partial_{name}"] = partial_spearman_interval(table[x], table[y], z, g, **kw)
    return out


__all__ = [
    "BINNED_COLUMNS",
    "as_interval",
    "binned_means",
    "correlation_summary",
    "count_groups",
    "finite_rows",
    "lacking_reason",
    "mean_interval",
    "means_by_level",
    "nan_interval",
    "partial_spearman_interval",
    "slope_interval",
    "spearman_interval",
]
