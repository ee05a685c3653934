"""Picard iteration of every model on one Brownian path: checks, table and metrics (06).

``picard`` below is a dict ``{model name: result of :func:`picard_check`}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from sde_utils.theory.lipschitz_upper import lipschitz_upper_bound
from sde_utils.theory.picard import picard_convergence

#: the fields of each Picard result notebook 06 records
PICARD_METRIC_KEYS = (
    "sup_diff",
    "dist_to_em",
    "log10_bound_diff",
    "bound_diff_factorial",
    "weights_sum",
    "K_mu",
    "K_sigma",
    "n_steps",
    "bound_holds",
    "converged",
    "final_distance",
    "iterations_to_em",
)


def picard_check(model: nn.Module, x0: Any, brownian_increments: Any, dt: float) -> dict:
    """:func:`~sde_utils.theory.picard_convergence` with the certified K_mu, K_sigma, and
    its verdicts.

    Args:
        model: an SDEModel with certified Lipschitz bounds. x0: ``(d,)``.
        brownian_increments: ``(n_steps, d)``. dt: the step.

    Returns:
        picard_convergence's dict plus ``bound_holds`` (every log10 difference below its
        log10 bound, to 1e-9), ``final_distance`` (the last iterate's sup distance to the
        Euler–Maruyama path), ``converged`` (that distance <= 1e-9 (1 + max |EM path|))
        and ``iterations_to_em`` (the first iteration that close, or None).
    """
    K_mu = lipschitz_upper_bound(model, "drift")["upper"]
    K_sigma = lipschitz_upper_bound(model, "diffusion")["upper"]
    pc = picard_convergence(model, x0, brownian_increments, dt, K_mu=K_mu, K_sigma=K_sigma)
    scale = 1.0 + float(np.abs(pc["em_path"]).max())
    with np.errstate(divide="ignore"):
        log_diff = np.log10(pc["sup_diff"])
    pc["bound_holds"] = bool(np.all(log_diff <= pc["log10_bound_diff"] + 1e-9))
    pc["final_distance"] = float(pc["dist_to_em"][-1])
    pc["converged"] = bool(pc["final_distance"] <= 1e-9 * scale)
    exact = np.nonzero(pc["dist_to_em"] <= 1e-9 * scale)[0]
    pc["iterations_to_em"] = int(exact[0]) if exact.size else None
    return pc


def picard_table(picard: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: the constants, Σ w, the largest difference and the convergence."""
    return pd.DataFrame.from_dict(
        {
            name: {
                "K_mu": pc["K_mu"],
                "K_sigma": pc["K_sigma"],
                "Σ w": pc["weights_sum"],
                "largest sup diff": float(pc["sup_diff"].max()),
                "iterations to EM (1e-9)": pc["iterations_to_em"],
                "final distance to EM": pc["final_distance"],
                "diffs below bound": pc["bound_holds"],
            }
            for name, pc in picard.items()
        },
        orient="index",
    )


def picard_lines(picard: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The Picard verdict of every model in words, with its numbers."""
    return [
        f"{name:<11} Picard: every difference below its bound: {pc['bound_holds']}; reaches "
        f"the EM path after {pc['iterations_to_em']} of at most {pc['n_steps']} iterations "
        f"(final distance {pc['final_distance']:.1e}); largest intermediate difference "
        f"{pc['sup_diff'].max():.3g}"
        for name, pc in picard.items()
    ]


def picard_metrics(picard: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{name: {key: value}}`` for the :data:`PICARD_METRIC_KEYS`."""
    return {name: {k: pc[k] for k in PICARD_METRIC_KEYS} for name, pc in picard.items()}


__all__ = ["PICARD_METRIC_KEYS", "picard_check", "picard_table", "picard_lines", "picard_metrics"]
