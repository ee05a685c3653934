"""Fit every model of notebook 03 on one trajectory store, save and load the bundle.

A fit folder ``data/processed/fits/<run_id>/`` holds ``features.npz`` (the standardise +
PCA map, fitted on the training split), ``model_<name>.pt`` and ``history_<name>.json``
for each model (:data:`MODEL_NAMES`: the neural SDE, four baselines, and the multi-step
and latent SDEs fine-tuned from the neural SDE, :mod:`~sde_utils.models.finetune`),
``evaluation.json`` (held-out metrics, one row per model) and ``fit.json`` (the parameters, the store it came from and
the order of the models, and ``files``: the sha256 of every other file, written last).
It is built in ``<run_id>.partial/`` (training checkpoints live there, so an interrupted
fit resumes from the last epoch) and renamed into place when complete, under the
inter-process lock ``<run_id>.lock`` (:func:`sde_utils.io.build_lock`): a second process
with the same parameters waits, then reuses what the first built. A complete fit with the
same parameters is reused, not retrained, only when every file matches its recorded hash;
a fit folder that is incomplete, unreadable or damaged is named in a warning, moved aside
to ``<run_id>.damaged-<k>/`` (never deleted) and rebuilt. A complete fit is never deleted
or replaced.

State convention: models live in the PCA space of the store (``z = features(x)``),
``t_k = k * dt`` for the k-th token of a response.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sde_utils import paths
from sde_utils.checks import check_dt, check_int, check_positive, check_real, check_seed
from sde_utils.config import params_hash, run_id
from sde_utils.devices import resolve_device
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.io import atomic_write_text, build_lock, to_jsonable
from sde_utils.models.base import SDEModel
from sde_utils.models.baselines import DriftOnlyMLP, LinearDriftMLPSigma, LinearSDE, RandomWalk
from sde_utils.models.features import FeatureMap
from sde_utils.models.finetune import (
    FINETUNE_DEFAULTS,
    check_finetune_params,
    fit_latent,
    fit_multistep,
)
from sde_utils.models.metrics import evaluate_model
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.serialize import load_model, save_model
from sde_utils.models.train import History, fit

MODEL_NAMES = (
    "neural_sde",
    "random_walk",
    "linear_ou",
    "drift_only",
    "linear_mlp_sigma",
    "multistep_sde",
    "latent_sde",
)
# the models that are not SDEs of the paper's kind (closed-form or fixed-sigma references,
# and the linear drift with an MLP sigma); the others are neural SDEs of some training
BASELINE_NAMES = ("random_walk", "linear_ou", "drift_only", "linear_mlp_sigma")
FIT_FORMAT = 1
# a full-profile fit can take hours: a second process waits for it rather than failing
LOCK_TIMEOUT_S = 24 * 3600.0
# what reading a damaged fit file can raise (torch's zip reader raises RuntimeError)
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError)
_READ_ERRORS = (*_READ_ERRORS, pickle.UnpicklingError)


class DamagedFitError(ValueError):
    """A fit folder is incomplete, unreadable, or a file differs from its recorded hash."""


@dataclass
class Fit:
    """A loaded fit: ``models[name]`` in PCA space, ``features`` to go back and forth."""

    path: Path
    params: dict[str, Any]
    store: str
    features: FeatureMap
    models: dict[str, SDEModel]
    histories: dict[str, History]
    evaluation: dict[str, dict[str, Any]]

    @property
    def sde(self) -> SDEModel:
        """The neural SDE."""
        return self.models["neural_sde"]


def check_fit_params(store: TrajectoryStore, params: Mapping[str, Any]) -> None:
    """Every bad parameter is an error here, before features are fitted or a net trained."""
    pca_dim = params["pca_dim"]
    if pca_dim is not None:
        check_int("pca_dim", pca_dim, minimum=1)
        if pca_dim > store.dim:
            raise ValueError(f"pca_dim={pca_dim} is larger than the state dimension {store.dim}")
    check_dt(params["dt"])
    check_real("lam", params["lam"], minimum=0.0)
    for name in ("hidden", "depth", "epochs", "batch_size", "n_paths"):
        check_int(name, params[name], minimum=1)
    check_finetune_params({**FINETUNE_DEFAULTS, **params})
    check_positive("lr", params["lr"])
    check_real("weight_decay", params["weight_decay"], minimum=0.0)
    if params["patience"] is not None:
        check_int("patience", params["patience"], minimum=1)
    check_seed(params["seed"])
    # the network's own checks (activation, time encoding, sigma floor) on a throwaway copy
    NeuralSDE(
        2,
        hidden=params["hidden"],
        depth=params["depth"],
        activation=params["activation"],
        time_encoding=params["time_encoding"],
        sigma_floor=params["sigma_floor"],
        time_scale=params["time_scale"],
    )
    present = set(store.sequences["split"])
    for split in ("train", "val", "test"):
        if split not in present:
            raise ValueError(f"the store has no {split!r} sequences (splits: {sorted(present)})")
        if int(store.split(split).sequences["length"].max()) < 2:
            raise ValueError(f"split {split!r} has no transition: every sequence is 1 token long")


def _tensors(store: TrajectoryStore, split: str, fmap: FeatureMap, dt: float, max_len):
    x0, t0, x1 = store.transitions(split, dt=dt, max_len=max_len)
    z0, z1 = fmap.transform_transitions(x0, x1)
    return tuple(torch.as_tensor(np.ascontiguousarray(a)) for a in (z0, t0, z1))


def _trajectories(store: TrajectoryStore, split: str, fmap: FeatureMap, limit: int, seed: int):
    view = store.split(split)
    order = np.random.default_rng(seed).permutation(len(view))[:limit]
    return [fmap.transform(np.asarray(view.trajectory(int(i)))) for i in sorted(order)]


def check_finite_states(store: TrajectoryStore) -> None:
    """A ValueError naming the store, split, sequence and state of the first NaN/inf state.

    Checks every state of the train, val and test sequences of ``store`` (a view checks
    only its own sequences): the PCA is fitted on every train state and the evaluation
    simulates whole test sequences, so one non-finite state anywhere breaks the fit.
    """
    for split in ("train", "val", "test"):
        view = store.split(split)
        bad_state = ~np.isfinite(view.states()).all(axis=1)
        if not bad_state.any():
            continue
        lengths = view.sequences["length"].to_numpy(np.int64)
        ends = np.cumsum(lengths)
        bad_rows = np.unique(np.searchsorted(ends, np.flatnonzero(bad_state), side="right"))
        first = int(np.flatnonzero(bad_state)[0])
        r = int(bad_rows[0])
        row = view.sequences.iloc[r]
        k = first - int(ends[r] - lengths[r])
        raise ValueError(
            f"store {store.path}: split {split!r} has non-finite states (NaN or inf) in "
            f"{len(bad_rows)} of {len(view)} sequences; first: seq_id={int(row['seq_id'])} "
            f"(pair_id={row['pair_id']!r}), state k={k} (embeddings.npy row "
            f"{int(row['offset']) + k}). The model cannot be fitted on them: rebuild the "
            f"store, or fit on a view without those sequences"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fit_files(models: list[str]) -> list[str]:
    """The files of a fit folder but ``fit.json``, in a fixed order."""
    names = ["features.npz", "evaluation.json"]
    for name in models:
        names += [f"model_{name}.pt", f"history_{name}.json"]
    return names


def verify_fit(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``fit.json`` of ``folder`` once every file matches its recorded sha256.

    Raises :class:`DamagedFitError` naming the folder and the first missing or changed
    file (or a missing/unreadable ``fit.json``, or one without the ``files`` hashes that
    fits written before they were recorded lack).
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / "fit.json").read_text())
        expected = _fit_files(meta["models"])
    except _READ_ERRORS as err:
        raise DamagedFitError(f"fit {folder}: fit.json missing or unreadable ({err!r})") from err
    recorded = meta.get("files")
    if not isinstance(recorded, dict):
        raise DamagedFitError(
            f"fit {folder}: fit.json records no file hashes (written before they were), "
            "so its files cannot be verified"
        )
    if sorted(recorded) != sorted(expected):
        raise DamagedFitError(
            f"fit {folder}: fit.json records hashes of {sorted(recorded)}, expected {expected}"
        )
    for name in expected:
        path = folder / name
        if not path.is_file():
            raise DamagedFitError(f"fit {folder}: {name} is missing")
        if _sha256(path) != recorded[name]:
            raise DamagedFitError(
                f"fit {folder}: {name} differs from the sha256 recorded in fit.json "
                "(damaged or edited after the fit was written)"
            )
    return meta


def _set_aside(folder: Path, reason: str) -> None:
    """Rename an unusable fit folder to ``<name>.damaged-<k>`` (a free k) and warn."""
    k = 0
    while (aside := folder.with_name(f"{folder.name}.damaged-{k}")).exists():
        k += 1
    os.replace(folder, aside)
    warnings.warn(
        f"fit {folder} is not usable ({reason}); moved it to {aside} and fitting again "
        "(delete the moved folder once you no longer need it)",
        stacklevel=3,
    )


def _reusable(final: Path, key: Mapping[str, Any]) -> Fit | None:
    """The fit in ``final`` when it is complete, verified and of ``key``; else None (an
    unusable folder is moved aside with a warning). Call it holding the build lock."""
    if not final.exists():
        return None
    try:
        meta = verify_fit(final)
        if meta.get("key") != to_jsonable(key):  # same hash, other content: never reuse
            raise DamagedFitError("its fit.json holds other parameters under the same id")
        return load_fit(final, verify=False)
    except _READ_ERRORS as err:
        _set_aside(final, str(err))
        return None


def fit_all(
    store: TrajectoryStore,
    params: Mapping[str, Any],
    *,
    root: Path | None = None,
    progress: bool = True,
    device: Any = "auto",
) -> Fit:
    """Fit the neural SDE and the baselines on ``store``; evaluate on its test split.

    ``params`` keys: ``seed, pca_dim, dt, max_len, hidden, depth, activation,
    time_encoding, time_scale, sigma_floor, lam, epochs, batch_size, lr, weight_decay,
    patience, horizons, n_paths, n_eval_trajectories`` and the multi-step model's
    ``multistep_k, multistep_epochs, multistep_patience, contraction,
    contraction_radius`` and the latent SDE's ``latent_*`` parameters
    (:data:`~sde_utils.models.finetune.FINETUNE_DEFAULTS` where missing). Returns the loaded
    :class:`Fit`.
    Builds under the lock ``<root>/<fit id>.lock``; a verified complete fit is reused.
    ``device`` (:func:`sde_utils.devices.resolve_device`; ``"auto"``: CUDA when present)
    is where the models train and are evaluated; a fit made off the CPU gets its own id.
    A store with NaN/inf states is a ValueError before training (and before any file
    but the lock file is written).
    """
    params = {**FINETUNE_DEFAULTS, **dict(params)}
    check_fit_params(store, params)
    dev = resolve_device(device)
    key = {
        "store": store.path.name,
        "content_hash": store.meta.get("content_hash"),
        # a view (one temperature, one split, ...) is other data than the whole store
        "sequences": params_hash({"seq_id": store.sequences["seq_id"].tolist()}),
        # a fit made with another model set is another fit (never reused without a model)
        "models": list(MODEL_NAMES),
        **params,
    }
    if dev.type != "cpu":  # CPU fits keep their ids; another device rounds differently
        key["device"] = dev.type
    rid = run_id(key, prefix="fit")
    root = Path(root or paths.FITS_DIR)
    final = root / rid
    with build_lock(final, timeout=LOCK_TIMEOUT_S):
        done = _reusable(final, key)
        if done is not None:
            return done
        check_finite_states(store)
        work = root / f"{rid}.partial"
        work.mkdir(parents=True, exist_ok=True)
        _build(store, params, key, work, progress, dev)
        os.replace(work, final)  # final is absent: _reusable moved any unusable one aside
    return load_fit(final, verify=False)


def _build(
    store: TrajectoryStore,
    params: dict[str, Any],
    key: dict,
    work: Path,
    progress: bool,
    device: torch.device | str = "cpu",
) -> None:
    """Fit, evaluate and write every file of the fit into ``work``; ``fit.json`` last."""
    torch.manual_seed(params["seed"])
    dt, max_len = float(params["dt"]), params.get("max_len")
    fmap = FeatureMap(pca_dim=params["pca_dim"], seed=params["seed"])
    fmap.fit(store.split("train").states())
    fmap.save(work / "features.npz")
    train, val, test = (_tensors(store, s, fmap, dt, max_len) for s in ("train", "val", "test"))
    d = fmap.output_dim

    net = dict(
        hidden=params["hidden"],
        depth=params["depth"],
        activation=params["activation"],
        time_encoding=params["time_encoding"],
    )
    # sigma starts at the pooled residual scale of a random walk, so the NLL starts sane
    sigma0 = float(((train[2] - train[0]).std() / dt**0.5).clamp_min(1e-3))
    models: dict[str, SDEModel] = {
        "neural_sde": NeuralSDE(
            d,
            **net,
            sigma_floor=params["sigma_floor"],
            sigma_init=sigma0,
            time_scale=params["time_scale"],
        ),
        "random_walk": RandomWalk.fit_closed_form(*train, dt),
        "linear_ou": LinearSDE.fit_closed_form(*train, dt),
        "drift_only": DriftOnlyMLP(d, **net, sigma_init=sigma0, time_scale=params["time_scale"]),
        # least-squares drift as the start, then trained jointly with the sigma MLP
        "linear_mlp_sigma": LinearDriftMLPSigma(
            d,
            **net,
            sigma_floor=params["sigma_floor"],
            sigma_init=sigma0,
            time_scale=params["time_scale"],
        ).set_drift_least_squares(*train, dt),
    }
    models = {name: model.to(device) for name, model in models.items()}
    histories = {}
    train_kw = {
        k: params[k] for k in ("lam", "epochs", "batch_size", "lr", "weight_decay", "patience")
    }
    for name, model in models.items():
        histories[name] = fit(
            model,
            train,
            val,
            dt=dt,
            seed=params["seed"],
            checkpoint_dir=work / "checkpoints" / name,
            progress=progress,
            **train_kw,
        )
        save_model(model, work / f"model_{name}.pt")
        histories[name].to_json(work / f"history_{name}.json")
    start = models["neural_sde"]
    finetuned = {
        "multistep_sde": lambda: fit_multistep(store, fmap, params, start, work, progress),
        "latent_sde": lambda: fit_latent(store, fmap, params, start, work, progress, sigma0),
    }
    for name, fit_one in finetuned.items():
        models[name], histories[name] = fit_one()
        save_model(models[name], work / f"model_{name}.pt")
        histories[name].to_json(work / f"history_{name}.json")

    trajectories = _trajectories(store, "test", fmap, params["n_eval_trajectories"], params["seed"])
    evaluation = {
        name: evaluate_model(
            model,
            test,
            trajectories,
            dt,
            horizons=params["horizons"],
            n_paths=params["n_paths"],
            seed=params["seed"],
        )
        for name, model in models.items()
    }
    atomic_write_text(
        work / "evaluation.json", json.dumps(to_jsonable(evaluation), indent=2) + "\n"
    )
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    meta = {
        "format": FIT_FORMAT,
        "key": to_jsonable(key),
        "params": to_jsonable(params),
        "store": str(store.path),
        "models": list(models),
        "files": {name: _sha256(work / name) for name in _fit_files(list(models))},
    }
    atomic_write_text(work / "fit.json", json.dumps(meta, indent=2) + "\n")


def load_fit(folder: str | os.PathLike, *, verify: bool = True) -> Fit:
    """Open a fit folder written by :func:`fit_all`.

    With ``verify`` (default) every file is first checked against the sha256 recorded in
    ``fit.json`` (:func:`verify_fit`; a :class:`DamagedFitError` names the file); fits
    written before hashes were recorded are loaded unchecked.
    """
    folder = Path(folder)
    meta_path = folder / "fit.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a complete fit (no fit.json); rerun notebook 03")
    meta = json.loads(meta_path.read_text())
    if verify and "files" in meta:
        verify_fit(folder)
    models = {name: load_model(folder / f"model_{name}.pt") for name in meta["models"]}
    for model in models.values():
        model.eval()
    return Fit(
        path=folder,
        params=meta["params"],
        store=meta["store"],
        features=FeatureMap.load(folder / "features.npz"),
        models=models,
        histories={n: History.from_json(folder / f"history_{n}.json") for n in meta["models"]},
        evaluation=json.loads((folder / "evaluation.json").read_text()),
    )


def training_record(fitted: Fit) -> dict[str, dict[str, Any]]:
    """How each trained model's training went, JSON-able, as notebook 03 records it:
    ``neural_sde_training`` (epochs, best epoch, why it stopped, first and best val total,
    seconds) and ``<multistep|latent>_training`` for the fine-tuned models."""
    h = fitted.histories["neural_sde"]
    out = {
        "neural_sde_training": {
            "epochs": h.n_epochs,
            "best_epoch": h.best_epoch,
            "stopped_reason": h.stopped_reason,
            "first_val_total": h.val_total[0],
            "best_val_total": min(h.val_total),
            "seconds": h.seconds,
        }
    }
    for name in ("multistep_sde", "latent_sde"):
        if name in fitted.histories:
            hist = fitted.histories[name]
            out[f"{name.split('_')[0]}_training"] = {
                k: getattr(hist, k) for k in ("n_epochs", "best_epoch", "stopped_reason", "seconds")
            }
    return out


__all__ = [
    "Fit",
    "DamagedFitError",
    "fit_all",
    "load_fit",
    "training_record",
    "verify_fit",
    "check_fit_params",
    "check_finite_states",
    "MODEL_NAMES",
    "BASELINE_NAMES",
    "FINETUNE_DEFAULTS",
    "LOCK_TIMEOUT_S",
]
