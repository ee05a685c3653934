"""Rank correlations and their cluster-bootstrap intervals (notebook 08).

:func:`spearman` and :func:`partial_spearman` are the point estimates; :func:`spearman_ci`
and :func:`partial_spearman_ci` add a percentile interval from the cluster bootstrap of
:mod:`sde_utils.analysis.stats` (same conventions, same group draws for a given seed as
``bootstrap_by_group(spearman, ...)``), computed for blocks of replicates at once from one
sort of each variable (:class:`_RankPlan`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from sde_utils.analysis.stats import (
    GroupIndex,
    bootstrap_settings,
    finite_covariates,
    finite_vector,
    interval_summary,
)

# Size of the (replicates x rows) blocks of the vectorised bootstrap paths, in float64 cells
# (about 32 MB per block and array).
_BLOCK_CELLS = 4_000_000


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
    x = finite_vector("x", x)
    y = finite_vector("y", y, x.shape[0])
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
    x = finite_vector("x", x)
    n = x.shape[0]
    y = finite_vector("y", y, n)
    z = finite_covariates(z, n)
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


def _rank_bootstrap(
    columns: list[np.ndarray], grp: GroupIndex, draws: np.ndarray, fn
) -> np.ndarray:
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
    level, n_boot, rng = bootstrap_settings(level, n_boot, seed)
    x = finite_vector("x", x)
    y = finite_vector("y", y, x.shape[0])
    grp = GroupIndex(groups, x.shape[0])
    reps = _rank_bootstrap([x, y], grp, grp.draws(n_boot, rng), _corr_from_cov)
    out = interval_summary(spearman(x, y), reps, level, grp.n_groups, x.shape[0])
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
    level, n_boot, rng = bootstrap_settings(level, n_boot, seed)
    x = finite_vector("x", x)
    n = x.shape[0]
    y = finite_vector("y", y, n)
    z = finite_covariates(z, n)
    grp = GroupIndex(groups, n)
    columns = [x, y, *z.T]
    reps = _rank_bootstrap(columns, grp, grp.draws(n_boot, rng), _partial_from_cov)
    out = interval_summary(partial_spearman(x, y, z), reps, level, grp.n_groups, n)
    if return_replicates:
        out["replicates"] = reps
    return out


__all__ = ["partial_spearman", "partial_spearman_ci", "spearman", "spearman_ci"]
