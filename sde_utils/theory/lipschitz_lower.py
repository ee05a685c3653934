r"""Searched lower bounds of the Lipschitz constants in x, and the bracket K_mu, K_sigma, K.

The paper (§3.1.1) asks for a constant K with, for all x1, x2 and t,

    ||mu(x1, t) - mu(x2, t)|| + ||sigma(x1, t) - sigma(x2, t)|| <= K ||x1 - x2||.

Norms are Euclidean; sigma is the diagonal of the diffusion matrix. A **lower bound** is
the largest Jacobian spectral norm found over the given states and times and over seeded
random probes at growing distances from the data (batched power iteration on J^T J with
``torch.func`` JVP/VJP, or for d <= :data:`EXACT_MAX_DIM` the exact SVD of the Jacobian),
then a few steps of normalised gradient ascent on the state from the worst points. Any
||J(x) v|| with ||v|| = 1 is a valid lower bound of the Lipschitz constant, whether or not
the power iteration has converged.

:func:`lipschitz_bracket` pairs it with the certified upper bound of
:mod:`sde_utils.theory.lipschitz_upper`. All results are plain dicts of floats, lists and
numpy arrays; pass them through :func:`sde_utils.theory.to_jsonable` before ``json.dump``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sde_utils.checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_real,
    check_seed,
)
from sde_utils.theory._common import (
    as_float64,
    as_states,
    as_times,
    check_dim,
    require_diagonal,
    safe_ratio,
)
from sde_utils.theory.lipschitz_upper import certified_upper_bound

#: ``method="auto"`` forms full Jacobians (d JVPs per point) up to this state dimension:
#: cheaper than ~100 power iterations (2 passes each) and exact.
EXACT_MAX_DIM: int = 32


def _fn(model: nn.Module, which: str, t_rows: torch.Tensor):
    method = getattr(model, which)
    return lambda xx: method(xx, t_rows)


def _power_norms(
    model, which, x: torch.Tensor, t_rows: torch.Tensor, v: torch.Tensor, n_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Power iteration on J^T J per row (JVP then VJP); converged rows are frozen."""
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    s = torch.zeros(x.shape[0], dtype=x.dtype)
    active = torch.arange(x.shape[0])
    for _ in range(n_iter):
        fn = _fn(model, which, t_rows[active])
        xa, va = x[active], v[active]
        _, u = torch.func.jvp(fn, (xa,), (va,))
        s_new = u.norm(dim=1)
        _, vjp_fn = torch.func.vjp(fn, xa)
        (w,) = vjp_fn(u)
        wn = w.norm(dim=1, keepdim=True)
        v[active] = torch.where(wn > 0, w / wn.clamp_min(1e-300), va)
        done = (s_new - s[active]).abs() <= tol * s_new.clamp_min(1e-300)
        s[active] = s_new
        active = active[~done]
        if active.numel() == 0:
            break
    _, u = torch.func.jvp(_fn(model, which, t_rows), (x,), (v,))  # s = ||J v|| for the final v
    return u.norm(dim=1).detach(), v.detach()


def _exact_norms(
    model, which, x: torch.Tensor, t_rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full per-row Jacobians from d JVPs with the basis vectors, then a batched SVD."""
    fn = _fn(model, which, t_rows)
    cols = []
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = 1.0
        cols.append(torch.func.jvp(fn, (x,), (e,))[1])
    jac = torch.stack(cols, dim=-1)  # (B, m, d)
    _, svals, vh = torch.linalg.svd(jac, full_matrices=False)
    return svals[:, 0].detach(), vh[:, 0, :].detach()


def _row_norms(
    model, which, x, t_rows, v0, method: str, n_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ||J(x_i, t_i)||_2 (``s (B,)``) and a unit right singular vector (``v (B, d)``).

    ``s = ||J v||`` with ``||v|| = 1`` exactly, so ``s`` is a lower bound of the row's
    Jacobian norm even if the power iteration has not converged.
    """
    if method == "exact":
        return _exact_norms(model, which, x, t_rows)
    return _power_norms(model, which, x, t_rows, v0.clone(), n_iter, tol)


def _ascend(
    model, which, x, t_rows, v, s, n_steps: int, step: float, method: str, n_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised gradient ascent of ||J(x) v|| in x, backtracking per row; best kept."""
    fn = _fn(model, which, t_rows)
    steps = torch.full((x.shape[0], 1), step, dtype=x.dtype)

    def objective(xx, vv):
        _, u = torch.func.jvp(fn, (xx,), (vv,))
        return u.pow(2).sum()

    for _ in range(n_steps):
        g = torch.func.grad(objective)(x, v)
        gn = g.norm(dim=1, keepdim=True)
        x_new = torch.where(gn > 0, x + steps * g / gn.clamp_min(1e-300), x)
        s_new, v_new = _row_norms(model, which, x_new, t_rows, v, method, n_iter, tol)
        better = (s_new > s)[:, None]
        x = torch.where(better, x_new, x)
        v = torch.where(better, v_new, v)
        s = torch.where(better[:, 0], s_new, s)
        steps = torch.where(better, steps * 1.5, steps * 0.5)
    return x.detach(), v.detach(), s.detach()


def _norms_chunked(model, which, xs, ts, v0, method, n_iter, tol, batch_size, progress, desc):
    s_all = torch.empty(xs.shape[0], dtype=xs.dtype)
    v_all = torch.empty_like(xs)
    chunks = range(0, xs.shape[0], batch_size)
    for lo in tqdm(chunks, desc=desc, disable=not progress, leave=False):
        sl = slice(lo, lo + batch_size)
        s_all[sl], v_all[sl] = _row_norms(model, which, xs[sl], ts[sl], v0[sl], method, n_iter, tol)
    return s_all, v_all


def _lower(
    model: nn.Module,
    x: torch.Tensor,
    times: np.ndarray,
    which: str,
    *,
    method: str,
    n_power_iter: int,
    tol: float,
    n_ascent: int,
    top_k: int,
    ascent_step: float,
    n_explore: int,
    explore_radii: tuple[float, ...],
    batch_size: int,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    n, d = x.shape
    with torch.no_grad():  # the search differentiates a vector (d,) per row
        out = getattr(model, which)(x[:1], torch.as_tensor(times[:1], dtype=x.dtype))
    if which == "diffusion":
        require_diagonal(out, 1, d, "lipschitz_lower_bound (which='diffusion')")
    if method == "auto":
        method = "exact" if d <= EXACT_MAX_DIM else "power"
    g = torch.Generator().manual_seed(seed)
    tt = torch.as_tensor(times, dtype=x.dtype)
    centre = x.mean(0)
    spread = float((x - centre).pow(2).sum(1).mean().sqrt())
    scale = spread if spread > 0 else 1.0
    # rows: the data at every time (time-major: row = i_t * n + i_state), then the probes
    xs = [x.repeat(len(times), 1)]
    ts = [tt.repeat_interleave(n)]
    if n_explore > 0 and explore_radii:
        u = torch.randn(n_explore, d, generator=g, dtype=x.dtype)
        u = u / u.norm(dim=1, keepdim=True)
        probes = torch.cat([centre + r * scale * u for r in explore_radii])
        xs.append(probes.repeat(len(times), 1))
        ts.append(tt.repeat_interleave(probes.shape[0]))
    n_data = n * len(times)
    xs, ts = torch.cat(xs), torch.cat(ts)
    v0 = torch.randn(xs.shape, generator=g, dtype=x.dtype)
    s_all, v_all = _norms_chunked(
        model,
        which,
        xs,
        ts,
        v0,
        method,
        n_power_iter,
        tol,
        batch_size,
        progress,
        f"Jacobian norms ({which})",
    )
    by_time = s_all[:n_data].reshape(len(times), n).max(dim=1).values
    lower_data = float(s_all[:n_data].max())
    lower_explore = float(s_all[n_data:].max()) if xs.shape[0] > n_data else None

    k = min(top_k, xs.shape[0])
    idx = torch.topk(s_all, k).indices
    xb, vb, sb = xs[idx], v_all[idx], s_all[idx]
    if n_ascent > 0 and float(sb.max()) > 0:
        xb, vb, sb = _ascend(
            model,
            which,
            xb,
            ts[idx],
            vb,
            sb,
            n_ascent,
            ascent_step * scale,
            method,
            n_power_iter,
            tol,
        )
    j = int(torch.argmax(sb))
    return {
        "lower": float(sb[j]),
        "lower_data": lower_data,
        "lower_explore": lower_explore,
        "lower_by_time": by_time.numpy(),
        "argmax_state": xb[j].numpy(),
        "argmax_time": float(ts[idx][j]),
        "argmax_direction": vb[j].numpy(),
        "n_points": int(xs.shape[0]),
        "method": method,
    }


def lipschitz_lower_bound(
    model: nn.Module,
    states: Any,
    times: Any,
    which: str = "drift",
    *,
    method: str = "auto",
    n_power_iter: int = 200,
    tol: float = 1e-10,
    n_ascent: int = 20,
    top_k: int = 8,
    ascent_step: float = 0.05,
    n_explore: int = 256,
    explore_radii: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0),
    batch_size: int = 4096,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Lower bound of the Lipschitz constant in x: max_x,t ||J(x, t)||_2, searched.

    Args:
        model: an SDEModel; its rows must be independent (true for every MLP in eval mode).
        states: ``(N, d)`` points (e.g. held-out states); every time in ``times`` is applied
            to every state (N * T evaluations).
        times: a float or ``(T,)`` grid.
        which: ``"drift"`` or ``"diffusion"``.
        method: ``"power"`` (batched power iteration on J^T J with ``torch.func`` JVP/VJP,
            converged rows frozen), ``"exact"`` (full Jacobian from d JVPs and a batched
            SVD) or ``"auto"`` (exact when d <= :data:`EXACT_MAX_DIM`, power otherwise).
        n_power_iter, tol: power iteration per point, each row stopped when its estimate
            changes by less than ``tol`` relative.
        n_ascent, top_k, ascent_step: gradient-ascent steps on the state from the ``top_k``
            worst points, first step ``ascent_step`` times the RMS spread of ``states``.
        n_explore, explore_radii: the constant is a sup over all x, and it often sits far
            from the data (e.g. where softplus(net) becomes linear, or in a ReLU region the
            data miss): ``n_explore`` seeded random directions from the data mean at each
            radius (in units of the RMS spread) are probed too (0 disables).
        batch_size: rows per chunk. seed: seeds the probes and the starting vectors.

    Returns:
        ``{"lower", "lower_data" (over the states, before ascent), "lower_explore" (over
        the probes, or None), "lower_by_time" (T,) over the states, "argmax_state" (d,),
        "argmax_time", "argmax_direction" (d,), "n_points", "method"}``.
    """
    check_choice("which", which, ["drift", "diffusion"])
    x = as_states(states)
    check_dim(model, x.shape[1], "states")
    kw = _lower_options(
        dict(
            method=method,
            n_power_iter=n_power_iter,
            tol=tol,
            n_ascent=n_ascent,
            top_k=top_k,
            ascent_step=ascent_step,
            n_explore=n_explore,
            explore_radii=explore_radii,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
        )
    )
    return _lower(as_float64(model), x, as_times(times), which, **kw)


_LOWER_DEFAULTS: dict[str, Any] = dict(
    method="auto",
    n_power_iter=200,
    tol=1e-10,
    n_ascent=20,
    top_k=8,
    ascent_step=0.05,
    n_explore=256,
    explore_radii=(1.0, 2.0, 4.0, 8.0, 16.0),
    batch_size=4096,
    seed=0,
    progress=True,
)


def _lower_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The lower-bound options from ``kwargs`` (defaults filled in), validated."""
    unknown = set(kwargs) - set(_LOWER_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; allowed: {sorted(_LOWER_DEFAULTS)}")
    kw = {**_LOWER_DEFAULTS, **{k: v for k, v in kwargs.items() if k in _LOWER_DEFAULTS}}
    check_choice("method", kw["method"], ["auto", "power", "exact"])
    kw["n_power_iter"] = check_int("n_power_iter", kw["n_power_iter"], minimum=1)
    kw["tol"] = check_real("tol", kw["tol"], minimum=0.0)
    kw["n_ascent"] = check_int("n_ascent", kw["n_ascent"], minimum=0)
    kw["top_k"] = check_int("top_k", kw["top_k"], minimum=1)
    kw["ascent_step"] = check_positive("ascent_step", kw["ascent_step"])
    kw["n_explore"] = check_int("n_explore", kw["n_explore"], minimum=0)
    kw["explore_radii"] = tuple(check_positive("radius", r) for r in kw["explore_radii"])
    kw["batch_size"] = check_int("batch_size", kw["batch_size"], minimum=1)
    kw["seed"] = check_seed(kw["seed"])
    kw["progress"] = check_bool("progress", kw["progress"])
    return kw


def _joint_lower(model: nn.Module, lows: dict[str, dict]) -> float:
    """max over the two worst points and directions v of ||J_mu v|| + ||J_sigma v||."""
    best = 0.0
    for low in lows.values():
        x = torch.as_tensor(low["argmax_state"])[None]
        t = torch.full((1,), low["argmax_time"], dtype=x.dtype)
        for other in lows.values():
            v = torch.as_tensor(other["argmax_direction"])[None]
            total = 0.0
            for which in ("drift", "diffusion"):
                _, u = torch.func.jvp(_fn(model, which, t), (x,), (v,))
                total += float(u.detach().norm())
            best = max(best, total)
    return best


def lipschitz_bracket(model: nn.Module, states: Any, times: Any, **lower_kwargs) -> dict:
    """Bracket K_mu, K_sigma and K = K_mu + K_sigma (the paper's §3.1.1 form).

    Args:
        model: an SDEModel. states: ``(N, d)``. times: a float or ``(T,)`` grid.
        **lower_kwargs: options of :func:`lipschitz_lower_bound` (``method``,
            ``n_power_iter``, ``tol``, ``n_ascent``, ``top_k``, ``ascent_step``,
            ``n_explore``, ``explore_radii``, ``batch_size``, ``seed``, ``progress``).

    Returns:
        ``{"K_mu": entry, "K_sigma": entry, "K": {"lower", "upper", "ratio"},
        "K_min_lower": float, "times": (T,), "n_states": N}`` where each entry has
        ``lower``, ``upper`` (None when uncertified), ``ratio`` = upper / lower,
        ``upper_method``, ``upper_bounds`` (every certified bound computed),
        ``upper_reason`` and the fields of :func:`lipschitz_lower_bound`.
        ``K`` brackets K_mu + K_sigma. The smallest K satisfying (3.1.1) itself can be
        below K_mu + K_sigma; ``K_min_lower`` is a lower bound for it (the largest
        ||J_mu v|| + ||J_sigma v|| found), and ``K["upper"]`` also bounds it from above.
    """
    x = as_states(states)
    check_dim(model, x.shape[1], "states")
    t = as_times(times)
    m64 = as_float64(model)
    kw = _lower_options(lower_kwargs)
    out: dict[str, Any] = {}
    lows = {}
    for key, which in (("K_mu", "drift"), ("K_sigma", "diffusion")):
        up = certified_upper_bound(m64, which, seed=kw["seed"])
        low = _lower(m64, x, t, which, **kw)
        lows[which] = low
        out[key] = {
            "lower": low["lower"],
            "upper": up["upper"],
            "ratio": safe_ratio(up["upper"], low["lower"]),
            "upper_method": up["method"],
            "upper_bounds": up["bounds"],
            "upper_reason": up["reason"],
            **{k: v for k, v in low.items() if k != "lower"},
        }
    mu, sg = out["K_mu"], out["K_sigma"]
    k_up = None if mu["upper"] is None or sg["upper"] is None else mu["upper"] + sg["upper"]
    k_low = mu["lower"] + sg["lower"]
    out["K"] = {"lower": k_low, "upper": k_up, "ratio": safe_ratio(k_up, k_low)}
    out["K_min_lower"] = max(_joint_lower(m64, lows), mu["lower"], sg["lower"])
    out["times"] = t
    out["n_states"] = int(x.shape[0])
    return out


__all__ = ["EXACT_MAX_DIM", "lipschitz_lower_bound", "lipschitz_bracket"]
