"""95% conversation-bootstrap intervals of the numbers notebook 07 records under figures 2-4.

Every statistic there is a mean or a ratio of sums over held-out responses, so a replicate
is the same formula with each response weighted by how often its conversation is drawn
(:class:`~sde_utils.analysis.stats.GroupIndex`; percentile intervals from
:func:`~sde_utils.analysis.stats.interval_summary`). ``groups (n,)`` labels each held-out
response with its conversation; None treats every response as its own conversation. With
fewer than two conversations an interval has NaN bounds and says why
(:func:`~sde_utils.analysis.intervals.nan_interval`). Intervals are dicts ``{"estimate",
"low", "high", ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sde_utils.analysis.intervals import as_interval, nan_interval
from sde_utils.analysis.stats import GroupIndex, bootstrap_settings, interval_summary


def response_groups(groups, n: int) -> np.ndarray:
    """``groups`` as an ``(n,)`` array, or ``0..n-1`` (every response its own group)."""
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups must hold one label per held-out response ({n}), got {g.shape}")
    return g


def row_groups(groups, lengths: Sequence[int]) -> np.ndarray:
    """Each response's label repeated over its ``lengths[i]`` rows (states, steps)."""
    return np.repeat(np.asarray(groups), np.asarray(lengths, dtype=np.int64))


def _early_late(horizon: int) -> tuple[slice, slice]:
    """Steps 1-3 and the last three (as :func:`figure2_record` averages them)."""
    return slice(1, min(4, horizon + 1)), slice(max(0, horizon - 2), horizon + 1)


def agreement_intervals(
    predicted: np.ndarray, actual: np.ndarray, groups, *, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Intervals of figure 2's ``skill_step1``, ``skill_early``, ``skill_late``,
    ``corr_early`` and ``corr_late`` from the drift paths ``predicted`` and the held-out
    states ``actual``, both ``(n, H + 1, d)``: skill ``1 - sum w ||p - a||^2 / sum w ||a||^2``
    per step, correlation pooled over responses and coordinates, each response weighted by
    its conversation's draw count ``w``."""
    n, steps, d = actual.shape
    horizon = steps - 1
    g = response_groups(groups, n)
    level, n_boot, rng = bootstrap_settings(0.95, n_boot, seed)
    if len(np.unique(g)) < 2:
        why = f"{len(np.unique(g))} conversation(s) (need >= 2 for a group bootstrap)"
        keys = ("skill_step1", "skill_early", "skill_late", "corr_early", "corr_late")
        return {k: nan_interval(why, n, len(np.unique(g))) for k in keys}
    grp = GroupIndex(g, n)
    w = np.vstack([np.ones(grp.n_groups), grp.counts(grp.draws(n_boot, rng))])[:, grp.inv]
    err2, m2 = ((predicted - actual) ** 2).sum(-1), (actual**2).sum(-1)  # (n, H + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        skill = 1.0 - (w @ err2) / (w @ m2)  # (B + 1, H + 1)
        sums = {
            key: w @ v.sum(-1)
            for key, v in (
                ("p", predicted),
                ("a", actual),
                ("pp", predicted**2),
                ("aa", actual**2),
                ("pa", predicted * actual),
            )
        }
        count = w.sum(1, keepdims=True) * d
        cov = count * sums["pa"] - sums["p"] * sums["a"]
        var = (count * sums["pp"] - sums["p"] ** 2) * (count * sums["aa"] - sums["a"] ** 2)
        corr = np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
    early, late = _early_late(horizon)
    stats = {
        "skill_step1": skill[:, 1],
        "skill_early": skill[:, early].mean(1),
        "skill_late": skill[:, late].mean(1),
        "corr_early": corr[:, early].mean(1),
        "corr_late": corr[:, late].mean(1),
    }
    return {
        k: as_interval(interval_summary(v[0], v[1:], level, grp.n_groups, n))
        for k, v in stats.items()
    }


def interval_text(intervals: Mapping[str, Mapping], labels: Mapping[str, str], fmt: str) -> str:
    """``"label est [low, high]; ..."`` for the keys of ``labels`` (``fmt`` a format spec
    such as ``".0%"``), e.g. for a finding's closing sentence."""
    parts = []
    for key, label in labels.items():
        iv = intervals[key]
        parts.append(f"{label} {iv['estimate']:{fmt}} [{iv['low']:{fmt}}, {iv['high']:{fmt}}]")
    return "; ".join(parts)


# what each finding's closing sentence quotes: (labels of interval keys, number format)
FIG2_TEXT = (
    (
        {"skill_step1": "skill at step 1", "skill_early": "steps 1-3", "skill_late": "last three"},
        ".0%",
    ),
    ({"corr_early": "correlation steps 1-3", "corr_late": "last three"}, ".2f"),
)
FIG3_TEXT = (
    (
        {
            "closer_than_current": "closer than the current state",
            "closer_than_mean": "than the mean",
            "decoded_is_next_token": "decodes to the next token",
            "roundtrip_is_next_token": "round trip",
        },
        ".1%",
    ),
)
FIG4_TEXT = (
    ({"toward_mean_share": "share toward the mean", "toward_mean_cos": "cosine"}, ".2f"),
    (
        {
            "sigma_position_spearman": "σ-position correlation",
            "sigma_first5_mean": "|σ| first five",
            "sigma_rest_mean": "after",
        },
        ".3g",
    ),
)


def closing_sentence(intervals: Mapping[str, Mapping], parts) -> str:
    """``" 95% conversation-bootstrap intervals: ...."`` quoting ``parts`` (pairs of labels
    and format, e.g. :data:`FIG2_TEXT`) with :func:`interval_text`."""
    body = "; ".join(interval_text(intervals, labels, fmt) for labels, fmt in parts)
    return f" 95% conversation-bootstrap intervals: {body}."


__all__ = [
    "FIG2_TEXT",
    "FIG3_TEXT",
    "FIG4_TEXT",
    "closing_sentence",
    "agreement_intervals",
    "interval_text",
    "response_groups",
    "row_groups",
]
