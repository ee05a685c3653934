"""The numbers behind the paper's figures 2-6: drift fields on a grid, drift and diffusion
along trajectories, one-step and drift-path predictions, nearest vocabulary tokens.

Drawing lives in :mod:`sde_utils.plots.paper`; the captions in :mod:`sde_utils.captions`;
each figure's recorded numbers and finding in :mod:`sde_utils.analysis.paper_findings`;
the App. B example (figure 7) in :mod:`sde_utils.analysis.app_b`. Conventions: states are
in the fit's PCA space ``(L, k)`` (``k`` the PCA dimension), the ``j``-th state of a
response lives at ``t_j = t0 + j * dt``; every model call goes through
:func:`~sde_utils.models.base.drift_diffusion_at` (no gradients, the model's own dtype)
and returns float64 numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sde_utils.captions import PAPER_FIGURES
from sde_utils.checks import check_dt, check_int, check_str
from sde_utils.models.base import SDEModel, drift_diffusion_at
from sde_utils.models.simulate import drift_path

__all__ = [
    "figure_record",
    "as_states",
    "DriftField",
    "drift_field",
    "data_extent",
    "drift_diffusion_along",
    "one_step_predictions",
    "diffusion_magnitudes",
    "trajectory_agreement",
    "nearest_token_ids",
]


def figure_record(stem: str, finding: str, numbers: dict | None = None) -> dict:
    """``{"number", "caption", "finding", "numbers"}`` for ``stem``, as notebook 07 records it
    (the report shows the caption and the finding under the figure)."""
    if stem not in PAPER_FIGURES:
        raise ValueError(f"unknown figure {stem!r}; paper figures: {list(PAPER_FIGURES)}")
    check_str("finding", finding, nonempty=False)
    if not finding.strip():
        raise ValueError(f"finding must be a non-empty sentence, got {finding!r}")
    spec = PAPER_FIGURES[stem]
    return {
        "number": spec.number,
        "caption": spec.caption,
        "finding": finding.strip(),
        "numbers": dict(numbers or {}),
    }


# ----------------------------------------------------------------------------- helpers


def as_states(name: str, x, dim: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 ``(L, d)`` array (``d == dim`` when given), else ValueError."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (L, d) with L, d >= 1, got {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} coordinates, expected {dim}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


# ----------------------------------------------------------------------------- drift fields


@dataclass(frozen=True)
class DriftField:
    """The drift restricted to a coordinate plane, on a regular grid.

    ``x (nx,)`` and ``y (ny,)`` are the grid values of coordinates ``dims[0]`` and
    ``dims[1]``; ``u, v (ny, nx)`` are the drift's components along them at the point
    ``base`` with those two coordinates replaced by ``(x[j], y[i])`` (row ``i``, column
    ``j``: the layout of ``np.meshgrid(x, y)`` that ``streamplot`` and ``quiver`` expect),
    at time ``t``.
    """

    dims: tuple[int, int]
    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    t: float

    @property
    def speed(self) -> np.ndarray:
        """In-plane magnitude ``sqrt(u**2 + v**2)``, ``(ny, nx)``."""
        return np.hypot(self.u, self.v)


def data_extent(points, *, quantile: float = 0.01, pad: float = 0.1) -> tuple[float, ...]:
    """``(xmin, xmax, ymin, ymax)`` covering the central ``1 - 2 quantile`` of ``points (N, 2)``,
    widened by ``pad`` times the range on each side (so outliers do not squash the plot)."""
    pts = as_states("points", points, 2)
    if not 0 <= quantile < 0.5 or pad < 0:
        raise ValueError(f"need 0 <= quantile < 0.5 and pad >= 0, got {quantile}, {pad}")
    lo, hi = np.quantile(pts, [quantile, 1 - quantile], axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad * span, hi + pad * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def drift_field(
    model: SDEModel,
    base,
    extent: Sequence[float],
    *,
    dims: tuple[int, int] = (0, 1),
    n: int = 25,
    t: float = 0.0,
) -> DriftField:
    """Evaluate ``model.drift`` on an ``n x n`` grid of the plane spanned by ``dims``.

    ``base (d,)``: the state whose other coordinates are held fixed (zeros = the training
    mean after standardisation + PCA). ``extent``: ``(xmin, xmax, ymin, ymax)`` of the grid.
    """
    base = np.asarray(base, dtype=np.float64)
    if base.ndim != 1 or base.size < 2:
        raise ValueError(f"base must be a (d,) state with d >= 2, got shape {base.shape}")
    d = base.size
    dims = tuple(dims)
    if len(dims) != 2:
        raise ValueError(f"dims must be two coordinate indices in 0..{d - 1}, got {dims!r}")
    i, j = check_int("dims[0]", dims[0]), check_int("dims[1]", dims[1])
    if i == j or not (0 <= i < d and 0 <= j < d):
        raise ValueError(f"dims must be two different coordinates in 0..{d - 1}, got {dims!r}")
    n = check_int("n", n, minimum=2)
    xmin, xmax, ymin, ymax = (float(v) for v in extent)
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"extent must be (xmin, xmax, ymin, ymax) with min < max, got {extent}")
    xs, ys = np.linspace(xmin, xmax, n), np.linspace(ymin, ymax, n)
    gx, gy = np.meshgrid(xs, ys)  # (n, n): row = y, column = x
    states = np.tile(base, (gx.size, 1))
    states[:, i], states[:, j] = gx.ravel(), gy.ravel()
    mu, _ = drift_diffusion_at(model, states, np.full(gx.size, float(t)))
    return DriftField(
        dims=(i, j),
        x=xs,
        y=ys,
        u=mu[:, i].reshape(gx.shape),
        v=mu[:, j].reshape(gx.shape),
        t=float(t),
    )


# ----------------------------------------------------------------------------- along data


def drift_diffusion_along(
    model: SDEModel, trajectory, *, dt: float = 1.0, t0: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)``, each ``(L, d)``: drift and diffusion at each state of ``trajectory``
    ``(L, d)``, the j-th at time ``t0 + j * dt``."""
    x = as_states("trajectory", trajectory)
    t = float(t0) + check_dt(dt) * np.arange(len(x))
    return drift_diffusion_at(model, x, t)


def one_step_predictions(model: SDEModel, trajectory, *, dt: float = 1.0) -> np.ndarray:
    """``(L - 1, d)``: the drift's prediction ``x_j + mu(x_j, t_j) dt`` of each next state
    ``x_{j+1}`` from the actual current one (teacher-forced, noise-free)."""
    x = as_states("trajectory", trajectory)
    if len(x) < 2:
        raise ValueError(f"trajectory needs >= 2 states for a one-step prediction, got {len(x)}")
    mu, _ = drift_diffusion_along(model, x[:-1], dt=dt)
    return x[:-1] + mu * float(dt)


def diffusion_magnitudes(
    model: SDEModel, trajectories: Sequence, *, dt: float = 1.0, max_len: int | None = None
) -> np.ndarray:
    """``(n, T)`` heatmap: the RMS of ``sigma(x_j, t_j)`` over coordinates
    (``||sigma|| / sqrt(d)``) at token ``j`` of each of the ``n`` trajectories.

    ``T`` is the longest length (capped at ``max_len``); shorter rows are NaN-padded.
    """
    if not len(trajectories):
        raise ValueError("trajectories is empty: need at least one (L, d) array")
    xs = [as_states(f"trajectories[{i}]", x) for i, x in enumerate(trajectories)]
    if max_len is not None:
        max_len = check_int("max_len", max_len, minimum=1)
        xs = [x[:max_len] for x in xs]
    out = np.full((len(xs), max(len(x) for x in xs)), np.nan)
    for row, x in enumerate(xs):
        _, sigma = drift_diffusion_along(model, x, dt=dt)
        out[row, : len(x)] = np.sqrt((sigma**2).mean(axis=1))
    return out


def trajectory_agreement(
    model: SDEModel, trajectories: Sequence, *, horizon: int, dt: float = 1.0
) -> pd.DataFrame:
    """How far the drift path from each trajectory's first state is from the actual path.

    For every trajectory ``(L_i, d)`` with ``L_i > horizon``, the noise-free Euler path
    from ``x_0`` is run ``horizon`` steps. Per step ``k = 0..horizon`` the table holds
    ``rmse_drift`` (RMS over trajectories and coordinates of drift path - actual),
    ``rmse_stay`` (the same for "stay at ``x_0``", the random walk's mean path),
    ``rmse_mean`` (for "predict the training mean", 0 in standardised PCA space),
    ``skill_vs_mean`` (``1 - mse_drift / mse_mean``: > 0 when the drift path beats the
    mean) and ``corr_drift`` (Pearson correlation, pooled over trajectories and
    coordinates, of drift-path and actual states; 1 at ``k = 0``, NaN if either is
    constant). ``n`` is the number of trajectories used.
    """
    horizon = check_int("horizon", horizon, minimum=1)
    xs = [as_states(f"trajectories[{i}]", x) for i, x in enumerate(trajectories)]
    xs = [x[: horizon + 1] for x in xs if len(x) > horizon]
    if not xs:
        raise ValueError(f"no trajectory is longer than horizon={horizon} states")
    actual = np.stack(xs)  # (n, H + 1, d)
    starts = torch.as_tensor(actual[:, 0])
    pred = drift_path(model, starts, horizon, dt=check_dt(dt)).double().numpy()  # (H+1, n, d)
    pred = pred.transpose(1, 0, 2)

    def rms(a: np.ndarray) -> np.ndarray:
        return np.sqrt((a**2).mean(axis=(0, 2)))

    flat_p = pred.transpose(1, 0, 2).reshape(horizon + 1, -1)
    flat_a = actual.transpose(1, 0, 2).reshape(horizon + 1, -1)
    corr = np.full(horizon + 1, np.nan)
    for k in range(horizon + 1):
        if flat_p[k].std() > 0 and flat_a[k].std() > 0:
            corr[k] = np.corrcoef(flat_p[k], flat_a[k])[0, 1]
    rmse_drift, rmse_mean = rms(pred - actual), rms(actual)
    return pd.DataFrame(
        {
            "step": np.arange(horizon + 1),
            "rmse_drift": rmse_drift,
            "rmse_stay": rms(actual[:, :1] - actual),
            "rmse_mean": rmse_mean,
            "skill_vs_mean": 1 - rmse_drift**2 / np.where(rmse_mean > 0, rmse_mean**2, np.nan),
            "corr_drift": corr,
            "n": len(xs),
        }
    )


def nearest_token_ids(llm, vectors, *, chunk: int = 512) -> np.ndarray:
    """``(n,)`` id of the vocabulary token whose input embedding has the largest cosine
    with each of ``vectors (n, D)`` (model space); float64 on the LLM's device, ``chunk``
    rows at a time so memory stays ``chunk x vocab``."""
    weight = llm.get_input_embeddings().weight.detach().to(torch.float64)  # on the LLM's device
    unit = torch.nn.functional.normalize(weight, dim=-1)
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float64), device=weight.device)
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"vectors must have shape (n, {weight.shape[1]}), got {tuple(x.shape)}")
    chunk = check_int("chunk", chunk, minimum=1)
    out = [
        (torch.nn.functional.normalize(x[i : i + chunk], dim=-1) @ unit.T).argmax(dim=-1)
        for i in range(0, len(x), chunk)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.int64)
