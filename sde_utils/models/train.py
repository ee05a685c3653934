"""Losses and training of SDE models on transitions (paper §2.2.2, made precise).

Transitions are ``x0 (N, d)``, ``t0 (N,)``, ``x1 (N, d)`` with a float step ``dt``. One
Euler–Maruyama step says ``x1 | x0 ~ N(x0 + mu dt, diag(sigma^2) dt)`` with
``mu = model.drift(x0, t0)`` and ``sigma = model.diffusion(x0, t0)``. Then

- :func:`drift_loss` is the paper's ``L_mu = mean_i ||x1_i - (x0_i + mu_i dt)||^2``;
- :func:`diffusion_loss` is the Gaussian negative log-likelihood of that step, averaged over
  samples and dimensions (it replaces the paper's KL; see its docstring for why);
- the total loss is ``drift + lam * diffusion``.

:func:`fit` trains with AdamW, gradient clipping and early stopping on the validation total,
logs all three losses per epoch for both splits (:class:`History`, figure 1's data), and
checkpoints every epoch so that an interrupted run resumes to bit-identical results.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
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

from sde_utils.io import atomic_write, atomic_write_text
from sde_utils.models.baselines import check_transitions
from sde_utils.models.neural import SDEModel

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
EVAL_BATCH_MIN = 8192  # evaluation has no backward pass: larger batches are cheaper
FINGERPRINT_ROWS = 4096

Transitions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# ----------------------------------------------------------------------------- losses


def _drift_loss_from(r: torch.Tensor) -> torch.Tensor:
    return r.pow(2).sum(-1).mean()


def _nll_from(r: torch.Tensor, sigma: torch.Tensor, dt: float) -> torch.Tensor:
    # -log N(r; 0, sigma^2 dt) = 0.5 log(2 pi) + log(sigma) + 0.5 log(dt) + r^2 / (2 sigma^2 dt)
    return (HALF_LOG_2PI + 0.5 * math.log(dt) + sigma.log() + 0.5 * (r / sigma).pow(2) / dt).mean()


def step_losses(
    model: SDEModel, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(drift_loss, diffusion_loss)`` from one evaluation of drift and diffusion.

    Shapes: ``x0, x1 (B, d)``, ``t0 (B,)``; returns two scalar tensors (with gradients).
    No input checks (the training loop calls this per batch); see the public losses.
    """
    mu, sigma = model.drift_diffusion(x0, t0)
    r = x1 - x0 - mu * dt
    return _drift_loss_from(r), _nll_from(r, sigma, dt)


def drift_loss(
    model: SDEModel, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
) -> torch.Tensor:
    """The paper's ``L_mu``: ``mean_i sum_j (x1 - x0 - mu(x0, t0) dt)_ij^2``.

    Squared error SUMMED over the ``d`` dimensions, MEAN over the ``N`` samples (so it grows
    with ``d``, as the paper's ``||.||^2``). ``x0, x1 (N, d)``, ``t0 (N,)`` -> scalar tensor.
    """
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="drift_loss")
    return _drift_loss_from(x1 - x0 - model.drift(x0, t0) * dt)


def diffusion_loss(
    model: SDEModel, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
) -> torch.Tensor:
    """Gaussian NLL of one Euler–Maruyama step, MEAN over samples AND dimensions.

    ``x1 | x0 ~ N(x0 + mu dt, diag(sigma^2) dt)`` with ``mu, sigma`` the model's drift and
    diffusion at ``(x0, t0)``; per element
    ``0.5 log(2 pi) + log(sigma) + 0.5 log(dt) + (x1 - x0 - mu dt)^2 / (2 sigma^2 dt)``,
    the constant included, so this is a true NLL in nats per dimension.

    Why this is the paper's diffusion loss: ``KL(P_data || P_model) = E_data[-log p_model]
    - H(P_data)``, and the data entropy ``H(P_data)`` does not depend on the model, so
    minimising the expected NLL minimises the KL (the KL itself is not computable, as the
    data density is unknown). The squared error ``L_mu`` alone does not involve sigma and can
    never learn the noise.

    The drift inside the NLL is NOT detached: drift and diffusion train jointly on the
    likelihood (the NLL's drift gradient is the squared error weighted by ``1/sigma^2``),
    which is maximum likelihood; ``L_mu`` adds the paper's unweighted term.
    ``x0, x1 (N, d)``, ``t0 (N,)`` -> scalar tensor.
    """
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="diffusion_loss")
    return step_losses(model, x0, t0, x1, dt)[1]


def total_loss(
    model: SDEModel,
    x0: torch.Tensor,
    t0: torch.Tensor,
    x1: torch.Tensor,
    dt: float,
    lam: float = 1.0,
) -> torch.Tensor:
    """``drift_loss + lam * diffusion_loss`` (scalar tensor)."""
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="total_loss")
    ld, ln = step_losses(model, x0, t0, x1, dt)
    return ld + lam * ln


@torch.no_grad()
def _evaluate(
    model: SDEModel, data: Transitions, dt: float, lam: float, batch_size: int
) -> dict[str, float]:
    x0, t0, x1 = data
    n = x0.shape[0]
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)
    try:
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            ld, ln = step_losses(model, x0[sl], t0[sl], x1[sl], dt)
            nb = min(batch_size, n - i)
            sums += torch.stack([ld.detach(), ln.detach()]).double().cpu() * nb
    finally:
        model.train(was_training)
    d, s = (sums / n).tolist()
    return {"total": d + lam * s, "drift": d, "diffusion": s}


def evaluate_losses(
    model: SDEModel,
    x0: torch.Tensor,
    t0: torch.Tensor,
    x1: torch.Tensor,
    dt: float,
    lam: float = 1.0,
    batch_size: int = EVAL_BATCH_MIN,
) -> dict[str, float]:
    """``{"total", "drift", "diffusion"}`` over all transitions, under ``no_grad``.

    Means over the whole set (batches weighted by size), so the result does not depend on
    ``batch_size`` beyond rounding. Data are moved to the model's device and dtype.
    """
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="evaluate_losses")
    lam = _check_real("lam", lam, 0.0, strict=False)
    batch_size = _check_int("batch_size", batch_size, 1)
    device, dtype = _model_device_dtype(model, x0.dtype)
    data = tuple(v.to(device=device, dtype=dtype) for v in (x0, t0, x1))
    return _evaluate(model, data, dt, lam, batch_size)


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


# ----------------------------------------------------------------------------- checks


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value: Any, minimum: float, *, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def _model_device_dtype(model: nn.Module, default: torch.dtype) -> tuple[torch.device, torch.dtype]:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), default


def _unpack(split: Any, name: str, dt: float) -> Transitions:
    if not isinstance(split, (tuple, list)) or len(split) != 3:
        raise TypeError(
            f"{name} must be a tuple (x0 (N, d), t0 (N,), x1 (N, d)), got {type(split).__name__}"
            + (f" of length {len(split)}" if isinstance(split, (tuple, list)) else "")
        )
    x0, t0, x1, _ = check_transitions(*split, dt, name=name)
    return x0, t0, x1


def _fingerprint(*tensors: torch.Tensor, rows: int = FINGERPRINT_ROWS) -> str:
    """Hash of dtype, shape and the exact bytes of up to ``rows`` evenly spaced rows of each
    tensor: a cheap check that a checkpoint belongs to the same data (hashing every byte of
    50k x 64 states took ~20 ms per call, 6% of an epoch)."""
    h = hashlib.sha256()
    for v in tensors:
        h.update(f"{v.dtype}{tuple(v.shape)}".encode())
        if v.shape[0] > rows:
            v = v[torch.linspace(0, v.shape[0] - 1, rows, device=v.device).round().long()]
        v = v.detach().cpu().contiguous()
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
) -> History:
    """Train ``model`` in place on ``train`` with early stopping on ``val``; return its History.

    Args:
        model: any :class:`~sde_utils.models.neural.SDEModel`; its trainable parameters are optimised
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

    On return the model holds the weights of ``best_epoch`` (the lowest val total; the
    initial weights if no epoch completed). A model without trainable parameters (the
    closed-form baselines) is not trained: the History then holds one entry per split, the
    losses of the model as given, with ``best_epoch = 0`` and ``stopped_reason``
    ``"no_trainable_parameters: ..."``.
    """
    # ---- checks, before any work
    if not isinstance(model, SDEModel):
        raise TypeError(f"model must be an SDEModel, got {type(model).__name__}")
    dt = _check_real("dt", dt, 0.0, strict=True)
    lam = _check_real("lam", lam, 0.0, strict=False)
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    lr = _check_real("lr", lr, 0.0, strict=True)
    weight_decay = _check_real("weight_decay", weight_decay, 0.0, strict=False)
    if grad_clip is not None:
        grad_clip = _check_real("grad_clip", grad_clip, 0.0, strict=True)
    if patience is not None:
        patience = _check_int("patience", patience, 1)
    seed = _check_int("seed", seed, 0)
    max_loss = _check_real("max_loss", max_loss, 0.0, strict=True)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    tr = _unpack(train, "train", dt)
    va = _unpack(val, "val", dt)
    d = tr[0].shape[1]
    if va[0].shape[1] != d:
        raise ValueError(f"val has d = {va[0].shape[1]} but train has d = {d}")
    state_dim = getattr(model, "state_dim", d)
    if state_dim != d:
        raise ValueError(f"data have d = {d} but the model has state_dim = {state_dim}")

    device, dtype = _model_device_dtype(model, tr[0].dtype)
    tr = tuple(v.to(device=device, dtype=dtype) for v in tr)
    va = tuple(v.to(device=device, dtype=dtype) for v in va)
    params = {
        "dt": dt,
        "lam": lam,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "patience": patience,
        "seed": seed,
        "max_loss": max_loss,
    }
    eval_batch = max(batch_size, EVAL_BATCH_MIN)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        history = History(params=params, best_epoch=0)
        history.append(
            _evaluate(model, tr, dt, lam, eval_batch), _evaluate(model, va, dt, lam, eval_batch)
        )
        history.stopped_reason = (
            f"no_trainable_parameters: {type(model).__name__} has no trainable parameters "
            "(fit it in closed form); the losses are those of the model as given"
        )
        return history

    # ---- state
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history = History(params=params)
    best_state = _copy_state(model)
    best_val = math.inf
    bad_epochs = 0
    epoch = 0

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    signature = None
    if ckpt_path is not None:
        signature = {
            "model_class": type(model).__name__,
            "model_config": model.config() if hasattr(model, "config") else None,
            "n_parameters": sum(p.numel() for p in trainable),
            "dtype": str(dtype),
            "params": {k: v for k, v in params.items() if k != "epochs"},
            "train": _fingerprint(*tr),
            "val": _fingerprint(*va),
        }
    if ckpt_path is not None and resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("signature") != signature:
            raise ValueError(
                f"{ckpt_path} belongs to a different run (model, parameters or data differ):\n"
                f"  checkpoint: {ckpt.get('signature')}\n  this run:   {signature}\n"
                "use resume=False to overwrite it, or another checkpoint_dir"
            )
        if ckpt["epoch"] > epochs:
            raise ValueError(
                f"{ckpt_path} already holds {ckpt['epoch']} epochs > epochs={epochs}; "
                f"pass epochs >= {ckpt['epoch']} or resume=False"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator_state"])
        torch.set_rng_state(ckpt["torch_rng_state"])
        if torch.cuda.is_available() and ckpt.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state_all(ckpt["cuda_rng_state"])
        best_state = ckpt["best_state"]
        best_val = ckpt["best_val"]
        bad_epochs = ckpt["bad_epochs"]
        epoch = ckpt["epoch"]
        history = History.from_dict(ckpt["history"])
        history.params = params
        reason = history.stopped_reason or ""
        if reason and not reason.startswith("completed"):  # a terminal stop: nothing to do
            model.load_state_dict(best_state)
            return history
        history.stopped_reason = None

    def save_checkpoint() -> None:
        if ckpt_path is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "signature": signature,
            "epoch": epoch,
            "model": _copy_state(model),
            "optimizer": optimizer.state_dict(),
            "best_state": best_state,
            "best_val": best_val,
            "bad_epochs": bad_epochs,
            "history": history.to_dict(),
            "generator_state": generator.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        atomic_write(ckpt_path, lambda fh: torch.save(state, fh))

    def stop_bad_loss(kind: str, where: str, value: float) -> None:
        word = "non-finite" if kind == "nonfinite_loss" else f"exploding (> max_loss={max_loss:g})"
        initial = ", the initial weights" if history.best_epoch == 0 else ""
        history.stopped_reason = (
            f"{kind}: {word} total loss {value!r} {where}; restored the best weights "
            f"(epoch {history.best_epoch}{initial})"
        )
        warnings.warn(f"fit stopped: {history.stopped_reason}", RuntimeWarning, stacklevel=3)
        model.load_state_dict(best_state)
        save_checkpoint()

    # ---- loop
    x0, t0, x1 = tr
    n = x0.shape[0]
    started = time.perf_counter()
    seconds0 = history.seconds
    bar = tqdm(total=epochs, initial=epoch, desc="fit", unit="epoch", disable=not progress)
    try:
        model.train()
        while epoch < epochs and history.stopped_reason is None:
            perm = torch.randperm(n, generator=generator).to(device)
            sums = [0.0, 0.0, 0.0]
            bad = None
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                ld, ln = step_losses(model, x0[idx], t0[idx], x1[idx], dt)
                loss = ld + lam * ln
                value = loss.item()
                if not math.isfinite(value) or value > max_loss:
                    bad = (value, f"at epoch {epoch + 1}, batch {i // batch_size + 1}")
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(trainable, grad_clip)
                optimizer.step()
                nb = idx.shape[0]
                sums[0] += value * nb
                sums[1] += ld.item() * nb
                sums[2] += ln.item() * nb
            if bad is None:
                val_losses = _evaluate(model, va, dt, lam, eval_batch)
                if not math.isfinite(val_losses["total"]) or val_losses["total"] > max_loss:
                    bad = (val_losses["total"], f"on val after epoch {epoch + 1}")
            if bad is not None:
                value, where = bad
                kind = "nonfinite_loss" if not math.isfinite(value) else "exploding_loss"
                history.seconds = seconds0 + time.perf_counter() - started
                stop_bad_loss(kind, where, value)
                break
            epoch += 1
            history.append(
                {"total": sums[0] / n, "drift": sums[1] / n, "diffusion": sums[2] / n}, val_losses
            )
            if val_losses["total"] < best_val:
                best_val, bad_epochs = val_losses["total"], 0
                history.best_epoch = epoch
                best_state = _copy_state(model)
            else:
                bad_epochs += 1
            if patience is not None and bad_epochs >= patience:
                history.stopped_reason = (
                    f"early_stopping: no lower val total in {patience} epochs after "
                    f"epoch {history.best_epoch} (val total {best_val:.6g})"
                )
            elif epoch == epochs:
                history.stopped_reason = f"completed: all {epochs} epochs"
            history.seconds = seconds0 + time.perf_counter() - started
            save_checkpoint()
            bar.update(1)
            bar.set_postfix(
                train=f"{history.train_total[-1]:.4g}", val=f"{val_losses['total']:.4g}"
            )
            if callback is not None:
                callback(epoch, history)
    finally:
        bar.close()
    if history.stopped_reason is None:  # resumed at epoch == epochs
        history.stopped_reason = f"completed: all {epochs} epochs"
    model.load_state_dict(best_state)
    return history


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


__all__ = [
    "History",
    "fit",
    "drift_loss",
    "diffusion_loss",
    "total_loss",
    "step_losses",
    "evaluate_losses",
    "HALF_LOG_2PI",
    "CHECKPOINT_NAME",
]
