"""Fit every model of notebook 03 on one trajectory store, save and load the bundle.

A fit folder ``data/processed/fits/<run_id>/`` holds ``features.npz`` (the standardise +
PCA map, fitted on the training split), ``model_<name>.pt`` and ``history_<name>.json``
for each model (the neural SDE and the three baselines), ``evaluation.json`` (held-out
metrics, one row per model) and ``fit.json`` (the parameters, the store it came from and
the order of the models). It is built in ``<run_id>.partial/`` (training checkpoints
live there, so an interrupted fit resumes from the last epoch) and renamed into place
when complete; a complete fit with the same parameters is reused, not retrained.

State convention: models live in the PCA space of the store (``z = features(x)``),
``t_k = k * dt`` for the k-th token of a response.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sde_utils import paths
from sde_utils.checks import check_dt, check_int, check_positive, check_real, check_seed
from sde_utils.config import params_hash, run_id
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.io import to_jsonable
from sde_utils.models.base import SDEModel
from sde_utils.models.baselines import DriftOnlyMLP, LinearSDE, RandomWalk
from sde_utils.models.features import FeatureMap
from sde_utils.models.metrics import evaluate_model
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.serialize import load_model, save_model
from sde_utils.models.train import History, fit

MODEL_NAMES = ("neural_sde", "random_walk", "linear_ou", "drift_only")
FIT_FORMAT = 1


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


def fit_all(
    store: TrajectoryStore,
    params: Mapping[str, Any],
    *,
    root: Path | None = None,
    progress: bool = True,
) -> Fit:
    """Fit the neural SDE and the baselines on ``store``; evaluate on its test split.

    ``params`` keys: ``seed, pca_dim, dt, max_len, hidden, depth, activation,
    time_encoding, time_scale, sigma_floor, lam, epochs, batch_size, lr, weight_decay,
    patience, horizons, n_paths, n_eval_trajectories``. Returns the loaded :class:`Fit`.
    """
    params = dict(params)
    check_fit_params(store, params)
    key = {
        "store": store.path.name,
        "content_hash": store.meta.get("content_hash"),
        # a view (one temperature, one split, ...) is other data than the whole store
        "sequences": params_hash({"seq_id": store.sequences["seq_id"].tolist()}),
        **params,
    }
    rid = run_id(key, prefix="fit")
    root = Path(root or paths.FITS_DIR)
    final = root / rid
    if final.is_dir() and (final / "fit.json").is_file():
        saved = json.loads((final / "fit.json").read_text())
        if saved.get("key") == to_jsonable(key):
            return load_fit(final)
        shutil.rmtree(final)  # same hash, other content: never reuse silently
    work = root / f"{rid}.partial"
    work.mkdir(parents=True, exist_ok=True)
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
    }
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
    (work / "evaluation.json").write_text(json.dumps(to_jsonable(evaluation), indent=2) + "\n")
    meta = {
        "format": FIT_FORMAT,
        "key": to_jsonable(key),
        "params": to_jsonable(params),
        "store": str(store.path),
        "models": list(models),
    }
    (work / "fit.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    return load_fit(final)


def load_fit(folder: str | os.PathLike) -> Fit:
    """Open a fit folder written by :func:`fit_all`."""
    folder = Path(folder)
    meta_path = folder / "fit.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a complete fit (no fit.json); rerun notebook 03")
    meta = json.loads(meta_path.read_text())
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


__all__ = ["Fit", "fit_all", "load_fit", "check_fit_params", "MODEL_NAMES"]
