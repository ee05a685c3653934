"""Tests of sde_utils.models.train: fit, History, checkpoints/resume, guards, errors.

All in float64 with fixed seeds; fits use small nets and few epochs to stay fast.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sde_utils.models.baselines import DriftOnlyMLP, LinearSDE, RandomWalk
from sde_utils.models.checkpoint import CHECKPOINT_NAME
from sde_utils.models.losses import evaluate_losses
from sde_utils.models.neural import NeuralSDE
from sde_utils.models.train import History, fit

DT = 0.5
A_TRUE = torch.tensor([[-1.0, 0.3], [-0.2, -0.5]], dtype=torch.float64)  # stable
B_TRUE = torch.tensor([0.5, -0.3], dtype=torch.float64)
SIGMA_TRUE = torch.tensor([0.3, 0.6], dtype=torch.float64)


def ou_split(n_paths, n_steps, seed, dt=DT):
    """Transitions of Euler–Maruyama paths (step dt) of dX = (A X + b) dt + sigma dW."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_paths, 2, generator=g, dtype=torch.float64)
    xs = [x]
    for _ in range(n_steps):
        z = torch.randn(n_paths, 2, generator=g, dtype=torch.float64)
        x = x + (x @ A_TRUE.T + B_TRUE) * dt + SIGMA_TRUE * math.sqrt(dt) * z
        xs.append(x)
    X = torch.stack(xs)
    t0 = (torch.arange(n_steps, dtype=torch.float64) * dt).repeat_interleave(n_paths)
    return X[:-1].reshape(-1, 2), t0, X[1:].reshape(-1, 2)


@pytest.fixture(scope="module")
def small():
    """A small train/val pair for the mechanics tests (1,000 / 300 transitions)."""
    return ou_split(50, 20, seed=10), ou_split(15, 20, seed=11)


def small_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return NeuralSDE(2, hidden=8, depth=1, time_scale=10.0, **kwargs).double()


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def comparable(h: History) -> dict:
    d = h.to_dict()
    d.pop("seconds")  # wall time, the only field that may differ
    return d


# ----------------------------------------------------------------------------- recovery


def test_neural_sde_recovers_ou_drift_and_sigma():
    """Train on 16,000 Euler–Maruyama OU transitions (dt = 0.5, d = 2), validate on 4,000.

    Drift: the regression target (x1 - x0) / dt has noise variance sigma^2 / dt per
    dimension; with N = 16,000 an estimator with p effective parameters has error variance
    ~ p sigma^2 / (dt N), tiny next to the drift's variance over the states, so a learned
    drift has R^2 close to 1 (about 0.98 measured). R^2 > 0.9 leaves room for the
    optimisation error of a short run while a zero drift (the initialisation, R^2 <= 0) or a
    wrong one fails. Sigma: its maximum-likelihood estimate has relative standard error
    1/sqrt(2 N) < 1%; the network's sigma is state-dependent and learned in few epochs, so we
    allow 10% on its average over states. The initial sigma (1.0) is 67% to 230% off.
    """
    train = ou_split(200, 80, seed=1)
    val = ou_split(50, 80, seed=2)
    torch.manual_seed(0)
    model = NeuralSDE(2, hidden=32, depth=2, time_scale=40.0).double()
    hist = fit(
        model,
        train,
        val,
        dt=DT,
        epochs=25,
        batch_size=256,
        lr=1e-2,
        patience=5,
        seed=0,
        progress=False,
    )
    x0, t0, _ = val
    with torch.no_grad():
        mu = model.drift(x0, t0)
        sigma = model.diffusion(x0, t0).mean(0)
    true = x0 @ A_TRUE.T + B_TRUE
    r2 = 1 - ((mu - true) ** 2).sum() / ((true - true.mean(0)) ** 2).sum()
    assert r2 > 0.9, r2
    rel = (sigma / SIGMA_TRUE - 1).abs()
    assert (rel < 0.10).all(), sigma
    # the loss curves fell: first val total above the best one
    assert hist.val_total[0] > min(hist.val_total)
    assert hist.best_epoch == 1 + int(np.argmin(hist.val_total))


def test_drift_only_mlp_learns_sigma():
    """DriftOnlyMLP's constant sigma is trained by the NLL; same tolerance argument."""
    train = ou_split(100, 60, seed=3)
    val = ou_split(30, 60, seed=4)
    torch.manual_seed(0)
    model = DriftOnlyMLP(2, hidden=16, depth=1, time_encoding="none").double()
    fit(model, train, val, dt=DT, epochs=15, batch_size=256, lr=2e-2, patience=5, progress=False)
    rel = (model.sigma.detach() / SIGMA_TRUE - 1).abs()
    assert (rel < 0.10).all(), model.sigma


# ----------------------------------------------------------------------------- fit mechanics


def test_same_seed_identical_different_seed_differs(small):
    train, val = small
    runs = []
    for seed in (0, 0, 1):
        m = small_model()
        h = fit(m, train, val, dt=DT, epochs=4, batch_size=64, lr=1e-2, seed=seed, progress=False)
        runs.append((m, h))
    assert same_state(runs[0][0], runs[1][0])
    assert comparable(runs[0][1]) == comparable(runs[1][1])
    assert not same_state(runs[0][0], runs[2][0])  # the seed orders the batches
    assert runs[0][1].train_total != runs[2][1].train_total


def test_history_lists_and_json(small, tmp_path):
    train, val = small
    m = small_model()
    h = fit(m, train, val, dt=DT, epochs=3, batch_size=64, lr=1e-2, lam=0.5, progress=False)
    assert h.n_epochs == 3 and h.stopped_reason == "completed: all 3 epochs"
    for key in ("total", "drift", "diffusion"):
        assert len(getattr(h, f"train_{key}")) == len(getattr(h, f"val_{key}")) == 3
    for e in range(3):
        assert h.val_total[e] == pytest.approx(h.val_drift[e] + 0.5 * h.val_diffusion[e])
        assert h.train_total[e] == pytest.approx(h.train_drift[e] + 0.5 * h.train_diffusion[e])
    assert h.params["lam"] == 0.5 and h.seconds > 0
    # the returned model holds the best epoch's weights: its val losses are the logged ones
    ev = evaluate_losses(m, *val, DT, lam=0.5)
    assert ev["total"] == pytest.approx(h.val_total[h.best_epoch - 1], rel=1e-12)
    path = h.to_json(tmp_path / "h.json")
    assert History.from_json(path) == h
    assert json.loads(path.read_text())["best_epoch"] == h.best_epoch
    assert History.from_dict(h.to_dict()) == h
    with pytest.raises(ValueError, match=r"unknown History fields \['bogus'\]"):
        History.from_dict({**h.to_dict(), "bogus": 1})


def test_early_stopping(small):
    """Val data with the opposite drift: fitting train makes val worse after epoch 1."""
    train, _ = small
    x0, t0, x1 = ou_split(20, 20, seed=12)
    val = (x0, t0, x0 - (x1 - x0) * 3)
    m = small_model()
    h = fit(m, train, val, dt=DT, epochs=50, batch_size=64, lr=2e-2, patience=3, progress=False)
    assert h.stopped_reason.startswith("early_stopping")
    assert h.n_epochs == h.best_epoch + 3 < 50
    assert h.val_total[h.best_epoch - 1] == min(h.val_total)
    ev = evaluate_losses(m, *val, DT)
    assert ev["total"] == pytest.approx(h.val_total[h.best_epoch - 1], rel=1e-12)


def test_closed_form_models_are_evaluated_not_trained(small):
    train, val = small
    lin = LinearSDE.fit_closed_form(*train, DT)
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    h = fit(lin, train, val, dt=DT, epochs=5, progress=False)
    assert h.stopped_reason.startswith("no_trainable_parameters")
    assert h.n_epochs == 1 and h.best_epoch == 0
    assert all(torch.equal(before[k], v) for k, v in lin.state_dict().items())
    assert h.val_total[0] == pytest.approx(evaluate_losses(lin, *val, DT)["total"], rel=1e-12)
    rw = RandomWalk.fit_closed_form(*train, DT)
    assert fit(rw, train, val, dt=DT, progress=False).train_drift[0] == pytest.approx(
        evaluate_losses(rw, *train, DT)["drift"], rel=1e-12
    )


# ----------------------------------------------------------------------------- resume


class Interrupt(Exception):
    pass


FIT_KW = {"dt": DT, "batch_size": 64, "lr": 1e-2, "seed": 3, "progress": False}


def test_resume_after_interruption_between_epochs(small, tmp_path):
    train, val = small
    ref = small_model()
    h_ref = fit(ref, train, val, epochs=6, checkpoint_dir=tmp_path / "ref", **FIT_KW)

    def kill_after_3(epoch, history):
        if epoch == 3:
            raise Interrupt

    m = small_model()
    with pytest.raises(Interrupt):
        fit(
            m,
            train,
            val,
            epochs=6,
            checkpoint_dir=tmp_path / "run",
            callback=kill_after_3,
            **FIT_KW,
        )
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT_NAME]
    # a new process: fresh model with DIFFERENT initial weights; everything comes from disk
    m2 = small_model(seed=99)
    h2 = fit(m2, train, val, epochs=6, checkpoint_dir=tmp_path / "run", **FIT_KW)
    assert comparable(h2) == comparable(h_ref)
    assert same_state(m2, ref)


def test_resume_after_interruption_mid_epoch(small, tmp_path, monkeypatch):
    """Kill inside an epoch (in the middle of a batch loop): the partial epoch is lost and
    redone from the last checkpoint's RNG and optimizer states, bit-identically."""
    train, val = small
    ref = small_model()
    h_ref = fit(ref, train, val, epochs=5, checkpoint_dir=tmp_path / "ref", **FIT_KW)

    real_clip = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def clip_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 16 * 2 + 7:  # 16 batches per epoch: dies in epoch 3, batch 7
            raise Interrupt
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_then_die)
    with pytest.raises(Interrupt):
        fit(small_model(), train, val, epochs=5, checkpoint_dir=tmp_path / "run", **FIT_KW)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["epoch"] == 2
    m2 = small_model(seed=7)
    h2 = fit(m2, train, val, epochs=5, checkpoint_dir=tmp_path / "run", **FIT_KW)
    assert comparable(h2) == comparable(h_ref)
    assert same_state(m2, ref)


def test_resume_with_more_epochs_equals_one_long_run(small, tmp_path):
    train, val = small
    ref = small_model()
    h_ref = fit(ref, train, val, epochs=5, **FIT_KW)
    m = small_model()
    h3 = fit(m, train, val, epochs=3, checkpoint_dir=tmp_path, **FIT_KW)
    assert h3.n_epochs == 3
    h5 = fit(m, train, val, epochs=5, checkpoint_dir=tmp_path, **FIT_KW)
    assert comparable(h5) == comparable(h_ref) and same_state(m, ref)
    # rerunning a finished run returns it unchanged
    h5b = fit(small_model(seed=4), train, val, epochs=5, checkpoint_dir=tmp_path, **FIT_KW)
    assert comparable(h5b) == comparable(h_ref)
    with pytest.raises(ValueError, match="already holds 5 epochs > epochs=4"):
        fit(m, train, val, epochs=4, checkpoint_dir=tmp_path, **FIT_KW)


def test_resume_refuses_a_different_run(small, tmp_path):
    train, val = small
    fit(small_model(), train, val, epochs=2, checkpoint_dir=tmp_path, **FIT_KW)
    with pytest.raises(ValueError, match="belongs to a different run"):
        fit(small_model(), train, val, epochs=2, checkpoint_dir=tmp_path, **{**FIT_KW, "lr": 0.1})
    shifted = (train[0] + 1.0, train[1], train[2])
    with pytest.raises(ValueError, match="belongs to a different run"):
        fit(small_model(), shifted, val, epochs=2, checkpoint_dir=tmp_path, **FIT_KW)
    # resume=False starts afresh and overwrites
    h = fit(
        small_model(),
        train,
        val,
        epochs=1,
        checkpoint_dir=tmp_path,
        resume=False,
        **{**FIT_KW, "lr": 0.1},
    )
    assert h.n_epochs == 1


# ----------------------------------------------------------------------------- guards


class Poisonable(NeuralSDE):
    """A NeuralSDE whose drift becomes NaN (or huge) once ``poison`` is set."""

    poison: str | None = None

    def drift_diffusion(self, x, t):
        mu, sigma = super().drift_diffusion(x, t)
        if self.poison == "nan":
            mu = mu * float("nan")
        elif self.poison == "explode":
            mu = mu + 1e9
        return mu, sigma


@pytest.mark.parametrize(
    ("poison", "reason"), [("nan", "nonfinite_loss"), ("explode", "exploding_loss")]
)
def test_bad_loss_stops_and_restores_best(small, tmp_path, poison, reason):
    train, val = small
    torch.manual_seed(0)
    m = Poisonable(2, hidden=8, depth=1, time_scale=10.0).double()

    def poison_after_2(epoch, history):
        if epoch == 2:
            m.poison = poison

    with pytest.warns(RuntimeWarning, match=f"fit stopped: {reason}"):
        h = fit(m, train, val, epochs=6, callback=poison_after_2, checkpoint_dir=tmp_path, **FIT_KW)
    assert h.stopped_reason.startswith(reason) and "epoch 3, batch 1" in h.stopped_reason
    assert "restored the best weights" in h.stopped_reason
    assert h.n_epochs == 2
    # the restored weights are those of a clean 2-epoch run's best epoch
    clean = small_model()
    h_clean = fit(clean, train, val, epochs=2, **FIT_KW)
    assert h.best_epoch == h_clean.best_epoch
    assert same_state(m, clean)
    # the stop is recorded in the checkpoint: a rerun does not train again
    m.poison = None
    h_again = fit(m, train, val, epochs=6, checkpoint_dir=tmp_path, **FIT_KW)
    assert h_again.stopped_reason == h.stopped_reason and same_state(m, clean)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"dt": 0.0}, ValueError, r"dt must be a finite number > 0, got 0.0"),
        ({"dt": -1.0}, ValueError, r"dt must be a finite number > 0, got -1.0"),
        ({"dt": float("nan")}, ValueError, r"dt must be a finite number > 0, got nan"),
        ({"lam": -0.1}, ValueError, r"lam must be a finite number >= 0, got -0.1"),
        ({"epochs": 0}, ValueError, r"epochs must be an int >= 1, got 0"),
        ({"epochs": 2.0}, TypeError, r"epochs must be an int >= 1, got 2.0"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an int >= 1, got 0"),
        ({"lr": 0.0}, ValueError, r"lr must be a finite number > 0, got 0.0"),
        ({"weight_decay": -1e-4}, ValueError, r"weight_decay must be a finite number >= 0"),
        ({"grad_clip": 0.0}, ValueError, r"grad_clip must be a finite number > 0"),
        ({"patience": 0}, ValueError, r"patience must be an int >= 1, got 0"),
        ({"seed": -1}, ValueError, r"seed must be an int >= 0 and <= \S+, got -1"),
        ({"seed": True}, TypeError, r"seed must be an int >= 0 and <= \S+, got True \(bool\)"),
        ({"lam": "1"}, TypeError, r"lam must be a finite number >= 0, got '1' \(str\)"),
        ({"max_loss": 0.0}, ValueError, r"max_loss must be a finite number > 0"),
        ({"callback": 3}, TypeError, r"callback must be callable or None, got 3"),
        ({"train": "x"}, TypeError, r"train must be a tuple \(x0 \(N, d\), t0 \(N,\), x1"),
        ({"train": "empty"}, ValueError, r"train: empty split \(N = 0"),
        ({"val": "empty"}, ValueError, r"val: empty split \(N = 0"),
        ({"train": "mismatch"}, ValueError, r"train: x1 must have x0's shape \(1000, 2\)"),
        ({"train": "t0"}, ValueError, r"train: t0 must have shape \(N,\) = \(1000,\), got \(3,\)"),
        ({"train": "nan"}, ValueError, r"train: x0 contains NaN or inf"),
        ({"val": "d3"}, ValueError, r"val has d = 3 but train has d = 2"),
        ({"model": "d3"}, ValueError, r"data have d = 2 but the model has state_dim = 3"),
        ({"model": "module"}, TypeError, r"model must be an SDEModel, got Linear"),
    ],
)
def test_bad_parameters(small, tmp_path, change, error, match):
    (x0, t0, x1), val = small
    variants = {
        "x": "x",
        "empty": (x0[:0], t0[:0], x1[:0]),
        "mismatch": (x0, t0, x1[:10]),
        "t0": (x0, t0[:3], x1),
        "nan": (x0.clone().index_fill_(0, torch.tensor([4]), float("inf")), t0, x1),
        "d3": (torch.zeros(5, 3), torch.zeros(5), torch.zeros(5, 3)),
    }
    kwargs = {
        "model": small_model(),
        "train": (x0, t0, x1),
        "val": val,
        **FIT_KW,
        "checkpoint_dir": tmp_path / "ck",
    }
    for key, value in change.items():
        if key in ("train", "val"):
            value = variants[value]
        elif key == "model":
            value = NeuralSDE(3, hidden=4) if value == "d3" else torch.nn.Linear(2, 2)
        kwargs[key] = value
    model, train, val = kwargs.pop("model"), kwargs.pop("train"), kwargs.pop("val")
    with pytest.raises(error, match=match):
        fit(model, train, val, **kwargs)
    assert not (tmp_path / "ck").exists()  # refused before any work
