"""How the latent SDE's one free modelling choice, its observation noise, moves it between
the one-step and the multi-step criteria (notebook 03).

With one posterior step per token and observation noise ``s -> 0`` the latent SDE's ELBO
is the one-step NLL and the model is the neural SDE; with ``s > 0`` part of each step's
spread is explained as noise on the observation, which the drift then carries forward.
:func:`latent_variants` fits the latent SDE of a notebook-03 fit again at other
``latent_obs_frac`` values (same start, data, epochs and seed: only ``s`` differs), so the
held-out metrics can be read as a trade-off curve (:func:`tradeoff_table`,
:func:`sde_utils.plots.diagnosis.plot_tradeoff`).

The one-step NLL scores the latent SDE's prior from the observed state, which is not the
latent model's own likelihood. :func:`sequence_scores` puts every model on one footing:
the NLL per dimension and step of whole held-out windows given their first state, the
latent SDE's through its negative ELBO (an upper bound), the others' exactly.

Each variant is cached as ``<fits dir>/<fit id>-latent-obs<frac>/model.pt``, written
once training has finished; training checkpoints every epoch under that folder, so an
interrupted run resumes.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sde_utils import paths
from sde_utils.analysis.heldout import GROUP_COLUMN
from sde_utils.analysis.intervals import mean_interval
from sde_utils.checks import check_positive
from sde_utils.devices import resolve_device
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.base import SDEModel, model_dtype_device
from sde_utils.models.finetune import fit_latent, window_split
from sde_utils.models.fits import Fit
from sde_utils.models.latent import LatentSDE, elbo_terms
from sde_utils.models.metrics import one_step_rows
from sde_utils.models.serialize import load_model, save_model


def variant_name(frac: float) -> str:
    """``"latent_sde[s=0.1]"``: the model name of the variant with ``latent_obs_frac = frac``."""
    return f"latent_sde[s={frac:g}]"


def latent_variants(
    store: TrajectoryStore,
    fitted: Fit,
    fracs: Sequence[float],
    *,
    root: Path | None = None,
    progress: bool = True,
    device: Any = "auto",
) -> dict[str, LatentSDE]:
    """``{variant_name(frac): latent SDE}`` for every ``frac`` in ``fracs`` (each > 0): the
    fit's own ``latent_sde`` for its own fraction, a fit of the same start on the same
    windows with only the observation noise changed for the others (cached, see the module
    docstring), trained on ``device`` (:func:`sde_utils.devices.resolve_device`; ``"auto"``:
    CUDA when present) and returned on the CPU. ``store`` must be the store ``fitted`` was
    fitted on."""
    own = fitted.params["latent_obs_frac"]
    latent = fitted.models["latent_sde"]
    # the pooled one-step residual scale the fit set s from: s = frac * sigma0 * sqrt(dt)
    sigma0 = latent.obs_scale / (own * float(fitted.params["dt"]) ** 0.5)
    root = Path(root or paths.FITS_DIR)
    out = {}
    for frac in fracs:
        frac = check_positive("latent_obs_frac", frac)
        if frac == own:
            out[variant_name(frac)] = latent
            continue
        folder = root / f"{fitted.path.name}-latent-obs{frac:g}"
        path = folder / "model.pt"
        if not path.is_file():
            params = {**fitted.params, "latent_obs_frac": frac}
            start = copy.deepcopy(fitted.sde).to(resolve_device(device))
            model, _ = fit_latent(store, fitted.features, params, start, folder, progress, sigma0)
            save_model(model, path)
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        out[variant_name(frac)] = load_model(path).eval()
    return out


def tradeoff_table(
    per_model: Mapping[str, Mapping], metrics: Sequence[str], sequence: Mapping | None = None
) -> pd.DataFrame:
    """One row per model: each metric's estimate and 95% bounds (``<metric>``,
    ``<metric>_low``, ``<metric>_high``) from ``heldout_intervals(...)["per_model"]``, and
    with ``sequence`` (:func:`sequence_scores`) the same three of ``window_nll`` (for the
    models of ``per_model``)."""
    rows = {
        name: {
            f"{m}{suffix}": per[m][key]
            for m in metrics
            for suffix, key in (("", "estimate"), ("_low", "low"), ("_high", "high"))
        }
        for name, per in per_model.items()
    }
    for name, iv in (sequence or {}).get("per_model", {}).items():
        for suffix, key in (("", "estimate"), ("_low", "low"), ("_high", "high")):
            if name in rows:
                rows[name][f"window_nll{suffix}"] = iv[key]
    return pd.DataFrame(rows).T


def window_nll(
    model: SDEModel,
    x0: torch.Tensor,
    t0: torch.Tensor,
    xs: torch.Tensor,
    dt: float,
    *,
    n_draws: int = 4,
    seed: int = 0,
    batch_size: int = 4096,
) -> np.ndarray:
    """Per window, the NLL per dimension and step of the observations ``xs (N, L, d)``
    given the start ``x0 (N, d)`` at ``t0 (N,)``, ``(N,)`` float64: the sequence's own
    log-likelihood, comparable across kinds of model.

    For a :class:`~sde_utils.models.latent.LatentSDE` it is its negative ELBO (an upper
    bound of its NLL, so conservative), averaged over ``n_draws`` posterior paths drawn with
    ``seed`` in batches of ``batch_size`` windows; for any other model the exact NLL of its
    Euler chain observed without noise, the mean of the ``L`` one-step NLLs
    (:func:`~sde_utils.models.metrics.one_step_rows`)."""
    n, length, d = xs.shape
    if not isinstance(model, LatentSDE):
        prev = torch.cat([x0[:, None], xs[:, :-1]], dim=1).reshape(-1, d)
        times = (t0[:, None] + dt * torch.arange(length, dtype=t0.dtype)).reshape(-1)
        nll = one_step_rows(model, prev, times, xs.reshape(-1, d), dt)["nll"]
        return nll.reshape(n, length).mean(axis=1)
    dtype, device = model_dtype_device(model)
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            a, t, b = (v[i : i + batch_size].to(device=device, dtype=dtype) for v in (x0, t0, xs))
            draws = [
                sum(elbo_terms(model, a, t, b, dt, generator=gen, per_window=True))
                for _ in range(n_draws)
            ]
            out.append(torch.stack(draws).mean(0))
    return torch.cat(out).double().cpu().numpy()


def heldout_windows(
    store: TrajectoryStore, fitted: Fit, split: str = "test"
) -> tuple[tuple[torch.Tensor, ...], np.ndarray]:
    """Every ``latent_window``-th window of ``split`` in the fit's PCA space (as the latent
    SDE was trained on them) and each window's conversation label ``(M,)``."""
    data, rows = window_split(
        store, split, fitted.features, fitted.params, "latent_window", return_rows=True
    )
    return data, store.split(split).sequences[GROUP_COLUMN].to_numpy()[rows]


def sequence_scores(
    store: TrajectoryStore,
    fitted: Fit,
    models: Mapping[str, SDEModel],
    *,
    reference: str = "neural_sde",
    n_draws: int = 4,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Each model's held-out NLL per dimension and step of whole windows (:func:`window_nll`
    on :func:`heldout_windows`), a 95% conversation-bootstrap interval, and its paired
    difference to ``reference`` on the same windows: ``{"per_model": {name: interval},
    "paired": {name: interval of name - reference}, "window", "n_windows"}``."""
    (x0, t0, xs), groups = heldout_windows(store, fitted)
    dt = float(fitted.params["dt"])
    scores = {
        name: window_nll(model, x0, t0, xs, dt, n_draws=n_draws, seed=seed)
        for name, model in models.items()
    }
    kw = dict(n_boot=n_boot, seed=seed)
    return {
        "window": int(xs.shape[1]),
        "n_windows": int(xs.shape[0]),
        "per_model": {name: mean_interval(v, groups, **kw) for name, v in scores.items()},
        "paired": {
            name: mean_interval(v - scores[reference], groups, **kw)
            for name, v in scores.items()
            if name != reference
        },
    }


def sequence_table(sequence: Mapping, digits: int = 3) -> pd.DataFrame:
    """:func:`sequence_scores` as a table: per model ``window_nll`` and its paired
    difference to the reference, each ``"estimate [low, high]"``."""

    def cell(iv):
        if iv is None:
            return "–"
        return f"{iv['estimate']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"

    return pd.DataFrame(
        {
            name: {"window_nll": cell(iv), "minus_reference": cell(sequence["paired"].get(name))}
            for name, iv in sequence["per_model"].items()
        }
    ).T


__all__ = [
    "heldout_windows",
    "latent_variants",
    "sequence_scores",
    "sequence_table",
    "tradeoff_table",
    "variant_name",
    "window_nll",
]
