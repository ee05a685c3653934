"""Cluster bootstrap of a Spearman correlation: ours vs a plain loop.

Data: ``--rows`` rows (default 10,000) in ``--groups`` conversations of unequal size,
``x`` with ties. Each method draws ``--boot`` (default 1000) resamples of whole groups.

* ours, vectorised: ``spearman_ci`` (weighted ranks from one sort, blocks of replicates).
* ours, generic: ``bootstrap_by_group(spearman, (x, y), groups)`` (precomputed group rows,
  one ``spearman`` call per replicate).
* reference: the textbook loop, per replicate
  ``idx = np.concatenate([rows_of[g] for g in drawn])`` and ``scipy.stats.spearmanr``.

All three draw the same groups from the same seed (numpy fills the ``(n_boot, G)`` draw
array row by row, as the loop draws it), so their intervals must agree to rounding; the
script asserts it. Repeats are interleaved and the fastest of each is compared (the machine
is shared). The last line is the ratio of the vectorised path to the reference.

Usage: ``python bench/bench_stats.py [--rows 10000] [--groups 200] [--boot 1000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as sps

from sde_utils.analysis.rank_correlation import spearman, spearman_ci
from sde_utils.analysis.stats import bootstrap_by_group

TARGET = 0.5


def reference(x, y, groups, n_boot, level, seed):
    rng = np.random.default_rng(seed)
    labels = np.unique(groups)
    rows_of = [np.flatnonzero(groups == lab) for lab in labels]
    reps = np.empty(n_boot)
    for b in range(n_boot):
        drawn = rng.integers(0, len(labels), size=len(labels))
        idx = np.concatenate([rows_of[g] for g in drawn])
        reps[b] = sps.spearmanr(x[idx], y[idx]).statistic
    low, high = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return {"estimate": sps.spearmanr(x, y).statistic, "low": low, "high": high}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    groups = rng.integers(0, args.groups, size=args.rows)
    u = rng.standard_normal(args.groups)[groups]
    x = np.round(u + rng.standard_normal(args.rows), 1)
    y = x + u + rng.standard_normal(args.rows)
    print(f"{args.rows} rows, {args.groups} groups, {args.boot} resamples")

    methods = {
        "ours (spearman_ci)": lambda: spearman_ci(x, y, groups, n_boot=args.boot, seed=1),
        "ours (bootstrap_by_group)": lambda: bootstrap_by_group(
            spearman, (x, y), groups, n_boot=args.boot, seed=1
        ),
        "reference (loop + spearmanr)": lambda: reference(x, y, groups, args.boot, 0.95, 1),
    }
    best = dict.fromkeys(methods, float("inf"))
    results = {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, res in results.items():
        print(
            f"{name:30s} {best[name]:7.3f} s   estimate {res['estimate']:.4f}  "
            f"95% [{res['low']:.4f}, {res['high']:.4f}]"
        )
    a = results["ours (spearman_ci)"]
    for other in list(results.values())[1:]:
        assert abs(a["low"] - other["low"]) < 1e-10 and abs(a["high"] - other["high"]) < 1e-10
    ratio_generic = best["ours (bootstrap_by_group)"] / best["reference (loop + spearmanr)"]
    print(f"ratio generic/reference = {ratio_generic:.2f}")
    ratio = best["ours (spearman_ci)"] / best["reference (loop + spearmanr)"]
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"ratio ours/reference = {ratio:.2f} (target <= {TARGET}): {verdict}")


if __name__ == "__main__":
    main()
