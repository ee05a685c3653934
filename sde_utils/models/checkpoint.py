"""Checkpoints of :func:`sde_utils.models.train.fit`: what is saved, and how a run is recognised.

A checkpoint is one file, ``<checkpoint_dir>/checkpoint.pt``, written atomically after every
epoch with ``torch.save``: the model's and the optimizer's state, the epoch, the best
weights so far and the early-stopping counters, the history (as a dict), the shuffling
generator's state and torch's global RNG states (CPU, and CUDA when available), so that a
killed run resumes to bit-identical results. Its ``signature`` (model class and config,
parameter count, dtype, fit parameters but ``epochs``, and a :func:`fingerprint` of each
data split) must match the resuming run's exactly. A checkpoint that cannot be read
(truncated, not a checkpoint of this format) is named in a warning and ignored: training
restarts from scratch, which gives the same result as a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sde_utils.io import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
FINGERPRINT_ROWS = 4096
# the entries Checkpoint.save writes; a file without them is no usable checkpoint
_COMPLETE = {"format", "signature", "epoch", "model", "optimizer", "best_state", "best_val"}
_COMPLETE |= {"bad_epochs", "history", "generator_state", "torch_rng_state"}


def copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model.state_dict()`` (same devices and dtypes)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fingerprint(*tensors: torch.Tensor, rows: int = FINGERPRINT_ROWS) -> str:
    """Hash of dtype, shape and the exact bytes of up to ``rows`` evenly spaced rows of each
    tensor: a cheap check that a checkpoint belongs to the same data (hashing every byte of
    50k x 64 states took ~20 ms per call, 6% of an epoch)."""
    h = hashlib.sha256()
    for v in tensors:
        h.update(f"{v.dtype}{tuple(v.shape)}".encode())
        if v.shape[0] > rows:
            v = v[torch.linspace(0, v.shape[0] - 1, rows, device=v.device).round().long()]
        # a copy: a "contiguous" tensor with a size-1 dimension may keep a stride != 1
        v = v.detach().cpu().reshape(-1).clone()
        h.update(v.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class TrainingState:
    """Everything of a training run that changes from epoch to epoch (but the model).

    ``history`` is the run's :class:`~sde_utils.models.train.History`; ``best_state`` the
    weights of its best epoch (the initial weights before any); ``bad_epochs`` the epochs
    since the last improvement of the val total ``best_val``; ``epoch`` the epochs done.
    """

    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    history: Any
    best_state: dict[str, torch.Tensor]
    best_val: float = math.inf
    bad_epochs: int = 0
    epoch: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """Where a run checkpoints (``path``, ``None``: nowhere) and the ``signature`` a
    checkpoint there must carry to be resumed by this run."""

    path: Path | None
    signature: dict[str, Any] | None = None

    @classmethod
    def for_run(
        cls,
        checkpoint_dir: str | os.PathLike | None,
        model: nn.Module,
        trainable: list[nn.Parameter],
        dtype: torch.dtype,
        params: dict[str, Any],
        train: tuple[torch.Tensor, ...],
        val: tuple[torch.Tensor, ...],
    ) -> Checkpoint:
        """The checkpoint of a fit of ``model`` with ``params`` on ``train``/``val`` (data
        already on the model's dtype); no signature is computed without a directory."""
        if checkpoint_dir is None:
            return cls(None)
        signature = {
            "model_class": type(model).__name__,
            "model_config": model.config() if hasattr(model, "config") else None,
            "n_parameters": sum(p.numel() for p in trainable),
            "dtype": str(dtype),
            "params": {k: v for k, v in params.items() if k != "epochs"},
            "train": fingerprint(*train),
            "val": fingerprint(*val),
        }
        return cls(Path(checkpoint_dir) / CHECKPOINT_NAME, signature)

    def save(self, model: nn.Module, state: TrainingState) -> None:
        """Write the model and ``state`` (atomically); nothing without a path."""
        if self.path is None:
            return
        blob = {
            "format": CHECKPOINT_FORMAT,
            "signature": self.signature,
            "epoch": state.epoch,
            "model": copy_state(model),
            "optimizer": state.optimizer.state_dict(),
            "best_state": state.best_state,
            "best_val": state.best_val,
            "bad_epochs": state.bad_epochs,
            "history": state.history.to_dict(),
            "generator_state": state.generator.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        atomic_write(self.path, lambda fh: torch.save(blob, fh))

    def load(self, epochs: int) -> dict[str, Any] | None:
        """The saved checkpoint, or ``None`` when there is none; a ValueError when it belongs
        to another run or already holds more than ``epochs`` epochs."""
        if self.path is None or not self.path.exists():
            return None
        reason = None
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
            first_line = str(err).partition("\n")[0]
            blob, reason = None, f"{type(err).__name__}: {first_line}"
        if reason is None and not (isinstance(blob, dict) and _COMPLETE <= set(blob)):
            reason = "not a checkpoint: entries missing"
        if reason is not None:
            warnings.warn(
                f"checkpoint {self.path} is damaged ({reason}); training restarts from scratch",
                stacklevel=3,
            )
            return None
        if blob["format"] != CHECKPOINT_FORMAT or blob["signature"] != self.signature:
            raise ValueError(
                f"{self.path} belongs to a different run (model, parameters or data differ):\n"
                f"  checkpoint: {blob.get('signature')}\n  this run:   {self.signature}\n"
                "delete it (or its folder) to start over, or pass resume=False or another "
                "checkpoint_dir to fit"
            )
        if blob["epoch"] > epochs:
            raise ValueError(
                f"{self.path} already holds {blob['epoch']} epochs > epochs={epochs}; "
                f"pass epochs >= {blob['epoch']}, or delete it (or pass resume=False to fit) "
                "to start over"
            )
        return blob


def restore(blob: dict[str, Any], model: nn.Module, state: TrainingState) -> dict[str, Any]:
    """Load a checkpoint read by :meth:`Checkpoint.load` into ``model`` and ``state``, torch's
    global RNG states included; returns the saved history as a dict (``state.history`` is
    left for the caller to rebuild)."""
    model.load_state_dict(blob["model"])
    state.optimizer.load_state_dict(blob["optimizer"])
    state.generator.set_state(blob["generator_state"])
    torch.set_rng_state(blob["torch_rng_state"])
    if torch.cuda.is_available() and blob.get("cuda_rng_state") is not None:
        torch.cuda.set_rng_state_all(blob["cuda_rng_state"])
    state.best_state = blob["best_state"]
    state.best_val = blob["best_val"]
    state.bad_epochs = blob["bad_epochs"]
    state.epoch = blob["epoch"]
    return blob["history"]


__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "FINGERPRINT_ROWS",
    "Checkpoint",
    "TrainingState",
    "copy_state",
    "fingerprint",
    "restore",
]
