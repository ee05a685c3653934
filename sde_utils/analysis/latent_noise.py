"""How the latent SDE's one free modelling choice, its observation noise, moves it between
the one-step and the multi-step criteria (notebook 03).

With one posterior step per token and observation noise ``s -> 0`` the latent SDE's ELBO
is the one-step NLL and the model is the neural SDE; with ``s > 0`` part of each step's
spread is explained as noise on the observation, which the drift then carries forward.
:func:`latent_variants` fits the latent SDE of a notebook-03 fit again at other
``latent_obs_frac`` values (same start, data, epochs and seed: only ``s`` differs), so the
held-out metrics can be read as a trade-off curve (:func:`tradeoff_table`,
:func:`sde_utils.plots.diagnosis.plot_tradeoff`).

Each variant is cached as ``<fits dir>/<fit id>-latent-obs<frac>/model.pt``, written
once training has finished; training checkpoints every epoch under that folder, so an
interrupted run resumes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from sde_utils import paths
from sde_utils.checks import check_positive
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.finetune import fit_latent
from sde_utils.models.fits import Fit
from sde_utils.models.latent import LatentSDE
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
) -> dict[str, LatentSDE]:
    """``{variant_name(frac): latent SDE}`` for every ``frac`` in ``fracs`` (each > 0): the
    fit's own ``latent_sde`` for its own fraction, a fit of the same start on the same
    windows with only the observation noise changed for the others (cached, see the module
    docstring). ``store`` must be the store ``fitted`` was fitted on."""
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
            model, _ = fit_latent(
                store, fitted.features, params, fitted.sde, folder, progress, sigma0
            )
            save_model(model, path)
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        out[variant_name(frac)] = load_model(path).eval()
    return out


def tradeoff_table(per_model: Mapping[str, Mapping], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per model: each metric's estimate and 95% bounds (``<metric>``,
    ``<metric>_low``, ``<metric>_high``) from ``heldout_intervals(...)["per_model"]``."""
    rows = {
        name: {
            f"{m}{suffix}": per[m][key]
            for m in metrics
            for suffix, key in (("", "estimate"), ("_low", "low"), ("_high", "high"))
        }
        for name, per in per_model.items()
    }
    return pd.DataFrame(rows).T


__all__ = ["latent_variants", "tradeoff_table", "variant_name"]
