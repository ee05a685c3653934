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
- models with a constant ``sigma`` get K_sigma = 0;
- any other model whose ``drift`` (or ``diffusion``) is one of its submodules, an
  ``nn.Linear`` or an ``nn.Sequential`` of Linear layers and supported activations applied
  to x alone (``drift(x, t) = net(x)``), gets the chain bound of that network (for a
  single Linear layer or a linear chain: its spectral norm).

Each result also carries ``time_lipschitz``: a certified Lipschitz constant in t of
f(0, t) (0 for the time-free structures; for the networks on ``[x, time features]``, the
chain bound on the time-feature columns times the Lipschitz constant of the time encoding,
see :func:`time_feature_lipschitz`), or None when the structure does not give one.
:func:`~sde_utils.theory.growth.linear_growth` uses it to certify the values at x = 0
between the grid times.

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
from sde_utils.models.neural import SINUSOIDAL_BASE
from sde_utils.theory._common import as_float64, state_dim_of
from sde_utils.theory.chain_bounds import chain_lipschitz_bounds, parse_chain, spectral_norm

Structure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: a verified structure without a time input: f(0, t) does not depend on t
_NO_TIME: dict[str, Any] = {"time_lipschitz": 0.0, "time_reason": None}


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


def time_feature_lipschitz(model: nn.Module) -> tuple[float | None, str | None]:
    """(L, None) with |phi(t) - phi(s)| <= L |t - s| for the model's time features phi, or
    (None, reason). Read from ``time_encoding`` / ``time_scale`` / ``n_frequencies`` and
    verified against ``model.time_features`` at seeded probe times:

    - ``"none"``: L = 0; ``"linear"`` (t / scale): L = 1 / scale;
    - ``"sinusoidal"`` ([sin(w_j u), cos(w_j u)], u = t / scale): |d phi / du|^2 =
      sum_j w_j^2 (cos^2 + sin^2), so L = sqrt(sum_j w_j^2) / scale.
    """
    enc = getattr(model, "time_encoding", None)
    scale = float(getattr(model, "time_scale", 1.0))
    n_freq = int(getattr(model, "n_frequencies", 1))
    if enc not in ("none", "linear", "sinusoidal") or not scale > 0:
        return None, f"unknown time encoding {enc!r} (known: none, linear, sinusoidal)"
    t = torch.linspace(0.0, 200.0, 41, dtype=torch.float64)
    u = (t / scale)[:, None]
    w = SINUSOIDAL_BASE ** (-torch.arange(n_freq, dtype=torch.float64) / n_freq)
    expected = {
        "none": u[:, :0],
        "linear": u,
        "sinusoidal": torch.cat([torch.sin(u * w), torch.cos(u * w)], dim=-1),
    }[enc]
    reason = _verify(lambda xx, tt: model.time_features(tt), lambda xx, tt: expected, u, t)
    if reason is not None:
        return None, f"time_features do not match the {enc!r} encoding: {reason}"
    lip = {"none": 0.0, "linear": 1.0 / scale, "sinusoidal": float(w.norm()) / scale}[enc]
    return lip, None


def _time_chain_lipschitz(model, net, d: int, trailing) -> tuple[float | None, str | None]:
    """Lipschitz constant in t of net([x, phi(t)]) (x fixed): the chain bound of the
    time-feature columns times that of phi."""
    lip_phi, reason = time_feature_lipschitz(model)
    if lip_phi is None:
        return None, reason
    n_tf = int(model.time_features(torch.zeros(1, dtype=torch.float64)).shape[-1])
    if n_tf == 0:
        return 0.0, None
    chain = parse_chain(net, d + n_tf, trailing=trailing)
    if isinstance(chain, str):
        return None, chain
    mats, ranges = chain
    mats = [mats[0][:, d:], *mats[1:]]  # the time columns act on phi(t)
    return chain_lipschitz_bounds(mats, ranges)["combined"] * lip_phi, None


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

        chain, trailing = parse_chain(net, d), None
    else:
        floor = float(getattr(model, "sigma_floor", 0.0))

        def struct(xx, tt):
            return nn.functional.softplus(net(_net_input(model, xx, tt))) + floor

        trailing = (0.0, 1.0)  # softplus' = sigmoid in (0, 1)
        chain = parse_chain(net, d, trailing=trailing)
    reason = _verify(getattr(model, which), struct, x, t)
    if reason is None and isinstance(chain, str):
        reason = chain
    if reason is None:
        bounds = chain_lipschitz_bounds(*chain)
        out.update(upper=bounds["combined"], method="combined", bounds=bounds)
        out["structure"] = "mlp"
        out["time_lipschitz"], out["time_reason"] = _time_chain_lipschitz(model, net, d, trailing)
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
    out: dict[str, Any] = {
        "upper": None,
        "method": None,
        "bounds": {},
        "reason": None,
        "time_lipschitz": None,
        "time_reason": "no certified structure",
    }
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

        found = dict(upper=0.0, method="zero_drift", bounds={"zero_drift": 0.0}, **_NO_TIME)
        return _verified(model, which, zero, x, t, out, "zero drift", **found, structure="constant")
    if which == "drift" and hasattr(model, "A"):
        a = torch.as_tensor(model.A).detach().to(torch.float64)
        b = torch.as_tensor(getattr(model, "b", 0.0)).detach().to(torch.float64)

        def linear(xx, tt):
            return xx @ a.T + b

        s = spectral_norm(a.numpy())
        found = dict(upper=s, method="spectral_norm_A", bounds={"spectral_norm_A": s}, **_NO_TIME)
        return _verified(model, which, linear, x, t, out, "A", **found, structure="linear")
    if which == "diffusion" and hasattr(model, "sigma"):
        sig = torch.as_tensor(model.sigma).detach().to(torch.float64)

        def constant(xx, tt):
            return sig.expand(xx.shape[0], -1)

        found = dict(upper=0.0, method="constant_sigma", bounds={"constant_sigma": 0.0}, **_NO_TIME)
        return _verified(model, which, constant, x, t, out, "sigma", **found, structure="constant")
    return _submodule_upper(model, which, d, x, t, out, net_name)


def _submodule_upper(model, which: str, d: int, x, t, out: dict, net_name: str) -> dict:
    """The chain bound of a Linear / Sequential submodule ``net`` with ``model.<which>(x, t)
    = net(x)`` (verified at the probe points), or ``out`` with the reason there is none."""
    why = []
    for name, net in model.named_children():
        if not isinstance(net, (nn.Linear, nn.Sequential)):
            continue
        chain = parse_chain(net, d)
        if isinstance(chain, str):
            why.append(f"{name}: {chain}")
            continue

        def struct(xx, tt, net=net):
            return net(xx)

        reason = _verify(getattr(model, which), struct, x, t)
        if reason is not None:
            why.append(f"{name}: {reason}")
            continue
        bounds = chain_lipschitz_bounds(*chain)
        out.update(upper=bounds["combined"], method="combined", bounds=bounds, structure="mlp")
        out.update(_NO_TIME)  # net(x): no time input
        return out
    alt = "A" if which == "drift" else "a constant sigma"
    tried = "; ".join(why) if why else "no nn.Linear / nn.Sequential submodule"
    out["reason"] = (
        f"no certified bound for {type(model).__name__}.{which}: it has no {net_name} (with "
        f"time_features) nor {alt}, and no submodule net with {which}(x, t) = net(x) "
        f"that is a chain of Linear layers and supported activations ({tried}); "
        "lower bound only"
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
        "reason": str | None, "structure": "mlp" | "linear" | "constant",
        "time_lipschitz": float | None, "time_reason": str | None}``;
        ``upper`` is valid for all x and all t. ``reason`` explains a None (and
        ``structure`` is then absent); ``time_lipschitz`` bounds |f(0, t) - f(0, s)| /
        |t - s| (``time_reason`` explains a None).
    """
    check_choice("which", which, ["drift", "diffusion"])
    seed = check_seed(seed)
    return certified_upper_bound(as_float64(model), which, seed)


__all__ = ["certified_upper_bound", "lipschitz_upper_bound", "time_feature_lipschitz"]
