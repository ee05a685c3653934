"""Did a change move the numbers? Compare two runs' ``reports/metrics/*.json``.

A refactor must leave every recorded number where it was. This module compares the
metrics files of two output roots, key by key, and lists every difference, ignoring what
legitimately changes from run to run: wall-clock timings, absolute paths and the
record of which run wrote the file (``run``: profile and commit).

    python -m sde_utils.pipeline.compare OLD_ROOT NEW_ROOT       # two finished runs
    python -m sde_utils.pipeline.compare --ref main              # build both, then compare

With ``--ref`` it checks out ``REF`` in a temporary git worktree, runs the quick profile
there and in this checkout (each into its own scratch output root, never ``reports/``),
and compares the two. Exit status 0 when nothing moved, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sde_utils import paths

# keys whose values are timings: wall time, seconds, throughput
TIMING_KEY = re.compile(r"(^|_)(seconds|wall|elapsed|duration|timestamp|per_second|rss)($|_)")


def _is_ignored(key: str, value: Any) -> bool:
    if TIMING_KEY.search(key.lower()):
        return True
    return isinstance(value, str) and os.path.isabs(value)


def _diff(a: Any, b: Any, where: str, rtol: float) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            here = f"{where}/{key}"
            if key not in a or key not in b:
                value = a.get(key, b.get(key))
                if not _is_ignored(key, value):
                    yield f"{here}: only in {'new' if key in b else 'old'}"
            elif not (_is_ignored(key, a[key]) and _is_ignored(key, b[key])):
                yield from _diff(a[key], b[key], here, rtol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{where}: length {len(a)} -> {len(b)}"
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                yield from _diff(x, y, f"{where}[{i}]", rtol)
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if not math.isclose(a, b, rel_tol=rtol, abs_tol=0.0):
            yield f"{where}: {a!r} -> {b!r}"
    elif a != b or type(a) is not type(b):
        yield f"{where}: {a!r} -> {b!r}"


def compare_metrics(old_root: Path, new_root: Path, *, rtol: float = 0.0) -> list[str]:
    """Every difference between the metrics files of two output roots.

    ``old_root`` and ``new_root`` each hold ``reports/metrics/*.json``. Floats are equal
    when ``math.isclose(a, b, rel_tol=rtol)`` (default 0: exactly equal). Returns one line
    per difference, ``"<file>/<key path>: old -> new"``; empty when nothing moved.
    """
    old_dir, new_dir = (
        Path(old_root) / "reports" / "metrics",
        Path(new_root) / "reports" / "metrics",
    )
    for folder in (old_dir, new_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"no metrics folder at {folder}: run the notebooks there first")
    old = {p.name: p for p in old_dir.glob("*.json")}
    new = {p.name: p for p in new_dir.glob("*.json")}
    if not old:
        raise FileNotFoundError(f"{old_dir} holds no metrics file")
    out = [
        f"{name}: only in {'new' if name in new else 'old'}" for name in sorted(set(old) ^ set(new))
    ]
    for name in sorted(set(old) & set(new)):
        a, b = json.loads(old[name].read_text()), json.loads(new[name].read_text())
        for record in (a, b):  # which run wrote a file (profile, commit) is not a number
            record.pop("run", None)
        out.extend(_diff(a, b, name, rtol))
    return out


def _run_quick(checkout: Path, out_root: Path) -> None:
    """Run the quick profile of ``checkout``'s code into ``out_root``."""
    env = dict(os.environ, SDE_OUTPUT_ROOT=str(out_root), PYTHONPATH=str(checkout))
    env.pop("SDE_PROJ_ROOT", None)
    # the old checkout may predate `python -m sde_utils`; its runner module is found either way
    module = "sde_utils" if (checkout / "sde_utils" / "__main__.py").is_file() else "sde_utils.run"
    cmd = [sys.executable, "-m", module, "--profile", "quick", "--no-progress"]
    print(f"running the quick profile of {checkout} into {out_root}", flush=True)
    subprocess.run(cmd, cwd=checkout, env=env, check=True)


def compare_with_ref(ref: str, *, rtol: float = 0.0, keep: Path | None = None) -> list[str]:
    """Run the quick profile at git ``ref`` and in this checkout; compare their metrics."""
    scratch = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="sde-compare-"))
    worktree = scratch / "ref"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), ref],
        cwd=paths.PROJ_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    try:
        _run_quick(worktree, scratch / "old")
        _run_quick(paths.PROJ_ROOT, scratch / "new")
        return compare_metrics(scratch / "old", scratch / "new", rtol=rtol)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(worktree)],
            cwd=paths.PROJ_ROOT, check=False, capture_output=True,
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sde_utils.pipeline.compare",
        description="List every metric that differs between two runs (timings and paths ignored).",
        epilog="examples:\n"
        "  python -m sde_utils.pipeline.compare /tmp/before /tmp/after\n"
        "  python -m sde_utils.pipeline.compare --ref main   # quick profile at main vs here",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("roots", nargs="*", type=Path, help="OLD_ROOT NEW_ROOT (output roots)")
    parser.add_argument("--ref", help="git ref to run and compare against this checkout")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    parser.add_argument("--keep", type=Path, help="with --ref: scratch folder to keep")
    args = parser.parse_args(argv)
    if bool(args.ref) == (len(args.roots) == 2) or (not args.ref and len(args.roots) != 2):
        parser.error("give either OLD_ROOT NEW_ROOT or --ref REF")
    if args.ref:
        diffs = compare_with_ref(args.ref, rtol=args.rtol, keep=args.keep)
    else:
        diffs = compare_metrics(*args.roots, rtol=args.rtol)
    for line in diffs:
        print(line)
    print(f"{len(diffs)} difference(s)" if diffs else "no metric moved")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["compare_metrics", "compare_with_ref", "main"]
