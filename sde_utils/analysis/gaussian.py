"""Gaussian comparisons (notebook 08): the closed-form KL between two Gaussians and the
comparison of ``K`` samples of one transition with a model's diagonal Gaussian step
(KL of the fitted Gaussian, energy distance, and their null reference for a perfect model).

Everything is float64; randomness comes only from the ``seed`` argument.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist, pdist

from sde_utils.analysis.stats import finite_vector
from sde_utils.checks import check_int, check_positive, check_seed


def _gauss(name: str, mu, cov) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(mean (d,), cov (d,) or (d, d), is_diagonal)`` as float64, checked."""
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim == 0:
        cov = cov[None]
    d = mu.shape[0]
    if mu.ndim != 1 or cov.shape not in ((d,), (d, d)):
        raise ValueError(
            f"{name}: mean must be (d,) and cov (d,) (diagonal variances) or (d, d), got "
            f"mean {mu.shape} and cov {cov.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError(f"{name}: mean and cov must be finite")
    if cov.ndim == 1:
        if not (cov > 0).all():
            raise ValueError(
                f"{name}: diagonal covariance is not positive definite, its smallest variance "
                f"is {cov.min():.3g} (all must be > 0)"
            )
        return mu, cov, True
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * np.abs(cov).max()):
        raise ValueError(f"{name}: covariance is not symmetric")
    return mu, cov, False


def _cholesky(name: str, cov: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(cov)[0])
        raise ValueError(
            f"{name}: covariance is not positive definite (smallest eigenvalue {smallest:.3g})"
        ) from None


def gaussian_kl(mu0, cov0, mu1, cov1) -> float:
    """``KL(N(mu0, cov0) || N(mu1, cov1))`` in nats, closed form.

    ``0.5 [tr(S1^-1 S0) + (mu1 - mu0)^T S1^-1 (mu1 - mu0) - d + log det S1 - log det S0]``.
    Means are ``(d,)`` (a scalar for d = 1); each covariance is ``(d, d)`` (symmetric,
    positive definite) or ``(d,)``, read as the diagonal variances. Computed elementwise
    when both are diagonal, otherwise through Cholesky factors (triangular solves and log
    determinants from the factors' diagonals, no explicit inverse). Raises ValueError on
    mismatched shapes or a covariance that is not positive definite.
    """
    mu0, cov0, diag0 = _gauss("N0", mu0, cov0)
    mu1, cov1, diag1 = _gauss("N1", mu1, cov1)
    d = mu0.shape[0]
    if mu1.shape[0] != d:
        raise ValueError(f"N0 and N1 must have the same dimension, got {d} and {mu1.shape[0]}")
    diff = mu1 - mu0
    if diag0 and diag1:
        ratio = cov0 / cov1
        return float(0.5 * (ratio.sum() + (diff * diff / cov1).sum() - d - np.log(ratio).sum()))
    l0 = np.diag(np.sqrt(cov0)) if diag0 else _cholesky("N0", cov0)
    l1 = np.diag(np.sqrt(cov1)) if diag1 else _cholesky("N1", cov1)
    a = solve_triangular(l1, l0, lower=True)  # L1^-1 L0: tr(S1^-1 S0) = ||A||_F^2
    m = solve_triangular(l1, diff, lower=True)
    logdet = 2.0 * (np.log(np.diag(l1)).sum() - np.log(np.diag(l0)).sum())
    return float(0.5 * ((a * a).sum() + m @ m - d + logdet))


def _energy(a: np.ndarray, b: np.ndarray, within_b: float) -> float:
    """Unbiased energy distance of samples a (K, d) and b (M, d) given ``E||B - B'||``."""
    k = a.shape[0]
    within_a = 2.0 * pdist(a).sum() / (k * (k - 1))
    return float(2.0 * cdist(a, b).mean() - within_a - within_b)


def _fit(samples: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray, bool]:
    k, d = samples.shape
    cov = np.atleast_2d(np.cov(samples, rowvar=False, ddof=1))
    scale = float(np.trace(cov)) / d
    if scale <= 0:
        raise ValueError("samples are all identical: their covariance is zero")
    add = k <= d or float(np.linalg.eigvalsh(cov)[0]) <= 1e-12 * scale
    if add:
        cov = cov + ridge * scale * np.eye(d)
    return samples.mean(axis=0), cov, add


def empirical_vs_gaussian(
    samples,
    mean,
    std,
    *,
    seed: int = 0,
    n_model: int = 1000,
    n_null: int = 100,
    ridge: float = 1e-3,
) -> dict:
    """Compare ``K`` samples of one transition with the model's diagonal Gaussian.

    Args:
        samples: ``(K, d)``, ``K >= 2``: draws from the true transition (e.g. the K sampled
            continuations of one prompt at the first generated step, in PCA coordinates).
        mean, std: ``(d,)``: the model's one-step law ``N(mean, diag(std^2))``, e.g.
            ``mean = x0 + mu dt`` and ``std = sigma sqrt(dt)``; ``std > 0``.
        seed: seeds the model draws and the null replicates.
        n_model: draws from the model Gaussian for the energy distance (>= 2).
        n_null: replicates of the null reference (0 to skip; see below).
        ridge: relative ridge for the fitted covariance.

    Returns a dict:

    * ``kl_gauss``: ``KL(N(m, S) || N(mean, diag(std^2)))`` (:func:`gaussian_kl`), ``m`` and
      ``S`` the sample mean and covariance (``ddof=1``). When ``K <= d`` (``S`` singular)
      or ``S`` is numerically singular, ``ridge * tr(S) / d`` is added to its diagonal
      (``ridge_applied``); the KL then depends on ``ridge`` and is large by construction.
    * ``kl_gauss_diag``: the same with ``S`` replaced by its diagonal (the model's form;
      the ridged diagonal when the ridge applies).
    * ``energy``: unbiased energy distance (``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||``,
      as :func:`sde_utils.models.metrics.energy_distance`) between ``samples`` and ``n_model``
      draws from the model Gaussian; about 0 (can be slightly negative) when they agree.
    * Null reference (with ``n_null > 0``): the three statistics recomputed on ``n_null``
      sets of ``K`` draws from the model Gaussian itself, which shows how large they are
      for a perfect model at this ``K`` and ``d`` (the KL of a fitted Gaussian is biased
      upwards, about ``d (d + 3) / (4 K)`` for large ``K``; the energy null is conditional
      on the same model draws). ``<stat>_null_mean``, ``<stat>_null_sd``,
      ``<stat>_null_q95`` and ``<stat>_p`` = ``(1 + #{null >= observed}) / (1 + n_null)``.
    * ``k``, ``d``, ``n_model``, ``n_null``, ``ridge``, ``ridge_applied``.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"samples must be (K, d) with K >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples must be finite")
    k, d = x.shape
    mean = finite_vector("mean", np.atleast_1d(mean), d)
    std = finite_vector("std", np.atleast_1d(std), d)
    if not (std > 0).all():
        raise ValueError(
            f"std must be a finite number > 0 in every coordinate, got min {std.min():.3g}"
        )
    n_model = check_int("n_model", n_model, minimum=2)
    n_null = check_int("n_null", n_null, minimum=0)
    ridge = check_positive("ridge", ridge)
    rng = np.random.default_rng(check_seed(seed))
    var = std * std
    model = mean + std * rng.standard_normal((int(n_model), d))
    within_model = 2.0 * pdist(model).sum() / (n_model * (n_model - 1))

    def three(s):
        m, cov, added = _fit(s, ridge)
        return (
            gaussian_kl(m, cov, mean, var),
            gaussian_kl(m, np.diag(cov).copy(), mean, var),
            _energy(s, model, within_model),
            added,
        )

    kl, kl_diag, energy, added = three(x)
    out = {"kl_gauss": kl, "kl_gauss_diag": kl_diag, "energy": energy}
    if n_null:
        null = np.array(
            [three(mean + std * rng.standard_normal((k, d)))[:3] for _ in range(int(n_null))]
        )
        for j, name in enumerate(("kl_gauss", "kl_gauss_diag", "energy")):
            out[f"{name}_null_mean"] = float(null[:, j].mean())
            out[f"{name}_null_sd"] = float(null[:, j].std(ddof=1)) if n_null > 1 else 0.0
            out[f"{name}_null_q95"] = float(np.quantile(null[:, j], 0.95))
            out[f"{name}_p"] = float((1 + (null[:, j] >= out[name]).sum()) / (1 + n_null))
    out.update(k=int(k), d=int(d), n_model=int(n_model), n_null=int(n_null), ridge=float(ridge))
    out["ridge_applied"] = bool(added)
    return out


__all__ = ["empirical_vs_gaussian", "gaussian_kl"]
