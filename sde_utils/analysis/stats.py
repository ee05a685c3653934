"""Statistics for testing the paper's claims (notebook 08): rank correlations, cluster
bootstrap intervals, slopes, Gaussian KL, empirical-vs-model transition distributions,
binned means, text-complexity proxies and verdicts.

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
  here, so the fast vectorised paths (:func:`spearman_ci`, :func:`partial_spearman_ci`,
  :func:`slope_with_ci`, :func:`binned_mean_ci`) give the same replicates as
  :func:`bootstrap_by_group` with the matching statistic (up to float rounding).
* Results are plain dicts of Python floats/ints (JSON-able), except
  :func:`binned_mean_ci` (a DataFrame; ``df.to_dict("records")`` for JSON) and the optional
  ``replicates`` arrays. The vectorised paths also run in seconds where the generic one
  calls ``stat_fn`` per replicate: ``bench/bench_stats.py`` (1000 resamples of 10k rows).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist, pdist

# Size of the (replicates x rows) blocks of the vectorised bootstrap paths, in float64 cells
# (about 32 MB per block and array).
_BLOCK_CELLS = 4_000_000


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------
def _vector(name: str, a, n: int | None = None) -> np.ndarray:
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


def _covariates(z, n: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != n or z.shape[1] < 1:
        raise ValueError(f"z must be (n,) or (n, k) with n = {n}, k >= 1, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError(f"z has {int((~np.isfinite(z)).sum())} non-finite values; filter them")
    return z


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)):
        raise TypeError(f"level must be a number in (0, 1), got {level!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return float(level)


def _check_n_boot(n_boot) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an int >= 2, got {n_boot!r}")
    return int(n_boot)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return np.random.default_rng(int(seed))


def _float(value, what: str = "stat_fn") -> float:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != ():
        raise TypeError(f"{what} must return a scalar, got an array of shape {arr.shape}")
    return float(arr)


# ---------------------------------------------------------------------------------------
# rank correlations
# ---------------------------------------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denom if denom > 0 else float("nan")


def spearman(x, y) -> float:
    """Spearman rank correlation of ``x (n,)`` and ``y (n,)``, ``n >= 2``.

    The Pearson correlation of the ranks; ties get their average rank
    (``scipy.stats.rankdata(method="average")``), as in ``scipy.stats.spearmanr``. NaN when
    either input is constant.
    """
    x = _vector("x", x)
    y = _vector("y", y, x.shape[0])
    if x.shape[0] < 2:
        raise ValueError(f"need n >= 2 observations, got {x.shape[0]}")
    return _pearson(sps.rankdata(x), sps.rankdata(y))


def partial_spearman(x, y, z) -> float:
    """Rank-based partial correlation of ``x (n,)`` and ``y (n,)`` given ``z (n,)`` or ``(n, k)``.

    Every variable is rank-transformed (average ranks for ties, each covariate column
    separately); the ranks of ``x`` and of ``y`` are each regressed on the covariate ranks
    with an intercept (least squares), and the result is the Pearson correlation of the two
    residual vectors. This is the partial Spearman correlation (the partial correlation of
    the ranks; for one covariate it equals
    ``(r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))`` with Spearman ``r``). It removes
    what is *linear in the ranks* of ``z``: NaN when a residual is constant (e.g. ``x`` is a
    monotone function of ``z``).
    """
    x = _vector("x", x)
    n = x.shape[0]
    y = _vector("y", y, n)
    z = _covariates(z, n)
    if n < z.shape[1] + 3:
        raise ValueError(f"need n >= k + 3 = {z.shape[1] + 3} observations, got {n}")
    design = np.column_stack([np.ones(n), *(sps.rankdata(col) for col in z.T)])
    ranks = np.column_stack([sps.rankdata(x), sps.rankdata(y)])
    coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    resid = ranks - design @ coef
    # Residuals at rounding level (a rank exactly linear in z) count as constant.
    scale = float(np.abs(ranks).max())
    if min(np.abs(resid[:, 0]).max(), np.abs(resid[:, 1]).max()) <= 1e-9 * scale:
        return float("nan")
    return _pearson(resid[:, 0], resid[:, 1])


# ---------------------------------------------------------------------------------------
# cluster bootstrap machinery
# ---------------------------------------------------------------------------------------
class _Groups:
    """Row indices per group, precomputed once; group draws and resample indices."""

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


def _summary(estimate: float, reps: np.ndarray, level: float, n_groups: int, n: int) -> dict:
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
    level, n_boot, rng = _check_level(level), _check_n_boot(n_boot), _rng(seed)
    kind, arrays, n = _as_data(data)
    grp = _Groups(groups, n)
    estimate = _float(_call(stat_fn, kind, arrays))
    by_group = _take(kind, arrays, grp.order)
    reps = np.empty(n_boot)
    for b, draw in enumerate(grp.draws(n_boot, rng)):
        reps[b] = _float(_call(stat_fn, kind, _take(kind, by_group, grp.rows(draw))))
    out = _summary(estimate, reps, level, grp.n_groups, n)
    if return_replicates:
        out["replicates"] = reps
    return out


# ---------------------------------------------------------------------------------------
# vectorised rank statistics under group-multiplicity weights
# ---------------------------------------------------------------------------------------
class _RankPlan:
    """Average ranks of one variable in any resample, from one sort of the data.

    A resample in which row ``i`` appears ``w_i`` times ranks that row (and its ties)
    ``(weight of strictly smaller values) + (weight of the tie block + 1) / 2``: exactly the
    average rank ``rankdata`` gives the expanded resample. Cumulative sums over the sorted
    order give these for a block of replicates at once, with no re-sorting.
    """

    def __init__(self, v: np.ndarray):
        order = np.argsort(v, kind="stable")
        vs = v[order]
        new = np.r_[True, vs[1:] != vs[:-1]]
        self.order = order
        self.first = np.flatnonzero(new)  # sorted position of each tie block's first row
        self.last = np.r_[self.first[1:], v.shape[0]] - 1
        block_sorted = np.cumsum(new) - 1
        self.block_of_row = np.empty_like(block_sorted)
        self.block_of_row[order] = block_sorted

    def ranks(self, w: np.ndarray) -> np.ndarray:
        """``w (B, n)`` row multiplicities -> ``(B, n)`` average ranks (input row order)."""
        cum = np.cumsum(w[:, self.order], axis=1)
        below = cum[:, self.first] - w[:, self.order[self.first]]
        block = below + 0.5 * (cum[:, self.last] - below + 1.0)
        return block[:, self.block_of_row]


def _weighted_cov(ranks: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """``(B, p, p)`` weighted covariance (unnormalised) of ``p`` rank arrays ``(B, n)``."""
    total = w.sum(axis=1, keepdims=True)
    centred = [r - (w * r).sum(axis=1, keepdims=True) / total for r in ranks]
    p = len(ranks)
    cov = np.empty((w.shape[0], p, p))
    for i in range(p):
        wc = w * centred[i]
        for j in range(i, p):
            cov[:, i, j] = cov[:, j, i] = np.einsum("bn,bn->b", wc, centred[j])
    return cov


def _corr_from_cov(cov: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov[:, 0, 1] / np.sqrt(cov[:, 0, 0] * cov[:, 1, 1])


def _partial_from_cov(cov: np.ndarray) -> np.ndarray:
    """Partial correlation of variables 0 and 1 given the rest: ``-P01 / sqrt(P00 P11)``."""
    out = np.full(cov.shape[0], np.nan)
    try:
        prec = np.linalg.inv(cov)
        ok = np.arange(cov.shape[0])
    except np.linalg.LinAlgError:  # a singular replicate: invert one by one
        prec, ok = [], []
        for b, c in enumerate(cov):
            try:
                prec.append(np.linalg.inv(c))
                ok.append(b)
            except np.linalg.LinAlgError:
                pass
        if not ok:
            return out
        prec, ok = np.stack(prec), np.asarray(ok)
    # Replicates whose covariance is numerically singular give meaningless inverses.
    cond_ok = np.linalg.cond(cov[ok]) < 1e12
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = -prec[:, 0, 1] / np.sqrt(prec[:, 0, 0] * prec[:, 1, 1])
    out[ok] = np.where(cond_ok, vals, np.nan)
    return out


def _rank_bootstrap(columns: list[np.ndarray], grp: _Groups, draws: np.ndarray, fn) -> np.ndarray:
    plans = [_RankPlan(c) for c in columns]
    n = columns[0].shape[0]
    block = max(1, _BLOCK_CELLS // (n * (len(columns) + 2)))
    reps = []
    for s in range(0, draws.shape[0], block):
        w = grp.counts(draws[s : s + block])[:, grp.inv]  # (B, n) row multiplicities
        reps.append(fn(_weighted_cov([p.ranks(w) for p in plans], w)))
    return np.concatenate(reps)


def spearman_ci(
    x,
    y,
    groups,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    return_replicates: bool = False,
) -> dict:
    """:func:`spearman` of ``x (n,)``, ``y (n,)`` with a cluster-bootstrap interval.

    Same result (same draws, same replicates up to rounding) as
    ``bootstrap_by_group(spearman, (x, y), groups, ...)``, computed for blocks of replicates
    at once from a single sort of ``x`` and ``y`` (see :class:`_RankPlan`). Returns the dict
    of :func:`bootstrap_by_group`.
    """
    level, n_boot, rng = _check_level(level), _check_n_boot(n_boot), _rng(seed)
    x = _vector("x", x)
    y = _vector("y", y, x.shape[0])
    grp = _Groups(groups, x.shape[0])
    reps = _rank_bootstrap([x, y], grp, grp.draws(n_boot, rng), _corr_from_cov)
    out = _summary(spearman(x, y), reps, level, grp.n_groups, x.shape[0])
    if return_replicates:
        out["replicates"] = reps
    return out


def partial_spearman_ci(
    x,
    y,
    z,
    groups,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    return_replicates: bool = False,
) -> dict:
    """:func:`partial_spearman` of ``x``, ``y`` given ``z`` with a cluster-bootstrap interval.

    Same replicates as ``bootstrap_by_group(partial_spearman, (x, y, z), groups, ...)`` up
    to rounding (partial correlation from the inverse of the rank covariance matrix, which
    equals the correlation of the least-squares residuals), vectorised over replicates.
    Returns the dict of :func:`bootstrap_by_group`.
    """
    level, n_boot, rng = _check_level(level), _check_n_boot(n_boot), _rng(seed)
    x = _vector("x", x)
    n = x.shape[0]
    y = _vector("y", y, n)
    z = _covariates(z, n)
    grp = _Groups(groups, n)
    columns = [x, y, *z.T]
    reps = _rank_bootstrap(columns, grp, grp.draws(n_boot, rng), _partial_from_cov)
    out = _summary(partial_spearman(x, y, z), reps, level, grp.n_groups, n)
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
    level = _check_level(level)
    x = _vector("x", x)
    n = x.shape[0]
    y = _vector("y", y, n)
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
    n_boot, rng = _check_n_boot(n_boot), _rng(seed)
    grp = _Groups(groups, n)
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
    summ = _summary(slope, reps, level, grp.n_groups, n)
    out.update({k: summ[k] for k in ("low", "high", "se", "level", "n", "n_groups")})
    out.update(n_boot=summ["n_boot"], n_valid=summ["n_valid"], method="group-bootstrap")
    if return_replicates:
        out["replicates"] = reps
    return out


def _bin_edges(x: np.ndarray, bins) -> np.ndarray:
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be an int >= 1 or increasing edges, got {bins}")
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, int(bins) + 1)))
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
    level, n_boot, rng = _check_level(level), _check_n_boot(n_boot), _rng(seed)
    x = _vector("x", x)
    n = x.shape[0]
    y = _vector("y", y, n)
    grp = _Groups(groups, n)
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
        summ = _summary(float(yk[in_bin].mean()), reps[:, j], level, grp.n_groups, n)
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


# ---------------------------------------------------------------------------------------
# Gaussians: KL and empirical vs model transition distributions
# ---------------------------------------------------------------------------------------
def _gauss(name: str, mu, cov) -> tuple[np.ndarray, np.ndarray, bool]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim == 0:
        cov = cov[None]
    d = mu.shape[0]
    if mu.ndim != 1 or cov.shape not in ((d,), (d, d)):
        raise ValueError(
            f"{name}: mean must be (d,) and cov (d,) (diagonal variances) or (d, d), got "
            f"mean {mu.shape} and cov {cov.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError(f"{name}: mean and cov must be finite")
    if cov.ndim == 1:
        if not (cov > 0).all():
            raise ValueError(
                f"{name}: diagonal covariance is not positive definite, its smallest variance "
                f"is {cov.min():.3g} (all must be > 0)"
            )
        return mu, cov, True
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * np.abs(cov).max()):
        raise ValueError(f"{name}: covariance is not symmetric")
    return mu, cov, False


def _cholesky(name: str, cov: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(cov)[0])
        raise ValueError(
            f"{name}: covariance is not positive definite (smallest eigenvalue {smallest:.3g})"
        ) from None


def gaussian_kl(mu0, cov0, mu1, cov1) -> float:
    """``KL(N(mu0, cov0) || N(mu1, cov1))`` in nats, closed form.

    ``0.5 [tr(S1^-1 S0) + (mu1 - mu0)^T S1^-1 (mu1 - mu0) - d + log det S1 - log det S0]``.
    Means are ``(d,)`` (a scalar for d = 1); each covariance is ``(d, d)`` (symmetric,
    positive definite) or ``(d,)``, read as the diagonal variances. Computed elementwise
    when both are diagonal, otherwise through Cholesky factors (triangular solves and log
    determinants from the factors' diagonals, no explicit inverse). Raises ValueError on
    mismatched shapes or a covariance that is not positive definite.
    """
    mu0, cov0, diag0 = _gauss("N0", mu0, cov0)
    mu1, cov1, diag1 = _gauss("N1", mu1, cov1)
    d = mu0.shape[0]
    if mu1.shape[0] != d:
        raise ValueError(f"N0 and N1 must have the same dimension, got {d} and {mu1.shape[0]}")
    diff = mu1 - mu0
    if diag0 and diag1:
        ratio = cov0 / cov1
        return float(0.5 * (ratio.sum() + (diff * diff / cov1).sum() - d - np.log(ratio).sum()))
    l0 = np.diag(np.sqrt(cov0)) if diag0 else _cholesky("N0", cov0)
    l1 = np.diag(np.sqrt(cov1)) if diag1 else _cholesky("N1", cov1)
    a = solve_triangular(l1, l0, lower=True)  # L1^-1 L0: tr(S1^-1 S0) = ||A||_F^2
    m = solve_triangular(l1, diff, lower=True)
    logdet = 2.0 * (np.log(np.diag(l1)).sum() - np.log(np.diag(l0)).sum())
    return float(0.5 * ((a * a).sum() + m @ m - d + logdet))


def _energy(a: np.ndarray, b: np.ndarray, within_b: float) -> float:
    """Unbiased energy distance of samples a (K, d) and b (M, d) given ``E||B - B'||``."""
    k = a.shape[0]
    within_a = 2.0 * pdist(a).sum() / (k * (k - 1))
    return float(2.0 * cdist(a, b).mean() - within_a - within_b)


def _fit(samples: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray, bool]:
    k, d = samples.shape
    cov = np.atleast_2d(np.cov(samples, rowvar=False, ddof=1))
    scale = float(np.trace(cov)) / d
    if scale <= 0:
        raise ValueError("samples are all identical: their covariance is zero")
    add = k <= d or float(np.linalg.eigvalsh(cov)[0]) <= 1e-12 * scale
    if add:
        cov = cov + ridge * scale * np.eye(d)
    return samples.mean(axis=0), cov, add


def empirical_vs_gaussian(
    samples,
    mean,
    std,
    *,
    seed: int = 0,
    n_model: int = 1000,
    n_null: int = 100,
    ridge: float = 1e-3,
) -> dict:
    """Compare ``K`` samples of one transition with the model's diagonal Gaussian.

    Args:
        samples: ``(K, d)``, ``K >= 2``: draws from the true transition (e.g. the K sampled
            continuations of one prompt at the first generated step, in PCA coordinates).
        mean, std: ``(d,)``: the model's one-step law ``N(mean, diag(std^2))``, e.g.
            ``mean = x0 + mu dt`` and ``std = sigma sqrt(dt)``; ``std > 0``.
        seed: seeds the model draws and the null replicates.
        n_model: draws from the model Gaussian for the energy distance (>= 2).
        n_null: replicates of the null reference (0 to skip; see below).
        ridge: relative ridge for the fitted covariance.

    Returns a dict:

    * ``kl_gauss``: ``KL(N(m, S) || N(mean, diag(std^2)))`` (:func:`gaussian_kl`), ``m`` and
      ``S`` the sample mean and covariance (``ddof=1``). When ``K <= d`` (``S`` singular)
      or ``S`` is numerically singular, ``ridge * tr(S) / d`` is added to its diagonal
      (``ridge_applied``); the KL then depends on ``ridge`` and is large by construction.
    * ``kl_gauss_diag``: the same with ``S`` replaced by its diagonal (the model's form;
      the ridged diagonal when the ridge applies).
    * ``energy``: unbiased energy distance (``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||``,
      as :func:`sde_utils.models.metrics.energy_distance`) between ``samples`` and ``n_model``
      draws from the model Gaussian; about 0 (can be slightly negative) when they agree.
    * Null reference (with ``n_null > 0``): the three statistics recomputed on ``n_null``
      sets of ``K`` draws from the model Gaussian itself, which shows how large they are
      for a perfect model at this ``K`` and ``d`` (the KL of a fitted Gaussian is biased
      upwards, about ``d (d + 3) / (4 K)`` for large ``K``; the energy null is conditional
      on the same model draws). ``<stat>_null_mean``, ``<stat>_null_sd``,
      ``<stat>_null_q95`` and ``<stat>_p`` = ``(1 + #{null >= observed}) / (1 + n_null)``.
    * ``k``, ``d``, ``n_model``, ``n_null``, ``ridge``, ``ridge_applied``.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"samples must be (K, d) with K >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples must be finite")
    k, d = x.shape
    mean = _vector("mean", np.atleast_1d(mean), d)
    std = _vector("std", np.atleast_1d(std), d)
    if not (std > 0).all():
        raise ValueError(f"std must be > 0 everywhere, got min {std.min():.3g}")
    if isinstance(n_model, bool) or not isinstance(n_model, (int, np.integer)) or n_model < 2:
        raise ValueError(f"n_model must be an int >= 2, got {n_model!r}")
    if isinstance(n_null, bool) or not isinstance(n_null, (int, np.integer)) or n_null < 0:
        raise ValueError(f"n_null must be an int >= 0, got {n_null!r}")
    if not ridge > 0:
        raise ValueError(f"ridge must be > 0, got {ridge!r}")
    rng = _rng(seed)
    var = std * std
    model = mean + std * rng.standard_normal((int(n_model), d))
    within_model = 2.0 * pdist(model).sum() / (n_model * (n_model - 1))

    def three(s):
        m, cov, added = _fit(s, ridge)
        return (
            gaussian_kl(m, cov, mean, var),
            gaussian_kl(m, np.diag(cov).copy(), mean, var),
            _energy(s, model, within_model),
            added,
        )

    kl, kl_diag, energy, added = three(x)
    out = {"kl_gauss": kl, "kl_gauss_diag": kl_diag, "energy": energy}
    if n_null:
        null = np.array(
            [three(mean + std * rng.standard_normal((k, d)))[:3] for _ in range(int(n_null))]
        )
        for j, name in enumerate(("kl_gauss", "kl_gauss_diag", "energy")):
            out[f"{name}_null_mean"] = float(null[:, j].mean())
            out[f"{name}_null_sd"] = float(null[:, j].std(ddof=1)) if n_null > 1 else 0.0
            out[f"{name}_null_q95"] = float(np.quantile(null[:, j], 0.95))
            out[f"{name}_p"] = float((1 + (null[:, j] >= out[name]).sum()) / (1 + n_null))
    out.update(k=int(k), d=int(d), n_model=int(n_model), n_null=int(n_null), ridge=float(ridge))
    out["ridge_applied"] = bool(added)
    return out


# ---------------------------------------------------------------------------------------
# text complexity and verdicts
# ---------------------------------------------------------------------------------------
#: Subordinating conjunctions counted as clause openers by :func:`text_complexity`
#: (unambiguous ones only: "as", "that", "so" are left out because they are often not
#: conjunctions).
SUBORDINATORS = frozenset(
    "after although because before if once since though unless until when whenever where "
    "whereas wherever whether while".split()
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")


def text_complexity(text: str) -> dict:
    """Simple, deterministic complexity proxies of a text.

    * Sentences: the text split after ``.``, ``!`` or ``?`` followed by whitespace, and at
      every line break (list items and paragraphs end a sentence); pieces without a letter
      (list numbers such as "1.", symbols) are dropped. Abbreviations ("e.g. x") split too.
    * Words: runs of letters/digits/underscore, with inner apostrophes kept ("don't").
    * ``mean_sentence_length``: mean number of words per sentence.
    * ``mean_clauses``: mean over sentences of ``1 + commas + semicolons + subordinating
      conjunctions`` (the words in :data:`SUBORDINATORS`, case-insensitive).
    * ``type_token_ratio``: distinct lower-cased words / words (falls with text length:
      compare texts of similar length).

    Returns ``{"n_sentences", "n_words", "mean_sentence_length", "mean_clauses",
    "type_token_ratio"}``; the means are NaN for a text without words.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    lengths, clauses, words = [], [], []
    for piece in _SENTENCE_SPLIT.split(text):
        ws = [w.lower() for w in _WORD.findall(piece)]
        if not any(c.isalpha() for w in ws for c in w):
            continue  # no letters: a list number ("1."), a stray symbol or nothing
        lengths.append(len(ws))
        subs = sum(w in SUBORDINATORS for w in ws)
        clauses.append(1 + piece.count(",") + piece.count(";") + subs)
        words.extend(ws)
    nan = float("nan")
    return {
        "n_sentences": len(lengths),
        "n_words": len(words),
        "mean_sentence_length": float(np.mean(lengths)) if lengths else nan,
        "mean_clauses": float(np.mean(clauses)) if clauses else nan,
        "type_token_ratio": len(set(words)) / len(words) if words else nan,
    }


VERDICTS = ("reproduced", "not reproduced", "mixed")


def verdict(value_low_high, threshold: float = 0.0, direction: str = "greater") -> str:
    """Map an interval to ``"reproduced"``, ``"not reproduced"`` or ``"mixed"``.

    Args:
        value_low_high: ``(value, low, high)``, ``(low, high)``, or a mapping with keys
            ``"low"`` and ``"high"`` (e.g. a dict from :func:`bootstrap_by_group`).
        threshold: the value the claim is compared with (0 for "positive correlation").
        direction: ``"greater"`` (the claim is "above threshold") or ``"less"``.

    Rule: the interval entirely on the claimed side (``low > threshold`` for "greater",
    ``high < threshold`` for "less") -> reproduced; entirely on the other side
    (``high < threshold``, resp. ``low > threshold``) -> not reproduced; otherwise (it
    contains the threshold, endpoints included) -> mixed. NaN bounds raise ValueError.
    """
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    if isinstance(value_low_high, Mapping):
        low, high = value_low_high["low"], value_low_high["high"]
    elif isinstance(value_low_high, Sequence | np.ndarray) and len(value_low_high) in (2, 3):
        low, high = value_low_high[-2], value_low_high[-1]
    else:
        raise TypeError(
            "value_low_high must be (value, low, high), (low, high) or a mapping with 'low' "
            f"and 'high', got {value_low_high!r}"
        )
    low, high, threshold = float(low), float(high), float(threshold)
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(threshold)):
        raise ValueError(f"verdict needs finite bounds, got low={low}, high={high}")
    if low > high:
        raise ValueError(f"low must be <= high, got low={low}, high={high}")
    above, below = low > threshold, high < threshold
    if direction == "less":
        above, below = below, above
    return "reproduced" if above else ("not reproduced" if below else "mixed")


__all__ = [
    "SUBORDINATORS",
    "VERDICTS",
    "binned_mean_ci",
    "bootstrap_by_group",
    "empirical_vs_gaussian",
    "gaussian_kl",
    "partial_spearman",
    "partial_spearman_ci",
    "slope_with_ci",
    "spearman",
    "spearman_ci",
    "text_complexity",
    "verdict",
]
