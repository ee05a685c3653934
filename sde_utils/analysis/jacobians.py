"""One-step Jacobian spectra: does a model's one-step map amplify or contract?

For any :class:`~sde_utils.models.base.SDEModel` the Euler map ``x -> x + mu(x, t) dt`` has
the Jacobian ``F(x, t) = I + J_mu(x, t) dt`` (``(d, d)``;
:func:`~sde_utils.models.multistep.one_step_jacobian`). Its **spectral radius**
``max |eig F|`` says whether a small perturbation grows (> 1) or decays (< 1) along the
chain near ``x``; its **spectral norm** ``||F||_2`` whether it can grow at all in one step.
Notebook 03 reads both at held-out states for every model, as the diagnosis of a model
whose multi-step distances are worse than its one-step likelihood suggests.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from sde_utils.checks import check_dt, check_int
from sde_utils.models.base import model_dtype_device
from sde_utils.models.multistep import one_step_jacobian

QUANTILE = 0.9  # the upper quantile reported beside the median


def one_step_spectra(model, x, t, dt: float, *, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """``{"radius": (N,), "norm": (N,)}`` float64: spectral radius and spectral norm of the
    one-step map's Jacobian ``I + J_mu dt`` at states ``x (N, d)`` and times ``t (N,)``."""
    dt = check_dt(dt)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    x = torch.as_tensor(np.asarray(x))
    dtype, device = model_dtype_device(model, x)
    x = x.to(dtype=dtype, device=device)
    t = torch.as_tensor(np.asarray(t)).to(dtype=dtype, device=device).reshape(-1)
    if x.ndim != 2 or t.shape != (x.shape[0],):
        raise ValueError(f"need x (N, d) and t (N,), got {tuple(x.shape)} and {tuple(t.shape)}")
    radius, norm = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            f = one_step_jacobian(model, x[i : i + batch_size], t[i : i + batch_size], dt)
            f = f.double().cpu()
            radius.append(torch.linalg.eigvals(f).abs().amax(-1))
            norm.append(torch.linalg.matrix_norm(f, ord=2))
    return {"radius": torch.cat(radius).numpy(), "norm": torch.cat(norm).numpy()}


def spectra_of_models(models: Mapping, x, t, dt: float) -> dict[str, dict[str, np.ndarray]]:
    """:func:`one_step_spectra` of every model, ``{name: {"radius", "norm"}}``."""
    return {name: one_step_spectra(model, x, t, dt) for name, model in models.items()}


def spectra_table(spectra: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """One row per model: median and 90% quantile of the radius and the norm, and the
    share of states whose radius exceeds 1 (perturbations grow there)."""
    rows = {}
    for name, s in spectra.items():
        r, n = np.asarray(s["radius"]), np.asarray(s["norm"])
        rows[name] = {
            "radius_median": float(np.median(r)),
            f"radius_q{QUANTILE * 100:.0f}": float(np.quantile(r, QUANTILE)),
            "norm_median": float(np.median(n)),
            f"norm_q{QUANTILE * 100:.0f}": float(np.quantile(n, QUANTILE)),
            "share_radius_above_1": float(np.mean(r > 1.0)),
        }
    return pd.DataFrame(rows).T


def _iv(iv: Mapping, sign: str = "") -> str:
    return f"{iv['estimate']:{sign}.3f} [{iv['low']:{sign}.3f}, {iv['high']:{sign}.3f}]"


def diagnosis_lines(
    table: pd.DataFrame, intervals: Mapping, criteria: list[str], pairs=()
) -> list[str]:
    """Readable lines of the diagnosis: per model (rows of :func:`spectra_table`) the
    median radius, the share above 1 and the median norm beside its held-out ``criteria``
    intervals (``intervals``: :func:`~sde_utils.analysis.heldout.heldout_intervals`), then
    the paired difference ``a - b`` of each ``(a, b)`` in ``pairs``."""
    lines = []
    for name, row in table.iterrows():
        per = intervals["per_model"][name]
        lines.append(
            f"{name:<16} radius median {row['radius_median']:.3f} "
            f"(>1 at {row['share_radius_above_1']:.0%}), norm median {row['norm_median']:.3f}; "
            + "; ".join(f"{c} {_iv(per[c])}" for c in criteria)
        )
    for a, b in pairs:
        diff = intervals["pairwise"][a][b]
        lines.append(f"{a} - {b}: " + "; ".join(f"{c} {_iv(diff[c], '+')}" for c in criteria))
    return lines


def heldout_states(transitions, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` rows ``(x0 (n, d), t0 (n,))`` of held-out transitions ``(x0, t0,
    x1)``, drawn without replacement with ``seed`` (in their original order)."""
    limit = check_int("limit", limit, minimum=1)
    x0, t0 = np.asarray(transitions[0]), np.asarray(transitions[1])
    pick = np.sort(np.random.default_rng(seed).permutation(x0.shape[0])[:limit])
    return x0[pick], t0[pick]


__all__ = [
    "QUANTILE",
    "diagnosis_lines",
    "heldout_states",
    "one_step_spectra",
    "spectra_of_models",
    "spectra_table",
]
