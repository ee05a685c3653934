"""Does the learned diffusion track the LLM's uncertainty? The logic of notebook 08.

Conventions (read these before using any function):

* **States and steps.** A store row holds states ``X_0 .. X_{L-1}`` (model space, ``D``
  wide); the SDE lives in the PCA space of a :class:`~sde_utils.models.features.FeatureMap`
  (``z = features(x)``, ``k`` wide) at times ``t_j = j * dt``. Transition ``j`` is
  ``(X_j, t_j) -> X_{j+1}``; the model's law for it is
  ``N(z_j + mu(z_j, t_j) dt, diag(sigma(z_j, t_j)^2) dt)``.
* **Alignment with the LLM's uncertainty.** In a sampled store (notebook 02) step ``j``
  sampled token ``y_j`` from ``p_j``; ``entropy[j] = H(p_j)``, ``logprob[j] = log p_j(y_j)``
  and ``X_j`` is the state of ``y_j``. So ``sigma(X_j, t_j)``, which describes the step to
  ``X_{j+1}``, is paired with ``entropy[j + 1]`` and surprisal ``-logprob[j + 1]``: the
  uncertainty of the draw that produced ``X_{j+1}`` (:func:`next_step_values`).
* **|sigma|^2** is ``sum_i sigma_i^2`` over the ``k`` PCA coordinates (per unit time).
  Fits with different feature maps are compared in model space instead
  (:func:`model_space_sigma2`): the trace of the implied model-space noise covariance.
* **Intervals** are dicts ``{"estimate", "low", "high", "n", "n_groups", "reason", ...}``
  from :mod:`sde_utils.analysis.stats` (cluster bootstrap over ``groups``, percentile interval);
  when there is too little data they hold NaN bounds and ``reason`` says why
  (:func:`nan_interval`), and a verdict on them is :data:`INSUFFICIENT`.
* Randomness comes only from ``seed`` arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from sde_utils.analysis import stats
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.features import FeatureMap
from sde_utils.models.fits import Fit, check_fit_params, fit_all
from sde_utils.models.neural import SDEModel
from sde_utils.models.simulate import drift_path, model_dtype_device

INSUFFICIENT = "insufficient data"
#: Columns of a store's ``sequences`` copied onto every transition row when present.
SEQUENCE_COLUMNS = ("seq_id", "conv_id", "split", "prompt_index", "temperature", "sample_index")


# ---------------------------------------------------------------------------------------
# intervals that may lack data
# ---------------------------------------------------------------------------------------
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
    """Normalise a :mod:`sde_utils.analysis.stats` result to the interval convention of this module.

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


def _n_groups(groups) -> int:
    return int(pd.unique(np.asarray(groups)).shape[0])


def _lacking(n: int, n_groups: int, min_n: int, min_groups: int) -> str | None:
    if n < min_n:
        return f"{n} rows (need >= {min_n})"
    if n_groups < min_groups:
        return f"{n_groups} groups (need >= {min_groups} for a group bootstrap)"
    return None


def _finite(*arrays) -> np.ndarray:
    """``(n,)`` bool: rows where every array (``(n,)`` or ``(n, m)``) is finite."""
    n = len(arrays[0])
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    for a in arrays:
        keep &= np.isfinite(np.asarray(a, dtype=np.float64).reshape(n, -1)).all(axis=1)
    return keep


def spearman_interval(x, y, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2) -> dict:
    """:func:`stats.spearman_ci` on the finite rows, or :func:`nan_interval` when lacking."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    keep = _finite(x, y)
    x, y, groups = x[keep], y[keep], groups[keep]
    why = _lacking(len(x), _n_groups(groups), 3, max(2, min_groups))
    if why:
        est = stats.spearman(x, y) if len(x) >= 2 else math.nan
        return nan_interval(why, len(x), _n_groups(groups), est)
    return as_interval(stats.spearman_ci(x, y, groups, n_boot=n_boot, level=level, seed=seed))


def partial_spearman_interval(
    x, y, z, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2
) -> dict:
    """:func:`stats.partial_spearman_ci` given covariates ``z (n,)`` or ``(n, m)``.

    Rows with a non-finite value are dropped. Covariate columns that are constant (a
    single temperature, say) remove nothing and are dropped; with none left this is the
    plain Spearman interval (``covariates_used`` says which columns were used).
    """
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    z = np.asarray(z, float)
    z = z[:, None] if z.ndim == 1 else z
    keep = _finite(x, y, z)
    x, y, z, groups = x[keep], y[keep], z[keep], groups[keep]
    used = [j for j in range(z.shape[1]) if len(x) and np.ptp(z[:, j]) > 0]
    why = _lacking(len(x), _n_groups(groups), len(used) + 4, max(2, min_groups))
    if why:
        if len(x) >= len(used) + 3 and used:
            est = stats.partial_spearman(x, y, z[:, used])
        else:
            est = stats.spearman(x, y) if len(x) >= 2 else math.nan
        out = nan_interval(why, len(x), _n_groups(groups), est)
    elif not used:
        out = as_interval(stats.spearman_ci(x, y, groups, n_boot=n_boot, level=level, seed=seed))
    else:
        res = stats.partial_spearman_ci(
            x, y, z[:, used], groups, n_boot=n_boot, level=level, seed=seed
        )
        out = as_interval(res)
    out["covariates_used"] = used
    return out


def slope_interval(x, y, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2) -> dict:
    """Group-bootstrap OLS slope of ``y`` on ``x`` (:func:`stats.slope_with_ci`), or NaN."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    keep = _finite(x, y)
    x, y, groups = x[keep], y[keep], groups[keep]
    why = _lacking(len(x), _n_groups(groups), 3, max(2, min_groups))
    if why is None and np.ptp(x) == 0:
        why = "x is constant (a single level)"
    if why:
        est = math.nan
        if len(x) >= 3 and np.ptp(x) > 0:
            est = stats.slope_with_ci(x, y)["slope"]
        return nan_interval(why, len(x), _n_groups(groups), est)
    res = stats.slope_with_ci(x, y, groups, n_boot=n_boot, level=level, seed=seed)
    return as_interval(res)


def mean_interval(y, groups, *, n_boot=1000, seed=0, level=0.95, min_groups=2) -> dict:
    """Mean of ``y`` with a group-bootstrap interval (:func:`stats.bootstrap_by_group`)."""
    y, groups = np.asarray(y, float), np.asarray(groups)
    keep = np.isfinite(y)
    y, groups = y[keep], groups[keep]
    why = _lacking(len(y), _n_groups(groups), 2, max(2, min_groups))
    if why:
        return nan_interval(why, len(y), _n_groups(groups), y.mean() if len(y) else math.nan)
    res = stats.bootstrap_by_group(np.mean, y, groups, n_boot=n_boot, level=level, seed=seed)
    return as_interval(res)


def means_by_level(levels, y, groups, *, n_boot=1000, seed=0, level=0.95) -> pd.DataFrame:
    """Mean of ``y`` at each distinct value of ``levels`` (e.g. temperature), with intervals.

    One row per level: ``level, n, n_groups, mean, low, high`` (:func:`stats.binned_mean_ci`
    with one bin per level, so all levels share the group draws). Bounds are NaN when
    fewer than 2 groups hold data.
    """
    levels, y, groups = np.asarray(levels, float), np.asarray(y, float), np.asarray(groups)
    keep = _finite(levels, y)
    levels, y, groups = levels[keep], y[keep], groups[keep]
    values = np.unique(levels)
    cols = ["level", "n", "n_groups", "mean", "low", "high"]
    if values.size == 0:
        return pd.DataFrame(columns=cols)
    if _n_groups(groups) < 2:
        rows = []
        for v in values:
            sel = levels == v
            rows.append([v, int(sel.sum()), _n_groups(groups[sel]), y[sel].mean(), np.nan, np.nan])
        return pd.DataFrame(rows, columns=cols)
    if values.size == 1:
        edges = np.array([values[0] - 0.5, values[0] + 0.5])
    else:
        mids = (values[1:] + values[:-1]) / 2
        edges = np.concatenate([[2 * values[0] - mids[0]], mids, [2 * values[-1] - mids[-1]]])
    table = stats.binned_mean_ci(
        levels, y, groups, bins=edges, n_boot=n_boot, level=level, seed=seed
    )
    table["level"] = values[table["bin"].to_numpy()]
    return table[cols].reset_index(drop=True)


BINNED_COLUMNS = ("bin", "left", "right", "x_mean", "n", "n_groups", "mean", "low", "high")


def binned_means(x, y, groups, *, bins=10, n_boot=1000, seed=0, level=0.95) -> pd.DataFrame:
    """:func:`stats.binned_mean_ci` on the finite rows; an empty table (same columns) when
    fewer than 2 groups remain, since then no bin has an interval."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    keep = _finite(x, y)
    if _n_groups(groups[keep]) < 2:
        return pd.DataFrame(columns=list(BINNED_COLUMNS))
    table = stats.binned_mean_ci(
        x[keep], y[keep], groups[keep], bins=bins, n_boot=n_boot, level=level, seed=seed
    )
    return table[list(BINNED_COLUMNS)]


# ---------------------------------------------------------------------------------------
# per-transition quantities
# ---------------------------------------------------------------------------------------
def drift_diffusion_np(
    model: SDEModel, z, t, *, batch_size: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """``mu(z, t)`` and ``sigma(z, t)``, both ``(N, k)`` float64, for ``z (N, k)``, ``t (N,)``.

    ``t`` may be a scalar (the same time for every row). Evaluated without gradients in
    chunks of ``batch_size`` rows, in the model's dtype and on its device.
    """
    z = torch.as_tensor(np.asarray(z))
    if z.dim() != 2:
        raise ValueError(f"z must be (N, k), got shape {tuple(z.shape)}")
    dtype, device = model_dtype_device(model, z)
    z = z.to(dtype=dtype, device=device)
    t = torch.as_tensor(np.asarray(t, dtype=np.float64)).to(dtype=dtype, device=device)
    t = t.expand(z.shape[0]) if t.dim() == 0 else t
    if tuple(t.shape) != (z.shape[0],):
        raise ValueError(f"t must be a scalar or ({z.shape[0]},), got {tuple(t.shape)}")
    mus, sigmas = [], []
    with torch.no_grad():
        for s in range(0, z.shape[0], batch_size):
            mu, sigma = model.drift_diffusion(z[s : s + batch_size], t[s : s + batch_size])
            mus.append(mu.double().cpu().numpy())
            sigmas.append(sigma.double().cpu().numpy())
    k = z.shape[1]
    empty = np.empty((0, k))
    return (np.concatenate(mus) if mus else empty), (np.concatenate(sigmas) if sigmas else empty)


def step_quantities(model: SDEModel, z0, t0, z1, dt: float) -> dict[str, np.ndarray]:
    """Per transition ``(z0, t0) -> z1`` (``(N, k)``, ``(N,)``, ``(N, k)``): ``(N,)`` arrays.

    * ``sigma2``: ``|sigma(z0, t0)|^2 = sum_i sigma_i^2``;
    * ``sq_increment``: ``|z1 - z0|^2``;
    * ``sq_residual``: ``|z1 - z0 - mu dt|^2`` (the paper's drift loss of this step);
    * ``nll``: Gaussian NLL of the Euler–Maruyama step, mean over the ``k`` coordinates
      (the diffusion loss of this step), so ``sq_residual + lam * nll`` averaged over a
      split is the total loss notebook 03 logs for it.
    """
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    if z0.shape != z1.shape or z0.ndim != 2:
        raise ValueError(f"z0 and z1 must both be (N, k), got {z0.shape} and {z1.shape}")
    mu, sigma = drift_diffusion_np(model, z0, t0)
    inc = z1 - z0
    r = inc - mu * dt
    s = sigma * math.sqrt(dt)
    nll = 0.5 * math.log(2 * math.pi) + np.log(s) + 0.5 * (r / s) ** 2
    return {
        "sigma2": (sigma**2).sum(axis=1),
        "sq_increment": (inc**2).sum(axis=1),
        "sq_residual": (r**2).sum(axis=1),
        "nll": nll.mean(axis=1),
    }


def next_step_values(sequences: pd.DataFrame, index, column: str, offset: int = 1) -> np.ndarray:
    """``sequences[column][row][k + offset]`` for each transition ``(row, k)`` of ``index (N, 2)``.

    ``index`` is what ``TrajectoryStore.transitions(..., return_index=True)`` returns (rows of
    the same ``sequences``). For a sampled store and ``column="entropy"`` this is the entropy
    of the distribution the *next* token was drawn from: the uncertainty that the step
    ``X_k -> X_{k+1}``, and so ``sigma(X_k, t_k)``, should reflect. ``offset=0`` gives the
    value at the transition's own first step.
    """
    index = np.asarray(index, dtype=np.int64)
    if index.ndim != 2 or index.shape[1] != 2:
        raise ValueError(f"index must be (N, 2) of (row, k), got shape {index.shape}")
    if column not in sequences:
        raise KeyError(f"sequences has no column {column!r}; columns: {list(sequences.columns)}")
    lists = [np.asarray(v, dtype=np.float64) for v in sequences[column]]
    lens = np.array([len(v) for v in lists], dtype=np.int64)
    row, k = index[:, 0], index[:, 1]
    if len(row) and (row.min() < 0 or row.max() >= len(lists)):
        raise IndexError(f"rows must lie in [0, {len(lists)}), got {row.min()}..{row.max()}")
    step = k + int(offset)
    bad = (step >= lens[row]) | (step < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IndexError(
            f"transition (row {row[i]}, k {k[i]}) has no step k + {offset} in {column!r} "
            f"(length {lens[row[i]]})"
        )
    if not len(lists):
        return np.empty(0)
    flat = np.concatenate(lists)
    starts = np.cumsum(lens) - lens
    return flat[starts[row] + step]


def transition_frame(
    store: TrajectoryStore,
    features: FeatureMap,
    model: SDEModel,
    dt: float,
    *,
    max_len: int | None = None,
) -> pd.DataFrame:
    """One row per transition of ``store`` (a store or a view), all model quantities aligned.

    Columns: ``row`` (row of ``store.sequences``), ``k``, ``t`` (``k * dt``), the
    :data:`SEQUENCE_COLUMNS` present in the store, the :func:`step_quantities` of ``model``
    in ``features``' space, ``sq_increment_model`` (``|X_{k+1} - X_k|^2`` in model space,
    no model involved) and, for a store with per-step ``entropy``/``logprob``:
    ``entropy_next`` (``entropy[k + 1]``), ``surprisal_next`` (``-logprob[k + 1]``) and
    ``entropy_now`` (``entropy[k]``, for reference).
    """
    x0, t0, x1, index = store.transitions(None, dt=dt, max_len=max_len, return_index=True)
    z0, z1 = features.transform(x0.astype(np.float64)), features.transform(x1.astype(np.float64))
    seqs = store.sequences
    out = pd.DataFrame({"row": index[:, 0], "k": index[:, 1], "t": index[:, 1] * float(dt)})
    for col in SEQUENCE_COLUMNS:
        if col in seqs:
            out[col] = seqs[col].to_numpy()[index[:, 0]]
    for name, values in step_quantities(model, z0, t0, z1, dt).items():
        out[name] = values
    out["sq_increment_model"] = ((x1.astype(np.float64) - x0) ** 2).sum(axis=1)
    if "entropy" in seqs and "logprob" in seqs:
        out["entropy_next"] = next_step_values(seqs, index, "entropy")
        out["surprisal_next"] = -next_step_values(seqs, index, "logprob")
        out["entropy_now"] = next_step_values(seqs, index, "entropy", offset=0)
    return out


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


# ---------------------------------------------------------------------------------------
# temperature
# ---------------------------------------------------------------------------------------
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
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string naming the projection, got {tag!r}")
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
        _, sigma = drift_diffusion_np(fit.sde, fit.features.transform(x), t)
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
    n_groups = _n_groups(t[group])
    why = None
    if len(levels) < 2:
        why = f"{len(levels)} levels of {x} (need >= 2)"
    elif min(fits_per_level.values()) < min_fits:
        why = f"fits per level {fits_per_level} (need >= {min_fits} to include fitting noise)"
    else:
        why = _lacking(len(t), n_groups, 3, max(2, min_groups))
    if why:
        return {**nan_interval(why, len(t), n_groups, est), **extra}
    codes, uniq = pd.factorize(t[group], sort=True)
    g = len(uniq)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an int >= 2, got {n_boot!r}")
    rng = np.random.default_rng(seed)
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


# ---------------------------------------------------------------------------------------
# the first generated step, measured against the model's Gaussian
# ---------------------------------------------------------------------------------------
def first_token_groups(
    sequences: pd.DataFrame,
    *,
    keys: Sequence[str] = ("prompt_index", "temperature"),
    min_size: int = 2,
) -> pd.DataFrame:
    """Samples of one prompt and temperature that share their first token.

    Such samples share the whole prefix (prompt + first token), so their second states are
    independent draws from the LLM's true transition out of one common first state.
    Returns one row per group with ``min_size`` or more samples of length >= 2: the ``keys``,
    ``first_token``, ``conv_id``, ``rows`` (list of rows of ``sequences``) and ``size``.
    """
    need = [*keys, "token_ids", "length", "conv_id"]
    missing = [c for c in need if c not in sequences]
    if missing:
        raise KeyError(f"sequences lacks {missing}; columns: {list(sequences.columns)}")
    frame = sequences.loc[sequences["length"] >= 2, list(keys) + ["conv_id"]].copy()
    frame["first_token"] = [int(ids[0]) for ids in sequences.loc[frame.index, "token_ids"]]
    frame["row"] = frame.index
    cols = [*keys, "first_token", "conv_id", "rows", "size"]
    groups = []
    for key, part in frame.groupby([*keys, "first_token"], sort=True):
        if len(part) >= min_size:
            groups.append([*key, part["conv_id"].iloc[0], part["row"].tolist(), len(part)])
    return pd.DataFrame(groups, columns=cols)


def first_step_comparison(
    store: TrajectoryStore,
    features: FeatureMap,
    models: Mapping[str, SDEModel],
    dt: float,
    *,
    dims: int,
    min_size: int = 2,
    n_model: int = 1000,
    n_null: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """The LLM's true second-step distribution against each model's one-step Gaussian.

    For every :func:`first_token_groups` group (``K`` samples sharing prompt, temperature
    and first token) the ``K`` second states ``z_1`` (leading ``dims`` PCA coordinates) are
    compared with ``N(z_0 + mu(z_0, 0) dt, sigma(z_0, 0)^2 dt)`` restricted to the same
    coordinates (:func:`stats.empirical_vs_gaussian`: Gaussian KL, its diagonal version,
    energy distance, and their null reference for a perfect model at this ``K``, ``dims``).
    Groups whose second states are all identical (the LLM was near-deterministic) have no
    sample covariance: they get a row with ``degenerate=True`` and NaN statistics.

    Returns one row per (group, model): ``group`` (index), the group keys, ``conv_id``,
    ``size``, ``model``, ``degenerate`` and the statistics. The same seed is used for all
    models of a group (common random numbers).
    """
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
        raise ValueError(f"dims must be an int >= 1, got {dims!r}")
    dims = min(int(dims), features.output_dim)
    groups = first_token_groups(store.sequences, min_size=min_size)
    offsets = store.sequences["offset"].to_numpy(np.int64)
    rows = []
    for gi, g in groups.iterrows():
        first = offsets[g["rows"]]
        # the shared first state (identical rows for "input" states; equal up to float
        # rounding for hidden states computed in differently padded batches)
        z0 = features.transform(np.asarray(store.embeddings[first], dtype=np.float64))
        z0 = z0.mean(axis=0, keepdims=True)
        z1 = features.transform(np.asarray(store.embeddings[first + 1], dtype=np.float64))
        z1 = z1[:, :dims]
        base = {
            "group": int(gi),
            "prompt_index": g.get("prompt_index"),
            "temperature": g.get("temperature"),
            "first_token": int(g["first_token"]),
            "conv_id": g["conv_id"],
            "size": int(g["size"]),
        }
        degenerate = bool(np.ptp(z1, axis=0).max() == 0)
        for name, model in models.items():
            row = {**base, "model": name, "degenerate": degenerate}
            if not degenerate:
                mu, sigma = drift_diffusion_np(model, z0, 0.0)
                mean = (z0 + mu * dt)[0, :dims]
                std = (sigma * math.sqrt(dt))[0, :dims]
                row.update(
                    stats.empirical_vs_gaussian(
                        z1, mean, std, seed=seed + int(gi), n_model=n_model, n_null=n_null
                    )
                )
            rows.append(row)
    return pd.DataFrame(rows)


def summarise_first_step(
    table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, min_groups: int = 2
) -> dict:
    """Per model: how far the true second-step samples are from the model, beyond chance.

    For each model over its non-degenerate groups: ``n_groups``, ``n_degenerate``, mean
    ``kl_gauss_diag`` / ``energy`` and the mean of their null means, the **excess**
    (statistic minus its null mean: 0 for a perfect model) as a mean with a bootstrap
    interval over conversations (:func:`mean_interval`), and ``share_p05``: the share of
    groups with null p-value <= 0.05 (about 0.05 for a perfect model).
    """
    out = {}
    if table.empty:
        return out
    for name, part in table.groupby("model", sort=False):
        ok = part.loc[~part["degenerate"]]
        res = {"n_groups": int(len(ok)), "n_degenerate": int(part["degenerate"].sum())}
        for stat in ("kl_gauss_diag", "energy"):
            if ok.empty or stat not in ok:
                res[stat] = {"mean": float("nan"), "null_mean": float("nan")}
                res[stat]["excess"] = nan_interval("no group with distinct second states")
                res[stat]["share_p05"] = float("nan")
                continue
            excess = (ok[stat] - ok[f"{stat}_null_mean"]).to_numpy(np.float64)
            res[stat] = {
                "mean": float(ok[stat].mean()),
                "null_mean": float(ok[f"{stat}_null_mean"].mean()),
                "excess": mean_interval(
                    excess,
                    ok["conv_id"].to_numpy(),
                    n_boot=n_boot,
                    seed=seed,
                    min_groups=min_groups,
                ),
                "share_p05": float((ok[f"{stat}_p"] <= 0.05).mean()),
            }
        out[str(name)] = res
    return out


# ---------------------------------------------------------------------------------------
# the paper's claims: losses, divergence with horizon, complexity
# ---------------------------------------------------------------------------------------
def initial_model(fit: Fit) -> SDEModel:
    """The neural SDE of ``fit`` as it was before training: same class, config and seed.

    :func:`~sde_utils.models.fits.fit_all` seeds torch with ``params["seed"]`` and builds the
    neural SDE before any other random draw, so this rebuilds its initial weights.
    """
    torch.manual_seed(int(fit.params["seed"]))
    model = type(fit.sde)(**fit.sde.config())
    model.eval()
    return model


def horizon_errors(
    model: SDEModel,
    trajectories: Sequence[np.ndarray],
    groups: Sequence,
    horizons: Sequence[int],
    dt: float,
) -> pd.DataFrame:
    """Squared error of the drift path against the real path, ``h`` steps after the start.

    For each trajectory ``z (L, k)`` (state space) the deterministic path
    ``z_{j+1} = z_j + mu(z_j, t_j) dt`` from ``z[0]`` at ``t = 0``
    (:func:`~sde_utils.models.simulate.drift_path`, the model's mean prediction without noise)
    is compared with ``z[h]`` for each horizon ``h < L``. Returns one row per
    (trajectory, horizon): ``trajectory``, ``group``, ``h``, ``sq_error`` (mean over the
    ``k`` coordinates of the squared difference).
    """
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"horizons must be integers >= 1, got {horizons}")
    groups = list(groups)
    if len(groups) != len(trajectories):
        raise ValueError(f"{len(groups)} groups for {len(trajectories)} trajectories")
    lengths = np.array([len(z) for z in trajectories])
    keep = np.flatnonzero(lengths > horizons[0])
    cols = ["trajectory", "group", "h", "sq_error"]
    if keep.size == 0:
        return pd.DataFrame(columns=cols)
    n_steps = int(min(horizons[-1], lengths[keep].max() - 1))
    starts = np.stack([np.asarray(trajectories[i][0], dtype=np.float64) for i in keep])
    path = drift_path(model, torch.as_tensor(starts), n_steps, dt=dt)
    path = path.double().cpu().numpy()  # (n_steps + 1, B, k)
    rows = []
    for b, i in enumerate(keep):
        z = np.asarray(trajectories[i], dtype=np.float64)
        for h in horizons:
            if h < len(z) and h <= n_steps:
                rows.append([int(i), groups[i], h, float(((path[h, b] - z[h]) ** 2).mean())])
    return pd.DataFrame(rows, columns=cols)


def response_complexity(sequences: pd.DataFrame, text_column: str = "response") -> pd.DataFrame:
    """Complexity proxies of each sequence's text (:func:`stats.text_complexity`).

    One row per row of ``sequences`` (same index): ``mean_sentence_length``,
    ``mean_clauses``, ``n_words``; plus ``complexity`` (HelpSteer's annotation) when
    ``sequences`` has that column.
    """
    if text_column not in sequences:
        raise KeyError(f"sequences has no {text_column!r} column; columns: {list(sequences)}")
    rows = [stats.text_complexity(str(text)) for text in sequences[text_column]]
    out = pd.DataFrame(rows, index=sequences.index)[
        ["mean_sentence_length", "mean_clauses", "n_words"]
    ]
    if "complexity" in sequences:
        out["complexity"] = pd.to_numeric(sequences["complexity"], errors="coerce")
    return out


def verdict_row(
    claim: str,
    section: str,
    statistic: str,
    interval: Mapping[str, Any],
    *,
    threshold: float = 0.0,
    direction: str = "greater",
    numbers: str = "",
) -> dict:
    """One row of the verdict table: the claim, its interval and :func:`stats.verdict`.

    The verdict is :data:`INSUFFICIENT` when a bound is NaN (too little data); otherwise
    ``stats.verdict((low, high), threshold, direction)``: reproduced when the interval lies
    entirely on the claimed side of ``threshold``, not reproduced when entirely on the
    other side, mixed when it contains ``threshold``.
    """
    low, high = float(interval["low"]), float(interval["high"])
    if math.isfinite(low) and math.isfinite(high):
        result = stats.verdict((low, high), threshold=threshold, direction=direction)
    else:
        result = INSUFFICIENT
    return {
        "claim": claim,
        "section": section,
        "statistic": statistic,
        "estimate": float(interval["estimate"]),
        "low": low,
        "high": high,
        "threshold": float(threshold),
        "direction": direction,
        "verdict": result,
        "numbers": numbers,
    }


__all__ = [
    "BINNED_COLUMNS",
    "INSUFFICIENT",
    "SEQUENCE_COLUMNS",
    "as_interval",
    "binned_means",
    "correlation_summary",
    "drift_diffusion_np",
    "first_step_comparison",
    "first_token_groups",
    "fitted_slope_interval",
    "fit_by_temperature",
    "horizon_errors",
    "initial_model",
    "mean_interval",
    "means_by_level",
    "model_space_sigma2",
    "nan_interval",
    "next_step_values",
    "partial_spearman_interval",
    "project_store",
    "response_complexity",
    "sigma2_by_fit",
    "slope_interval",
    "spearman_interval",
    "step_quantities",
    "summarise_first_step",
    "transition_frame",
    "verdict_row",
    "view_where",
]
