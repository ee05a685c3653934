"""One training epoch of ``sde_utils.models.train.fit`` vs a minimal hand-written PyTorch loop.

Same NeuralSDE (d=64 as after PCA, hidden 128, depth 2, float32), same ~50k training
transitions, batch 512, AdamW with the same lr / weight decay, same loss (drift squared
error + lam * Gaussian step NLL, both means per sample and dimension as in
``sde_utils.models.losses``). ``fit`` runs exactly as a notebook calls it, with all its
work included: input checks, gradient clipping, per-batch loss guard, logging of the three
losses, a validation pass over 5k held-out transitions and an atomic checkpoint. The
reference only shuffles, steps and nothing else. Both start from the same weights; each
repeat runs them back to back, and the ratio printed last is the median over repeats of
the paired ratios (robust to load from other users of the machine's 2 cores).

Usage: ``python bench/bench_train.py [--repeats 9] [--n 50000] [--d 64] [--threads 1]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

import torch
from _paired import report_ratio

from sde_utils.models.losses import total_loss
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.train import fit


def reference_loss(model, xb, tb, yb, dt, lam):
    """drift + lam * NLL, both means over samples AND dimensions (sde_utils.models.losses)."""
    mu, sigma = model.drift_diffusion(xb, tb)
    r = yb - xb - mu * dt
    const = 0.5 * math.log(2 * math.pi) + 0.5 * math.log(dt)
    return r.pow(2).mean() + lam * (const + sigma.log() + 0.5 * (r / sigma).pow(2) / dt).mean()


def reference_epoch(model, x0, t0, x1, dt, lam, batch_size, lr, weight_decay, seed):
    """A minimal loop: shuffle, index the tensors, loss, backward, AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x0.shape[0], generator=gen)
    for i in range(0, x0.shape[0], batch_size):
        idx = perm[i : i + batch_size]
        loss = reference_loss(model, x0[idx], t0[idx], x1[idx], dt, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--n", type=int, default=50_000, help="training transitions")
    ap.add_argument("--d", type=int, default=64, help="state dimension")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both (default 1: the 2 cores are shared, 2 threads under load "
        "gave 10x outliers)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    dt, lam, batch_size, lr, wd = 1.0, 1.0, 512, 1e-3, 1e-4
    g = torch.Generator().manual_seed(0)
    n_val = args.n // 10
    x0 = torch.randn(args.n + n_val, args.d, generator=g)
    x1 = 0.9 * x0 + 0.3 * torch.randn(x0.shape, generator=g)
    t0 = torch.randint(0, 200, (x0.shape[0],), generator=g).float()
    train = (x0[: args.n], t0[: args.n], x1[: args.n])
    val = (x0[args.n :], t0[args.n :], x1[args.n :])

    torch.manual_seed(0)
    model = NeuralSDE(args.d, hidden=128, depth=2, time_scale=200.0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    # the reference minimises fit's loss: same value on one batch
    batch = tuple(v[:batch_size] for v in train)
    ours, ref = total_loss(model, *batch, dt, lam).item(), reference_loss(model, *batch, dt, lam)
    assert abs(ref.item() - ours) <= 1e-5 * abs(ours), f"reference loss {ref.item()} != {ours}"
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, N={args.n} "
        f"(val {n_val}), d={args.d}, hidden 128, depth 2, batch {batch_size}, "
        f"{math.ceil(args.n / batch_size)} steps/epoch"
    )

    ours, ours_nockpt, ref = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats + 1):  # the first round warms up and is discarded
            model.load_state_dict(init)
            t = time.perf_counter()
            reference_epoch(model, *train, dt, lam, batch_size, lr, wd, seed=rep)
            t_ref = time.perf_counter() - t

            model.load_state_dict(init)
            t = time.perf_counter()
            fit(
                model,
                train,
                val,
                dt=dt,
                lam=lam,
                epochs=1,
                batch_size=batch_size,
                lr=lr,
                weight_decay=wd,
                seed=rep,
                checkpoint_dir=f"{tmp}/{rep}",
                progress=False,
            )
            t_ours = time.perf_counter() - t

            model.load_state_dict(init)
            t = time.perf_counter()
            fit(
                model,
                train,
                val,
                dt=dt,
                lam=lam,
                epochs=1,
                batch_size=batch_size,
                lr=lr,
                weight_decay=wd,
                seed=rep,
                progress=False,
            )
            t_nockpt = time.perf_counter() - t
            if rep == 0:
                continue
            ref.append(t_ref)
            ours.append(t_ours)
            ours_nockpt.append(t_nockpt)
            print(
                f"repeat {rep}: reference {t_ref:.3f} s, fit {t_ours:.3f} s, "
                f"fit without checkpoint {t_nockpt:.3f} s"
            )

    m_ref, m_ours, m_nock = (statistics.median(v) for v in (ref, ours, ours_nockpt))
    print(f"median reference loop: {m_ref:.3f} s/epoch")
    print(f"median fit without checkpoint: {m_nock:.3f} s/epoch")
    print(f"median fit (checkpoint + validation): {m_ours:.3f} s/epoch")
    print(f"ratio of medians fit/reference: {m_ours / m_ref:.2f}")
    # each repeat runs the two back to back, so they share the (shared) machine's load:
    # the median of the paired ratios is the robust comparison
    report_ratio(ours, ref)


if __name__ == "__main__":
    main()
