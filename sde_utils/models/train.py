"""Training of SDE models on transitions: :func:`fit` and its :class:`History`.

:func:`fit` minimises ``drift + lam * diffusion`` (:mod:`sde_utils.models.losses`) with
AdamW, gradient clipping and early stopping on the validation total, logs all three losses
per epoch for both splits (:class:`History`, figure 1's data), and checkpoints every epoch
(:mod:`sde_utils.models.checkpoint`) so that an interrupted run resumes to bit-identical
results. Its steps: check the arguments (once), prepare the data, restore a checkpoint,
then per epoch train (:func:`_train_one_epoch`), validate, update the best weights and
the early-stopping counter, checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sde_utils.checks import check_dt, check_int, check_positive, check_real, check_seed
from sde_utils.io import atomic_write_text
from sde_utils.models.base import SDEModel, model_dtype_device
from sde_utils.models.checkpoint import Checkpoint, TrainingState, copy_state, restore
from sde_utils.models.losses import (
    EVAL_BATCH_MIN,
    OneStepObjective,
    Transitions,
    mean_objective_losses,
)

# ----------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch losses of :func:`fit` (figure 1's data) and how training ended.

    ``train_*[e]`` / ``val_*[e]`` belong to epoch ``e + 1``. Train losses are the mean of the
    batch losses during the epoch (weighted by batch size, the model changing between
    batches); val losses are evaluated after the epoch. ``best_epoch`` is the 1-based epoch
    with the lowest val total (0: none, the initial weights). ``stopped_reason`` starts with
    one of ``completed``, ``early_stopping``, ``nonfinite_loss``, ``exploding_loss``,
    ``no_trainable_parameters`` followed by ``": "`` and details. ``seconds`` is the wall
    time spent in training (summed over resumed runs). ``params`` are fit's parameters.
    """

    train_total: list[float] = field(default_factory=list)
    train_drift: list[float] = field(default_factory=list)
    train_diffusion: list[float] = field(default_factory=list)
    val_total: list[float] = field(default_factory=list)
    val_drift: list[float] = field(default_factory=list)
    val_diffusion: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_reason: str | None = None
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_epochs(self) -> int:
        return len(self.train_total)

    def append(self, train: dict[str, float], val: dict[str, float]) -> None:
        for key in ("total", "drift", "diffusion"):
            getattr(self, f"train_{key}").append(float(train[key]))
            getattr(self, f"val_{key}").append(float(val[key]))

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown History fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**copy.deepcopy(data))

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class _FitOptions:
    """fit's checked numeric arguments; :meth:`params` is ``History.params`` (key order
    as saved in ``history_<name>.json``)."""

    dt: float
    lam: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    grad_clip: float | None
    patience: int | None
    seed: int
    max_loss: float
    objective: dict = field(default_factory=lambda: {"name": "one_step"})

    @classmethod
    def checked(cls, **kw: Any) -> _FitOptions:
        grad_clip, patience = kw["grad_clip"], kw["patience"]
        return cls(
            dt=check_dt(kw["dt"]),
            lam=check_real("lam", kw["lam"], minimum=0.0),
            epochs=check_int("epochs", kw["epochs"], minimum=1),
            batch_size=check_int("batch_size", kw["batch_size"], minimum=1),
            lr=check_positive("lr", kw["lr"]),
            weight_decay=check_positive("weight_decay", kw["weight_decay"], allow_zero=True),
            grad_clip=None if grad_clip is None else check_positive("grad_clip", grad_clip),
            patience=None if patience is None else check_int("patience", patience, minimum=1),
            seed=check_seed(kw["seed"]),
            max_loss=check_positive("max_loss", kw["max_loss"]),
            objective=kw["objective"].config(),
        )

    @property
    def eval_batch(self) -> int:
        return max(self.batch_size, EVAL_BATCH_MIN)

    def params(self) -> dict[str, Any]:
        return asdict(self)


def _prepare_data(
    model: SDEModel, train: Any, val: Any, objective: Any
) -> tuple[Transitions, Transitions, torch.dtype, torch.device]:
    """Check both splits (``objective.tensors``) and move them to the model's dtype and
    device (a model without floating parameters or buffers: the CPU and the training
    data's dtype)."""
    tr = objective.tensors(train, "train")
    va = objective.tensors(val, "val")
    d = tr[0].shape[1]
    if va[0].shape[1] != d:
        raise ValueError(f"val has d = {va[0].shape[1]} but train has d = {d}")
    state_dim = getattr(model, "state_dim", d)
    if state_dim != d:
        raise ValueError(f"data have d = {d} but the model has state_dim = {state_dim}")
    dtype, device = model_dtype_device(model, like=torch.empty(0, dtype=tr[0].dtype))
    tr = tuple(v.to(device=device, dtype=dtype) for v in tr)
    va = tuple(v.to(device=device, dtype=dtype) for v in va)
    return tr, va, dtype, device


# ----------------------------------------------------------------------------- fit


def fit(
    model: SDEModel,
    train: Transitions,
    val: Transitions,
    *,
    dt: float,
    lam: float = 1.0,
    epochs: int = 100,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    grad_clip: float | None = 1.0,
    patience: int | None = 10,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    max_loss: float = 1e6,
    callback: Callable[[int, History], None] | None = None,
    objective: Any = None,
) -> History:
    """Train ``model`` in place on ``train`` with early stopping on ``val``; return its History.

    Args:
        model: any :class:`~sde_utils.models.base.SDEModel`; its trainable parameters are optimised
            with AdamW(``lr``, ``weight_decay``). Data are moved to its device and dtype.
        train, val: ``(x0 (N, d), t0 (N,), x1 (N, d))`` tensors, ``N >= 1``, finite.
        dt: the time step of every transition (> 0).
        lam: weight of the diffusion loss: total = drift + lam * diffusion (>= 0).
        epochs: maximum number of epochs (>= 1); a resumed run continues up to it.
        batch_size: training batch size; each epoch visits every transition once in an order
            drawn from a ``torch.Generator`` seeded with ``seed`` (the last batch may be short).
        grad_clip: max global gradient norm, or ``None`` for no clipping.
        patience: stop after this many epochs without a strictly lower val total
            (``None``: never stop early).
        checkpoint_dir: if given, ``checkpoint.pt`` there is written atomically after every
            epoch: model, optimizer, epoch, best weights, history, the shuffling generator's
            and torch's RNG states, and a signature of the parameters and data.
        resume: continue from an existing checkpoint (its signature must match, else a
            ValueError; ``epochs`` may differ). Killing a run and rerunning gives weights and
            history identical to an uninterrupted run (``seconds`` aside); torch's global RNG
            state is restored from the checkpoint too. The data are identified by shape and a
            hash of up to 4096 evenly spaced rows. With ``resume=False`` an existing
            checkpoint is overwritten.
        progress: show a tqdm bar over epochs.
        max_loss: a batch or val total loss above this, or non-finite, stops training: the
            best weights are restored, a RuntimeWarning is issued and
            ``History.stopped_reason`` says so.
        callback: ``callback(epoch, history)`` after each epoch (and its checkpoint).
        objective: what is minimised: ``None`` is the one-step objective
            (:class:`~sde_utils.models.losses.OneStepObjective`: ``train``/``val`` are
            transitions, total = drift + lam * diffusion); a
            :class:`~sde_utils.models.multistep.MultiStepObjective` reads windows
            ``(x0, t0, xs (N, k, d))`` and adds its contraction penalty to the total. The
            History's ``drift``/``diffusion`` are the objective's two terms; early stopping
            watches the val total.

    On return the model holds the weights of ``best_epoch`` (the lowest val total; the
    initial weights if no epoch completed). A model without trainable parameters (the
    closed-form baselines) is not trained: the History then holds one entry per split, the
    losses of the model as given, with ``best_epoch = 0`` and ``stopped_reason``
    ``"no_trainable_parameters: ..."``.
    """
    if not isinstance(model, SDEModel):
        raise TypeError(f"model must be an SDEModel, got {type(model).__name__}")
    objective = OneStepObjective() if objective is None else objective
    if not (callable(getattr(objective, "losses", None)) and hasattr(objective, "tensors")):
        raise TypeError(f"objective must have tensors() and losses(), got {objective!r}")
    opts = _FitOptions.checked(
        dt=dt,
        lam=lam,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        patience=patience,
        seed=seed,
        max_loss=max_loss,
        objective=objective,
    )
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    tr, va, dtype, device = _prepare_data(model, train, val, objective)
    params = opts.params()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        return _untrained_history(model, tr, va, opts, params, objective)

    state = TrainingState(
        optimizer=torch.optim.AdamW(trainable, lr=opts.lr, weight_decay=opts.weight_decay),
        generator=torch.Generator().manual_seed(opts.seed),
        history=History(params=params),
        best_state=copy_state(model),
    )
    ckpt = Checkpoint.for_run(checkpoint_dir, model, trainable, dtype, params, tr, va)
    if resume and _resume(ckpt, model, state, params, opts.epochs):
        return state.history  # that run had stopped for good
    _train_epochs(
        model, trainable, state, ckpt, tr, va, device, opts, progress, callback, objective
    )
    if state.history.stopped_reason is None:  # resumed at epoch == epochs
        state.history.stopped_reason = f"completed: all {opts.epochs} epochs"
    model.load_state_dict(state.best_state)
    return state.history


def _untrained_history(
    model: SDEModel, tr: Transitions, va: Transitions, opts: _FitOptions, params: dict, objective
) -> History:
    """The History of a model without trainable parameters: its losses as given."""
    history = History(params=params, best_epoch=0)
    history.append(
        mean_objective_losses(model, objective, tr, opts.dt, opts.lam, opts.eval_batch),
        mean_objective_losses(model, objective, va, opts.dt, opts.lam, opts.eval_batch),
    )
    history.stopped_reason = (
        f"no_trainable_parameters: {type(model).__name__} has no trainable parameters "
        "(fit it in closed form); the losses are those of the model as given"
    )
    return history


def _resume(
    ckpt: Checkpoint, model: SDEModel, state: TrainingState, params: dict, epochs: int
) -> bool:
    """Continue from the checkpoint, if there is one. True when its run had stopped for
    good (early stopping or a bad loss): the model then holds that run's best weights."""
    blob = ckpt.load(epochs)
    if blob is None:
        return False
    state.history = History.from_dict(restore(blob, model, state))
    state.history.params = params
    reason = state.history.stopped_reason or ""
    if reason and not reason.startswith("completed"):
        model.load_state_dict(state.best_state)
        return True
    state.history.stopped_reason = None
    return False


def _is_bad(value: float, max_loss: float) -> bool:
    return not math.isfinite(value) or value > max_loss


def _train_epochs(
    model: SDEModel,
    trainable: list[nn.Parameter],
    state: TrainingState,
    ckpt: Checkpoint,
    tr: Transitions,
    va: Transitions,
    device: torch.device,
    opts: _FitOptions,
    progress: bool,
    callback: Callable[[int, History], None] | None,
    objective: Any,
) -> None:
    """Epochs until ``opts.epochs``, early stopping or a bad loss; checkpoint after each."""
    history = state.history
    n = tr[0].shape[0]
    started = time.perf_counter()
    seconds0 = history.seconds
    bar = tqdm(
        total=opts.epochs, initial=state.epoch, desc="fit", unit="epoch", disable=not progress
    )
    try:
        model.train()
        while state.epoch < opts.epochs and history.stopped_reason is None:
            sums, bad = _train_one_epoch(model, trainable, state, tr, device, opts, objective)
            if bad is None:
                val_losses = mean_objective_losses(
                    model, objective, va, opts.dt, opts.lam, opts.eval_batch
                )
                if _is_bad(val_losses["total"], opts.max_loss):
                    bad = (val_losses["total"], f"on val after epoch {state.epoch + 1}")
            if bad is not None:
                history.seconds = seconds0 + time.perf_counter() - started
                _stop_on_bad_loss(model, state, ckpt, *bad, max_loss=opts.max_loss)
                break
            state.epoch += 1
            history.append(
                {"total": sums[0] / n, "drift": sums[1] / n, "diffusion": sums[2] / n}, val_losses
            )
            _update_best(model, state, val_losses["total"])
            _set_stop_reason(state, opts)
            history.seconds = seconds0 + time.perf_counter() - started
            ckpt.save(model, state)
            bar.update(1)
            bar.set_postfix(
                train=f"{history.train_total[-1]:.4g}", val=f"{val_losses['total']:.4g}"
            )
            if callback is not None:
                callback(state.epoch, history)
    finally:
        bar.close()


def _train_one_epoch(
    model: SDEModel,
    trainable: list[nn.Parameter],
    state: TrainingState,
    data: Transitions,
    device: torch.device,
    opts: _FitOptions,
    objective: Any,
) -> tuple[list[float], tuple[float, str] | None]:
    """One pass over ``data`` in an order drawn from ``state.generator``, one optimizer step
    per batch. Returns the batch-size-weighted sums of the (total, drift, diffusion) batch
    losses and, if a batch loss was bad (the pass stops there), ``(loss, where)``."""
    n = data[0].shape[0]
    perm = torch.randperm(n, generator=state.generator).to(device)
    sums = [0.0, 0.0, 0.0]
    for i in range(0, n, opts.batch_size):
        idx = perm[i : i + opts.batch_size]
        ld, ln, penalty = objective.losses(model, tuple(v[idx] for v in data), opts.dt)
        loss = ld + opts.lam * ln + penalty
        value = loss.item()
        if _is_bad(value, opts.max_loss):
            return sums, (value, f"at epoch {state.epoch + 1}, batch {i // opts.batch_size + 1}")
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opts.grad_clip is not None:
            nn.utils.clip_grad_norm_(trainable, opts.grad_clip)
        state.optimizer.step()
        nb = idx.shape[0]
        sums[0] += value * nb
        sums[1] += ld.item() * nb
        sums[2] += ln.item() * nb
    return sums, None


def _update_best(model: SDEModel, state: TrainingState, val_total: float) -> None:
    """Keep the weights of a strictly lower val total; count the epochs without one."""
    if val_total < state.best_val:
        state.best_val, state.bad_epochs = val_total, 0
        state.history.best_epoch = state.epoch
        state.best_state = copy_state(model)
    else:
        state.bad_epochs += 1


def _set_stop_reason(state: TrainingState, opts: _FitOptions) -> None:
    """Early stopping after ``patience`` epochs without improvement, or the last epoch."""
    history = state.history
    if opts.patience is not None and state.bad_epochs >= opts.patience:
        history.stopped_reason = (
            f"early_stopping: no lower val total in {opts.patience} epochs after "
            f"epoch {history.best_epoch} (val total {state.best_val:.6g})"
        )
    elif state.epoch == opts.epochs:
        history.stopped_reason = f"completed: all {opts.epochs} epochs"


def _stop_on_bad_loss(
    model: SDEModel,
    state: TrainingState,
    ckpt: Checkpoint,
    value: float,
    where: str,
    *,
    max_loss: float,
) -> None:
    """Record why training stopped, warn, restore the best weights and checkpoint."""
    history = state.history
    kind = "nonfinite_loss" if not math.isfinite(value) else "exploding_loss"
    word = "non-finite" if kind == "nonfinite_loss" else f"exploding (> max_loss={max_loss:g})"
    initial = ", the initial weights" if history.best_epoch == 0 else ""
    history.stopped_reason = (
        f"{kind}: {word} total loss {value!r} {where}; restored the best weights "
        f"(epoch {history.best_epoch}{initial})"
    )
    # stacklevel 4: warn <- _stop_on_bad_loss <- _train_epochs <- fit <- the caller of fit
    warnings.warn(f"fit stopped: {history.stopped_reason}", RuntimeWarning, stacklevel=4)
    model.load_state_dict(state.best_state)
    ckpt.save(model, state)


__all__ = ["History", "fit"]
