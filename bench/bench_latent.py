"""One training epoch of ``fit`` on the latent SDE's ELBO vs a minimal hand-written loop.

Same LatentSDE as notebook 03's ``fit_latent`` builds it (a NeuralSDE prior with d=16 as
after the PCA, hidden 128, depth 2, time_scale 100, sigma_init = the one-step residual
scale sigma0; a GRU context of width 32; the control MLP; obs_scale = 0.1 sigma0 sqrt(dt);
one substep; float32), the same windows of L = 8 steps (``(x0, t0, xs (N, L, d))``), batch
512, AdamW with the same lr / weight decay, the same loss: the negative ELBO ``recon + kl``
of one reparameterised posterior path per window (noise from torch's global generator).
``fit`` runs as notebook 03 calls it (``lam=1.0, objective=ELBOObjective(8, seed)``) with
all its work: input checks, gradient clipping, the per-batch loss guard, logging, a
validation pass over 1/10 as many windows (eval mode, seeded noise) and an atomic
checkpoint. The reference writes the ELBO out by hand (backward GRU context, guide, gain,
control, closed-form KL and reconstruction, as ``elbo_terms``), shuffles, steps and
nothing else; an assert checks that its loss equals ``elbo_terms``'s on one batch and the
same noise. Both start from the same weights; each repeat runs them back to back, and the
ratio printed last is the median of the paired ratios (robust to load from other users of
the machine's 2 cores).

Usage: ``python bench/bench_latent.py [--repeats 5] [--n 16000] [--window 8] [--threads 1]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile

import torch
from _paired import paired_repeats, report_ratio
from torch.nn import functional as F

from sde_utils.models.latent import ELBOObjective, LatentSDE, elbo_terms
from sde_utils.models.train import fit


def neg_elbo(model, x0, t0, xs, dt, generator=None):
    """``recon + kl`` of ``elbo_terms`` written out: one posterior path per window."""
    b, n_obs, d = xs.shape
    n = model.n_substeps
    h = dt / n
    s2 = model.obs_scale**2
    noise = torch.randn((n_obs, n, b, d), generator=generator, dtype=x0.dtype)
    ctx = model.encoder(xs.flip(1))[0].flip(1)  # c[:, j] summarises x_{j+1}..x_L
    z, kl, sq = x0, 0.0, 0.0
    for j in range(n_obs):
        for k in range(n):
            inp = torch.cat([z, (t0 + (j + k / n) * dt)[:, None] / model.time_scale], dim=-1)
            mu = model.drift_net(inp)
            var = (F.softplus(model.diffusion_net(inp)) + model.sigma_floor).pow(2) * h
            tau = dt - k * h
            gain = var / (var * (tau / h) + s2)
            u = model.control_net(torch.cat([inp, ctx[:, j]], dim=-1))
            shift = gain * (xs[:, j] - z - mu * tau) + var.sqrt() * u
            rho = 1.0 - gain
            kl = kl + (rho - 1.0 - rho.log() + shift.pow(2) / var).sum(-1).mean()
            mean = z + mu * h + shift
            z = mean + (rho * var).sqrt() * noise[j, k]
        sq = sq + ((xs[:, j] - mean).pow(2) + rho * var).mean()
    recon = 0.5 * math.log(2 * math.pi * s2) + 0.5 * sq / (n_obs * s2)
    return recon + 0.5 * kl / (n_obs * d)


def reference_epoch(model, x0, t0, xs, dt, batch_size, lr, wd, seed):
    """A minimal loop: shuffle, index, negative ELBO, backward, AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    perm = torch.randperm(x0.shape[0], generator=torch.Generator().manual_seed(seed))
    for i in range(0, x0.shape[0], batch_size):
        idx = perm[i : i + batch_size]
        loss = neg_elbo(model, x0[idx], t0[idx], xs[idx], dt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=16_000, help="training windows")
    ap.add_argument("--d", type=int, default=16, help="state dimension")
    ap.add_argument("--window", type=int, default=8, help="observations per window (L)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    dt, sigma0, batch_size, lr, wd = 1.0, 0.3, 512, 1e-3, 1e-4
    n_val = args.n // 10
    n_win, big_l = args.n + n_val, args.window
    # 50 OU-like sequences x' = 0.9 x + sigma0 eps, cut into consecutive windows of L steps
    g = torch.Generator().manual_seed(0)
    n_seq = 50
    per_seq = -(-n_win // n_seq)
    x = torch.randn(n_seq, args.d, generator=g)
    seq = [x]
    for _ in range(per_seq * big_l):
        x = 0.9 * x + sigma0 * torch.randn(x.shape, generator=g)
        seq.append(x)
    seq = torch.stack(seq, 1)  # (n_seq, per_seq * L + 1, d)
    starts = torch.arange(per_seq) * big_l
    x0 = seq[:, starts].reshape(-1, args.d)[:n_win]
    xs = torch.stack([seq[:, starts + 1 + j] for j in range(big_l)], 2)
    xs = xs.reshape(-1, big_l, args.d)[:n_win].contiguous()
    t0 = (starts.float() % 200).repeat(n_seq)[:n_win]
    train = (x0[: args.n], t0[: args.n], xs[: args.n])
    val = (x0[args.n :], t0[args.n :], xs[args.n :])
    objective = ELBOObjective(big_l, seed=0)

    torch.manual_seed(0)
    model = LatentSDE(
        args.d, hidden=128, depth=2, sigma_init=sigma0, time_scale=100.0, context_dim=32,
        obs_scale=0.1 * sigma0 * dt**0.5, n_substeps=1,
    )  # fmt: skip
    assert model.time_encoding == "linear" and model.activation == "silu"
    init = {key: v.clone() for key, v in model.state_dict().items()}

    # the two loops do the same work: same loss on one batch and the same noise
    batch = tuple(v[:batch_size] for v in train)
    ours = sum(elbo_terms(model, *batch, dt, generator=torch.Generator().manual_seed(1)))
    ref = neg_elbo(model, *batch, dt, generator=torch.Generator().manual_seed(1))
    rel = abs(ours.item() - ref.item()) / abs(ours.item())
    assert rel < 1e-5, f"hand-written negative ELBO {ref.item()} != elbo_terms {ours.item()}"

    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, N={args.n} windows "
        f"(val {n_val}), L={big_l}, d={args.d}, hidden 128, depth 2, context 32, "
        f"batch {batch_size}; negative ELBO {ours.item():.4f} (reference equal, rel {rel:.1e})"
    )
    with tempfile.TemporaryDirectory() as tmp:

        def reference(rep):
            model.load_state_dict(init)
            torch.manual_seed(rep)
            reference_epoch(model, *train, dt, batch_size, lr, wd, seed=rep)

        def ours(rep):
            model.load_state_dict(init)
            torch.manual_seed(rep)
            fit(
                model, train, val, dt=dt, lam=1.0, epochs=1, batch_size=batch_size, lr=lr,
                weight_decay=wd, seed=rep, checkpoint_dir=f"{tmp}/{rep}", progress=False,
                objective=objective,
            )  # fmt: skip

        ref, mine = paired_repeats(args.repeats, reference, ours)
    print(f"median reference loop: {statistics.median(ref):.3f} s/epoch")
    print(f"median fit (checks, clipping, validation, checkpoint): {statistics.median(mine):.3f} s")
    report_ratio(mine, ref)


if __name__ == "__main__":
    main()
