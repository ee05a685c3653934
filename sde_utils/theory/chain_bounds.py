r"""Certified Lipschitz bounds of an MLP's state Jacobian from its weights (paper §3.1.1).

The state Jacobian of an MLP is J = M_L D_{L-1} M_{L-1} ... D_0 M_0, with M_0 the first
layer's *state* columns (``W[:, :state_dim]``) and D_k diagonal, entries in the
activation's derivative range [a_k, b_k] (tanh, relu, softplus: [0, 1]; silu:
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

:func:`parse_chain` turns an ``nn.Sequential`` into the matrices and derivative ranges;
:func:`chain_lipschitz_bounds` bounds the chain.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm as _normal
from torch import nn


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


def _flatten(seq: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in seq.children() if isinstance(seq, nn.Sequential) else [seq]:
        out.extend(_flatten(m) if isinstance(m, nn.Sequential) else [m])
    return out


def parse_chain(
    net: nn.Module, state_dim: int, trailing: tuple[float, float] | None = None
) -> tuple[list[np.ndarray], list[tuple[float, float]]] | str:
    """Matrices M_0..M_L acting on the state and derivative ranges between them, or a reason.

    Args:
        net: an ``nn.Sequential`` (nested ones are flattened) of Linear layers and
            elementwise activations whose first Linear layer takes ``[x, time features]``.
        state_dim: d, the number of leading input columns that act on the state.
        trailing: the derivative range of an activation applied after the last layer
            (then the identity follows), e.g. ``(0.0, 1.0)`` for a softplus output.

    Returns:
        ``(mats, ranges)``, ``mats[k]`` of shape ``(n_{k+1}, n_k)`` (``mats[0]``: the first
        layer's ``(n_1, d)`` state columns) and ``len(mats) - 1`` ranges ``(a_k, b_k)``, for
        :func:`chain_lipschitz_bounds`; or a string saying why the network is not such a
        chain. Dropout and Identity are skipped (eval mode), consecutive Linear layers are
        multiplied out.
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


def spectral_norm(m: np.ndarray) -> float:
    """||m||_2, the largest singular value of a 2-D array (0 for an empty one)."""
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
        return spectral_norm(p)

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
                cands = [spectral_norm(p) if length > 1 else spectral_norm(pieces[i])]
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
                best[i, j] = spectral_norm(mats[i])
                continue
            cands = [abs_product(i, j)]
            if j - i <= max_expand:
                cands.append(midpoint(i, j))
            cands += [best[i, k] * lmax[k] * best[k + 1, j] for k in range(i, j)]
            best[i, j] = min(cands)

    naive = float(np.prod([spectral_norm(m) for m in mats]) * np.prod(lmax))
    return {
        "naive": naive,
        "abs_product": abs_product(0, n - 1),
        "midpoint": midpoint(0, n - 1) if n - 1 <= max_expand else None,
        "combined": best[0, n - 1],
    }


__all__ = [
    "SILU_DERIVATIVE_MAX",
    "GELU_DERIVATIVE_MAX",
    "activation_derivative_range",
    "parse_chain",
    "spectral_norm",
    "chain_lipschitz_bounds",
]
