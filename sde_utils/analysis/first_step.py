"""The paper's KL, measured at the first generated step (notebook 08, section 3).

Samples of one prompt and temperature that share their first token share the whole
prefix, so their second states are independent draws from the LLM's true transition out
of one common first state; each model's one-step Gaussian is compared with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from sde_utils.analysis.gaussian import empirical_vs_gaussian
from sde_utils.analysis.intervals import mean_interval, nan_interval
from sde_utils.checks import check_int
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.base import SDEModel, drift_diffusion_at
from sde_utils.models.features import FeatureMap


def first_token_groups(
    sequences: pd.DataFrame,
    *,
    keys: Sequence[str] = ("prompt_index", "temperature"),
    min_size: int = 2,
) -> pd.DataFrame:
    """Samples of one prompt and temperature that share their first token.

    Such samples share the whole prefix (prompt + first token), so their second states are
    independent draws from the LLM's true transition out of one common first state.
    Returns one row per group with ``min_size`` or more samples of length >= 2: the ``keys``,
    ``first_token``, ``conv_id``, ``rows`` (list of rows of ``sequences``) and ``size``.
    """
    need = [*keys, "token_ids", "length", "conv_id"]
    missing = [c for c in need if c not in sequences]
    if missing:
        raise KeyError(f"sequences lacks {missing}; columns: {list(sequences.columns)}")
    frame = sequences.loc[sequences["length"] >= 2, list(keys) + ["conv_id"]].copy()
    frame["first_token"] = [int(ids[0]) for ids in sequences.loc[frame.index, "token_ids"]]
    frame["row"] = frame.index
    cols = [*keys, "first_token", "conv_id", "rows", "size"]
    groups = []
    for key, part in frame.groupby([*keys, "first_token"], sort=True):
        if len(part) >= min_size:
            groups.append([*key, part["conv_id"].iloc[0], part["row"].tolist(), len(part)])
    return pd.DataFrame(groups, columns=cols)


def first_step_comparison(
    store: TrajectoryStore,
    features: FeatureMap,
    models: Mapping[str, SDEModel],
    dt: float,
    *,
    dims: int,
    min_size: int = 2,
    n_model: int = 1000,
    n_null: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """The LLM's true second-step distribution against each model's one-step Gaussian.

    For every :func:`first_token_groups` group (``K`` samples sharing prompt, temperature
    and first token) the ``K`` second states ``z_1`` (leading ``dims`` PCA coordinates) are
    compared with ``N(z_0 + mu(z_0, 0) dt, sigma(z_0, 0)^2 dt)`` restricted to the same
    coordinates (:func:`~sde_utils.analysis.gaussian.empirical_vs_gaussian`: Gaussian KL, its diagonal version,
    energy distance, and their null reference for a perfect model at this ``K``, ``dims``).
    Groups whose second states are all identical (the LLM was near-deterministic) have no
    sample covariance: they get a row with ``degenerate=True`` and NaN statistics.

    Returns one row per (group, model): ``group`` (index), the group keys, ``conv_id``,
    ``size``, ``model``, ``degenerate`` and the statistics. The same seed is used for all
    models of a group (common random numbers).
    """
    dims = min(check_int("dims", dims, minimum=1), features.output_dim)
    groups = first_token_groups(store.sequences, min_size=min_size)
    offsets = store.sequences["offset"].to_numpy(np.int64)
    rows = []
    for gi, g in groups.iterrows():
        first = offsets[g["rows"]]
        # the shared first state (identical rows for "input" states; equal up to float
        # rounding for hidden states computed in differently padded batches)
        z0 = features.transform(np.asarray(store.embeddings[first], dtype=np.float64))
        z0 = z0.mean(axis=0, keepdims=True)
        z1 = features.transform(np.asarray(store.embeddings[first + 1], dtype=np.float64))
        z1 = z1[:, :dims]
        base = {
            "group": int(gi),
            "prompt_index": g.get("prompt_index"),
            "temperature": g.get("temperature"),
            "first_token": int(g["first_token"]),
            "conv_id": g["conv_id"],
            "size": int(g["size"]),
        }
        degenerate = bool(np.ptp(z1, axis=0).max() == 0)
        for name, model in models.items():
            row = {**base, "model": name, "degenerate": degenerate}
            if not degenerate:
                mu, sigma = drift_diffusion_at(model, z0, 0.0)
                mean = (z0 + mu * dt)[0, :dims]
                std = (sigma * math.sqrt(dt))[0, :dims]
                row.update(
                    empirical_vs_gaussian(
                        z1, mean, std, seed=seed + int(gi), n_model=n_model, n_null=n_null
                    )
                )
            rows.append(row)
    return pd.DataFrame(rows)


def summarise_first_step(
    table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, min_groups: int = 2
) -> dict:
    """Per model: how far the true second-step samples are from the model, beyond chance.

    For each model over its non-degenerate groups: ``n_groups``, ``n_degenerate``, mean
    ``kl_gauss_diag`` / ``energy`` and the mean of their null means, the **excess**
    (statistic minus its null mean: 0 for a perfect model) as a mean with a bootstrap
    interval over conversations (:func:`mean_interval`), and ``share_p05``: the share of
    groups with null p-value <= 0.05 (about 0.05 for a perfect model).
    """
    out = {}
    if table.empty:
        return out
    for name, part in table.groupby("model", sort=False):
        ok = part.loc[~part["degenerate"]]
        res = {"n_groups": int(len(ok)), "n_degenerate": int(part["degenerate"].sum())}
        for stat in ("kl_gauss_diag", "energy"):
            if ok.empty or stat not in ok:
                res[stat] = {"mean": float("nan"), "null_mean": float("nan")}
                res[stat]["excess"] = nan_interval("no group with distinct second states")
                res[stat]["share_p05"] = float("nan")
                continue
            excess = (ok[stat] - ok[f"{stat}_null_mean"]).to_numpy(np.float64)
            res[stat] = {
                "mean": float(ok[stat].mean()),
                "null_mean": float(ok[f"{stat}_null_mean"].mean()),
                "excess": mean_interval(
                    excess,
                    ok["conv_id"].to_numpy(),
                    n_boot=n_boot,
                    seed=seed,
                    min_groups=min_groups,
                ),
                "share_p05": float((ok[f"{stat}_p"] <= 0.05).mean()),
            }
        out[str(name)] = res
    return out


__all__ = ["first_step_comparison", "first_token_groups", "summarise_first_step"]
