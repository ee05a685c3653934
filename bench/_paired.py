"""Paired timing shared by the training benchmarks: the reference and ours run back to
back in every repeat, so they share the (shared) machine's load, and the ratio reported
is the median of the paired ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def paired_repeats(
    repeats: int, reference: Callable[[int], object], ours: Callable[[int], object]
) -> tuple[list[float], list[float]]:
    """Seconds of ``reference(rep)`` and of ``ours(rep)``, run back to back for
    ``rep = 0..repeats``; round 0 warms up and is discarded. Prints each repeat."""
    ref, mine = [], []
    for rep in range(repeats + 1):
        t = time.perf_counter()
        reference(rep)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours(rep)
        t_ours = time.perf_counter() - t
        if rep == 0:
            continue
        ref.append(t_ref)
        mine.append(t_ours)
        print(f"repeat {rep}: reference {t_ref:.3f} s, fit {t_ours:.3f} s")
    return ref, mine


def report_ratio(ours: list[float], ref: list[float], target: float = 1.2) -> float:
    """Print the median of the paired ratios ``ours / ref`` against ``target`` (lower is
    better) and return it."""
    ratio = statistics.median(o / r for o, r in zip(ours, ref, strict=True))
    verdict = "PASS" if ratio <= target else "FAIL"
    print(
        f"ratio ours/reference = {ratio:.2f} (median of paired repeats, target <= {target}): "
        f"{verdict}"
    )
    return ratio
