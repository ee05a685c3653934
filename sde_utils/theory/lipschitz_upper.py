r"""Certified upper bounds of the Lipschitz constants in x of drift and diffusion (§3.1.1).

Norms are Euclidean; sigma is the diagonal of the diffusion matrix, so ||sigma|| is the
Frobenius norm of diag(sigma). An upper bound is read off the model's structure and is
valid for every x and every t (time enters only through the first layer's time-feature
columns, i.e. as a constant shift):

- models with ``drift_net`` / ``diffusion_net`` (``nn.Sequential`` of Linear layers and
  elementwise activations, diffusion = softplus(net) + floor) get the chain bound of
  :mod:`sde_utils.theory.chain_bounds`;
- a :class:`~sde_utils.models.baselines.RandomWalk` (zero drift by construction) gets
  K_mu = 0;
- models with an ``A`` matrix (linear drift) get ||A||_2;
- models with a constant ``sigma`` get K_sigma = 0.

Each structure is first *verified* numerically against ``model.drift`` /
``model.diffusion`` at seeded random probe points; anything else gets ``upper=None`` and
a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sde_utils.checks import check_choice, check_seed
from sde_utils.models.baselines import RandomWalk
from sde_utils.theory._common import as_float64, state_dim_of
from sde_utils.theory.chain_bounds import chain_lipschitz_bounds, parse_chain, spectral_norm

Structure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _net_input(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, model.time_features(t).to(x.dtype)], dim=-1)


def _verify(fn_model, fn_struct, x: torch.Tensor, t: torch.Tensor) -> str | None:
    """None if the two maps agree at (x, t) to 1e-9 relative, else a reason string."""
    with torch.no_grad():
        try:
            a, b = fn_model(x, t), fn_struct(x, t)
        except Exception as err:  # noqa: BLE001 - any failure means the structure does not apply
            return f"evaluating the assumed structure failed: {err!r}"
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} != assumed structure's {tuple(b.shape)}"
    err = float((a - b).abs().max())
    # float64 evaluation of the same operations: agreement to 1e-9 relative is rounding
    if err > 1e-9 * (1.0 + float(a.abs().max())):
        return f"model output differs from the assumed structure by {err:.3g}"
    return None


def _probe(model: nn.Module, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 3.0 * torch.randn(16, d, generator=g, dtype=torch.float64)
    t = 20.0 * torch.rand(16, generator=g, dtype=torch.float64)
    return x, t


def _mlp_upper(model: nn.Module, which: str, net: nn.Module, d: int, x, t, out: dict) -> dict:
    """The chain bound of ``drift_net`` / ``diffusion_net``, once the structure is verified."""
    net_name = "drift_net" if which == "drift" else "diffusion_net"
    if which == "drift":

        def struct(xx, tt):
            return net(_net_input(model, xx, tt))

        chain = parse_chain(net, d)
    else:
        floor = float(getattr(model, "sigma_floor", 0.0))

        def struct(xx, tt):
            return nn.functional.softplus(net(_net_input(model, xx, tt))) + floor

        chain = parse_chain(net, d, trailing=(0.0, 1.0))  # softplus' = sigmoid in (0, 1)
    reason = _verify(getattr(model, which), struct, x, t)
    if reason is None and isinstance(chain, str):
        reason = chain
    if reason is None:
        bounds = chain_lipschitz_bounds(*chain)
        out.update(upper=bounds["combined"], method="combined", bounds=bounds)
        out["structure"] = "mlp"
        return out
    out["reason"] = f"{net_name}: {reason}"
    return out


def _verified(
    model: nn.Module, which: str, struct: Structure, x, t, out: dict, label: str, **found
) -> dict:
    """``out`` updated with ``found`` if ``struct`` reproduces ``model.<which>``, else a reason."""
    reason = _verify(getattr(model, which), struct, x, t)
    if reason is None:
        out.update(found)
        return out
    out["reason"] = f"{label}: {reason}"
    return out


def certified_upper_bound(model: nn.Module, which: str, seed: int = 0) -> dict[str, Any]:
    """Certified upper bound of the Lipschitz constant in x of a float64 model.

    The unchecked core of :func:`lipschitz_upper_bound`, for callers that already hold a
    float64 copy (:func:`~sde_utils.theory._common.as_float64`) and checked arguments:
    ``which`` is ``"drift"`` or ``"diffusion"``, ``seed`` seeds the probe points.

    Returns:
        as :func:`lipschitz_upper_bound`.
    """
    out: dict[str, Any] = {"upper": None, "method": None, "bounds": {}, "reason": None}
    try:
        d = state_dim_of(model)
    except ValueError as err:
        out["reason"] = str(err)
        return out
    x, t = _probe(model, d, seed)
    net_name = "drift_net" if which == "drift" else "diffusion_net"
    net = getattr(model, net_name, None)
    if isinstance(net, nn.Module) and hasattr(model, "time_features"):
        return _mlp_upper(model, which, net, d, x, t, out)
    if which == "drift" and isinstance(model, RandomWalk):

        def zero(xx, tt):
            return torch.zeros_like(xx)

        found = dict(upper=0.0, method="zero_drift", bounds={"zero_drift": 0.0})
        return _verified(model, which, zero, x, t, out, "zero drift", **found, structure="constant")
    if which == "drift" and hasattr(model, "A"):
        a = torch.as_tensor(model.A).detach().to(torch.float64)

        def linear(xx, tt):
            return model.drift(torch.zeros_like(xx), tt) + xx @ a.T

        s = spectral_norm(a.numpy())
        found = dict(upper=s, method="spectral_norm_A", bounds={"spectral_norm_A": s})
        return _verified(model, which, linear, x, t, out, "A", **found, structure="linear")
    if which == "diffusion" and hasattr(model, "sigma"):
        sig = torch.as_tensor(model.sigma).detach().to(torch.float64)

        def constant(xx, tt):
            return sig.expand(xx.shape[0], -1)

        found = dict(upper=0.0, method="constant_sigma", bounds={"constant_sigma": 0.0})
        return _verified(model, which, constant, x, t, out, "sigma", **found, structure="constant")
    alt = "A" if which == "drift" else "a constant sigma"
    out["reason"] = (
        f"{type(model).__name__} has no {net_name} (with time_features) nor {alt}: "
        "no certified upper bound, lower bound only"
    )
    return out


def lipschitz_upper_bound(model: nn.Module, which: str = "drift", seed: int = 0) -> dict:
    """Certified upper bound of the Lipschitz constant in x of ``model.drift`` or ``.diffusion``.

    Args:
        model: an SDEModel (duck-typed, see the module docstring).
        which: ``"drift"`` or ``"diffusion"``.
        seed: seeds the random probe points that verify the assumed structure.

    Returns:
        ``{"upper": float | None, "method": str | None, "bounds": {name: float},
        "reason": str | None, "structure": "mlp" | "linear" | "constant"}``;
        ``upper`` is valid for all x and all t. ``reason`` explains a None (and
        ``structure`` is then absent).
    """
    check_choice("which", which, ["drift", "diffusion"])
    seed = check_seed(seed)
    return certified_upper_bound(as_float64(model), which, seed)


__all__ = ["certified_upper_bound", "lipschitz_upper_bound"]
