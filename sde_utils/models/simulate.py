"""Simulating fitted SDEs on the token grid.

Three entry points, all under ``torch.no_grad`` and all with the same output layout:

- :func:`simulate`: torchsde's ``sdeint`` (``"euler"``, ``"milstein"`` or ``"srk"``) on the
  float64 time grid ``t_k = t0 + k * dt`` with the solver step equal to ``dt`` (torchsde's
  default ``dt=1e-3`` would take 1,000 internal steps per token), driven by a seeded
  :class:`GridBrownian`;
- :func:`euler_maruyama`: the hand-written vectorised reference loop
  ``x_{k+1} = x_k + mu(x_k, t_k) dt + sigma(x_k, t_k) * dW_k`` (Picard iteration and the
  tests reuse it);
- :func:`drift_path`: the deterministic Euler path with sigma = 0 (for figures).

Layout. A single start ``x0: (d,)`` gives ``(n_steps + 1, n_paths, d)`` (DESIGN's
``(T, n_paths, d)``); a batch of starts ``x0: (B, d)`` gives ``(n_steps + 1, B, n_paths, d)``
with ``out[k, b, p]`` the state at ``t_k`` of path ``p`` started from ``x0[b]``. Internally
the paths are the rows of one ``(B * n_paths, d)`` batch in start-major order, row
``b * n_paths + p``; explicit ``noise`` arguments use that row order.

Brownian motion. torchsde's default ``BrownianInterval`` samples a binary tree of Brownian
bridges with a cache; each query costs a tree search, bridge sampling and Python overhead
(DESIGN recorded ~28x the reference loop; on this machine a 100-step solve measured
1.3-2x for the d = 32 MLP of ``bench/bench_simulate.py`` and ~3x for a d = 2 OU model;
with ``sdeint``'s default ``dt=1e-3`` over 100 time units, building the tree exceeds
Python's recursion limit). Its cost depends on the scale of the time axis
(google-research/torchsde#109) and, without ``halfway_tree``, its path depends on the
order of the queries, not only on the seed. On a fixed grid none of that is needed:
:class:`GridBrownian` holds the increments of every grid step,
``dW_k = sqrt(t_{k+1} - t_k) * eps_k`` (``sqrt(dt)`` up to rounding) with
``eps: (n_steps, batch, d)`` standard normals drawn once
from a ``torch.Generator`` seeded with ``seed`` (:func:`brownian_noise`), and answers the
solver's queries ``W(t_b) - W(t_a)`` for grid times by indexing (exact, no bridge
sampling). For ``"srk"`` it also returns the space-time Lévy area (``U`` in torchsde's
notation, ``U = h * (W / 2 + H)`` with ``H ~ N(0, h / 12)`` independent of ``W``), drawn
from the same generator after ``eps`` so that every method sees the same ``W``. Memory is
one extra tensor of the size of the output (two for ``"srk"``). The noise is drawn on the CPU
and moved to the model's device, so the same ``seed`` and dtype give the same noise on every
device, and paths that agree up to float rounding (bit for bit on one device).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchsde

from sde_utils.checks import check_choice, check_dt, check_int, check_real, check_seed
from sde_utils.models.base import SDEModel, model_dtype_device

METHODS = ("euler", "milstein", "srk")


# ---------------------------------------------------------------------------------------
# time grid and noise
# ---------------------------------------------------------------------------------------
def time_grid(n_steps: int, dt: float, t0: float = 0.0) -> torch.Tensor:
    """The float64 grid ``t_k = t0 + k * dt``, ``k = 0..n_steps``, shape ``(n_steps + 1,)``.

    Built by repeated addition ``t_{k+1} = t_k + dt`` in float64, exactly as torchsde's
    fixed-step solver advances its clock, so solver times and grid times agree bit for bit
    (``t0 + dt * arange`` may differ by an ulp, and torchsde would then take a spurious
    step of length ~1e-16 before each output time). Lives on the CPU: the solver's scalar
    time arithmetic then never synchronises a GPU.
    """
    n_steps = check_int("n_steps", n_steps, minimum=1)
    return _time_grid(n_steps, check_dt(dt), check_real("t0", t0))


def _time_grid(n_steps: int, dt: float, t0: float) -> torch.Tensor:
    """:func:`time_grid` for checked arguments."""
    times = [t0]
    for _ in range(n_steps):
        times.append(times[-1] + dt)
    return torch.tensor(times, dtype=torch.float64)


def _draw(
    n_steps: int,
    batch: int,
    dim: int,
    seed: int,
    dtype: torch.dtype,
    device: torch.device | str,
    n_fields: int,
) -> list[torch.Tensor]:
    # drawn on the CPU whatever the device: CPU and CUDA generators give other numbers, so
    # this way one seed gives the same noise, and the same paths up to rounding, everywhere
    generator = torch.Generator().manual_seed(seed)
    shape = (n_steps, batch, dim)
    fields = [torch.randn(shape, generator=generator, dtype=dtype) for _ in range(n_fields)]
    return [f.to(device) for f in fields]


def brownian_noise(
    n_steps: int,
    batch: int,
    dim: int,
    *,
    seed: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normals ``eps: (n_steps, batch, dim)`` from a generator seeded with ``seed``.

    These are the noises :func:`simulate` and :func:`euler_maruyama` draw for ``seed`` when
    ``dtype`` is the simulation's (the model's; another dtype gives other numbers; the
    device does not matter: they are drawn on the CPU and moved to ``device``):
    ``dW_k = sqrt(dt) * eps[k]``, batch rows start-major.
    """
    n_steps = check_int("n_steps", n_steps, minimum=1)
    batch = check_int("batch", batch, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    return _draw(n_steps, batch, dim, check_seed(seed), dtype, device, 1)[0]


class GridBrownian(torchsde.BaseBrownian):
    """A Brownian motion known exactly on a fixed time grid, for torchsde's fixed-step solvers.

    Args:
        ts: float64 grid ``(n_steps + 1,)``, strictly increasing (see :func:`time_grid`).
        noise: standard normals ``(n_steps, batch, m)``; the increment over step ``k`` is
            ``sqrt(dt_k) * noise[k]`` with ``dt_k = ts[k + 1] - ts[k]``.
        levy_noise: optional standard normals of the same shape for the space-time Lévy
            area (needed by ``"srk"``); ``H_k = sqrt(dt_k / 12) * levy_noise[k]``.

    Queries ``bm(ta, tb)`` must use grid times (any ``ta <= tb``; several steps are summed);
    ``bm(t)`` gives ``W(t) - W(ts[0])``. ``return_U`` needs ``levy_noise`` and a single
    step; ``return_A`` (Lévy area, general noise) is not provided.
    """

    def __init__(
        self,
        ts: torch.Tensor | Sequence[float],
        noise: torch.Tensor,
        levy_noise: torch.Tensor | None = None,
    ):
        times = [float(t) for t in torch.as_tensor(ts, dtype=torch.float64).reshape(-1)]
        if len(times) < 2 or any(b <= a for a, b in zip(times[:-1], times[1:], strict=True)):
            raise ValueError(f"ts must be strictly increasing with >= 2 times, got {times[:5]}...")
        if noise.dim() != 3 or noise.shape[0] != len(times) - 1:
            raise ValueError(
                f"noise must have shape (n_steps={len(times) - 1}, batch, m), "
                f"got {tuple(noise.shape)}"
            )
        steps = torch.tensor(np.diff(times), dtype=noise.dtype, device=noise.device)
        self._times = times
        self._index = {t: k for k, t in enumerate(times)}
        self._dW = noise * steps.sqrt().reshape(-1, 1, 1)
        self._U = None
        if levy_noise is not None:
            if levy_noise.shape != noise.shape:
                raise ValueError(
                    f"levy_noise must have the shape of noise {tuple(noise.shape)}, "
                    f"got {tuple(levy_noise.shape)}"
                )
            h = steps.reshape(-1, 1, 1)
            self._U = h * (0.5 * self._dW + (h / 12).sqrt() * levy_noise)

    # torchsde's BaseBrownian interface
    @property
    def dtype(self) -> torch.dtype:
        return self._dW.dtype

    @property
    def device(self) -> torch.device:
        return self._dW.device

    @property
    def shape(self) -> torch.Size:
        return self._dW.shape[1:]

    @property
    def levy_area_approximation(self) -> str:
        return "none" if self._U is None else "space-time"

    def __repr__(self) -> str:
        return (
            f"GridBrownian(t0={self._times[0]}, t1={self._times[-1]}, "
            f"n_steps={len(self._times) - 1}, shape={tuple(self.shape)}, "
            f"levy_area_approximation={self.levy_area_approximation!r})"
        )

    def _locate(self, t: torch.Tensor | float) -> int:
        t = float(t)
        k = self._index.get(t)
        if k is None:  # tolerate a rounding difference, never an off-grid time
            t0, t1, n = self._times[0], self._times[-1], len(self._times) - 1
            k = round((t - t0) / (t1 - t0) * n)
            if not 0 <= k <= n or abs(self._times[k] - t) > 1e-9 * max(1.0, abs(t)):
                raise ValueError(
                    f"GridBrownian was queried at t={t!r}, which is not a grid time "
                    f"(grid {t0} + k * {(t1 - t0) / n} for k = 0..{n}); use a fixed-step solver "
                    "with the grid's dt"
                )
        return k

    def __call__(self, ta, tb=None, return_U=False, return_A=False):  # noqa: N803 (torchsde)
        if return_A:
            raise ValueError(
                "GridBrownian provides no Lévy area A (it supports levy_area_approximation "
                "'none' and 'space-time'); use methods 'euler', 'milstein' or 'srk'"
            )
        if tb is None:
            ka, kb = 0, self._locate(ta)
        else:
            ka, kb = self._locate(ta), self._locate(tb)
        if kb < ka:
            raise ValueError(f"GridBrownian query needs ta <= tb, got ta={ta!r}, tb={tb!r}")
        if kb == ka + 1:
            w = self._dW[ka]
        elif kb == ka:
            w = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        else:
            w = self._dW[ka:kb].sum(0)
        if not return_U:
            return w
        if self._U is None:
            raise ValueError(
                "return_U needs the space-time Lévy area: build GridBrownian with levy_noise"
            )
        if kb == ka + 1:
            return w, self._U[ka]
        if kb == ka:
            return w, torch.zeros_like(w)
        raise ValueError(f"GridBrownian returns U for single grid steps only, got steps {ka}..{kb}")


# ---------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------
def _check_run(n_steps, dt, t0, n_paths, seed) -> tuple[int, float, float, int, int]:
    """The arguments every solver shares, checked once on the way in."""
    return (
        check_int("n_steps", n_steps, minimum=1),
        check_dt(dt),
        check_real("t0", t0),
        check_int("n_paths", n_paths, minimum=1),
        check_seed(seed),
    )


def _prepare_starts(model: SDEModel, x0, n_paths: int) -> tuple[torch.Tensor, bool]:
    """``x0 (d,)`` or ``(B, d)`` -> ``(B * n_paths, d)`` start-major, and whether it was 1-D.

    x0 is converted to :func:`~sde_utils.models.base.model_dtype_device`.
    """
    x0 = torch.as_tensor(x0)
    dtype, device = model_dtype_device(model, x0)
    x0 = x0.to(dtype=dtype, device=device)
    if x0.dim() not in (1, 2) or x0.shape[-1] == 0 or x0.numel() == 0:
        raise ValueError(f"x0 must have shape (d,) or (B, d) with B, d >= 1, got {tuple(x0.shape)}")
    single = x0.dim() == 1
    starts = x0.reshape(1, -1) if single else x0
    return starts.repeat_interleave(n_paths, dim=0), single


def _check_diagonal(model: SDEModel, y0: torch.Tensor, t0: float) -> None:
    noise_type = getattr(model, "noise_type", None)
    sde_type = getattr(model, "sde_type", None)
    if noise_type != "diagonal" or sde_type != "ito":
        raise ValueError(
            "simulate supports Itô SDEs with diagonal noise (SDEModel's contract), got "
            f"noise_type={noise_type!r}, sde_type={sde_type!r}"
        )
    probe = y0[:1]
    t = torch.full((1,), t0, dtype=probe.dtype, device=probe.device)
    mu, sigma = model.drift(probe, t), model.diffusion(probe, t)
    for name, value in (("drift", mu), ("diffusion", sigma)):
        if tuple(value.shape) != tuple(probe.shape):
            raise ValueError(
                f"model.{name}(x, t) returned shape {tuple(value.shape)} for x of shape "
                f"{tuple(probe.shape)}; diagonal noise needs {tuple(probe.shape)} "
                "(milstein and srk need the diagonal of sigma and its derivative)"
            )


def _check_noise(noise: torch.Tensor, n_steps: int, y0: torch.Tensor) -> torch.Tensor:
    noise = torch.as_tensor(noise)
    expected = (n_steps, y0.shape[0], y0.shape[1])
    if tuple(noise.shape) != expected:
        raise ValueError(
            f"noise must have shape (n_steps, B * n_paths, d) = {expected} (rows start-major, "
            f"b * n_paths + p), got {tuple(noise.shape)}"
        )
    return noise.to(dtype=y0.dtype, device=y0.device)


def _reshape_out(ys: torch.Tensor, single: bool, n_paths: int) -> torch.Tensor:
    T, _, d = ys.shape
    out = ys.reshape(T, -1, n_paths, d)
    return out[:, 0] if single else out


# ---------------------------------------------------------------------------------------
# solvers
# ---------------------------------------------------------------------------------------
def simulate(
    model: SDEModel,
    x0,
    *,
    n_steps: int,
    dt: float = 1.0,
    t0: float = 0.0,
    n_paths: int = 1,
    method: str = "euler",
    seed: int = 0,
    bm=None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve ``dX = mu dt + sigma dW`` (Itô, diagonal) from ``x0`` with ``torchsde.sdeint``.

    Args:
        model: an :class:`~sde_utils.models.neural.SDEModel` (its ``f``/``g`` are torchsde's interface).
        x0: ``(d,)`` or ``(B, d)`` starting states at time ``t0`` (cast to the dtype and device
            of the model's parameters, see :func:`~sde_utils.models.base.model_dtype_device`).
        n_steps: number of steps (>= 1); dt: the token step (> 0), also the solver step.
        n_paths: independent paths per start.
        method: ``"euler"`` (Euler–Maruyama), ``"milstein"`` (Itô Milstein; the derivative
            of the diagonal sigma is taken by autograd) or ``"srk"`` (Rößler's strong order
            1.5 scheme; torchsde 0.2.6 makes 10 drift and 10 diffusion evaluations per step).
        seed: seeds the :class:`GridBrownian` (see the module docstring).
        bm: optional torchsde Brownian motion of shape ``(B * n_paths, d)`` covering
            ``[t0, t0 + n_steps * dt]`` (e.g. a ``torchsde.BrownianInterval`` to compare);
            replaces the seeded one, so ``seed`` and ``noise`` are not used.
        noise: optional standard normals ``(n_steps, B * n_paths, d)`` (start-major rows)
            to use instead of drawing them; with the same ``noise``, ``method="euler"``
            equals :func:`euler_maruyama` to float rounding.

    Returns:
        ``(n_steps + 1, n_paths, d)`` for 1-D ``x0``, else ``(n_steps + 1, B, n_paths, d)``;
        index 0 is ``x0``.
    """
    n_steps, dt, t0, n_paths, seed = _check_run(n_steps, dt, t0, n_paths, seed)
    check_choice("method", method, METHODS)
    if bm is not None and noise is not None:
        raise ValueError("pass either bm or noise, not both (bm already defines the noise)")
    ts = _time_grid(n_steps, dt, t0)
    with torch.no_grad():
        y0, single = _prepare_starts(model, x0, n_paths)
        _check_diagonal(model, y0, float(ts[0]))
        if bm is None:
            eps = levy = None
            if noise is None or method == "srk":  # srk's Lévy area comes from seed, after eps
                drawn = _draw(n_steps, *y0.shape, seed, y0.dtype, y0.device, 1 + (method == "srk"))
                eps, levy = drawn[0], (drawn[1] if method == "srk" else None)
            if noise is not None:
                eps = _check_noise(noise, n_steps, y0)
            bm = GridBrownian(ts, eps, levy)
        elif tuple(bm.shape) != tuple(y0.shape):
            raise ValueError(
                f"bm must have shape (B * n_paths, d) = {tuple(y0.shape)}, got {tuple(bm.shape)}"
            )
        ys = torchsde.sdeint(model, y0, ts, bm=bm, method=method, dt=dt)
    return _reshape_out(ys, single, n_paths)


def euler_maruyama(
    model: SDEModel,
    x0,
    *,
    n_steps: int,
    dt: float = 1.0,
    t0: float = 0.0,
    n_paths: int = 1,
    seed: int = 0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reference loop ``x_{k+1} = x_k + mu(x_k, t_k) dt + sigma(x_k, t_k) sqrt(dt) eps_k``.

    Same arguments, noise (``eps`` from :func:`brownian_noise` with ``seed`` unless ``noise``
    is given, start-major rows) and output layout as :func:`simulate`; evaluates the model
    through ``model.f``/``model.g`` at the grid times of :func:`time_grid`.
    """
    n_steps, dt, t0, n_paths, seed = _check_run(n_steps, dt, t0, n_paths, seed)
    ts = _time_grid(n_steps, dt, t0)
    with torch.no_grad():
        y, single = _prepare_starts(model, x0, n_paths)
        if noise is None:
            eps = _draw(n_steps, *y.shape, seed, y.dtype, y.device, 1)[0]
        else:
            eps = _check_noise(noise, n_steps, y)
        steps = ts.diff()
        dW = eps * steps.to(y.dtype).sqrt().to(y.device).reshape(-1, 1, 1)
        out = torch.empty((n_steps + 1, *y.shape), dtype=y.dtype, device=y.device)
        out[0] = y
        for k in range(n_steps):
            t = ts[k]
            y = y + model.f(t, y) * steps[k] + model.g(t, y) * dW[k]
            out[k + 1] = y
    return _reshape_out(out, single, n_paths)


def drift_path(model: SDEModel, x0, n_steps: int, dt: float = 1.0, t0: float = 0.0) -> torch.Tensor:
    """The deterministic Euler path ``x_{k+1} = x_k + mu(x_k, t_k) dt`` (sigma set to 0).

    Returns ``(n_steps + 1, d)`` for ``x0: (d,)``, ``(n_steps + 1, B, d)`` for ``(B, d)``.
    """
    n_steps = check_int("n_steps", n_steps, minimum=1)
    ts = _time_grid(n_steps, check_dt(dt), check_real("t0", t0))
    steps = ts.diff()
    with torch.no_grad():
        y, single = _prepare_starts(model, x0, 1)
        out = torch.empty((n_steps + 1, *y.shape), dtype=y.dtype, device=y.device)
        out[0] = y
        for k in range(n_steps):
            y = y + model.f(ts[k], y) * steps[k]
            out[k + 1] = y
    return out[:, 0] if single else out


__all__ = [
    "METHODS",
    "GridBrownian",
    "brownian_noise",
    "drift_path",
    "euler_maruyama",
    "simulate",
    "time_grid",
]
