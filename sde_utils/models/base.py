"""The model interface every SDE of this project implements, its registry, and the one
way to evaluate a model at given states.

Conventions (Itô, diagonal noise):

- states ``x``: ``(batch, d)``; times ``t``: ``(batch,)`` (one time per row) for
  :meth:`SDEModel.drift` / :meth:`SDEModel.diffusion`, a scalar tensor for torchsde's
  :meth:`~SDEModel.f` / :meth:`~SDEModel.g`;
- ``diffusion`` returns the diagonal of sigma, ``(batch, d)``, strictly positive;
- one Euler-Maruyama step: ``x + drift * dt + diffusion * sqrt(dt) * N(0, I)``.

Every metric, theory check and figure takes any :class:`SDEModel`, so the neural SDE and
each baseline are scored the same way. :func:`register_model` makes a class loadable by
name (:mod:`sde_utils.models.serialize`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn


class SDEModel(nn.Module):
    """Base class: subclasses implement ``drift(x, t)`` and ``diffusion(x, t)``."""

    noise_type = "diagonal"
    sde_type = "ito"

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, d), (B,) -> (B, d)
        raise NotImplementedError

    def diffusion(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, d), (B,) -> (B, d)
        raise NotImplementedError

    def drift_diffusion(
        self, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(drift(x, t), diffusion(x, t))``; subclasses may share work between the two."""
        return self.drift(x, t), self.diffusion(x, t)

    # torchsde's interface: scalar t, y (batch, d)
    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.drift(y, broadcast_time(t, y))

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.diffusion(y, broadcast_time(t, y))


def broadcast_time(t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
    """A scalar or ``(B,)`` time as ``(B,)`` on ``y``'s dtype and device (``y``: ``(B, d)``)."""
    t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
    return t.reshape(-1).expand(y.shape[0]) if t.numel() == 1 else t.reshape(y.shape[0])


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[SDEModel]] = {}


def register_model(cls: type[SDEModel]) -> type[SDEModel]:
    """Class decorator: make ``cls`` loadable by class name (see ``serialize.load_model``)."""
    _REGISTRY[cls.__name__] = cls
    return cls


def registered_models() -> dict[str, Callable[..., SDEModel]]:
    """Class name -> class of every model registered so far (importing
    :mod:`sde_utils.models.serialize` registers the project's own)."""
    return dict(_REGISTRY)


# ----------------------------------------------------------------------------- evaluation


def model_dtype_device(
    model: nn.Module, like: torch.Tensor | None = None
) -> tuple[torch.dtype, torch.device]:
    """The dtype and device inputs to ``model`` are cast to: those of its first floating
    parameter or buffer; for a model without any, ``like``'s (float64 when ``like`` is
    missing or not floating; the CPU when ``like`` is missing)."""
    for p in itertools.chain(model.parameters(), model.buffers()):
        if p.is_floating_point():
            return p.dtype, p.device
    if like is None:
        return torch.float64, torch.device("cpu")
    return (like.dtype if like.is_floating_point() else torch.float64), like.device


def drift_diffusion_tensors(model: SDEModel, x: Any, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(drift, diffusion)`` of ``model`` at states ``x (B, d)`` and times ``t`` (a scalar
    or ``(B,)``), without gradients, on the model's dtype and device."""
    x = torch.as_tensor(x)
    dtype, device = model_dtype_device(model, x)
    x = x.to(dtype=dtype, device=device)
    t = broadcast_time(torch.as_tensor(t, dtype=dtype, device=device), x)
    with torch.no_grad():
        return model.drift_diffusion(x, t)


def drift_diffusion_at(model: SDEModel, x: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(drift, diffusion)`` at states ``x (N, d)`` and times ``t`` (scalar or ``(N,)``) as
    float64 numpy arrays, both ``(N, d)`` (the diagonal-noise contract; anything else is a
    ValueError naming the shapes)."""
    x = torch.as_tensor(x)
    mu, sigma = drift_diffusion_tensors(model, x, t)
    mu = mu.detach().cpu().double().numpy()
    sigma = sigma.detach().cpu().double().numpy()
    shape = tuple(x.shape)
    if mu.shape != shape or sigma.shape != shape:
        raise ValueError(
            f"{type(model).__name__} returned drift {mu.shape} and diffusion {sigma.shape} "
            f"for states {shape}; the diagonal-noise contract needs both {shape}"
        )
    return mu, sigma


__all__ = [
    "SDEModel",
    "broadcast_time",
    "register_model",
    "registered_models",
    "model_dtype_device",
    "drift_diffusion_tensors",
    "drift_diffusion_at",
]
