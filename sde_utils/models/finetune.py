"""The two models of notebook 03 that start from the one-step neural SDE's fit and are
fine-tuned on windows of several steps: ``multistep_sde`` (the k-step Gaussian NLL,
:mod:`sde_utils.models.multistep`) and ``latent_sde`` (the ELBO of a latent SDE,
:mod:`sde_utils.models.latent`). :func:`sde_utils.models.fits.fit_all` calls them after
the one-step fits; their parameters default to :data:`FINETUNE_DEFAULTS` where a caller's
parameters lack them (fits of other notebooks built from an older parameter set).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sde_utils.checks import check_int, check_positive
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.base import model_dtype_device
from sde_utils.models.features import FeatureMap
from sde_utils.models.latent import ELBOObjective, LatentSDE
from sde_utils.models.multistep import MultiStepNeuralSDE, MultiStepObjective, windows
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.train import History, fit

MULTISTEP_DEFAULTS = {
    "multistep_k": 4,
    "multistep_epochs": 10,
    "multistep_patience": 3,
    "contraction": 1.0,
    "contraction_radius": 1.0,
}
LATENT_DEFAULTS = {
    "latent_window": 8,  # observations per ELBO window
    "latent_epochs": 20,
    "latent_patience": 3,
    # the observation noise s as a fraction of the one-step residual scale sigma0 sqrt(dt):
    # small, so that the prior SDE (what is scored) carries the one-step noise itself
    "latent_obs_frac": 0.1,
    "latent_substeps": 1,  # posterior steps per token step: 1 is the grid the prior is scored on
    "latent_context": 32,  # width of the context GRU
}
FINETUNE_DEFAULTS = {**MULTISTEP_DEFAULTS, **LATENT_DEFAULTS}


def check_finetune_params(params: Mapping[str, Any]) -> None:
    """Every bad fine-tuning parameter is an error here (``params`` with the defaults)."""
    for name in (
        "multistep_k", "multistep_epochs", "multistep_patience", "latent_window",
        "latent_epochs", "latent_patience", "latent_substeps", "latent_context",
    ):  # fmt: skip
        check_int(name, params[name], minimum=1)
    MultiStepObjective(params["multistep_k"], params["contraction"], params["contraction_radius"])
    check_positive("latent_obs_frac", params["latent_obs_frac"])


def window_split(
    store: TrajectoryStore,
    split: str,
    fmap: FeatureMap,
    params: Mapping[str, Any],
    key: str,
    *,
    return_rows: bool = False,
) -> tuple:
    """Every ``k``-th k-step window of ``split`` in PCA space, ``k = params[key]``, as
    tensors ``(x0, t0, xs)``: each transition in one window per epoch (all overlapping
    windows would cost ``k`` times as much for mostly repeated steps). With
    ``return_rows``, ``((x0, t0, xs), rows)``: each window's row in the split's
    ``sequences``."""
    k = params[key]
    x0, t0, x1, index = store.transitions(
        split, dt=float(params["dt"]), max_len=params.get("max_len"), return_index=True
    )
    z0, z1 = fmap.transform_transitions(x0, x1)
    w0, wt, ws, start = windows(z0, t0, z1, index[:, 0], k, return_start=True)
    if w0.shape[0] == 0:
        raise ValueError(
            f"split {split!r} has no sequence of more than {key}={k} states "
            f"(max_len={params.get('max_len')}): lower {key}"
        )
    data = tuple(torch.as_tensor(a[::k].copy(order="C")) for a in (w0, wt, ws))
    return (data, index[start[::k], 0]) if return_rows else data


def _finetune(model, start: NeuralSDE, objective, data, params, epochs, patience, ckpt, progress):
    model = model.to(model_dtype_device(start)[1])
    # every weight of the start is taken; the latent SDE's extra nets stay as initialised
    loaded = model.load_state_dict(start.state_dict(), strict=False)
    if loaded.unexpected_keys:
        raise ValueError(
            f"{type(model).__name__} has no place for {loaded.unexpected_keys} of the "
            f"{type(start).__name__} it starts from"
        )
    history = fit(
        model,
        *data,
        dt=float(params["dt"]),
        lam=objective_lam(objective, params),
        epochs=epochs,
        batch_size=params["batch_size"],
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        patience=patience,
        seed=params["seed"],
        checkpoint_dir=ckpt,
        progress=progress,
        objective=objective,
    )
    return model, history


def objective_lam(objective: Any, params: Mapping[str, Any]) -> float:
    """The weight of the objective's second term: the ELBO's KL weighs 1 (else it is not
    the ELBO); the k-step NLL takes the one-step fits' ``lam``."""
    return 1.0 if isinstance(objective, ELBOObjective) else float(params["lam"])


def fit_multistep(
    store: TrajectoryStore, fmap: FeatureMap, params: dict, start: NeuralSDE, work: Path, progress
) -> tuple[MultiStepNeuralSDE, History]:
    """The neural SDE fine-tuned on the k-step objective from ``start``'s (the one-step
    fit's) weights: ``multistep_epochs`` epochs at most, early stopping on the val total
    ``drift + lam * kstep_nll + penalty`` with ``multistep_patience``."""
    k = params["multistep_k"]
    objective = MultiStepObjective(k, params["contraction"], params["contraction_radius"])
    data = [window_split(store, s, fmap, params, "multistep_k") for s in ("train", "val")]
    model = MultiStepNeuralSDE(**start.config())
    return _finetune(
        model, start, objective, data, params, params["multistep_epochs"],
        params["multistep_patience"], work / "checkpoints" / "multistep_sde", progress,
    )  # fmt: skip


def fit_latent(
    store: TrajectoryStore,
    fmap: FeatureMap,
    params: dict,
    start: NeuralSDE,
    work: Path,
    progress,
    sigma0: float,
) -> tuple[LatentSDE, History]:
    """The latent SDE whose prior starts from ``start``'s (the one-step fit's) networks,
    trained by its ELBO (:class:`~sde_utils.models.latent.ELBOObjective`) on every
    ``latent_window``-th window, ``latent_epochs`` epochs at most, early stopping on the
    validation negative ELBO with ``latent_patience``. The observation noise is
    ``latent_obs_frac * sigma0 * sqrt(dt)`` (``sigma0``: the pooled one-step residual
    scale)."""
    w = params["latent_window"]
    obs = params["latent_obs_frac"] * sigma0 * float(params["dt"]) ** 0.5
    model = LatentSDE(
        **start.config(),
        context_dim=params["latent_context"],
        obs_scale=obs,
        n_substeps=params["latent_substeps"],
    )
    data = [window_split(store, s, fmap, params, "latent_window") for s in ("train", "val")]
    return _finetune(
        model, start, ELBOObjective(w, params["seed"]), data, params, params["latent_epochs"],
        params["latent_patience"], work / "checkpoints" / "latent_sde", progress,
    )  # fmt: skip


__all__ = [
    "FINETUNE_DEFAULTS",
    "LATENT_DEFAULTS",
    "MULTISTEP_DEFAULTS",
    "check_finetune_params",
    "fit_latent",
    "fit_multistep",
    "objective_lam",
    "window_split",
]
