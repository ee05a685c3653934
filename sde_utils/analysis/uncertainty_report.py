"""Notebook 08's study, step by step: does the learned diffusion track the LLM's
uncertainty, and do the paper's claims of section 4.2 hold?

Each function is one step of the notebook (correlations, temperature, the first step,
held-out error, losses, verdicts, the metrics record) and returns plain dicts and
DataFrames; the statistics live in :mod:`sde_utils.analysis.intervals` and the modules it
wraps, the figures in :mod:`sde_utils.plots.uncertainty`. Conventions are those of
:mod:`sde_utils.analysis.transitions` (alignment of sigma with the *next* token's entropy,
``|sigma|^2`` summed over the PCA coordinates). Every interval resamples conversations
with ``n_boot`` replicates and ``seed``; ``min_groups`` conversations are needed for one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sde_utils.analysis.intervals import (
    binned_means,
    correlation_summary,
    means_by_level,
    slope_interval,
)
from sde_utils.analysis.sampled_fit import detectable_effect
from sde_utils.analysis.sampled_fit import fit_params as sampled_fit_params
from sde_utils.analysis.temperature import (
    fit_by_temperature,
    fitted_slope_interval,
    model_space_sigma2,
    project_store,
    sigma2_by_fit,
)
from sde_utils.checks import check_choice
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.fits import Fit

COMPLEXITY_MEASURES = ("mean_sentence_length", "mean_clauses", "complexity")
#: The model-free and fixed-model quantities compared across temperatures (name -> column).
TEMPERATURE_LEVELS = {
    "sigma": "sigma2",
    "increment": "sq_increment",
    "increment_model_space": "sq_increment_model",
}


# ----------------------------------------------------------------------------- set-up


def check_complexity_measure(measure: str, source: TrajectoryStore) -> str:
    """``measure`` if it is one of :data:`COMPLEXITY_MEASURES` that ``source`` can provide
    (``"complexity"`` needs HelpSteer's annotation in ``source.sequences``)."""
    check_choice("complexity_measure", measure, COMPLEXITY_MEASURES)
    if measure == "complexity" and "complexity" not in source.sequences:
        raise ValueError(
            "complexity_measure='complexity' needs HelpSteer's annotation; notebook 01's store has none"
        )
    return measure


def interval_table(intervals: Mapping[str, Mapping[str, Any]], index: str) -> pd.DataFrame:
    """One row per interval (``estimate, low, high, n, n_groups``), indexed by its key."""
    return (
        pd.DataFrame(intervals).T[["estimate", "low", "high", "n", "n_groups"]].rename_axis(index)
    )


# ----------------------------------------------------------------------------- section 1


def uncertainty_correlations(
    tokens: pd.DataFrame, *, n_boot: int, seed: int, min_groups: int
) -> dict[str, dict]:
    """``|sigma|^2`` and the realised step ``|z_{k+1} - z_k|^2`` against next-token entropy
    and surprisal (``tokens``: a :func:`~sde_utils.analysis.transitions.transition_frame`):
    ``{"<x>~<y>": correlation_summary}`` with the Spearman correlation and its partial
    versions given position and given position and temperature."""
    covariates = {
        "position": ["k"],
        "temperature": ["temperature"],
        "position_temperature": ["k", "temperature"],
    }
    kwg = dict(n_boot=n_boot, seed=seed, min_groups=min_groups)
    correlations = {}
    for x in ("sigma2", "sq_increment"):
        for y in ("entropy_next", "surprisal_next"):
            correlations[f"{x}~{y}"] = correlation_summary(
                tokens, x, y, covariate_sets=covariates, **kwg
            )
    return correlations


def sigma_entropy_by_temperature(
    tokens: pd.DataFrame, *, n_boot: int, seed: int, min_groups: int
) -> dict[str, dict[str, dict]]:
    """Every pair of :func:`uncertainty_correlations` within each sampling temperature:
    ``{"<x>~<y>": {"<temperature>": {"spearman": ..., "partial_position": ...}}}``."""
    kwg = dict(n_boot=n_boot, seed=seed, min_groups=min_groups)
    out: dict[str, dict[str, dict]] = {}
    for x in ("sigma2", "sq_increment"):
        for y in ("entropy_next", "surprisal_next"):
            out[f"{x}~{y}"] = {
                f"{temp:g}": correlation_summary(
                    part, x, y, covariate_sets={"position": ["k"]}, **kwg
                )
                for temp, part in tokens.groupby("temperature")
            }
    return out


def side_by_side(
    correlations: Mapping[str, Mapping[str, dict]],
    by_temperature: Mapping[str, Mapping[str, Mapping[str, dict]]],
    measure: str = "spearman",
) -> pd.DataFrame:
    """One row per pair: ``measure`` within each temperature (``T=<t>``), then pooled,
    given temperature and given position + temperature, each "estimate [low, high]"."""

    def cell(iv: Mapping[str, Any]) -> str:
        return f"{iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]"

    rows = []
    for pair, results in correlations.items():
        row = {"pair": pair}
        for temp, res in by_temperature[pair].items():
            row[f"T={temp}"] = cell(res[measure])
        row["pooled"] = cell(results["spearman"])
        row["| temperature"] = cell(results["partial_temperature"])
        row["| position + temperature"] = cell(results["partial_position_temperature"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("pair")


def correlation_table(correlations: Mapping[str, Mapping[str, dict]]) -> pd.DataFrame:
    """One row per (pair, measure) of :func:`uncertainty_correlations`."""
    rows = [
        {
            "pair": pair,
            "measure": measure,
            **{k: res[k] for k in ("estimate", "low", "high", "n", "n_groups")},
        }
        for pair, results in correlations.items()
        for measure, res in results.items()
    ]
    return pd.DataFrame(rows)


def binned_by_temperature(
    tokens: pd.DataFrame, x: str, y: str, *, bins: int, n_boot: int, seed: int
) -> dict[float, pd.DataFrame]:
    """Mean of ``tokens[y]`` per equal-count bin of ``tokens[x]``, per sampling temperature
    (:func:`~sde_utils.analysis.intervals.binned_means`); temperatures without an interval
    (fewer than 2 conversations) are left out."""
    out = {}
    for temp, part in tokens.groupby("temperature"):
        b = binned_means(part[x], part[y], part["conv_id"], bins=bins, n_boot=n_boot, seed=seed)
        if not b.empty:
            out[temp] = b
    return out


def entropy_panels(
    tokens: pd.DataFrame, *, bins: int, n_boot: int, seed: int
) -> tuple[dict[float, pd.DataFrame], ...]:
    """The three panels of notebook 08's first figure (:func:`binned_by_temperature`):
    ``|sigma|^2`` by next-token entropy, by surprisal, and the realised step by entropy."""
    kw = dict(bins=bins, n_boot=n_boot, seed=seed)
    return (
        binned_by_temperature(tokens, "entropy_next", "sigma2", **kw),
        binned_by_temperature(tokens, "surprisal_next", "sigma2", **kw),
        binned_by_temperature(tokens, "entropy_next", "sq_increment", **kw),
    )


# ----------------------------------------------------------------------------- section 2


def temperature_levels(
    tokens: pd.DataFrame, *, n_boot: int, seed: int, min_groups: int
) -> dict[str, dict]:
    """For each of :data:`TEMPERATURE_LEVELS`: the mean per temperature (``by_temperature``,
    a DataFrame) and the slope on temperature with its interval (``slope``)."""
    kw = dict(n_boot=n_boot, seed=seed)
    kwg = dict(kw, min_groups=min_groups)
    temperature = {}
    for name, column in TEMPERATURE_LEVELS.items():
        temperature[name] = {
            "by_temperature": means_by_level(
                tokens["temperature"], tokens[column], tokens["conv_id"], **kw
            ),
            "slope": slope_interval(
                tokens["temperature"], tokens[column], tokens["conv_id"], **kwg
            ),
        }
    return temperature


def fit_temperatures(
    samples: TrajectoryStore,
    fit: Fit,
    fit_seeds: Sequence[int],
    *,
    epochs: int,
    hidden: int,
    patience: int,
) -> tuple[dict[tuple[float, int], Fit], dict[str, str]]:
    """One SDE per sampling temperature and seed, fitted on ``samples`` projected to
    ``fit``'s PCA coordinates with ``fit``'s settings (smaller nets: ``epochs``, ``hidden``,
    ``patience``). Returns ``(fits, skipped)``: ``fits[(temperature, seed)]`` and the reason
    for every ``"<temperature> (seed <seed>)"`` that could not be fitted."""
    fit_params = sampled_fit_params(
        fit, epochs=epochs, hidden=hidden, patience=patience, seed=0
    )  # seed: replaced per fit below
    temp_fits, skipped = {}, {}
    projected = project_store(samples, fit.features, tag=fit.path.name)
    for fit_seed in fit_seeds:
        fits_s, skipped_s = fit_by_temperature(projected, {**fit_params, "seed": fit_seed})
        temp_fits.update({(temp, fit_seed): f for temp, f in fits_s.items()})
        skipped.update({f"{temp:g} (seed {fit_seed})": why for temp, why in skipped_s.items()})
    return temp_fits, skipped


def common_states(
    common: TrajectoryStore, fit: Fit, dt: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The transitions' first states of ``common`` (notebook 01's test responses, which no
    temperature fit saw) in ``fit``'s PCA coordinates ``(N, k)``, their times ``(N,)`` and
    conversations ``(N,)``."""
    x_common, t_common, _, common_index = common.transitions(dt=dt, return_index=True)
    common_conv = common.sequences["conv_id"].to_numpy()[common_index[:, 0]]
    z_common = fit.features.transform(x_common.astype(np.float64))  # 03's coordinates
    return z_common, t_common, common_conv


def fitted_sigma2(
    temp_fits: Mapping[tuple[float, int], Fit], z_common, t_common, common_conv
) -> pd.DataFrame:
    """Every temperature fit's model-space ``|sigma|^2`` at the common states: one row per
    (fit, state) with ``fit`` (the key), ``state``, ``sigma2_model``, ``temperature``,
    ``fit_seed`` and ``conv_id``."""
    fitted = sigma2_by_fit(temp_fits, z_common, t_common)  # fit key: (temperature, seed)
    fitted["temperature"] = [key[0] for key in fitted["fit"]]
    fitted["fit_seed"] = [key[1] for key in fitted["fit"]]
    fitted["conv_id"] = common_conv[fitted["state"].to_numpy(dtype=np.int64)]
    return fitted


def fitted_temperature_summary(
    fitted: pd.DataFrame,
    temp_fits: Mapping[tuple[float, int], Fit],
    skipped: Mapping[str, str],
    *,
    n_boot: int,
    seed: int,
    min_groups: int,
) -> dict:
    """The temperature fits at the common states: ``n_fits``, ``skipped``, the mean per
    temperature over seeds (``by_temperature``), the slope on temperature with states and
    seeds resampled (``slope``), each seed's own slope (``slope_per_seed``) and each
    temperature's random-walk ``|sigma|^2`` (``random_walk_sigma2``)."""
    kw = dict(n_boot=n_boot, seed=seed)
    kwg = dict(kw, min_groups=min_groups)
    averaged = fitted.groupby(["temperature", "state", "conv_id"], as_index=False)[
        "sigma2_model"
    ].mean()  # over seeds
    rw_sigma2 = {  # closed-form fit: the same for every seed
        f"{temp:g}": float(
            model_space_sigma2(
                f.features, f.models["random_walk"].sigma.detach().double().numpy()[None]
            )[0]
        )
        for (temp, _), f in temp_fits.items()
    }
    seed_slopes = {
        str(s): slope_interval(part["temperature"], part["sigma2_model"], part["conv_id"], **kwg)[
            "estimate"
        ]
        for s, part in fitted.groupby("fit_seed")
    }
    return {
        "n_fits": len(temp_fits),
        "skipped": dict(skipped),
        "by_temperature": means_by_level(
            averaged["temperature"], averaged["sigma2_model"], averaged["conv_id"], **kw
        ),
        "slope": fitted_slope_interval(fitted, **kwg),
        "slope_per_seed": seed_slopes,
        "random_walk_sigma2": rw_sigma2,
    }


def per_seed_means(fitted: pd.DataFrame) -> pd.DataFrame:
    """Mean model-space ``|sigma|^2`` of each (temperature, seed) fit over the common states."""
    return fitted.groupby(["temperature", "fit_seed"], as_index=False)["sigma2_model"].mean()


def slope_lines(temperature: Mapping[str, dict]) -> list[str]:
    """One printed line per temperature view: the slope per unit temperature and interval."""
    lines = []
    for name in ("sigma", "fitted", "increment", "increment_model_space"):
        s = temperature[name]["slope"]
        lines.append(
            f"{name:<10} slope per unit temperature {s['estimate']:.4g} [{s['low']:.4g}, {s['high']:.4g}]  {s.get('reason') or ''}"
        )
    return lines


# ----------------------------------------------------------------------------- section 3


def first_step_table(first_summary: Mapping[str, dict]) -> pd.DataFrame:
    """One row per (model, statistic) of
    :func:`~sde_utils.analysis.first_step.summarise_first_step`."""
    return pd.DataFrame(
        [
            {
                "model": name,
                "groups": res["n_groups"],
                "degenerate": res["n_degenerate"],
                "stat": stat,
                "mean": res[stat]["mean"],
                "null mean": res[stat]["null_mean"],
                "excess": res[stat]["excess"]["estimate"],
                "low": res[stat]["excess"]["low"],
                "high": res[stat]["excess"]["high"],
                "share p≤0.05": res[stat]["share_p05"],
                "detectable (80%)": detectable_effect(res[stat]["excess"]),
            }
            for name, res in first_summary.items()
            for stat in ("kl_gauss_diag", "energy")
        ]
    )


def count_first_groups(first: pd.DataFrame) -> int:
    """Number of groups in a :func:`~sde_utils.analysis.first_step.first_step_comparison`."""
    return int(first["group"].nunique()) if len(first) else 0


__all__ = [
    "COMPLEXITY_MEASURES",
    "TEMPERATURE_LEVELS",
    "binned_by_temperature",
    "check_complexity_measure",
    "common_states",
    "correlation_table",
    "count_first_groups",
    "entropy_panels",
    "first_step_table",
    "fit_temperatures",
    "fitted_sigma2",
    "fitted_temperature_summary",
    "interval_table",
    "per_seed_means",
    "side_by_side",
    "sigma_entropy_by_temperature",
    "slope_lines",
    "temperature_levels",
    "uncertainty_correlations",
]
