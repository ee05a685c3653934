"""Does sigma grow with the sampling temperature? SDEs fitted per temperature, compared
at common states (notebook 08, section 2).

Fits with different feature maps are compared in model space
(:func:`model_space_sigma2`): the trace of the implied model-space noise covariance.
Randomness comes only from ``seed`` arguments (and the fits' own seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sde_utils.analysis.intervals import as_interval, count_groups, lacking_reason, nan_interval
from sde_utils.analysis.stats import bootstrap_settings
from sde_utils.analysis.transitions import drift_diffusion_blocks
from sde_utils.checks import check_str
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.features import FeatureMap
from sde_utils.models.fits import Fit, check_fit_params, fit_all


def view_where(store: TrajectoryStore, mask) -> TrajectoryStore:
    """A view of ``store`` with the sequences where ``mask`` (``(n_sequences,)`` bool) holds."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(store.sequences),):
        raise ValueError(f"mask must be ({len(store.sequences)},), got {mask.shape}")
    seqs = store.sequences.loc[mask].reset_index(drop=True)
    return TrajectoryStore(store.path, store.meta, store.embeddings, seqs)


def project_store(store: TrajectoryStore, features: FeatureMap, tag: str) -> TrajectoryStore:
    """``store`` with every state mapped by ``features``: embeddings ``(N_tokens, k)`` float32.

    Fitting per-temperature SDEs on projected stores (with ``pca_dim=None``) puts them all
    in one coordinate system, ``features``' space, instead of a PCA of their own each.
    ``tag`` names the projection (e.g. the fit folder of ``features``) and is appended to
    the store's ``content_hash``, so :func:`~sde_utils.models.fits.fit_all` never reuses a fit
    made on other states (its cache key holds the hash). The projection is computed in
    blocks of 65,536 rows.
    """
    check_str("tag", tag)
    n = store.embeddings.shape[0]
    out = np.empty((n, features.output_dim), dtype=np.float32)
    for s in range(0, n, 65_536):
        block = np.asarray(store.embeddings[s : s + 65_536], dtype=np.float64)
        out[s : s + 65_536] = features.transform(block)
    meta = {**store.meta, "content_hash": f"{store.meta.get('content_hash')}|projected:{tag}"}
    return TrajectoryStore(store.path, meta, out, store.sequences.copy())


def fit_by_temperature(
    store: TrajectoryStore,
    params: Mapping[str, Any],
    *,
    root=None,
    progress: bool = False,
) -> tuple[dict[float, Fit], dict[float, str]]:
    """:func:`~sde_utils.models.fits.fit_all` on each sampling temperature's sequences of ``store``.

    Returns ``(fits, skipped)``: ``fits[T]`` for every temperature whose view can be fitted
    with ``params``, and ``skipped[T]`` the reason for every other one (a split missing or
    without a transition, fewer training states than ``pca_dim``). Fits are cached by
    :func:`fit_all` (a rerun reuses them).
    """
    if "temperature" not in store.sequences:
        raise KeyError("the store has no 'temperature' column: use notebook 02's samples")
    fits, skipped = {}, {}
    temps = store.sequences["temperature"].to_numpy(np.float64)
    for temp in np.unique(temps):
        view = view_where(store, temps == temp)
        try:
            check_fit_params(view, params)
        except ValueError as err:
            skipped[float(temp)] = str(err)
            continue
        n_train = int(view.split("train").sequences["length"].sum())
        if params["pca_dim"] is not None and n_train < params["pca_dim"]:
            skipped[float(temp)] = f"{n_train} training states < pca_dim={params['pca_dim']}"
            continue
        fits[float(temp)] = fit_all(view, params, root=root, progress=progress)
    return fits, skipped


def model_space_sigma2(features: FeatureMap, sigma) -> np.ndarray:
    """Trace of the noise covariance implied by a diagonal ``sigma (N, k)`` in the input
    space of ``features`` (model space, or e.g. another PCA's coordinates it was fitted on).

    The feature map is affine, ``x = (z C + c) * scale + mean`` back in model space, so a
    step ``dz ~ N(0, diag(sigma^2))`` maps to ``dx = (dz C) * scale`` with
    ``E|dx|^2 = sum_j sigma_j^2 |C_j * scale|^2`` (``C_j`` the j-th principal axis;
    ``C = I`` without PCA). Unlike ``|sigma|^2`` this does not depend on the coordinates,
    so fits with different feature maps can be compared. Returns ``(N,)`` float64.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.ndim != 2 or sigma.shape[1] != features.output_dim:
        raise ValueError(f"sigma must be (N, {features.output_dim}), got {sigma.shape}")
    if features.components_ is None:
        weights = features.scale_**2
    else:
        weights = ((features.components_ * features.scale_) ** 2).sum(axis=1)
    return (sigma**2) @ weights


def sigma2_by_fit(fits: Mapping[Any, Fit], x, t) -> pd.DataFrame:
    """Each fit's neural-SDE noise at the same model-space states ``x (N, D)``, times ``t (N,)``.

    Long table: ``fit`` (the key), ``state`` (0..N-1) and ``sigma2_model``
    (:func:`model_space_sigma2` of the fit's sigma at ``(features(x), t)``).
    """
    x = np.asarray(x, dtype=np.float64)
    frames = []
    for key, fit in fits.items():
        _, sigma = drift_diffusion_blocks(fit.sde, fit.features.transform(x), t)
        frames.append(
            pd.DataFrame(
                {
                    "fit": [key] * len(x),  # keys may be tuples: never broadcast them
                    "state": np.arange(len(x)),
                    "sigma2_model": model_space_sigma2(fit.features, sigma),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["fit", "state", "sigma2_model"])
    return pd.concat(frames, ignore_index=True)


def fitted_slope_interval(
    table: pd.DataFrame,
    *,
    x: str = "temperature",
    y: str = "sigma2_model",
    fit: str = "fit_seed",
    state: str = "state",
    group: str = "conv_id",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_groups: int = 2,
    min_fits: int = 2,
) -> dict:
    """Slope of a fitted quantity on ``x`` when each level of ``x`` has several fits.

    ``table`` has one row per (fit, state): the level ``x`` of the fit (e.g. its sampling
    temperature), the fit's id within that level (``fit``, e.g. its seed), the ``state``
    it was evaluated at (every fit at the same states), the state's ``group``
    (conversation) and the value ``y``.

    * Estimate: the OLS slope of the per-level means (over the level's fits and all states)
      on the levels; the same as the slope over all rows, as every level has equally many
      rows per fit.
    * Interval (percentile): each replicate draws the groups with replacement (as
      :mod:`sde_utils.analysis.stats`) **and, for every level independently, one of its fits**, and
      takes the slope of that fit's mean over the drawn states. So it includes the spread
      between fits of one level (initialisation, batch order), which an interval over
      states alone would miss; it still does not refit on resampled data.

    NaN bounds (:func:`nan_interval`) when a level has fewer than ``min_fits`` fits, there
    are fewer than 2 levels, or fewer than ``min_groups`` groups. Returns the interval dict
    with ``n_levels`` and ``fits_per_level`` added.
    """
    level, n_boot, rng = bootstrap_settings(level, n_boot, seed)
    need = [x, y, fit, state, group]
    missing = [c for c in need if c not in table]
    if missing:
        raise KeyError(f"table lacks {missing}; columns: {list(table.columns)}")
    t = table.loc[np.isfinite(table[y].to_numpy(np.float64)), need]
    levels = np.sort(t[x].unique()).astype(np.float64)
    fits_per_level = {f"{v:g}": int(t.loc[t[x] == v, fit].nunique()) for v in levels}
    means = t.groupby([x, fit])[y].mean().groupby(level=0).mean()
    est = math.nan
    if len(levels) >= 2:
        xc = levels - levels.mean()
        est = float(xc @ means.loc[levels].to_numpy() / (xc @ xc))
    extra = {"n_levels": int(len(levels)), "fits_per_level": fits_per_level}
    n_groups = count_groups(t[group])
    why = None
    if len(levels) < 2:
        why = f"{len(levels)} levels of {x} (need >= 2)"
    elif min(fits_per_level.values()) < min_fits:
        why = f"fits per level {fits_per_level} (need >= {min_fits} to include fitting noise)"
    else:
        why = lacking_reason(len(t), n_groups, 3, max(2, min_groups))
    if why:
        return {**nan_interval(why, len(t), n_groups, est), **extra}
    codes, uniq = pd.factorize(t[group], sort=True)
    g = len(uniq)
    draws = rng.integers(0, g, size=(int(n_boot), g))  # as sde_utils.analysis.stats draws groups
    counts = np.zeros((draws.shape[0], g))
    np.add.at(counts, (np.arange(draws.shape[0])[:, None], draws), 1.0)
    picked = np.empty((draws.shape[0], len(levels)))
    for j, v in enumerate(levels):
        part = t.loc[t[x] == v]
        fit_ids = np.sort(part[fit].unique())
        per_fit = []
        for f in fit_ids:
            rows = part[fit].to_numpy() == f
            gc = codes[(t[x] == v).to_numpy()][rows]
            sums = np.bincount(gc, weights=part[y].to_numpy(np.float64)[rows], minlength=g)
            cnts = np.bincount(gc, minlength=g).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                per_fit.append((counts @ sums) / (counts @ cnts))
        per_fit = np.stack(per_fit, axis=1)  # (n_boot, n_fits)
        choice = rng.integers(0, len(fit_ids), size=draws.shape[0])
        picked[:, j] = per_fit[np.arange(draws.shape[0]), choice]
    xc = levels - levels.mean()
    reps = (picked - picked.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    ok = reps[np.isfinite(reps)]
    low, high = (
        np.quantile(ok, [(1 - level) / 2, (1 + level) / 2]) if len(ok) >= 2 else (math.nan,) * 2
    )
    out = {
        "estimate": est,
        "low": float(low),
        "high": float(high),
        "se": float(ok.std(ddof=1)) if len(ok) >= 2 else math.nan,
        "level": float(level),
        "n_boot": int(n_boot),
        "n_valid": int(len(ok)),
        "n_groups": int(g),
        "n": int(len(t)),
    }
    return {**as_interval(out), **extra}


__all__ = [
    "fit_by_temperature",
    "fitted_slope_interval",
    "model_space_sigma2",
    "project_store",
    "sigma2_by_fit",
    "view_where",
]
