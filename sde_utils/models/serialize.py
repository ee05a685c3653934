"""Save and load any registered :class:`~sde_utils.models.base.SDEModel` by class name.

A saved model is ``{"format": 1, "class": <class name>, "config": model.config(),
"state_dict": <CPU tensors>}`` written with ``torch.save``; :func:`load_model` rebuilds the
class from the registry (:func:`~sde_utils.models.base.registered_models`) with
``cls(**config)`` in the saved dtype, so a fit can be reloaded without knowing its class.
Importing this module imports :mod:`~sde_utils.models.neural` and
:mod:`~sde_utils.models.baselines`, which registers every model of the project
(:data:`PROJECT_MODELS`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sde_utils.io import atomic_write
from sde_utils.models.base import SDEModel, registered_models
from sde_utils.models.baselines import DriftOnlyMLP, LinearDriftMLPSigma, LinearSDE, RandomWalk
from sde_utils.models.latent import LatentSDE
from sde_utils.models.multistep import MultiStepNeuralSDE
from sde_utils.models.neural import NeuralSDE

SAVE_FORMAT = 1
# the project's own models; importing them here registers them for load_model
PROJECT_MODELS = (
    NeuralSDE,
    RandomWalk,
    LinearSDE,
    DriftOnlyMLP,
    LinearDriftMLPSigma,
    MultiStepNeuralSDE,
    LatentSDE,
)


def save_model(model: SDEModel, path: str | os.PathLike) -> Path:
    """Write ``{"class", "config", "state_dict"}`` of ``model`` to ``path`` (atomically).

    ``model`` must be a registered class (``NeuralSDE`` or a baseline) with ``config()``.
    Returns the path.
    """
    registry = registered_models()
    name = type(model).__name__
    if registry.get(name) is not type(model) or not hasattr(model, "config"):
        raise TypeError(
            f"save_model needs a registered SDEModel with config(), got {name}; "
            f"registered: {sorted(registry)}"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    saved = {"format": SAVE_FORMAT, "class": name, "config": model.config(), "state_dict": state}
    atomic_write(path, lambda fh: torch.save(saved, fh))
    return path


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SDEModel:
    """Rebuild a model written by :func:`save_model` (class from the registry, same dtype),
    on ``map_location``."""
    registry = registered_models()
    blob = torch.load(Path(path), map_location=map_location, weights_only=True)
    name = blob.get("class") if isinstance(blob, dict) else None
    if name not in registry:
        raise ValueError(
            f"{path}: model class {name!r} is not registered; known: {sorted(registry)}"
        )
    model = registry[name](**blob["config"])
    floats = [v.dtype for v in blob["state_dict"].values() if v.is_floating_point()]
    if floats:
        model = model.to(dtype=floats[0])
    model.load_state_dict(blob["state_dict"])
    return model.to(map_location)


__all__ = ["save_model", "load_model", "SAVE_FORMAT", "PROJECT_MODELS"]
