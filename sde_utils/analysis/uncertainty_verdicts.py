"""Notebook 08, sections 4-5: held-out error by position, horizon and text complexity, the
losses before and after training, the verdict on every claim of the paper's section 4.2,
and the metrics record.

The first sections (correlations, temperature, first step) are in
:mod:`sde_utils.analysis.uncertainty_report`. Every interval resamples conversations with
``n_boot`` replicates and ``seed``; ``min_groups`` conversations are needed for one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sde_utils.analysis.complexity import response_complexity
from sde_utils.analysis.intervals import binned_means, mean_interval, means_by_level, slope_interval
from sde_utils.analysis.prediction_error import horizon_errors, initial_model
from sde_utils.analysis.sampled_fit import detectable_effect
from sde_utils.analysis.transitions import step_quantities, transition_frame
from sde_utils.analysis.verdicts import verdict_row
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.fits import Fit

# ----------------------------------------------------------------------------- section 4


def error_study(
    common: TrajectoryStore,
    fit: Fit,
    dt: float,
    *,
    horizons: Sequence[int],
    position_bins: int,
    complexity_measure: str,
    complexity_bins: int,
    n_boot: int,
    seed: int,
    min_groups: int,
) -> dict[str, Any]:
    """Held-out error of ``fit`` on ``common`` (notebook 01's test responses), in 03's PCA
    space. Returns a dict of:

    * ``test_steps``: the :func:`~sde_utils.analysis.transitions.transition_frame` with
      ``sq_error`` (one-step squared drift error per coordinate);
    * ``by_position``: its binned means by position (``position_bins`` bins);
    * ``responses``: per response, the mean ``sq_error``, ``conv_id``, ``n_steps`` and the
      complexity proxies; ``complexity_slope`` (the error's slope on
      ``complexity_measure``) and ``by_complexity`` (``complexity_bins`` bins);
    * ``horizon_by``: per model (neural SDE and random walk), the drift path's squared error
      by horizon; ``horizon_slope``: the neural SDE's slope of that error on the horizon.
    """
    kw = dict(n_boot=n_boot, seed=seed)
    kwg = dict(kw, min_groups=min_groups)
    test_steps = transition_frame(common, fit.features, fit.sde, dt)
    k_dim = fit.features.output_dim
    test_steps["sq_error"] = test_steps["sq_residual"] / k_dim
    by_position = binned_means(
        test_steps["k"], test_steps["sq_error"], test_steps["conv_id"], bins=position_bins, **kw
    )
    responses = test_steps.groupby("row").agg(
        sq_error=("sq_error", "mean"), conv_id=("conv_id", "first"), n_steps=("k", "size")
    )
    responses = responses.join(response_complexity(common.sequences), how="left")
    complexity_slope = slope_interval(
        responses[complexity_measure], responses["sq_error"], responses["conv_id"], **kwg
    )
    by_complexity = binned_means(
        responses[complexity_measure],
        responses["sq_error"],
        responses["conv_id"],
        bins=complexity_bins,
        **kw,
    )
    trajectories = [
        fit.features.transform(np.asarray(common.trajectory(i), dtype=np.float64))
        for i in range(len(common))
    ]
    conv = common.sequences["conv_id"].tolist()
    horizon = {
        name: horizon_errors(fit.models[name], trajectories, conv, horizons, dt)
        for name in ("neural_sde", "random_walk")
    }
    horizon_by = {
        name: means_by_level(t["h"], t["sq_error"], t["group"], **kw) for name, t in horizon.items()
    }
    horizon_slope = slope_interval(
        horizon["neural_sde"]["h"],
        horizon["neural_sde"]["sq_error"],
        horizon["neural_sde"]["group"],
        **kwg,
    )
    return {
        "test_steps": test_steps,
        "by_position": by_position,
        "responses": responses,
        "complexity_slope": complexity_slope,
        "by_complexity": by_complexity,
        "horizon_by": horizon_by,
        "horizon_slope": horizon_slope,
    }


def error_lines(errors: Mapping[str, Any], complexity_measure: str) -> list[str]:
    """The printed summary of :func:`error_study`: sizes and the two slopes."""
    responses, complexity_slope = errors["responses"], errors["complexity_slope"]
    horizon_slope = errors["horizon_slope"]
    return [
        f"{len(errors['test_steps'])} test transitions, {len(responses)} responses in {responses['conv_id'].nunique()} conversations",
        f"error vs {complexity_measure}: slope {complexity_slope['estimate']:.4g} [{complexity_slope['low']:.4g}, {complexity_slope['high']:.4g}]",
        f"drift-path error vs horizon: slope {horizon_slope['estimate']:.4g} [{horizon_slope['low']:.4g}, {horizon_slope['high']:.4g}]",
    ]


# ----------------------------------------------------------------------------- section 5


def loss_study(
    fit: Fit,
    common: TrajectoryStore,
    dt: float,
    common_conv,
    *,
    n_boot: int,
    seed: int,
    min_groups: int,
) -> dict[str, Any]:
    """ "Losses decrease", on held-out data: notebook 03's total loss (drift + lam *
    diffusion) per transition of ``common`` for the network before training (same
    architecture and seed, :func:`~sde_utils.analysis.prediction_error.initial_model`; this
    reseeds torch) and after; ``drop`` is the mean of before minus after with an interval
    over ``common_conv``. The loss curves of notebook 03 are quoted beside it."""
    h = fit.histories["neural_sde"]
    lam = float(fit.params["lam"])
    x0, t0, x1 = common.transitions(dt=dt)
    z0, z1 = (
        fit.features.transform(x0.astype(np.float64)),
        fit.features.transform(x1.astype(np.float64)),
    )
    before = step_quantities(initial_model(fit), z0, t0, z1, dt)
    after = step_quantities(fit.sde, z0, t0, z1, dt)
    d = z0.shape[1]  # notebook 03's total: squared drift error per dimension + lam * NLL
    loss_before = before["sq_residual"] / d + lam * before["nll"]
    loss_after = after["sq_residual"] / d + lam * after["nll"]
    loss_drop = mean_interval(
        loss_before - loss_after, common_conv, n_boot=n_boot, seed=seed, min_groups=min_groups
    )
    return {
        "test_total_before": float(loss_before.mean()),
        "test_total_after": float(loss_after.mean()),
        "drop": loss_drop,
        "val_total_first_epoch": h.val_total[0],
        "val_total_best": min(h.val_total),
        "val_total_last": h.val_total[-1],
        "best_epoch": h.best_epoch,
        "epochs": h.n_epochs,
        "train_total_first_epoch": h.train_total[0],
        "train_total_last": h.train_total[-1],
    }


def _row(claim: str, section: str, statistic: str, interval: Mapping[str, Any], **kw) -> dict:
    """:func:`~sde_utils.analysis.verdicts.verdict_row` plus ``detectable_80``: the smallest
    true effect this much data detects at 80% power (:func:`detectable_effect`)."""
    return {
        **verdict_row(claim, section, statistic, interval, **kw),
        "detectable_80": detectable_effect(interval),
    }


def verdict_rows(
    losses: Mapping[str, Any],
    correlations: Mapping[str, Mapping[str, dict]],
    temperature: Mapping[str, dict],
    errors: Mapping[str, Any],
    *,
    by_temperature: Mapping[str, Mapping[str, Mapping[str, dict]]],
    complexity_measure: str,
) -> list[dict]:
    """The verdict table of section 4.2, one row per claim (and per sampling temperature
    for the uncertainty claims), each decided by its interval, with the numbers it rests
    on and the smallest effect it could detect (``detectable_80``).

    ``correlations``/``by_temperature``: :func:`~sde_utils.analysis.uncertainty_report.uncertainty_correlations`
    and :func:`~sde_utils.analysis.uncertainty_report.sigma_entropy_by_temperature` of the
    held-out samples; ``temperature``: the temperature views (``sigma``, ``fitted``,
    ``increment``)."""
    rho = correlations["sigma2~entropy_next"]
    sur = correlations["sigma2~surprisal_next"]
    hb = errors["horizon_by"]["neural_sde"]
    responses = errors["responses"]
    fitted = temperature["fitted"]
    uncertain = "Diffusion is high where the LLM is uncertain"
    rows = [
        _row(
            "Training lowers the losses",
            "4.2.1",
            "held-out total loss per transition, initial minus trained",
            losses["drop"],
            numbers=f"test total {losses['test_total_before']:.4g} -> {losses['test_total_after']:.4g}; val total epoch 1 {losses['val_total_first_epoch']:.4g}, best {losses['val_total_best']:.4g} (epoch {losses['best_epoch']} of {losses['epochs']}), last {losses['val_total_last']:.4g}",
        ),
        _row(
            "Predictions align early, then diverge",
            "4.2.2",
            "slope of drift-path squared error on horizon (per token)",
            errors["horizon_slope"],
            numbers="error by horizon: "
            + ", ".join(f"h={int(r.level)}: {r.mean:.3g}" for r in hb.itertuples()),
        ),
        _row(
            "More complex text is predicted worse",
            "4.2.2",
            f"slope of one-step error on {complexity_measure}",
            errors["complexity_slope"],
            numbers=f"{len(responses)} test responses, {complexity_measure} from {responses[complexity_measure].min():.3g} to {responses[complexity_measure].max():.3g}",
        ),
        _row(
            f"{uncertain} (pooled over temperatures)",
            "4.2.3",
            "Spearman of |σ|² and next-token entropy",
            rho["spearman"],
            numbers=f"{rho['spearman']['n']} tokens, {rho['spearman']['n_groups']} prompts",
        ),
    ]
    for temp, res in by_temperature["sigma2~entropy_next"].items():
        iv = res["spearman"]
        rows.append(
            _row(
                f"{uncertain} (temperature {temp})",
                "4.2.3",
                "Spearman of |σ|² and next-token entropy within one temperature",
                iv,
                numbers=f"{iv['n']} tokens, {iv['n_groups']} prompts; given position {res['partial_position']['estimate']:.3g}",
            )
        )
    rows += [
        _row(
            f"{uncertain} (temperature partialled out)",
            "4.2.3",
            "partial Spearman of |σ|² and entropy given temperature",
            rho["partial_temperature"],
        ),
        _row(
            f"{uncertain} (position and temperature partialled out)",
            "4.2.3",
            "partial Spearman of |σ|² and entropy given position and temperature",
            rho["partial_position_temperature"],
            numbers=f"model-free realised step vs entropy, same partial: {correlations['sq_increment~entropy_next']['partial_position_temperature']['estimate']:.3g}",
        ),
        _row(
            "Diffusion is high where the sampled token is surprising (position and temperature partialled out)",
            "4.2.3",
            "partial Spearman of |σ|² and surprisal given position and temperature",
            sur["partial_position_temperature"],
            numbers=f"pooled {sur['spearman']['estimate']:.3g}",
        ),
        _row(
            "Diffusion grows with sampling temperature (beyond the paper)",
            "beyond",
            "slope of held-out |σ|² on temperature (σ fitted on all temperatures' samples)",
            temperature["sigma"]["slope"],
            numbers=f"model-free increment slope {temperature['increment']['slope']['estimate']:.3g}",
        ),
        _row(
            "A σ fitted on hotter samples is larger (beyond the paper)",
            "beyond",
            "slope of per-temperature fits' |σ|² on temperature at common held-out states (states and seeds resampled)",
            fitted["slope"],
            numbers=f"{fitted['n_fits']} fits; per-seed slopes {fitted['slope_per_seed']}",
        ),
    ]
    return rows


def verdict_lines(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """One printed line per verdict: the verdict, the claim, its interval, the smallest
    effect detectable at 80% power and the numbers."""
    return [
        f"[{row['verdict']}] {row['claim']}: {row['statistic']} = {row['estimate']:.4g} [{row['low']:.4g}, {row['high']:.4g}] (detectable at 80% power: {row['detectable_80']:.3g}); {row['numbers']}"
        for row in verdicts
    ]


# ----------------------------------------------------------------------------- record


def uncertainty_metrics(
    *,
    names: Mapping[str, Any],
    tokens: pd.DataFrame,
    correlations: Mapping[str, Any],
    by_temperature: Mapping[str, Any],
    temperature: Mapping[str, dict],
    first_step: Mapping[str, Any],
    complexity_measure: str,
    errors: Mapping[str, Any],
    losses: Mapping[str, Any],
    verdicts: Sequence[dict],
    folds: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Notebook 08's metrics record: ``names`` (the artefacts used: ``store_02``,
    ``store_01``, ``fit_03``, ``fits_08``, ``n_folds``) first, then the numbers of every section;
    DataFrames become lists of row dicts."""

    def records(table: pd.DataFrame) -> list[dict]:
        return table.to_dict("records")

    return {
        **names,
        "n_tokens": len(tokens),
        "n_conversations": int(tokens["conv_id"].nunique()),
        "temperatures": sorted(float(t) for t in tokens["temperature"].unique()),
        "correlations": correlations,
        "sigma_entropy_by_temperature": by_temperature,
        "temperature": {
            name: {
                **{k: v for k, v in part.items() if k != "by_temperature"},
                "by_temperature": records(part["by_temperature"]),
            }
            for name, part in temperature.items()
        },
        "folds": [] if folds is None else records(folds),
        "first_step": first_step,
        "complexity": {
            "measure": complexity_measure,
            "n_responses": len(errors["responses"]),
            "slope": errors["complexity_slope"],
            "by_complexity": records(errors["by_complexity"]),
            "by_position": records(errors["by_position"]),
            "n_test_transitions": len(errors["test_steps"]),
        },
        "horizons": {
            "slope": errors["horizon_slope"],
            **{f"{name}_by_horizon": records(t) for name, t in errors["horizon_by"].items()},
        },
        "losses": losses,
        "verdicts": verdicts,
    }


__all__ = [
    "error_lines",
    "error_study",
    "loss_study",
    "uncertainty_metrics",
    "verdict_lines",
    "verdict_rows",
]
