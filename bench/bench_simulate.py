"""Benchmark: a torchsde solve through ``simulate`` vs a hand-written Euler–Maruyama loop.

Model: a NeuralSDE-like MLP SDE (state d = 32, hidden 128, depth 2, SiLU, linear time
feature, softplus diffusion + floor), 256 paths, 100 steps of dt = 1, float32, CPU.
Both sides draw their Gaussian noise inside the timed region. Reported: median wall time
of several interleaved repeats; target ``simulate <= 2 x reference``. For the record it also times
``euler_maruyama`` and torchsde's default ``BrownianInterval`` (what ``sdeint`` builds when
no ``bm`` is passed). The ratio is printed last; exit code 1 on FAIL.

    python bench/bench_simulate.py
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import torch
import torchsde
from torch import nn

from sde_utils.models.base import SDEModel
from sde_utils.models.simulate import euler_maruyama, simulate

D, HIDDEN, DEPTH, N_PATHS, N_STEPS, DT = 32, 128, 2, 256, 100, 1.0
REPEATS, TARGET = 9, 2.0


def mlp(n_in: int, n_out: int) -> nn.Sequential:
    layers, width = [], n_in
    for _ in range(DEPTH):
        layers += [nn.Linear(width, HIDDEN), nn.SiLU()]
        width = HIDDEN
    return nn.Sequential(*layers, nn.Linear(width, n_out))


class MLPSDE(SDEModel):
    """drift = MLP([x, t]); diffusion = softplus(MLP([x, t])) + floor."""

    def __init__(self, d: int, floor: float = 1e-3):
        super().__init__()
        self.drift_net = mlp(d + 1, d)
        self.diffusion_net = mlp(d + 1, d)
        self.floor = floor

    def drift(self, x, t):
        return self.drift_net(torch.cat([x, t[:, None]], -1))

    def diffusion(self, x, t):
        return (
            nn.functional.softplus(self.diffusion_net(torch.cat([x, t[:, None]], -1))) + self.floor
        )


def reference(model: MLPSDE, x0: torch.Tensor, seed: int) -> torch.Tensor:
    """A minimal vectorised Euler–Maruyama loop: pre-drawn noise, direct net calls."""
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        dW = torch.randn(N_STEPS, *x0.shape, generator=gen) * math.sqrt(DT)
        ys, y = [x0], x0
        for k in range(N_STEPS):
            inp = torch.cat([y, torch.full((y.shape[0], 1), k * DT)], -1)
            sigma = nn.functional.softplus(model.diffusion_net(inp)) + model.floor
            y = y + model.drift_net(inp) * DT + sigma * dW[k]
            ys.append(y)
        return torch.stack(ys)


def median_times(fns: dict, repeats: int) -> dict:
    """Median wall time of each function; repeats interleaved so load drifts hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> int:
    torch.manual_seed(0)
    model = MLPSDE(D)
    # small output layers keep 100 steps of dt = 1 bounded (the timing does not depend on it)
    for net in (model.drift_net, model.diffusion_net):
        net[-1].weight.data.mul_(0.1)
    x0 = torch.randn(N_PATHS, D)
    t1 = N_STEPS * DT

    def ours():
        return simulate(model, x0, n_steps=N_STEPS, dt=DT, n_paths=1, seed=1)

    def default_bm():
        bm = torchsde.BrownianInterval(t0=0.0, t1=t1, size=(N_PATHS, D), entropy=1)
        return simulate(model, x0, n_steps=N_STEPS, dt=DT, bm=bm)

    def em():
        return euler_maruyama(model, x0, n_steps=N_STEPS, dt=DT, seed=1)

    # sanity: simulate equals the reference loop on the same noise
    same = (ours()[:, :, 0] - em()[:, :, 0]).abs().max().item()
    print(f"model: d={D}, hidden={HIDDEN}, depth={DEPTH}; {N_PATHS} paths x {N_STEPS} steps")
    print(f"torch threads: {torch.get_num_threads()}; max |simulate - euler_maruyama| = {same:.2e}")

    med = median_times({"ref": lambda: reference(model, x0, 1), "ours": ours, "em": em}, REPEATS)
    t_ref, t_ours, t_em = med["ref"], med["ours"], med["em"]
    t_default = median_times({"default": default_bm}, 3)["default"]
    print(f"hand-written EM loop (reference):          {t_ref * 1e3:8.1f} ms")
    print(f"simulate (torchsde euler + GridBrownian):  {t_ours * 1e3:8.1f} ms")
    print(f"euler_maruyama (record):                   {t_em * 1e3:8.1f} ms")
    print(
        f"torchsde default BrownianInterval (record): {t_default * 1e3:8.1f} ms "
        f"({t_default / t_ref:.1f} x reference)"
    )
    ratio = t_ours / t_ref
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"ratio simulate/reference = {ratio:.2f} (target <= {TARGET}): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
