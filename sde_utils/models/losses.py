"""The training losses of an SDE model on transitions (paper §2.2.2, made precise).

Transitions are ``x0 (N, d)``, ``t0 (N,)``, ``x1 (N, d)`` with a float step ``dt``. One
Euler–Maruyama step says ``x1 | x0 ~ N(x0 + mu dt, diag(sigma^2) dt)`` with
``mu = model.drift(x0, t0)`` and ``sigma = model.diffusion(x0, t0)``. Then

- :func:`drift_loss` is the paper's ``L_mu = mean_i ||x1_i - (x0_i + mu_i dt)||^2`` divided
  by ``d``: the squared error averaged per dimension, on the scale of the NLL;
- :func:`diffusion_loss` is the Gaussian negative log-likelihood of that step, averaged over
  samples and dimensions (it replaces the paper's KL; see its docstring for why);
- the total loss is ``drift + lam * diffusion`` (:func:`total_loss`).

Both terms are means per dimension, so neither dominates the total (and early stopping on
the validation total) by the state dimension alone: the paper's summed ``||.||^2`` made the
drift term ``d`` times larger (about 200 against an NLL of about 2.4 at ``d = 16``).

:func:`step_losses` and :func:`mean_losses` are the unchecked kernels the training loop
(:func:`sde_utils.models.train.fit`) calls per batch and per split; an *objective*
(:class:`OneStepObjective` here, ``MultiStepObjective`` in
:mod:`sde_utils.models.multistep`) tells the loop which data it reads and which losses it
computes from a batch.
"""

from __future__ import annotations

import math

import torch

from sde_utils.checks import check_int, check_real
from sde_utils.models.base import SDEModel, model_dtype_device
from sde_utils.models.baselines import check_transitions, transition_tensors

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
EVAL_BATCH_MIN = 8192  # evaluation has no backward pass: larger batches are cheaper

Transitions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x0 (N, d), t0 (N,), x1 (N, d)


def _drift_loss_from(r: torch.Tensor) -> torch.Tensor:
    return r.pow(2).mean()


def _nll_from(r: torch.Tensor, sigma: torch.Tensor, dt: float) -> torch.Tensor:
    # -log N(r; 0, sigma^2 dt) = 0.5 log(2 pi) + log(sigma) + 0.5 log(dt) + r^2 / (2 sigma^2 dt)
    return (HALF_LOG_2PI + 0.5 * math.log(dt) + sigma.log() + 0.5 * (r / sigma).pow(2) / dt).mean()


def step_losses(
    model: SDEModel, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(drift_loss, diffusion_loss)`` from one evaluation of drift and diffusion.

    Shapes: ``x0, x1 (B, d)``, ``t0 (B,)``; returns two scalar tensors (with gradients).
    No input checks (the training loop calls this per batch); see the public losses.
    """
    mu, sigma = model.drift_diffusion(x0, t0)
    r = x1 - x0 - mu * dt
    return _drift_loss_from(r), _nll_from(r, sigma, dt)


def drift_loss(
    model: SDEModel, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
) -> torch.Tensor:
    """The paper's ``L_mu`` per dimension: ``mean_ij (x1 - x0 - mu(x0, t0) dt)_ij^2``.

    Squared error MEAN over the ``N`` samples AND the ``d`` dimensions, i.e. the paper's
    ``mean_i ||.||^2`` divided by ``d``, so that it is on the per-dimension scale of
    :func:`diffusion_loss` and does not grow with ``d``.
    ``x0, x1 (N, d)``, ``t0 (N,)`` -> scalar tensor.
    """
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="drift_loss")
    return _drift_loss_from(x1 - x0 - model.drift(x0, t0) * dt)


def diffusion_loss(
    model: SDEModel, x0: torch.Tensor, t0: torch.Tensor, x1: torch.Tensor, dt: float
) -> torch.Tensor:
    """Gaussian NLL of one Euler–Maruyama step, MEAN over samples AND dimensions.

    ``x1 | x0 ~ N(x0 + mu dt, diag(sigma^2) dt)`` with ``mu, sigma`` the model's drift and
    diffusion at ``(x0, t0)``; per element
    ``0.5 log(2 pi) + log(sigma) + 0.5 log(dt) + (x1 - x0 - mu dt)^2 / (2 sigma^2 dt)``,
    the constant included, so this is a true NLL in nats per dimension.

    Why this is the paper's diffusion loss: ``KL(P_data || P_model) = E_data[-log p_model]
    - H(P_data)``, and the data entropy ``H(P_data)`` does not depend on the model, so
    minimising the expected NLL minimises the KL (the KL itself is not computable, as the
    data density is unknown). The squared error ``L_mu`` alone does not involve sigma and can
    never learn the noise.

    The drift inside the NLL is NOT detached: drift and diffusion train jointly on the
    likelihood (the NLL's drift gradient is the squared error weighted by ``1/sigma^2``),
    which is maximum likelihood; ``L_mu`` adds the paper's unweighted term.
    ``x0, x1 (N, d)``, ``t0 (N,)`` -> scalar tensor.
    """
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="diffusion_loss")
    return step_losses(model, x0, t0, x1, dt)[1]


def total_loss(
    model: SDEModel,
    x0: torch.Tensor,
    t0: torch.Tensor,
    x1: torch.Tensor,
    dt: float,
    lam: float = 1.0,
) -> torch.Tensor:
    """``drift_loss + lam * diffusion_loss`` (scalar tensor)."""
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="total_loss")
    ld, ln = step_losses(model, x0, t0, x1, dt)
    return ld + lam * ln


@torch.no_grad()
def mean_losses(
    model: SDEModel, data: Transitions, dt: float, lam: float, batch_size: int
) -> dict[str, float]:
    """``{"total", "drift", "diffusion"}`` over ``data`` in batches, model in eval mode.

    No input checks: ``data`` must already be on the model's device and dtype (see
    :func:`evaluate_losses`). Batch means are weighted by batch size and summed in float64.
    """
    x0, t0, x1 = data
    n = x0.shape[0]
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)
    try:
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            ld, ln = step_losses(model, x0[sl], t0[sl], x1[sl], dt)
            nb = min(batch_size, n - i)
            sums += torch.stack([ld.detach(), ln.detach()]).double().cpu() * nb
    finally:
        model.train(was_training)
    d, s = (sums / n).tolist()
    return {"total": d + lam * s, "drift": d, "diffusion": s}


def evaluate_losses(
    model: SDEModel,
    x0: torch.Tensor,
    t0: torch.Tensor,
    x1: torch.Tensor,
    dt: float,
    lam: float = 1.0,
    batch_size: int = EVAL_BATCH_MIN,
) -> dict[str, float]:
    """``{"total", "drift", "diffusion"}`` over all transitions, under ``no_grad``.

    Means over the whole set (batches weighted by size), so the result does not depend on
    ``batch_size`` beyond rounding. Data are moved to the model's device and dtype (a model
    without floating parameters or buffers runs on the CPU in the data's dtype).
    """
    x0, t0, x1, dt = check_transitions(x0, t0, x1, dt, name="evaluate_losses")
    lam = check_real("lam", lam, minimum=0.0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    dtype, device = model_dtype_device(model, like=torch.empty(0, dtype=x0.dtype))
    data = tuple(v.to(device=device, dtype=dtype) for v in (x0, t0, x1))
    return mean_losses(model, data, dt, lam, batch_size)


class OneStepObjective:
    """What :func:`sde_utils.models.train.fit` minimises by default: the one-step losses.

    An objective tells the training loop which data a split holds (:meth:`tensors`, checked
    once) and which losses a batch gives (:meth:`losses`: ``(drift, diffusion, penalty)``
    scalar tensors; the loop's total is ``drift + lam * diffusion + penalty``). Here a split
    is transitions ``(x0 (N, d), t0 (N,), x1 (N, d))`` and the penalty is zero.
    """

    def config(self) -> dict:
        """A JSON-able description (saved in the History's parameters)."""
        return {"name": "one_step"}

    def tensors(self, split, name: str) -> tuple[torch.Tensor, ...]:
        """``split`` checked (:func:`transition_tensors`) as ``(x0, t0, x1)`` tensors."""
        if not isinstance(split, (tuple, list)) or len(split) != 3:
            raise TypeError(
                f"{name} must be a tuple (x0 (N, d), t0 (N,), x1 (N, d)), got "
                f"{type(split).__name__}"
                + (f" of length {len(split)}" if isinstance(split, (tuple, list)) else "")
            )
        return transition_tensors(*split, name=name)

    def losses(
        self, model: SDEModel, batch: tuple[torch.Tensor, ...], dt: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ld, ln = step_losses(model, *batch, dt)
        return ld, ln, ld.new_zeros(())


@torch.no_grad()
def mean_objective_losses(
    model: SDEModel, objective, data: tuple, dt: float, lam: float, batch_size: int
) -> dict[str, float]:
    """``{"total", "drift", "diffusion"}`` of ``objective`` over ``data`` in batches, in eval
    mode, batch means weighted by batch size (float64 sums); unchecked, like
    :func:`mean_losses` (which it equals for :class:`OneStepObjective`). ``total`` includes
    the objective's penalty: ``drift + lam * diffusion + penalty``."""
    n = data[0].shape[0]
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    try:
        for i in range(0, n, batch_size):
            batch = tuple(v[i : i + batch_size] for v in data)
            terms = objective.losses(model, batch, dt)
            sums += torch.stack([v.detach() for v in terms]).double().cpu() * batch[0].shape[0]
    finally:
        model.train(was_training)
    d, s, p = (sums / n).tolist()
    return {"total": d + lam * s + p, "drift": d, "diffusion": s}


__all__ = [
    "OneStepObjective",
    "mean_objective_losses",
    "HALF_LOG_2PI",
    "EVAL_BATCH_MIN",
    "Transitions",
    "step_losses",
    "drift_loss",
    "diffusion_loss",
    "total_loss",
    "mean_losses",
    "evaluate_losses",
]
