"""Cluster-bootstrap intervals of statistics (notebook 08): the bootstrap machinery, the
generic :func:`bootstrap_by_group`, OLS slopes and binned means. Rank correlations live in
:mod:`sde_utils.analysis.rank_correlation`, Gaussian comparisons in
:mod:`sde_utils.analysis.gaussian`; both use the machinery here.

Conventions:

* Inputs are numpy-compatible; everything is computed in float64. Rows are observations
  (tokens); ``groups`` (any labels, length ``n``) says which cluster each row belongs to
  (a conversation, a prompt). Non-finite ``x``/``y``/``z`` inputs raise: filter them
  first (:func:`bootstrap_by_group` passes its data to ``stat_fn`` unchecked).
* Intervals come from a **cluster (group) bootstrap**: each replicate draws ``G`` groups with
  replacement out of the ``G`` groups and recomputes the statistic on all rows of the drawn
  groups (a group drawn twice contributes its rows twice). Rows of one conversation are
  dependent, so resampling rows would understate the uncertainty. The interval is the
  **percentile interval**: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
  replicates (``np.quantile``, linear interpolation); ``se`` is their standard deviation
  (``ddof=1``). Replicates where the statistic is not finite (e.g. a constant resample) are
  dropped and counted (``n_valid``).
* Randomness comes only from the ``seed`` argument (``np.random.default_rng(seed)``). For a
  given seed, number of groups and ``n_boot`` the group draws are the same in every function
  (:meth:`GroupIndex.draws`), so the fast vectorised paths
  (:func:`~sde_utils.analysis.rank_correlation.spearman_ci`,
  :func:`~sde_utils.analysis.rank_correlation.partial_spearman_ci`, :func:`slope_with_ci`,
  :func:`binned_mean_ci`) give the same replicates as :func:`bootstrap_by_group` with the
  matching statistic (up to float rounding).
* Results are plain dicts of Python floats/ints (JSON-able), except
  :func:`binned_mean_ci` (a DataFrame; ``df.to_dict("records")`` for JSON) and the optional
  ``replicates`` arrays. The vectorised paths also run in seconds where the generic one
  calls ``stat_fn`` per replicate: ``bench/bench_stats.py`` (1000 resamples of 10k rows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from sde_utils.checks import check_fraction, check_int, check_seed


# ---------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------
def finite_vector(name: str, a, n: int | None = None) -> np.ndarray:
    """``a`` as a finite float64 ``(n,)`` vector (``n`` checked when given), else ValueError."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have length {n} (like the other inputs), got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise ValueError(
            f"{name} has {int((~np.isfinite(a)).sum())} non-finite values; filter them"
        )
    return a


def finite_covariates(z, n: int) -> np.ndarray:
    """Covariates ``z (n,)`` or ``(n, k)`` as a finite float64 ``(n, k)`` array, ``k >= 1``."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != n or z.shape[1] < 1:
        raise ValueError(f"z must be (n,) or (n, k) with n = {n}, k >= 1, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError(f"z has {int((~np.isfinite(z)).sum())} non-finite values; filter them")
    return z


def bootstrap_settings(level, n_boot, seed) -> tuple[float, int, np.random.Generator]:
    """The checked ``(level, n_boot, rng)`` of a bootstrap: ``level`` in (0, 1), ``n_boot``
    an int >= 2, ``rng = np.random.default_rng(seed)`` for an int seed >= 0."""
    level = check_fraction("level", level)
    n_boot = check_int("n_boot", n_boot, minimum=2)
    return level, n_boot, np.random.default_rng(check_seed(seed))


def _float(value, what: str = "stat_fn") -> float:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != ():
        raise TypeError(f"{what} must return a scalar, got an array of shape {arr.shape}")
    return float(arr)


# ---------------------------------------------------------------------------------------
# cluster bootstrap machinery
# ---------------------------------------------------------------------------------------
class GroupIndex:
    """Row indices per group, precomputed once; group draws and resample indices.

    ``groups (n,)``: any labels. ``inv (n,)``: each row's group id in ``0..G-1`` (sorted
    labels); ``order``: rows sorted by group; ``sizes``/``starts (G,)``: rows per group and
    where each group starts in ``order``.
    """

    def __init__(self, groups, n: int):
        g = np.asarray(groups)
        if g.ndim != 1 or g.shape[0] != n:
            raise ValueError(f"groups must be 1-D with one label per row (n = {n}), got {g.shape}")
        _, inv = np.unique(g, return_inverse=True)
        self.inv = inv.reshape(-1)
        self.n_groups = int(self.inv.max()) + 1 if n else 0
        if self.n_groups < 2:
            raise ValueError(f"the group bootstrap needs >= 2 groups, got {self.n_groups}")
        self.order = np.argsort(self.inv, kind="stable")  # rows sorted by group
        self.sizes = np.bincount(self.inv, minlength=self.n_groups)
        self.starts = np.cumsum(self.sizes) - self.sizes

    def draws(self, n_boot: int, rng: np.random.Generator) -> np.ndarray:
        """``(n_boot, G)`` group ids drawn uniformly with replacement."""
        return rng.integers(0, self.n_groups, size=(n_boot, self.n_groups))

    def counts(self, draws: np.ndarray) -> np.ndarray:
        """``(n_boot, G)`` float64: how often each group is drawn in each replicate."""
        b, g = draws.shape
        flat = (draws + g * np.arange(b)[:, None]).ravel()
        return np.bincount(flat, minlength=b * g).reshape(b, g).astype(np.float64)

    def rows(self, draw: np.ndarray) -> np.ndarray:
        """Positions (in group-sorted row order) of all rows of the drawn groups."""
        lens = self.sizes[draw]
        ends = np.cumsum(lens)
        return np.repeat(self.starts[draw] - (ends - lens), lens) + np.arange(ends[-1])


def interval_summary(
    estimate: float, reps: np.ndarray, level: float, n_groups: int, n: int
) -> dict:
    """The result dict of every bootstrap here from the estimate and its ``(n_boot,)``
    replicates (non-finite ones dropped and counted)."""
    ok = reps[np.isfinite(reps)]
    if ok.shape[0] >= 2:
        low, high = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
        se = float(ok.std(ddof=1))
    else:
        low = high = se = float("nan")
    return {
        "estimate": float(estimate),
        "low": float(low),
        "high": float(high),
        "se": se,
        "level": level,
        "n_boot": int(reps.shape[0]),
        "n_valid": int(ok.shape[0]),
        "n_groups": int(n_groups),
        "n": int(n),
    }


def _as_data(data) -> tuple[str, Any, int]:
    """Normalise ``data`` to ``(kind, arrays, n)`` with every array's first axis of length n."""
    if isinstance(data, pd.DataFrame):
        data = {str(c): data[c].to_numpy() for c in data.columns}
    if isinstance(data, Mapping):
        kind, arrays = "dict", {str(k): np.asarray(v) for k, v in data.items()}
        items = list(arrays.items())
    elif isinstance(data, (tuple, list)):
        kind, arrays = "tuple", [np.asarray(v) for v in data]
        items = [(f"data[{i}]", v) for i, v in enumerate(arrays)]
    elif isinstance(data, np.ndarray):
        kind, arrays = "array", data
        items = [("data", data)]
    else:
        raise TypeError(
            "data must be a dict of arrays, a tuple/list of arrays or one array, got "
            f"{type(data).__name__}"
        )
    if not items:
        raise ValueError("data is empty: pass at least one array")
    lengths = {name: (v.shape[0] if v.ndim else None) for name, v in items}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        raise ValueError(f"every array in data needs the same first-axis length, got {lengths}")
    return kind, arrays, next(iter(lengths.values()))


def _take(kind: str, arrays, idx: np.ndarray):
    if kind == "dict":
        return {k: v[idx] for k, v in arrays.items()}
    if kind == "tuple":
        return [v[idx] for v in arrays]
    return arrays[idx]


def _call(stat_fn, kind: str, arrays):
    if kind == "dict":
        return stat_fn(**arrays)
    if kind == "tuple":
        return stat_fn(*arrays)
    return stat_fn(arrays)


def bootstrap_by_group(
    stat_fn: Callable[..., float],
    data,
    groups,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    return_replicates: bool = False,
) -> dict:
    """Cluster-bootstrap percentile interval of a scalar statistic.

    Args:
        stat_fn: the statistic. Called as ``stat_fn(**data)`` for a dict, ``stat_fn(*data)``
            for a tuple/list and ``stat_fn(data)`` for one array; returns a scalar.
        data: a dict of arrays (or a DataFrame: a dict of its columns), a tuple/list of
            arrays or one array; every array has the rows on its first axis (``n`` rows
            each, any trailing shape).
        groups: ``(n,)`` group label per row (conversation, prompt); at least 2 groups.
        n_boot: number of replicates (>= 2). level: interval level in (0, 1). seed: int.
        return_replicates: also return the ``(n_boot,)`` replicate array (not JSON-able).

    Each replicate draws ``G`` of the ``G`` groups with replacement and evaluates
    ``stat_fn`` on all rows of the drawn groups (rows grouped by draw, so row order within
    a resample is not the input order; statistics must not depend on row order). The group
    row indices are computed once and each resample's index is built without a Python loop
    over groups; ``stat_fn`` is called ``n_boot + 1`` times.

    Returns ``{"estimate" (stat_fn on the data), "low", "high" (percentile interval), "se"
    (sd of the replicates), "level", "n_boot", "n_valid" (finite replicates), "n_groups",
    "n"}``.
    """
    level, n_boot, rng = bootstrap_settings(level, n_boot, seed)
    kind, arrays, n = _as_data(data)
    grp = GroupIndex(groups, n)
    estimate = _float(_call(stat_fn, kind, arrays))
    by_group = _take(kind, arrays, grp.order)
    reps = np.empty(n_boot)
    for b, draw in enumerate(grp.draws(n_boot, rng)):
        reps[b] = _float(_call(stat_fn, kind, _take(kind, by_group, grp.rows(draw))))
    out = interval_summary(estimate, reps, level, grp.n_groups, n)
    if return_replicates:
        out["replicates"] = reps
    return out


# ---------------------------------------------------------------------------------------
# slope and binned means (sufficient statistics per group)
# ---------------------------------------------------------------------------------------
def _ols_slope(x: np.ndarray, y: np.ndarray) -> float:
    xc = x - x.mean()
    sxx = float(xc @ xc)
    return float(xc @ (y - y.mean())) / sxx if sxx > 0 else float("nan")


def slope_with_ci(
    x,
    y,
    groups=None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    return_replicates: bool = False,
) -> dict:
    """OLS slope of ``y (n,)`` on ``x (n,)`` (with intercept) and an interval.

    With ``groups`` (``(n,)`` labels, e.g. the prompt of each sample): cluster-bootstrap
    percentile interval (``method="group-bootstrap"``), the same replicates as
    ``bootstrap_by_group(lambda x, y: slope, (x, y), groups, ...)``, computed from per-group
    sums (``n, sum x, sum y, sum x^2, sum xy``) for all replicates at once. Without groups:
    the classical OLS interval ``slope +- t_{n-2} * se`` (``method="ols-t"``,
    ``scipy.stats.linregress``; assumes independent rows and homoscedastic errors).

    Returns ``{"slope", "intercept", "low", "high", "se", "level", "n", "n_groups",
    "n_boot", "n_valid", "method"}`` (``n_groups``, ``n_boot``, ``n_valid`` are ``None``
    without groups). NaN slope when ``x`` is constant.
    """
    level = check_fraction("level", level)
    x = finite_vector("x", x)
    n = x.shape[0]
    y = finite_vector("y", y, n)
    if n < 3:
        raise ValueError(f"need n >= 3 observations for a slope interval, got {n}")
    slope = _ols_slope(x, y)
    intercept = float(y.mean() - slope * x.mean())
    out = {"slope": slope, "intercept": intercept}
    if groups is None:
        se = float(sps.linregress(x, y).stderr) if np.isfinite(slope) else float("nan")
        half = float(sps.t.ppf(0.5 + level / 2, n - 2)) * se
        out.update(low=slope - half, high=slope + half, se=se, level=level, n=n)
        out.update(n_groups=None, n_boot=None, n_valid=None, method="ols-t")
        if return_replicates:
            out["replicates"] = None
        return out
    _, n_boot, rng = bootstrap_settings(level, n_boot, seed)
    grp = GroupIndex(groups, n)
    xc, yc = x - x.mean(), y - y.mean()  # centred: the sums below lose no precision
    per_group = np.stack(
        [np.bincount(grp.inv, weights=v, minlength=grp.n_groups) for v in (xc, yc, xc * xc)]
        + [np.bincount(grp.inv, weights=xc * yc, minlength=grp.n_groups), grp.sizes * 1.0],
        axis=1,
    )  # (G, 5): sum x, sum y, sum x^2, sum xy, n
    sums = grp.counts(grp.draws(n_boot, rng)) @ per_group  # (n_boot, 5)
    sx, sy, sxx, sxy, cnt = sums.T
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = (sxy - sx * sy / cnt) / (sxx - sx * sx / cnt)
    summ = interval_summary(slope, reps, level, grp.n_groups, n)
    out.update({k: summ[k] for k in ("low", "high", "se", "level", "n", "n_groups")})
    out.update(n_boot=summ["n_boot"], n_valid=summ["n_valid"], method="group-bootstrap")
    if return_replicates:
        out["replicates"] = reps
    return out


def _bin_edges(x: np.ndarray, bins) -> np.ndarray:
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):  # a count, not edges
        bins = check_int("bins", bins, minimum=1)
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
        if edges.shape[0] == 1:  # constant x: one bin holding it
            edges = np.array([edges[0], edges[0]])
        return edges
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.shape[0] < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(
            f"bins must be an int >= 1 or >= 2 strictly increasing edges, got {bins!r}"
        )
    return edges


def binned_mean_ci(
    x,
    y,
    groups,
    *,
    bins=10,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of ``y`` per bin of ``x``, each with a cluster-bootstrap interval.

    Args:
        x: ``(n,)`` binning variable (position, complexity); y: ``(n,)`` values (errors);
        groups: ``(n,)`` group labels (conversations).
        bins: an int (equal-count bins: edges at the quantiles of ``x``, duplicate edges
            merged, so integer-valued ``x`` may give fewer bins) or strictly increasing
            edges. Bins are ``[left, right)``, the last one ``[left, right]``; rows outside
            the edges are dropped.

    One set of group draws is shared by all bins (the whole conversation is resampled), so
    the replicates of different bins are jointly valid; a bin's replicate mean is over the
    rows of the drawn groups that fall in it (NaN, and not counted in ``n_valid``, when none
    do). Returns a DataFrame with one row per bin: ``bin, left, right, x_mean, n, n_groups``
    (groups with rows in the bin), ``mean, low, high, se, n_valid``, and ``level``; bins
    without rows are omitted.
    """
    level, n_boot, rng = bootstrap_settings(level, n_boot, seed)
    x = finite_vector("x", x)
    n = x.shape[0]
    y = finite_vector("y", y, n)
    grp = GroupIndex(groups, n)
    edges = _bin_edges(x, bins)
    nb = edges.shape[0] - 1
    b = np.searchsorted(edges, x, side="right") - 1
    b[(x == edges[-1])] = nb - 1
    keep = (b >= 0) & (b < nb)
    b, xk, yk, gk = b[keep], x[keep], y[keep], grp.inv[keep]
    cells = gk * nb + b
    size = grp.n_groups * nb
    y0 = float(yk.mean()) if yk.size else 0.0  # centre for precise sums
    sums = np.bincount(cells, weights=yk - y0, minlength=size).reshape(grp.n_groups, nb)
    cnts = np.bincount(cells, minlength=size).reshape(grp.n_groups, nb).astype(np.float64)
    counts = grp.counts(grp.draws(n_boot, rng))
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = (counts @ sums) / (counts @ cnts) + y0  # (n_boot, nb)
    rows = []
    for j in range(nb):
        in_bin = b == j
        if not in_bin.any():
            continue
        summ = interval_summary(float(yk[in_bin].mean()), reps[:, j], level, grp.n_groups, n)
        rows.append(
            {
                "bin": j,
                "left": float(edges[j]),
                "right": float(edges[j + 1]),
                "x_mean": float(xk[in_bin].mean()),
                "n": int(in_bin.sum()),
                "n_groups": int((cnts[:, j] > 0).sum()),
                "mean": summ["estimate"],
                "low": summ["low"],
                "high": summ["high"],
                "se": summ["se"],
                "n_valid": summ["n_valid"],
                "level": level,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "GroupIndex",
    "binned_mean_ci",
    "bootstrap_by_group",
    "bootstrap_settings",
    "finite_covariates",
    "finite_vector",
    "interval_summary",
    "slope_with_ci",
]
