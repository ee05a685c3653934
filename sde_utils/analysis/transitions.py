"""Per-transition quantities of a trajectory store under a fitted SDE (notebook 08).

Conventions:

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
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.base import SDEModel, drift_diffusion_at
from sde_utils.models.features import FeatureMap

#: Columns of a store's ``sequences`` copied onto every transition row when present.
SEQUENCE_COLUMNS = ("seq_id", "conv_id", "split", "prompt_index", "temperature", "sample_index")


def drift_diffusion_blocks(
    model: SDEModel, z, t, *, batch_size: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """``mu(z, t)`` and ``sigma(z, t)``, both ``(N, k)`` float64, for ``z (N, k)``, ``t (N,)``.

    ``t`` may be a scalar (the same time for every row).
    :func:`~sde_utils.models.base.drift_diffusion_at` (no gradients, the model's dtype and
    device) on blocks of ``batch_size`` rows, so memory stays bounded on long stores.
    """
    z = np.asarray(z)
    if z.ndim != 2:
        raise ValueError(f"z must be (N, k), got shape {z.shape}")
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 0 and t.shape != (z.shape[0],):
        raise ValueError(f"t must be a scalar or ({z.shape[0]},), got {t.shape}")
    mus, sigmas = [], []
    for s in range(0, z.shape[0], batch_size):
        mu, sigma = drift_diffusion_at(
            model, z[s : s + batch_size], t if t.ndim == 0 else t[s : s + batch_size]
        )
        mus.append(mu)
        sigmas.append(sigma)
    empty = np.empty((0, z.shape[1]))
    return (np.concatenate(mus) if mus else empty), (np.concatenate(sigmas) if sigmas else empty)


def step_quantities(model: SDEModel, z0, t0, z1, dt: float) -> dict[str, np.ndarray]:
    """Per transition ``(z0, t0) -> z1`` (``(N, k)``, ``(N,)``, ``(N, k)``): ``(N,)`` arrays.

    * ``sigma2``: ``|sigma(z0, t0)|^2 = sum_i sigma_i^2``;
    * ``sq_increment``: ``|z1 - z0|^2``;
    * ``sq_residual``: ``|z1 - z0 - mu dt|^2`` (the paper's drift loss of this step);
    * ``nll``: Gaussian NLL of the Euler–Maruyama step, mean over the ``k`` coordinates
      (the diffusion loss of this step), so ``sq_residual / k + lam * nll`` averaged over
      a split is the total loss notebook 03 logs for it.
    """
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    if z0.shape != z1.shape or z0.ndim != 2:
        raise ValueError(f"z0 and z1 must both be (N, k), got {z0.shape} and {z1.shape}")
    mu, sigma = drift_diffusion_blocks(model, z0, t0)
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


__all__ = [
    "SEQUENCE_COLUMNS",
    "drift_diffusion_blocks",
    "next_step_values",
    "step_quantities",
    "transition_frame",
]
