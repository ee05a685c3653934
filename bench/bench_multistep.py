"""One training epoch of ``fit`` on the k-step objective vs a minimal hand-written loop.

Same MultiStepNeuralSDE (d=16 as after notebook 03's PCA, hidden 128, depth 2, float32),
the same windows of k = 4 steps (``(x0, t0, xs (N, k, d))``), batch 512, AdamW with the
same lr / weight decay, the same loss: one-step drift error + lam * k-step Gaussian NLL
by moment propagation + the contraction penalty. ``fit`` runs as notebook 03 calls it
(``objective=MultiStepObjective(...)``) with all its work: input checks, gradient
clipping, the per-batch loss guard, logging, a validation pass over 1/10 as many windows
and an atomic checkpoint. The reference writes the propagation out by hand (closed-form
MLP Jacobian, Cholesky NLL), shuffles, steps and nothing else. Both start from the same
weights; each repeat runs them back to back, and the ratio printed last is the median of
the paired ratios (robust to load from other users of the machine's 2 cores).

Usage: ``python bench/bench_multistep.py [--repeats 5] [--n 8000] [--k 4] [--threads 1]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile

import torch
from _paired import paired_repeats, report_ratio
from torch.nn import functional as F

from sde_utils.models.multistep import MultiStepNeuralSDE, MultiStepObjective
from sde_utils.models.train import fit


def drift_and_jacobian(model, x, t):
    """The drift MLP (Linear, SiLU, Linear, SiLU, Linear) and its state Jacobian by hand."""
    z = torch.cat([x, t[:, None] / model.time_scale], dim=-1)
    lin0, lin1, lin2 = model.drift_net[0], model.drift_net[2], model.drift_net[4]
    a0 = lin0(z)
    s0 = torch.sigmoid(a0)
    h0 = a0 * s0
    a1 = lin1(h0)
    s1 = torch.sigmoid(a1)
    mu = lin2(a1 * s1)
    d0 = s0 * (1 + a0 * (1 - s0))  # silu'
    d1 = s1 * (1 + a1 * (1 - s1))
    j = d0[:, :, None] * lin0.weight[:, : x.shape[1]]  # (B, h, d)
    j = d1[:, :, None] * torch.einsum("oh,bhd->bod", lin1.weight, j)
    return mu, z, torch.einsum("oh,bhd->bod", lin2.weight, j)


def reference_epoch(model, x0, t0, xs, dt, lam, weight, radius, batch_size, lr, wd, seed):
    """A minimal loop: shuffle, index, propagate, loss, backward, AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    perm = torch.randperm(x0.shape[0], generator=torch.Generator().manual_seed(seed))
    k, d = xs.shape[1], xs.shape[2]
    eye = torch.eye(d)
    c = 0.5 * math.log(2 * math.pi)
    for i in range(0, x0.shape[0], batch_size):
        idx = perm[i : i + batch_size]
        m, t, y = x0[idx], t0[idx], xs[idx]
        nll = pen = 0.0
        for j in range(k):
            if j == 0:  # no Jacobian needed at the start (the penalty reads j >= 1)
                z = torch.cat([m, (t + j * dt)[:, None] / model.time_scale], dim=-1)
                mu = model.drift_net(z)
            else:
                mu, z, jac = drift_and_jacobian(model, m, t + j * dt)
                f = eye + jac * dt
            var = (F.softplus(model.diffusion_net(z)) + model.sigma_floor).pow(2) * dt
            m = m + mu * dt
            r = y[:, j] - m
            if j == 0:
                drift = r.pow(2).mean()
                nll = nll + (c + 0.5 * var.log() + 0.5 * r.pow(2) / var).mean()
                cov = torch.diag_embed(var)
                continue
            top = torch.linalg.eigvalsh(f.transpose(1, 2) @ f)[:, -1].sqrt()
            pen = pen + torch.relu(top - radius).pow(2).mean() / (k - 1)
            cov = f @ cov @ f.transpose(1, 2) + torch.diag_embed(var)
            chol = torch.linalg.cholesky(cov)
            w = torch.linalg.solve_triangular(chol, r[:, :, None], upper=False)[:, :, 0]
            logdet = chol.diagonal(dim1=1, dim2=2).log().sum(1)
            nll = nll + (c + (logdet + 0.5 * w.pow(2).sum(1)) / d).mean()
        loss = drift + lam * nll / k + weight * pen
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=8000, help="training windows")
    ap.add_argument("--d", type=int, default=16, help="state dimension")
    ap.add_argument("--k", type=int, default=4, help="steps per window")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    dt, lam, weight, radius, batch_size, lr, wd = 1.0, 1.0, 1.0, 1.0, 512, 1e-3, 1e-4
    g = torch.Generator().manual_seed(0)
    n_val = args.n // 10
    x0 = torch.randn(args.n + n_val, args.d, generator=g)
    steps, x = [], x0
    for _ in range(args.k):
        x = 0.9 * x + 0.3 * torch.randn(x.shape, generator=g)
        steps.append(x)
    xs = torch.stack(steps, 1)
    t0 = torch.randint(0, 200, (x0.shape[0],), generator=g).float()
    train = (x0[: args.n], t0[: args.n], xs[: args.n])
    val = (x0[args.n :], t0[args.n :], xs[args.n :])
    objective = MultiStepObjective(args.k, weight, radius)

    torch.manual_seed(0)
    model = MultiStepNeuralSDE(args.d, hidden=128, depth=2, time_scale=200.0)
    init = {key: v.clone() for key, v in model.state_dict().items()}
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, N={args.n} windows "
        f"(val {n_val}), k={args.k}, d={args.d}, hidden 128, depth 2, batch {batch_size}"
    )
    with tempfile.TemporaryDirectory() as tmp:

        def reference(rep):
            model.load_state_dict(init)
            reference_epoch(
                model, *train, dt, lam, weight, radius, batch_size, lr, wd, seed=rep
            )  # fmt: skip

        def ours(rep):
            model.load_state_dict(init)
            fit(
                model, train, val, dt=dt, lam=lam, epochs=1, batch_size=batch_size, lr=lr,
                weight_decay=wd, seed=rep, checkpoint_dir=f"{tmp}/{rep}", progress=False,
                objective=objective,
            )  # fmt: skip

        ref, mine = paired_repeats(args.repeats, reference, ours)
    print(f"median reference loop: {statistics.median(ref):.3f} s/epoch")
    print(f"median fit (checks, clipping, validation, checkpoint): {statistics.median(mine):.3f} s")
    report_ratio(mine, ref)


if __name__ == "__main__":
    main()
