r"""Lipschitz constants and linear growth of drift and diffusion (paper §3.1).

The paper asks for a constant K with, for all x1, x2 and t,

    ||mu(x1, t) - mu(x2, t)|| + ||sigma(x1, t) - sigma(x2, t)|| <= K ||x1 - x2||        (3.1.1)

and a constant C with ||mu(x, t)||^2 + ||sigma(x, t)||^2 <= C (1 + ||x||^2)          (3.1.2).

Norms are Euclidean; sigma is the diagonal of the diffusion matrix, so ||sigma|| is the
Frobenius norm of diag(sigma). We bracket the Lipschitz constants in x (time fixed):

- **upper bounds** (certified, from the weights; valid for every t because time enters only
  through the first layer's time-feature columns, i.e. as a constant shift):
  models with ``drift_net`` / ``diffusion_net`` (``nn.Sequential`` of Linear layers and
  elementwise activations, diffusion = softplus(net) + floor) get a chain bound (below);
  models with an ``A`` matrix (linear drift) get ||A||_2; a
  :class:`~sde_utils.models.baselines.RandomWalk` (zero drift by construction) gets K_mu = 0;
  models with a constant ``sigma`` get K_sigma = 0. Each structure is first *verified*
  numerically against ``model.drift`` / ``model.diffusion``; anything else gets
  ``upper=None`` and a reason.
- **lower bounds**: the largest Jacobian spectral norm over the given states and times
  and over seeded random probes at growing distances from the data (batched power
  iteration on J^T J with ``torch.func`` JVP/VJP, or for d <= 32 the exact SVD of the
  Jacobian), then a few steps of normalised gradient ascent on the state from the worst
  points. Any ||J(x) v|| with ||v|| = 1 is a valid lower bound of the Lipschitz
  constant, whether or not the power iteration has converged.

Chain bound. The state Jacobian of an MLP is J = M_L D_{L-1} M_{L-1} ... D_0 M_0, with
M_0 the first layer's *state* columns (``W[:, :state_dim]``) and D_k diagonal, entries in
the activation's derivative range [a_k, b_k] (tanh, relu, softplus: [0, 1]; silu:
[1 - s, s] with s = 1.0998, see :data:`SILU_DERIVATIVE_MAX`). For the diffusion a trailing
softplus (range [0, 1]) is followed by the identity. Certified bounds of ||J||_2:

- ``naive``: prod_k ||M_k||_2 * prod_k max(|a_k|, |b_k|) (the textbook product bound);
- ``abs_product``: || |M_L| L_{L-1} |M_{L-1}| ... L_0 |M_0| ||_2 with L_k = max(|a_k|, |b_k|)
  (|J| <= that matrix entrywise, and the spectral norm is monotone on nonnegative matrices);
- ``midpoint``: write D_k = c_k I + E_k, c_k = (a_k + b_k) / 2, |E_k| <= r_k = (b_k - a_k) / 2,
  expand the product into 2^(#activations) terms and bound each: the term without E is
  the exact product with c's (norm computed exactly); a term with E's at positions S,
  P_m E P_{m-1} ... E P_0 (P_i the exact pieces with the c's inside), is bounded by
  prod_{k in S} r_k times the best split of the pieces into runs, each run bounded by
  || |P_j| ... |P_i| ||_2 (|E| <= r entrywise) or, for a single piece, ||P_i||_2 (||E|| <= r);
- ``combined`` (reported as ``upper``): the smallest bound over every way of splitting the
  chain into sub-chains, each bounded by the best of the above, joined by L_k
  (dynamic programming; never larger than ``naive``, ``abs_product`` or ``midpoint``).

All results are plain dicts of floats, lists and numpy arrays; pass them through
:func:`sde_utils.theory.to_jsonable` before ``json.dump``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import norm as _normal
from torch import nn
from tqdm.auto import tqdm

from sde_utils.checks import check_choice, check_positive
from sde_utils.models.baselines import RandomWalk
from sde_utils.theory._common import (
    as_float64,
    as_states,
    as_times,
    check_dim,
    eval_drift_diffusion,
    safe_ratio,
    state_dim_of,
)


def _silu_derivative(x: float) -> float:
    s = 1.0 / (1.0 + math.exp(-x))
    return s * (1.0 + x * (1.0 - s))


def _silu_derivative_max() -> float:
    """max_x d/dx [x sigmoid(x)], computed, not hard-coded.

    With s = sigmoid(x): silu'(x) = s (1 + x (1 - s)) and silu''(x) = s (1 - s) (2 + x (1 - 2 s))
    = s (1 - s) (2 - x tanh(x / 2)). The only positive critical point solves
    x tanh(x / 2) = 2 (x ~ 2.3994), where silu' reaches its maximum ~ 1.0998. Since
    silu'(x) + silu'(-x) = 1, the minimum is 1 - max ~ -0.0998 (at -2.3994).
    """
    x_star = brentq(lambda x: x * math.tanh(x / 2.0) - 2.0, 1.0, 4.0, xtol=1e-15)
    return _silu_derivative(x_star)


def _gelu_derivative_max() -> float:
    """max_x d/dx [x Phi(x)] = Phi(sqrt 2) + sqrt 2 phi(sqrt 2) ~ 1.1289.

    gelu'(x) = Phi(x) + x phi(x) and gelu''(x) = phi(x) (2 - x^2), so the extremes are at
    +-sqrt(2); gelu'(x) + gelu'(-x) = 1 gives the minimum 1 - max.
    """
    r = math.sqrt(2.0)
    return float(_normal.cdf(r) + r * _normal.pdf(r))


#: Lipschitz constant of SiLU: max of d/dx x*sigmoid(x) (~1.0998), see _silu_derivative_max.
SILU_DERIVATIVE_MAX: float = _silu_derivative_max()
#: Lipschitz constant of exact GELU (~1.1289), see _gelu_derivative_max.
GELU_DERIVATIVE_MAX: float = _gelu_derivative_max()


def activation_derivative_range(module: nn.Module) -> tuple[float, float] | None:
    """The interval [a, b] containing the derivative of an elementwise activation module.

    The Lipschitz constant of the activation is max(|a|, |b|). Returns None for a module
    that is not a recognised elementwise activation.
    """
    if isinstance(module, (nn.Tanh, nn.ReLU, nn.Softplus)):
        return (0.0, 1.0)  # tanh' = 1 - tanh^2, relu' in {0, 1}, softplus' = sigmoid(beta x)
    if isinstance(module, nn.Sigmoid):
        return (0.0, 0.25)  # sigmoid' = s (1 - s) <= 1/4
    if isinstance(module, nn.SiLU):
        return (1.0 - SILU_DERIVATIVE_MAX, SILU_DERIVATIVE_MAX)
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return (1.0 - GELU_DERIVATIVE_MAX, GELU_DERIVATIVE_MAX)
    if isinstance(module, nn.LeakyReLU):
        s = float(module.negative_slope)
        return (min(s, 1.0), max(s, 1.0))
    if isinstance(module, nn.ELU) and module.alpha >= 0:
        return (0.0, max(1.0, float(module.alpha)))  # alpha e^x in (0, alpha) for x < 0
    return None


# ---------------------------------------------------------------------------------------
# certified upper bounds from the weights
# ---------------------------------------------------------------------------------------


def _flatten(seq: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in seq.children() if isinstance(seq, nn.Sequential) else [seq]:
        out.extend(_flatten(m) if isinstance(m, nn.Sequential) else [m])
    return out


def _parse_chain(
    net: nn.Module, state_dim: int, trailing: tuple[float, float] | None = None
) -> tuple[list[np.ndarray], list[tuple[float, float]]] | str:
    """Matrices M_0..M_L acting on the state and derivative ranges between them, or a reason.

    Dropout and Identity are skipped (eval mode), consecutive Linear layers are multiplied
    out. ``trailing`` appends an activation after the last layer (then the identity).
    """
    mats: list[np.ndarray] = []
    ranges: list[tuple[float, float]] = []
    last = None  # "lin" or "act"
    for m in _flatten(net):
        if isinstance(m, (nn.Dropout, nn.Identity)):
            continue
        if isinstance(m, nn.Linear):
            w = m.weight.detach().cpu().numpy().astype(np.float64)
            if not mats:
                if w.shape[1] < state_dim:
                    return f"first Linear has {w.shape[1]} inputs < state_dim={state_dim}"
                w = w[:, :state_dim]  # only the state columns act on x; time features are a shift
            if last == "lin":
                mats[-1] = w @ mats[-1]
            else:
                mats.append(w)
            last = "lin"
        else:
            rng = activation_derivative_range(m)
            if rng is None:
                return f"unsupported module {type(m).__name__} in {type(net).__name__}"
            if last is None:
                return "the network starts with an activation, not a Linear layer on [x, time]"
            if last == "act":
                return "two consecutive activations are not supported"
            ranges.append(rng)
            last = "act"
    if not mats:
        return "the network has no Linear layer"
    if trailing is not None:
        if last == "act":
            return "the network ends with an activation before the output transform"
        ranges.append(trailing)
        last = "act"
    if last == "act":
        mats.append(np.eye(mats[-1].shape[0]))
    return mats, ranges


def _spec(m: np.ndarray) -> float:
    return float(np.linalg.norm(m, 2)) if m.size else 0.0


def chain_lipschitz_bounds(
    mats: list[np.ndarray], ranges: list[tuple[float, float]], max_expand: int = 4
) -> dict[str, float]:
    """Certified bounds of ||M_L D_{L-1} ... D_0 M_0||_2 over diagonal D_k in [a_k, b_k].

    Args:
        mats: matrices M_0..M_L, ``M_k`` of shape (n_{k+1}, n_k).
        ranges: L intervals (a_k, b_k), the derivative range of the activation after M_k.
        max_expand: the midpoint expansion (2^m terms) is used on sub-chains with at most
            this many activations.

    Returns:
        ``{"naive", "abs_product", "midpoint", "combined"}`` (see the module docstring);
        ``midpoint`` is None when the whole chain has more than ``max_expand`` activations
        (``combined`` still uses it on sub-chains).
    """
    n = len(mats)
    if len(ranges) != n - 1:
        raise ValueError(f"need len(ranges) = len(mats) - 1, got {len(ranges)} and {n}")
    lmax = [max(abs(a), abs(b)) for a, b in ranges]
    mid = [(a + b) / 2.0 for a, b in ranges]
    rad = [(b - a) / 2.0 for a, b in ranges]

    # exact products with the midpoints c_k inside: seg[s][e] = M_e c_{e-1} ... c_s M_s
    seg: dict[tuple[int, int], np.ndarray] = {}
    for s in range(n):
        p = mats[s]
        seg[s, s] = p
        for e in range(s + 1, n):
            p = mats[e] @ (mid[e - 1] * p)
            seg[s, e] = p

    def abs_product(i: int, j: int) -> float:
        p = np.abs(mats[i])
        for k in range(i, j):
            p = np.abs(mats[k + 1]) @ (lmax[k] * p)
        return _spec(p)

    def pieces_bound(pieces: list[np.ndarray]) -> float:
        """Bound of ||P_m E P_{m-1} ... E P_0|| / prod r over |E| <= r (diagonal), by DP:
        a run of pieces is bounded by || |P_j| ... |P_i| ||_2 or split into two runs."""
        m = len(pieces)
        abs_p = [np.abs(p) for p in pieces]
        b: dict[tuple[int, int], float] = {}
        for length in range(1, m + 1):
            for i in range(m - length + 1):
                j = i + length - 1
                p = abs_p[i]
                for q in range(i + 1, j + 1):
                    p = abs_p[q] @ p
                cands = [_spec(p) if length > 1 else _spec(pieces[i])]
                cands += [b[i, k] * b[k + 1, j] for k in range(i, j)]
                b[i, j] = min(cands)
        return b[0, m - 1]

    def midpoint(i: int, j: int) -> float:
        pos = list(range(i, j))  # activation k sits between M_k and M_{k+1}
        total = 0.0
        for mask in range(1 << len(pos)):
            cut = [pos[q] for q in range(len(pos)) if mask >> q & 1]
            coef = float(np.prod([rad[k] for k in cut]))
            if coef == 0.0:
                continue
            starts = [i] + [k + 1 for k in cut]
            ends = cut + [j]
            pieces = [seg[a, e] for a, e in zip(starts, ends, strict=True)]
            total += coef * pieces_bound(pieces)
        return total

    best: dict[tuple[int, int], float] = {}
    for length in range(1, n + 1):
        for i in range(n - length + 1):
            j = i + length - 1
            if i == j:
                best[i, j] = _spec(mats[i])
                continue
            cands = [abs_product(i, j)]
            if j - i <= max_expand:
                cands.append(midpoint(i, j))
            cands += [best[i, k] * lmax[k] * best[k + 1, j] for k in range(i, j)]
            best[i, j] = min(cands)

    naive = float(np.prod([_spec(m) for m in mats]) * np.prod(lmax))
    return {
        "naive": naive,
        "abs_product": abs_product(0, n - 1),
        "midpoint": midpoint(0, n - 1) if n - 1 <= max_expand else None,
        "combined": best[0, n - 1],
    }


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


def _upper(model: nn.Module, which: str, seed: int = 0) -> dict[str, Any]:
    """Certified upper bound for a float64 model; see :func:`lipschitz_upper_bound`."""
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
        if which == "drift":

            def struct(xx, tt):
                return net(_net_input(model, xx, tt))

            chain = _parse_chain(net, d)
        else:
            floor = float(getattr(model, "sigma_floor", 0.0))

            def struct(xx, tt):
                return nn.functional.softplus(net(_net_input(model, xx, tt))) + floor

            chain = _parse_chain(net, d, trailing=(0.0, 1.0))  # softplus' = sigmoid in (0, 1)
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
    if which == "drift" and isinstance(model, RandomWalk):

        def struct(xx, tt):
            return torch.zeros_like(xx)

        reason = _verify(model.drift, struct, x, t)
        if reason is None:
            out.update(upper=0.0, method="zero_drift", bounds={"zero_drift": 0.0})
            out["structure"] = "constant"
            return out
        out["reason"] = f"zero drift: {reason}"
        return out
    if which == "drift" and hasattr(model, "A"):
        a = torch.as_tensor(model.A).detach().to(torch.float64)

        def struct(xx, tt):
            return model.drift(torch.zeros_like(xx), tt) + xx @ a.T

        reason = _verify(model.drift, struct, x, t)
        if reason is None:
            s = _spec(a.numpy())
            out.update(upper=s, method="spectral_norm_A", bounds={"spectral_norm_A": s})
            out["structure"] = "linear"
            return out
        out["reason"] = f"A: {reason}"
        return out
    if which == "diffusion" and hasattr(model, "sigma"):
        sig = torch.as_tensor(model.sigma).detach().to(torch.float64)

        def struct(xx, tt):
            return sig.expand(xx.shape[0], -1)

        reason = _verify(model.diffusion, struct, x, t)
        if reason is None:
            out.update(upper=0.0, method="constant_sigma", bounds={"constant_sigma": 0.0})
            out["structure"] = "constant"
            return out
        out["reason"] = f"sigma: {reason}"
        return out
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
        ``upper`` is valid for all x and all t. ``reason`` explains a None.
    """
    check_choice("which", which, ["drift", "diffusion"])
    return _upper(as_float64(model), which, seed)


# ---------------------------------------------------------------------------------------
# lower bounds: Jacobian spectral norms by power iteration, then gradient ascent
# ---------------------------------------------------------------------------------------

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
    check_positive("n_power_iter", kw["n_power_iter"])
    check_positive("tol", kw["tol"], allow_zero=True)
    check_positive("n_ascent", kw["n_ascent"], allow_zero=True)
    check_positive("top_k", kw["top_k"])
    check_positive("ascent_step", kw["ascent_step"])
    check_positive("n_explore", kw["n_explore"], allow_zero=True)
    kw["explore_radii"] = tuple(float(check_positive("radius", r)) for r in kw["explore_radii"])
    check_positive("batch_size", kw["batch_size"])
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
        up = _upper(m64, which, seed=kw["seed"])
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


# ---------------------------------------------------------------------------------------
# linear growth (§3.1.2)
# ---------------------------------------------------------------------------------------


def _growth_ratio(model, x: torch.Tensor, times: np.ndarray) -> np.ndarray:
    """(T, N) values of (|mu|^2 + |sigma|^2) / (1 + |x|^2)."""
    out = np.empty((len(times), x.shape[0]))
    den = (1.0 + x.pow(2).sum(1)).numpy()
    for i, ti in enumerate(times):
        mu, sg = eval_drift_diffusion(model, x, float(ti))
        out[i] = (mu.pow(2).sum(1) + sg.pow(2).sum(1)).numpy() / den
    return out


def linear_growth(
    model: nn.Module,
    states: Any,
    times: Any,
    radii: Any,
    *,
    n_directions: int = 64,
    seed: int = 0,
    K_mu: float | None = None,
    K_sigma: float | None = None,
) -> dict[str, Any]:
    r"""Certified and empirical linear-growth constants C of (3.1.2), over the time grid.

    Certified C. If |f(x) - f(0)| <= K_f |x| then |f(x)| <= |f(0)| + K_f |x|, and by
    Cauchy–Schwarz (a + b r)^2 = ((a, b) . (1, r))^2 <= (a^2 + b^2)(1 + r^2), with equality
    at r = b / a, so |f(x)|^2 <= (|f(0)|^2 + K_f^2)(1 + |x|^2) is the best constant from
    this argument. Summing drift and diffusion,

        C_certified = max_t (|mu(0, t)|^2 + |sigma(0, t)|^2) + K_mu^2 + K_sigma^2,

    valid for all x and every t of the grid (the values at x = 0 depend on t; with
    unbounded time features no C may exist for all t). The textbook route
    (a + b r)^2 <= 2 a^2 + 2 b^2 r^2 gives C_simple = 2 max(a^2, b^2) with a^2, b^2 the
    two sums above; C_certified <= C_simple always.

    Empirical C. sup of (|mu|^2 + |sigma|^2) / (1 + |x|^2) over ``states`` x ``times``, over
    spheres |x| = r for each r in ``radii`` (``n_directions`` seeded random directions
    each) and at x = 0 (where the ratio is ``f0_sq``). Any such value is a lower bound of
    the smallest valid C.

    Args:
        model: an SDEModel. states: ``(N, d)``. times: float or ``(T,)``. radii: ``(R,)``.
        n_directions: random unit directions per radius; seed: their seed.
        K_mu, K_sigma: upper bounds to use; by default the certified ones of
            :func:`lipschitz_upper_bound` (pass them from :func:`lipschitz_bracket` to
            avoid recomputing).

    Returns:
        ``{"C_certified", "C_simple", "C_empirical", "ratio", "reason", "K_mu", "K_sigma",
        "f0_sq" (T,) |mu(0,t)|^2 + |sigma(0,t)|^2, "sup_data", "sup_data_by_time" (T,),
        "radii" (R,), "sup_sphere" (R,), "times" (T,)}``.
    """
    check_positive("n_directions", n_directions)
    x = as_states(states)
    d = x.shape[1]
    check_dim(model, d, "states")
    t = as_times(times)
    r = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if r.ndim != 1 or np.any(r < 0) or not np.all(np.isfinite(r)):
        raise ValueError(f"radii must be a 1-D array of finite values >= 0, got {radii!r}")
    m64 = as_float64(model)

    reasons = []
    if K_mu is None:
        up = _upper(m64, "drift", seed)
        K_mu = up["upper"]
        reasons += [up["reason"]] if up["reason"] else []
    if K_sigma is None:
        up = _upper(m64, "diffusion", seed)
        K_sigma = up["upper"]
        reasons += [up["reason"]] if up["reason"] else []

    zero = torch.zeros(1, d, dtype=torch.float64)
    f0 = _growth_ratio(m64, zero, t)[:, 0]  # at x = 0 the denominator is 1
    a2 = float(f0.max())
    if K_mu is None or K_sigma is None:
        c_cert = c_simple = None
    else:
        b2 = float(K_mu) ** 2 + float(K_sigma) ** 2
        c_cert, c_simple = a2 + b2, 2.0 * max(a2, b2)

    data = _growth_ratio(m64, x, t)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_directions, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sphere = np.array(
        [_growth_ratio(m64, torch.as_tensor(ri * u), t).max() for ri in r], dtype=np.float64
    )
    c_emp = float(max(data.max(), sphere.max() if sphere.size else -np.inf, a2))
    return {
        "C_certified": c_cert,
        "C_simple": c_simple,
        "C_empirical": c_emp,
        "ratio": safe_ratio(c_cert, c_emp),
        "reason": "; ".join(reasons) or None,
        "K_mu": K_mu,
        "K_sigma": K_sigma,
        "f0_sq": f0,
        "sup_data": float(data.max()),
        "sup_data_by_time": data.max(axis=1),
        "radii": r,
        "sup_sphere": sphere,
        "times": t,
    }


__all__ = [
    "EXACT_MAX_DIM",
    "SILU_DERIVATIVE_MAX",
    "GELU_DERIVATIVE_MAX",
    "activation_derivative_range",
    "chain_lipschitz_bounds",
    "lipschitz_upper_bound",
    "lipschitz_lower_bound",
    "lipschitz_bracket",
    "linear_growth",
]
