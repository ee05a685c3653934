"""Helpers shared by the theory checks: float64 model copies and input coercion.

Every theory function works on a float64 copy of the model (``as_float64``), so the
certified bounds, root finding and Lyapunov solves are not limited by float32 rounding.
Models follow the contract of :class:`sde_utils.models.base.SDEModel`: ``drift(x, t)`` and
``diffusion(x, t)`` with ``x (B, d)`` and ``t (B,)``, rows independent of each other;
they are evaluated with :func:`sde_utils.models.base.drift_diffusion_tensors`.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from typing import Any

import numpy as np
import torch

DTYPE = torch.float64


@functools.cache
def _load_forward_ad() -> None:
    """Load torch's forward-mode decompositions once, hiding the DeprecationWarning they
    raise from inside torch (``torch.jit.script`` is used by torch itself, not by us)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script", category=DeprecationWarning)
        torch.func.jvp(torch.sin, (torch.zeros(1, dtype=DTYPE),), (torch.ones(1, dtype=DTYPE),))


def as_float64(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 CPU copy of ``model`` in eval mode, weights frozen (the original is untouched).

    The device policy of the theory checks: a model from any device (a fit trained on CUDA)
    is checked on the CPU in float64, where their tolerances hold; these are small dense
    Jacobian, eigenvalue and Lyapunov computations that a GPU does not speed up."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (an SDEModel), got {type(model)!r}")
    _load_forward_ad()
    copied = copy.deepcopy(model).to(device="cpu", dtype=DTYPE).eval()
    for p in copied.parameters():
        p.requires_grad_(False)  # derivatives are taken in x only; no graph for the weights
    for module in copied.modules():  # plain tensor attributes: .to() skips them
        for key, value in list(vars(module).items()):
            if torch.is_tensor(value) and value.is_floating_point():
                setattr(module, key, value.detach().to(device="cpu", dtype=DTYPE))
    return copied


def diffusion_matrix(sigma: torch.Tensor | np.ndarray, n: int, d: int, who: str) -> np.ndarray:
    """The diffusion as full matrices G ``(n, d, d)`` (dX = mu dt + G dW).

    ``sigma`` is what ``model.diffusion`` returned for ``n`` states of dimension ``d``:
    the diagonal ``(n, d)`` (then G = diag(sigma)) or the full matrix ``(n, d, d)``.
    Anything else is a ValueError naming the shape received and the two allowed.
    """
    s = np.asarray(sigma.detach().cpu() if torch.is_tensor(sigma) else sigma, dtype=np.float64)
    if s.shape == (n, d):
        return s[:, :, None] * np.eye(d)[None]
    if s.shape == (n, d, d):
        return s
    raise ValueError(
        f"{who}: the diffusion returned shape {s.shape} for {n} states of dimension {d}; "
        f"allowed are the diagonal ({n}, {d}) or the full matrix ({n}, {d}, {d}) "
        "(make model.diffusion(x, t) return one of them)"
    )


def require_diagonal(sigma: torch.Tensor, n: int, d: int, who: str) -> torch.Tensor:
    """``sigma`` unchanged if it is the diagonal ``(n, d)``; else a ValueError saying that
    ``who`` (a routine whose formulas use diag(sigma)) does not take a full ``(n, d, d)`` G."""
    shape = tuple(sigma.shape)
    if shape == (n, d):
        return sigma
    kind = "a full diffusion matrix" if shape == (n, d, d) else "an unsupported shape"
    raise ValueError(
        f"{who} needs a diagonal diffusion of shape ({n}, {d}); the model returned {shape}, "
        f"{kind}. Use generator_LV, stability_at or linear_growth (they take both), or give "
        "the model a diagonal diffusion(x, t) -> (B, d)"
    )


def as_states(states: Any, name: str = "states") -> torch.Tensor:
    """``states`` as a float64 tensor of shape ``(N, d)``; a single ``(d,)`` state becomes (1, d)."""
    x = torch.as_tensor(np.asarray(states) if not torch.is_tensor(states) else states)
    x = x.detach().to(DTYPE)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, d) with N >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains non-finite values")
    return x


def as_times(times: Any, name: str = "times") -> np.ndarray:
    """``times`` (a float, or a sequence of floats) as a 1-D float64 numpy array (T,), T >= 1."""
    t = np.atleast_1d(np.asarray(times.detach().cpu() if torch.is_tensor(times) else times))
    t = t.astype(np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"{name} must be a float or a 1-D sequence, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} contains non-finite values: {t}")
    return t


def state_dim_of(model: torch.nn.Module, fallback: int | None = None) -> int:
    """The model's ``state_dim`` attribute, else ``fallback``; ValueError if neither exists."""
    d = getattr(model, "state_dim", None)
    if d is None:
        if fallback is None:
            raise ValueError(
                f"{type(model).__name__} has no state_dim attribute and no fallback was given"
            )
        return int(fallback)
    return int(d)


def check_dim(model: torch.nn.Module, d: int, what: str) -> None:
    """ValueError when ``d`` differs from the model's ``state_dim`` (if it declares one)."""
    md = getattr(model, "state_dim", None)
    if md is not None and int(md) != d:
        raise ValueError(f"{what} has dimension {d} but the model's state_dim is {md}")


def safe_ratio(upper: float | None, lower: float | None) -> float | None:
    """``upper / lower``; None when either is missing, inf when only ``lower`` is 0."""
    if upper is None or lower is None:
        return None
    if lower == 0.0:
        return 1.0 if upper == 0.0 else math.inf
    return float(upper / lower)


__all__ = [
    "DTYPE",
    "as_float64",
    "diffusion_matrix",
    "require_diagonal",
    "as_states",
    "as_times",
    "state_dim_of",
    "check_dim",
    "safe_ratio",
]
