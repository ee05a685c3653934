"""Verdicts: a claim decided by its interval (notebooks 08 and the report).

:func:`verdict` maps an interval and a threshold to "reproduced", "not reproduced" or
"mixed"; :func:`verdict_row` is one row of notebook 08's verdict table, which says
:data:`INSUFFICIENT` when there was too little data for an interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sde_utils.checks import check_choice

INSUFFICIENT = "insufficient data"
VERDICTS = ("reproduced", "not reproduced", "mixed")


def verdict(value_low_high, threshold: float = 0.0, direction: str = "greater") -> str:
    """Map an interval to ``"reproduced"``, ``"not reproduced"`` or ``"mixed"``.

    Args:
        value_low_high: ``(value, low, high)``, ``(low, high)``, or a mapping with keys
            ``"low"`` and ``"high"`` (e.g. a dict from :func:`bootstrap_by_group`).
        threshold: the value the claim is compared with (0 for "positive correlation").
        direction: ``"greater"`` (the claim is "above threshold") or ``"less"``.

    Rule: the interval entirely on the claimed side (``low > threshold`` for "greater",
    ``high < threshold`` for "less") -> reproduced; entirely on the other side
    (``high < threshold``, resp. ``low > threshold``) -> not reproduced; otherwise (it
    contains the threshold, endpoints included) -> mixed. NaN bounds raise ValueError.
    """
    check_choice("direction", direction, ("greater", "less"))
    if isinstance(value_low_high, Mapping):
        low, high = value_low_high["low"], value_low_high["high"]
    elif isinstance(value_low_high, Sequence | np.ndarray) and len(value_low_high) in (2, 3):
        low, high = value_low_high[-2], value_low_high[-1]
    else:
        raise TypeError(
            "value_low_high must be (value, low, high), (low, high) or a mapping with 'low' "
            f"and 'high', got {value_low_high!r}"
        )
    low, high, threshold = float(low), float(high), float(threshold)
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(threshold)):
        raise ValueError(f"verdict needs finite bounds, got low={low}, high={high}")
    if low > high:
        raise ValueError(f"low must be <= high, got low={low}, high={high}")
    above, below = low > threshold, high < threshold
    if direction == "less":
        above, below = below, above
    return "reproduced" if above else ("not reproduced" if below else "mixed")


def verdict_row(
    claim: str,
    section: str,
    statistic: str,
    interval: Mapping[str, Any],
    *,
    threshold: float = 0.0,
    direction: str = "greater",
    numbers: str = "",
) -> dict:
    """One row of the verdict table: the claim, its interval and :func:`verdict`.

    The verdict is :data:`INSUFFICIENT` when a bound is NaN (too little data); otherwise
    ``verdict((low, high), threshold, direction)``: reproduced when the interval lies
    entirely on the claimed side of ``threshold``, not reproduced when entirely on the
    other side, mixed when it contains ``threshold``.
    """
    low, high = float(interval["low"]), float(interval["high"])
    if math.isfinite(low) and math.isfinite(high):
        result = verdict((low, high), threshold=threshold, direction=direction)
    else:
        result = INSUFFICIENT
    return {
        "claim": claim,
        "section": section,
        "statistic": statistic,
        "estimate": float(interval["estimate"]),
        "low": low,
        "high": high,
        "threshold": float(threshold),
        "direction": direction,
        "verdict": result,
        "numbers": numbers,
    }


__all__ = ["INSUFFICIENT", "VERDICTS", "verdict", "verdict_row"]
