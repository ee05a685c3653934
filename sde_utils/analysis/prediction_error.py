"""Held-out prediction error of a fitted SDE (notebook 08, section 4 and the losses
claim): the drift path against real paths by horizon, and the network before training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from sde_utils.models.base import SDEModel
from sde_utils.models.fits import Fit
from sde_utils.models.simulate import drift_path


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


__all__ = ["horizon_errors", "initial_model"]
