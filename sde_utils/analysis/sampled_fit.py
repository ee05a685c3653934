"""The SDE fitted on the LLM's own samples (notebook 02's store), judged on held-out prompts.

Notebook 08 asks whether sigma tracks the LLM's uncertainty. Fitting sigma on other text
(notebook 01's teacher-forced responses) and evaluating it on the samples mixes two
questions (does sigma transfer to other text, does it track uncertainty), so here sigma
is fitted on the samples themselves, by **cross-fitting over prompts**:

* every conversation (and so every prompt, and all ``k`` samples at every temperature of
  it) goes to one of ``n_folds`` folds (:func:`prompt_folds`, seeded);
* fold ``i``'s model is fitted (:func:`~sde_utils.models.fits.fit_all`) on the other
  folds' conversations (a seeded ``val_frac`` of them for early stopping) and evaluated
  only on fold ``i``'s, which it never saw (:func:`fold_store`: the ``split`` column
  rewritten as train / val / test; no conversation is in two splits);
* so every sample is judged by a model that never saw its prompt, and all of them count
  (a single split would leave a third or less of the prompts for the test).

Coordinates: the samples are projected to notebook 03's PCA space first
(:func:`~sde_utils.analysis.temperature.project_store`), so every fold (and every
per-temperature fit) lives in one coordinate system; each fit still standardises its
inputs, and ``sigma2`` is reported back in 03's PCA coordinates
(:func:`~sde_utils.analysis.temperature.model_space_sigma2`). :class:`ChainedFeatures`
maps model-space states straight to a fold's coordinates, so every analysis that takes a
``(store, features, model)`` runs unchanged on the raw samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from sde_utils.analysis.first_step import first_step_comparison
from sde_utils.analysis.temperature import model_space_sigma2, project_store
from sde_utils.analysis.transitions import drift_diffusion_blocks, transition_frame
from sde_utils.checks import check_fraction, check_int, check_seed
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models.features import FeatureMap
from sde_utils.models.fits import Fit, fit_all


class ChainedFeatures:
    """``second(first(x))``: model space -> 03's PCA -> a fold's standardised coordinates.

    Only ``transform`` and ``output_dim`` are provided (what the analyses call).
    """

    def __init__(self, first: FeatureMap, second: FeatureMap):
        self.first, self.second = first, second

    @property
    def output_dim(self) -> int:
        return self.second.output_dim

    def transform(self, x) -> np.ndarray:
        """``(N, D)`` model-space states -> ``(N, k)`` float64."""
        return self.second.transform(self.first.transform(np.asarray(x, dtype=np.float64)))


@dataclass
class Fold:
    """One cross-fitting fold: ``store`` (raw samples, ``split`` rewritten), its ``fit``
    (on the projected samples) and ``features`` (model space -> the fit's coordinates)."""

    index: int
    store: TrajectoryStore
    fit: Fit
    features: ChainedFeatures


def prompt_folds(sequences: pd.DataFrame, n_folds: int, seed: int) -> dict[Any, int]:
    """Conversation -> fold (``0 .. n_folds-1``), by a seeded permutation of the sorted
    ``conv_id`` values, dealt round robin (fold sizes differ by at most one)."""
    check_int("n_folds", n_folds, minimum=2)
    check_seed(seed)
    convs = np.array(sorted(sequences["conv_id"].unique(), key=str), dtype=object)
    if len(convs) < n_folds:
        raise ValueError(f"n_folds={n_folds} but the samples hold only {len(convs)} prompts")
    order = np.random.default_rng(seed).permutation(len(convs))
    return {convs[j]: i % n_folds for i, j in enumerate(order)}


def fold_store(
    store: TrajectoryStore, folds: Mapping[Any, int], index: int, val_frac: float, seed: int
) -> TrajectoryStore:
    """``store`` with ``split`` rewritten for fold ``index``: its conversations ``test``, a
    seeded ``val_frac`` of the others (at least one) ``val``, the rest ``train``.

    The split is recorded in ``meta["content_hash"]``, so
    :func:`~sde_utils.models.fits.fit_all` never reuses a fit made on another split.
    """
    check_fraction("val_frac", val_frac)
    conv = store.sequences["conv_id"]
    rest = np.array(sorted({c for c, f in folds.items() if f != index}, key=str), dtype=object)
    n_val = min(len(rest) - 1, max(1, round(val_frac * len(rest))))
    val = set(rest[np.random.default_rng(seed + 7919 * (index + 1)).permutation(len(rest))[:n_val]])
    fold = conv.map(folds).to_numpy()
    split = np.where(fold == index, "test", np.where(conv.isin(val), "val", "train"))
    seqs = store.sequences.assign(split=split)
    n = int(max(folds.values())) + 1
    tag = f"prompt-folds:{n}:{index}:{val_frac:g}:{seed}"
    meta = {**store.meta, "content_hash": f"{store.meta.get('content_hash')}|{tag}"}
    return TrajectoryStore(store.path, meta, store.embeddings, seqs)


def fit_params(base: Fit, *, epochs: int, hidden: int, patience: int, seed: int) -> dict:
    """``base``'s (notebook 03's) fit parameters for a fit on projected samples: no PCA of
    its own (``pca_dim=None``), smaller nets, a cheap evaluation."""
    return {
        **base.params,
        "seed": seed,
        "epochs": epochs,
        "hidden": hidden,
        "pca_dim": None,  # the states are already in 03's PCA coordinates
        "patience": patience,
        "horizons": [1],
        "n_paths": 2,
        "n_eval_trajectories": 8,
    }


def cross_fit(
    samples: TrajectoryStore,
    base: Fit,
    *,
    n_folds: int,
    val_frac: float,
    seed: int,
    epochs: int,
    hidden: int,
    patience: int,
) -> list[Fold]:
    """One fit per fold on ``samples`` (raw, model space) in ``base``'s PCA coordinates.

    Fits are cached by :func:`fit_all` (a rerun with the same parameters reuses them).
    """
    folds = prompt_folds(samples.sequences, n_folds, seed)
    params = fit_params(base, epochs=epochs, hidden=hidden, patience=patience, seed=seed)
    out = []
    for i in range(n_folds):
        view = fold_store(samples, folds, i, val_frac, seed)
        fit = fit_all(
            project_store(view, base.features, tag=base.path.name), params, progress=False
        )
        out.append(Fold(i, view, fit, ChainedFeatures(base.features, fit.features)))
    return out


def split_table(folds: Sequence[Fold]) -> pd.DataFrame:
    """Conversations, sequences and tokens per (fold, split); raises if a conversation is
    in two splits of one fold or in the test split of two folds."""
    rows, tested = [], {}
    for f in folds:
        seqs = f.store.sequences
        per = seqs.groupby("conv_id")["split"].nunique()
        if (per > 1).any():
            raise ValueError(
                f"fold {f.index}: conversations in two splits: {list(per[per > 1].index)}"
            )
        for c in seqs.loc[seqs["split"] == "test", "conv_id"].unique():
            if c in tested:
                raise ValueError(f"conversation {c!r} is tested in folds {tested[c]} and {f.index}")
            tested[c] = f.index
        for name, part in seqs.groupby("split"):
            rows.append(
                {
                    "fold": f.index,
                    "split": name,
                    "prompts": int(part["conv_id"].nunique()),
                    "sequences": len(part),
                    "tokens": int(part["length"].sum()),
                }
            )
    return pd.DataFrame(rows)


def held_out_tokens(folds: Sequence[Fold], base: Fit, dt: float) -> pd.DataFrame:
    """:func:`~sde_utils.analysis.transitions.transition_frame` of every fold's test
    samples under that fold's neural SDE, stacked, with ``fold``. ``sigma2`` is
    ``|sigma|^2`` in 03's PCA coordinates (comparable across folds); ``sq_increment`` is
    in 03's PCA coordinates too, ``sq_increment_model`` in model space."""
    frames = []
    for f in folds:
        test = f.store.split("test")
        frame = transition_frame(test, f.features, f.fit.sde, dt)
        x0, t0, x1 = test.transitions(None, dt=dt)
        _, sigma = drift_diffusion_blocks(f.fit.sde, f.features.transform(x0), t0)
        frame["sigma2"] = model_space_sigma2(f.fit.features, sigma)
        z0, z1 = (base.features.transform(a.astype(np.float64)) for a in (x0, x1))
        frame["sq_increment"] = ((z1 - z0) ** 2).sum(axis=1)  # 03's PCA coordinates
        frame["fold"] = f.index
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def held_out_first_step(folds: Sequence[Fold], dt: float, **kwargs) -> pd.DataFrame:
    """:func:`~sde_utils.analysis.first_step.first_step_comparison` on every fold's test
    samples with that fold's models (``kwargs``: ``dims, min_size, n_model, n_null,
    seed``), stacked; ``group`` renumbered to stay unique, ``fold`` added."""
    frames, start = [], 0
    for f in folds:
        part = first_step_comparison(f.store.split("test"), f.features, f.fit.models, dt, **kwargs)
        if len(part):
            part["group"] += start
            start = int(part["group"].max()) + 1
            part["fold"] = f.index
            frames.append(part)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def detectable_effect(
    interval: Mapping[str, Any], *, power: float = 0.8, level: float = 0.95
) -> float:
    """The smallest true effect a two-sided test at ``1 - level`` detects with ``power``,
    ``(z_{1-a/2} + z_power) * se`` (2.80 se at 95% and 80%), with the bootstrap standard
    error ``se`` of ``interval`` (from its width, ``(high - low) / (2 z_{1-a/2})``, when it
    carries none). NaN when the interval has no bounds."""
    check_fraction("power", power)
    z = NormalDist().inv_cdf((1 + level) / 2)
    se = interval.get("se")
    if se is None or not math.isfinite(float(se)):
        low, high = float(interval["low"]), float(interval["high"])
        se = (high - low) / (2 * z) if math.isfinite(low) and math.isfinite(high) else math.nan
    return float((z + NormalDist().inv_cdf(power)) * float(se))


__all__ = [
    "ChainedFeatures",
    "Fold",
    "cross_fit",
    "detectable_effect",
    "fit_params",
    "fold_store",
    "held_out_first_step",
    "held_out_tokens",
    "prompt_folds",
    "split_table",
]
