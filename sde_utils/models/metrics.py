"""Held-out metrics for any :class:`~sde_utils.models.base.SDEModel`.

One-step metrics read transitions ``x0 (N, d)``, ``t0 (N,)`` (or a scalar), ``x1 (N, d)``
and the token step ``dt`` through the Euler–Maruyama transition of the model,

    x1 | x0 ~ N(x0 + mu(x0, t0) dt, diag(sigma(x0, t0)^2) dt),

and average over all ``N * d`` coordinates ("per dimension"). Multi-step metrics simulate
the model from held-out starting states and compare the simulated and the real states at
each horizon with the energy distance and the RBF-kernel MMD. :func:`evaluate_model`
bundles everything into one flat JSON-able dict per model (a row of the model table).

The model is evaluated under ``torch.no_grad`` in chunks of ``batch_size`` rows, in its own
dtype and on its own device (:func:`~sde_utils.models.base.model_dtype_device`); sums,
residuals and distances are computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import norm

from sde_utils.checks import check_dt, check_fraction, check_int, check_positive
from sde_utils.models.base import SDEModel, model_dtype_device
from sde_utils.models.simulate import simulate

_LOG_2PI = math.log(2.0 * math.pi)
BATCH_SIZE = 8192  # rows of one model evaluation in the one-step metrics


# ---------------------------------------------------------------------------------------
# one-step metrics
# ---------------------------------------------------------------------------------------
def _transitions(model, x0, t0, x1):
    """``x0, t0, x1`` on the model's dtype and device, shapes checked; ``t0`` may be a scalar."""
    x0 = torch.as_tensor(x0)
    dtype, device = model_dtype_device(model, x0)
    x0 = x0.to(dtype=dtype, device=device)
    x1 = torch.as_tensor(x1).to(dtype=dtype, device=device)
    if x0.dim() != 2 or x0.shape != x1.shape or x0.shape[0] == 0:
        raise ValueError(
            f"x0 and x1 must both be (N, d) with N >= 1, got {tuple(x0.shape)} and "
            f"{tuple(x1.shape)}"
        )
    t0 = torch.as_tensor(t0).to(dtype=dtype, device=device)
    if t0.dim() == 0:
        t0 = t0.expand(x0.shape[0])
    if tuple(t0.shape) != (x0.shape[0],):
        raise ValueError(f"t0 must be a scalar or ({x0.shape[0]},), got {tuple(t0.shape)}")
    return x0, t0, x1


def _checked(model, x0, t0, x1, dt, batch_size) -> tuple:
    """The one-step metrics' arguments, checked once: ``(x0, t0, x1)`` prepared by
    :func:`_transitions`, ``dt`` and ``batch_size``."""
    dt = check_dt(dt)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return (*_transitions(model, x0, t0, x1), dt, batch_size)


def _step_chunks(model, x0, t0, x1, dt, batch_size):
    """Yield float64 ``(r, s)`` per chunk: ``r = x1 - x0 - mu dt`` and ``s = sigma sqrt(dt)``
    (prepared, checked arguments)."""
    with torch.no_grad():
        for s in range(0, x0.shape[0], batch_size):
            xa, ta, xb = x0[s : s + batch_size], t0[s : s + batch_size], x1[s : s + batch_size]
            pred = (model.drift(xa, ta) * dt).double()
            scale = (model.diffusion(xa, ta) * math.sqrt(dt)).double()
            yield (xb.double() - xa.double()) - pred, scale


def one_step_nll(model: SDEModel, x0, t0, x1, dt: float, *, batch_size: int = BATCH_SIZE) -> float:
    """Mean Gaussian negative log-likelihood per coordinate of the Euler–Maruyama step.

    ``mean over n, i of 0.5 log(2 pi) + log(s_ni) + 0.5 (r_ni / s_ni)^2`` with
    ``r = x1 - x0 - mu dt`` and ``s = sigma sqrt(dt)`` (nats; includes ``0.5 log 2 pi``).
    """
    return _nll(model, *_checked(model, x0, t0, x1, dt, batch_size))


def _nll(model, x0, t0, x1, dt, batch_size) -> float:
    total, count = 0.0, 0
    for r, s in _step_chunks(model, x0, t0, x1, dt, batch_size):
        total += float((0.5 * _LOG_2PI + s.log() + 0.5 * (r / s) ** 2).sum())
        count += r.numel()
    return total / count


def drift_mse_r2(model: SDEModel, x0, t0, x1, dt: float, *, batch_size: int = BATCH_SIZE) -> dict:
    """Drift error on increments: ``{"mse", "r2"}``.

    ``mse``: mean over coordinates of ``(x1 - (x0 + mu dt))^2``.
    ``r2 = 1 - SS_res / SS_tot`` on increments ``D = x1 - x0``: ``SS_res = sum ||D - mu dt||^2``
    and ``SS_tot = sum ||D - mean(D)||^2`` (pooled over all dimensions, so dimensions
    weigh by their increment variance). A perfect drift with no noise gives 1; zero drift
    on pure noise gives ``-||mean D||^2 N / SS_tot``, about 0; it is negative for drifts
    worse than predicting the mean increment.
    """
    return _drift_mse_r2(model, x0, x1, *_checked(model, x0, t0, x1, dt, batch_size))


def _drift_mse_r2(model, x0_raw, x1_raw, x0, t0, x1, dt, batch_size) -> dict:
    """``x0_raw, x1_raw``: the caller's arrays (the increments' variance is taken on them,
    in float64, not on their cast to the model's dtype); the rest prepared and checked."""
    ss_res = 0.0
    for r, _ in _step_chunks(model, x0, t0, x1, dt, batch_size):
        ss_res += float((r**2).sum())
    inc = torch.as_tensor(x1_raw).double().cpu() - torch.as_tensor(x0_raw).double().cpu()
    ss_tot = float(((inc - inc.mean(0)) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return {"mse": ss_res / inc.numel(), "r2": r2}


def interval_coverage(
    model: SDEModel,
    x0,
    t0,
    x1,
    dt: float,
    levels: Iterable[float] = (0.5, 0.9),
    *,
    batch_size: int = BATCH_SIZE,
) -> dict:
    """``{level: coverage}``: share of coordinates ``x1_i`` inside the central Gaussian interval.

    The interval of level ``c`` is ``x0 + mu dt +- z sigma sqrt(dt)`` with
    ``z = Phi^-1((1 + c) / 2)``, per dimension; coverage is averaged over all ``N * d``
    coordinates. A calibrated model gives coverage ~ ``c``.
    """
    levels = _check_levels(levels)
    return _coverage(model, *_checked(model, x0, t0, x1, dt, batch_size), levels)


def _check_levels(levels: Iterable[float]) -> list[float]:
    return [check_fraction("levels", c) for c in levels]


def _coverage(model, x0, t0, x1, dt, batch_size, levels: list[float]) -> dict:
    z = {c: float(norm.ppf(0.5 + 0.5 * c)) for c in levels}
    hits = dict.fromkeys(levels, 0)
    count = 0
    for r, s in _step_chunks(model, x0, t0, x1, dt, batch_size):
        u = (r / s).abs()
        for c in levels:
            hits[c] += int((u <= z[c]).sum())
        count += r.numel()
    return {c: hits[c] / count for c in levels}


def one_step_rows(model: SDEModel, x0, t0, x1, dt: float, levels=(0.5, 0.9)) -> dict:
    """Per-transition pieces of the one-step metrics, float64 numpy, so that they can be
    resampled by conversation (:mod:`sde_utils.analysis.heldout`).

    Returns ``{"nll": (N,)`` (the NLL of :func:`one_step_nll` averaged over the ``d``
    coordinates of each row; their mean is ``one_step_nll``), ``"sq_res": (N,)``
    (``||x1 - x0 - mu dt||^2``), ``"inc": (N, d)`` (``x1 - x0`` of the caller's arrays, in
    float64) and ``"coverage_<c>": (N,)`` (share of the row's coordinates inside the
    central ``c`` interval)}``.
    """
    levels = _check_levels(levels)
    x0c, t0c, x1c, dt, bs = _checked(model, x0, t0, x1, dt, BATCH_SIZE)
    z = {c: float(norm.ppf(0.5 + 0.5 * c)) for c in levels}
    parts: dict[str, list] = {"nll": [], "sq_res": [], **{c: [] for c in levels}}
    for r, s in _step_chunks(model, x0c, t0c, x1c, dt, bs):
        parts["nll"].append((0.5 * _LOG_2PI + s.log() + 0.5 * (r / s) ** 2).mean(1))
        parts["sq_res"].append((r**2).sum(1))
        u = (r / s).abs()
        for c in levels:
            parts[c].append((u <= z[c]).double().mean(1))
    out = {key: torch.cat(parts[key]).cpu().numpy() for key in ("nll", "sq_res")}
    inc = torch.as_tensor(x1).double().cpu() - torch.as_tensor(x0).double().cpu()
    out["inc"] = inc.numpy()
    for c in levels:
        out[f"coverage_{c:g}"] = torch.cat(parts[c]).cpu().numpy()
    return out


# ---------------------------------------------------------------------------------------
# two-sample distances
# ---------------------------------------------------------------------------------------
def _as_sample(name: str, a) -> torch.Tensor:
    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    if a.dim() == 1:
        a = a[:, None]
    if a.dim() != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must be (n, d) (or (n,)) with n >= 2, got {tuple(a.shape)}")
    return a


def _pair_sum(a: torch.Tensor, b: torch.Tensor, fn, chunk_size: int, same: bool = False):
    """``sum_ij fn(||a_i - b_j||)`` over all pairs, ``chunk_size`` rows of ``a`` at a time.

    With ``same`` (``b is a``) the diagonal distances are set to exactly 0 first.
    """
    total = 0.0
    for s in range(0, a.shape[0], chunk_size):
        dist = torch.cdist(a[s : s + chunk_size], b)
        if same:
            dist.diagonal(offset=s).zero_()
        total += float(fn(dist).sum())
    return total


def _within_mean(a: torch.Tensor, fn, chunk_size: int, unbiased: bool) -> float:
    n = a.shape[0]
    total = _pair_sum(a, a, fn, chunk_size, same=True)
    if not unbiased:
        return total / (n * n)
    diag = float(fn(torch.zeros(1, dtype=a.dtype))) * n  # the i == j terms, fn(0) each
    return (total - diag) / (n * (n - 1))


def _identity(x):
    return x


def energy_distance(a, b, *, unbiased: bool = True, chunk_size: int = 2048) -> float:
    """Energy distance ``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`` between samples.

    Args:
        a: ``(n, d)`` (or ``(n,)``) sample of X; b: ``(m, d)`` sample of Y; n, m >= 2.
        unbiased: within-sample means over pairs ``i != j`` (U-statistic; unbiased, can be
            slightly negative); else over all pairs (V-statistic, always >= 0; in 1-D it is
            ``scipy.stats.energy_distance(a, b) ** 2``).
        chunk_size: rows per block of the exact pairwise computation (memory
            ``chunk_size * max(n, m)`` float64).

    This is Székely's energy distance itself (zero iff X and Y have the same law), not
    its square root. Exact over all pairs, float64.
    """
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    a, b = _as_sample("a", a), _as_sample("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same width, got {a.shape[1]} and {b.shape[1]}")
    cross = _pair_sum(a, b, _identity, chunk_size) / (a.shape[0] * b.shape[0])
    within_a = _within_mean(a, _identity, chunk_size, unbiased)
    return 2 * cross - within_a - _within_mean(b, _identity, chunk_size, unbiased)


def median_bandwidth(a, b, *, max_points: int = 2000) -> float:
    """Median pairwise distance of the pooled sample (at most ``max_points`` evenly spaced rows)."""
    pooled = torch.cat([_as_sample("a", a), _as_sample("b", b)])
    if pooled.shape[0] > max_points:
        pooled = pooled[torch.linspace(0, pooled.shape[0] - 1, max_points).long()]
    d = torch.pdist(pooled)
    med = float(d.median()) if d.numel() else 0.0
    return med if med > 0 else 1.0


def mmd_rbf(a, b, bandwidth: float | str = "median", *, chunk_size: int = 2048) -> float:
    """Unbiased squared MMD with ``k(x, y) = exp(-||x - y||^2 / (2 h^2))``.

    ``MMD^2 = mean_{i != j} k(a_i, a_j) + mean_{i != j} k(b_i, b_j) - 2 mean_ij k(a_i, b_j)``
    (U-statistic; zero in expectation when the laws agree, may be slightly negative).
    ``bandwidth``: ``h`` (> 0) or ``"median"`` (:func:`median_bandwidth` of the pooled
    sample).
    """
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    a, b = _as_sample("a", a), _as_sample("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same width, got {a.shape[1]} and {b.shape[1]}")
    if bandwidth == "median":
        h = median_bandwidth(a, b)
    elif isinstance(bandwidth, str):
        raise ValueError(f"bandwidth must be a positive number or 'median', got {bandwidth!r}")
    else:
        h = check_positive("bandwidth", bandwidth)
    gamma = 1.0 / (2.0 * h * h)

    def kernel(dist):
        return torch.exp(-gamma * dist.square())

    cross = _pair_sum(a, b, kernel, chunk_size) / (a.shape[0] * b.shape[0])
    return (
        _within_mean(a, kernel, chunk_size, True)
        + _within_mean(b, kernel, chunk_size, True)
        - 2 * cross
    )


# ---------------------------------------------------------------------------------------
# multi-step distances and the bundle
# ---------------------------------------------------------------------------------------
def multistep_samples(
    trajs: list, model: SDEModel, *, horizons, n_paths: int, dt: float, seed: int, method: str
) -> dict:
    """The real and simulated states :func:`multistep_distances` compares, per horizon.

    ``trajs``: numpy ``(L_i, d)`` trajectories. Returns ``{k: {"n", "rows", "real", "sim"}}``
    with ``rows`` the indices (into ``trajs``) of the ``n`` trajectories with ``L > k``,
    ``real (n, d)`` their state ``k``, ``sim (n, n_paths, d)`` torch float64 of the model's
    states ``k`` steps after their start (one :func:`simulate` call for all horizons);
    ``real``/``sim``/``rows`` are None where ``n < 2``. Per-trajectory pieces let
    :mod:`sde_utils.analysis.heldout` resample trajectories.
    """
    lengths = np.array([x.shape[0] for x in trajs])
    out = {
        k: {"n": int((lengths > k).sum()), "rows": None, "real": None, "sim": None}
        for k in horizons
    }
    reach = [k for k in horizons if out[k]["n"] >= 2]
    if not reach:
        return out
    keep = np.flatnonzero(lengths > reach[0])  # every trajectory some horizon can use
    starts = np.stack([trajs[i][0] for i in keep])
    paths = simulate(
        model, starts, n_steps=reach[-1], dt=dt, n_paths=n_paths, method=method, seed=seed
    )  # (K + 1, n_keep, n_paths, d)
    for k in reach:
        rows = np.flatnonzero(lengths[keep] > k)
        out[k]["rows"] = keep[rows]
        out[k]["real"] = np.stack([trajs[keep[i]][k] for i in rows])
        out[k]["sim"] = paths[k, torch.as_tensor(rows)].double()
    return out


def multistep_distances(
    model: SDEModel,
    trajectories: Sequence,
    *,
    horizons: Iterable[int] = (1, 2, 4, 8, 16),
    n_paths: int = 8,
    dt: float = 1.0,
    seed: int = 0,
    method: str = "euler",
    mmd: bool = True,
) -> dict:
    """Distances between simulated and real states ``k`` steps after each trajectory's start.

    For every held-out trajectory ``x: (L, d)`` (in the model's state space, e.g. after the
    :class:`~sde_utils.models.features.FeatureMap`; numpy or torch) the model is simulated ``n_paths`` times
    from ``x[0]`` at ``t0 = 0`` (:func:`~sde_utils.models.simulate.simulate`, ``seed``); at horizon
    ``k`` the trajectories with ``L > k`` contribute their real state ``x[k]`` (``n`` of
    them) and their ``n * n_paths`` simulated states, and the two pooled sets are compared.

    Returns ``{k: {"energy": float | None, "mmd": float | None, "n": n, "n_sim": n * n_paths}}``
    (:func:`energy_distance` unbiased, :func:`mmd_rbf` with the median bandwidth); a
    horizon with ``n < 2`` gets ``None`` distances. Cost: pairwise distances over
    ``(n * n_paths)^2`` pairs per horizon.
    """
    horizons = sorted({int(k) for k in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"horizons must be integers >= 1, got {horizons}")
    trajs = [
        x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x) for x in trajectories
    ]
    if not trajs:
        raise ValueError("trajectories is empty: need held-out trajectories (L, d)")
    widths = {x.shape[1] if x.ndim == 2 else None for x in trajs}
    if len(widths) != 1 or None in widths:
        raise ValueError(f"every trajectory must be (L, d) with one d, got widths {widths}")
    out = {}
    for k, v in multistep_samples(
        trajs, model, horizons=horizons, n_paths=n_paths, dt=dt, seed=seed, method=method
    ).items():
        out[k] = {"energy": None, "mmd": None, "n": v["n"], "n_sim": 0}
        if v["real"] is None:
            continue
        sim = v["sim"].reshape(-1, v["real"].shape[1])
        out[k]["n_sim"] = int(sim.shape[0])
        out[k]["energy"] = energy_distance(sim, v["real"])
        if mmd:
            out[k]["mmd"] = mmd_rbf(sim, v["real"])
    return out


def _split(split_transitions) -> tuple:
    if isinstance(split_transitions, Mapping):
        return tuple(split_transitions[key] for key in ("x0", "t0", "x1"))
    if isinstance(split_transitions, (tuple, list)) and len(split_transitions) == 3:
        return tuple(split_transitions)
    raise TypeError(
        "split_transitions must be (x0, t0, x1) or a mapping with keys x0, t0, x1, got "
        f"{type(split_transitions).__name__}"
    )


def evaluate_model(
    model: SDEModel,
    split_transitions,
    trajectories: Sequence | None,
    dt: float,
    *,
    levels: Iterable[float] = (0.5, 0.9),
    horizons: Iterable[int] = (1, 2, 4, 8, 16),
    n_paths: int = 8,
    seed: int = 0,
    mmd: bool = True,
) -> dict:
    """Every metric of this module as one flat JSON-able dict (one row of a model table).

    Args:
        split_transitions: held-out ``(x0, t0, x1)`` (or a mapping with those keys).
        trajectories: held-out ``(L, d)`` trajectories for :func:`multistep_distances`
            (``None`` skips them).

    Keys: ``n_transitions``, ``nll``, ``drift_mse``, ``drift_r2``, ``coverage_<level>``
    (e.g. ``coverage_0.5``), and per horizon ``k``: ``energy_h<k>``, ``mmd_h<k>``,
    ``n_h<k>`` (``None`` where too few trajectories reach ``k``).
    """
    x0, t0, x1 = _split(split_transitions)
    levels = _check_levels(levels)
    checked = _checked(model, x0, t0, x1, dt, BATCH_SIZE)  # (x0, t0, x1, dt, batch_size)
    row = {"n_transitions": int(torch.as_tensor(x0).shape[0])}
    row["nll"] = _nll(model, *checked)
    drift = _drift_mse_r2(model, x0, x1, *checked)
    row["drift_mse"], row["drift_r2"] = drift["mse"], drift["r2"]
    for c, cov in _coverage(model, *checked, levels).items():
        row[f"coverage_{c:g}"] = cov
    if trajectories is not None:
        dist = multistep_distances(
            model,
            trajectories,
            horizons=horizons,
            n_paths=n_paths,
            dt=checked[3],
            seed=seed,
            mmd=mmd,
        )
        for k, v in dist.items():
            row[f"energy_h{k}"] = v["energy"]
            if mmd:
                row[f"mmd_h{k}"] = v["mmd"]
            row[f"n_h{k}"] = v["n"]
    return row


__all__ = [
    "drift_mse_r2",
    "energy_distance",
    "evaluate_model",
    "interval_coverage",
    "median_bandwidth",
    "mmd_rbf",
    "multistep_distances",
    "multistep_samples",
    "one_step_rows",
    "one_step_nll",
]
