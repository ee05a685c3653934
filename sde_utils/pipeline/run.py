"""Execute the notebooks in order with papermill, from a parameter profile.

    python -m sde_utils --profile default            # every notebook -> reports/
    python -m sde_utils --profile quick              # every notebook -> runs/quick/
    python -m sde_utils --profile quick --only 03    # one notebook (after 01-02 ran there)
    python -m sde_utils --profile my.yaml --from 04  # 04 and after, your own profile

Where outputs go: the committed ``reports/`` and ``data/processed/`` belong to the
``default`` profile. Any other profile writes to ``runs/<profile>/`` (ignored by git),
so trying things never touches the committed results; ``--output-root DIR`` or the
environment variable ``SDE_OUTPUT_ROOT`` choose another root.

A profile (``params/<name>.yaml`` or a path) has a ``common:`` block and one block per
notebook, keyed by the notebook's stem (``03-train-sde``). A notebook receives the
common values it declares in its ``parameters`` cell plus its own block. Every name is
checked against the ``parameters`` cells before anything executes (papermill itself only
warns about unknown names). ``reports/run_summary.json`` records the profile, the git
commit and, per notebook, status, seconds and the parameters used; it is rewritten after
every notebook, so it survives a failure or an interrupted run. Each value's type is
checked against the default in the ``parameters`` cell before anything runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from sde_utils import paths
from sde_utils.io import atomic_write_text
from sde_utils.pipeline.profiles import (
    RunnerError,
    discover_notebooks,
    load_profile,
    resolve_parameters,
    select_notebooks,
)

KERNEL_NAME = "sde-llm"
COMMITTED_PROFILE = "default"  # the profile whose outputs are committed under reports/
RUNS_DIR = "runs"  # other profiles write to <project>/runs/<profile>/


@dataclass
class NotebookResult:
    notebook: str
    status: str  # "ok" | "failed" | "skipped"
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    error: dict[str, Any] | None = None


# --------------------------------------------------------------------------- execution


def kernel_name() -> str:
    """The venv's registered kernel when present (``make install``), else ``python3``.

    ``python3`` is ipykernel's built-in spec, which runs this same interpreter.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return KERNEL_NAME if KERNEL_NAME in specs else "python3"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths.PROJ_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=paths.PROJ_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _relative(path: Path) -> str:
    """``path`` relative to the project root when inside it (summaries travel with the repo)."""
    try:
        return str(Path(path).resolve().relative_to(paths.PROJ_ROOT))
    except ValueError:
        return str(path)


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def output_root_for(profile_name: str, explicit: Path | None = None) -> Path:
    """Where a run writes ``data/processed/`` and ``reports/``.

    ``explicit`` (``--output-root``) first, then the environment's ``SDE_OUTPUT_ROOT``;
    otherwise the project root for the committed profile (``default``) and
    ``runs/<profile>/`` for every other profile, so trying a profile never overwrites the
    committed results.
    """
    if explicit is not None:
        return Path(explicit).resolve()
    if os.environ.get("SDE_OUTPUT_ROOT"):
        return Path(os.environ["SDE_OUTPUT_ROOT"]).resolve()
    if profile_name == COMMITTED_PROFILE:
        return paths.PROJ_ROOT
    return paths.PROJ_ROOT / RUNS_DIR / profile_name


def check_writable(root: Path) -> None:
    """RunnerError unless ``root`` can be created and written (checked before any work)."""
    existing = next((p for p in [root, *root.parents] if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK) or not existing.is_dir():
        raise RunnerError(
            f"output root {root} is not writable (nearest existing folder: {existing}); "
            f"choose another with --output-root DIR or SDE_OUTPUT_ROOT"
        )


def _quiet_kernel_manager(log_path: Path):
    """A kernel manager whose kernel writes its own stderr (ipykernel's start-up and
    shutdown chatter) to ``log_path`` instead of the terminal. Cell outputs, errors
    included, still reach the notebook."""
    from jupyter_client.manager import KernelManager

    class QuietKernelManager(KernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._kernel_log = open(log_path, "ab")  # noqa: SIM115 (closed at shutdown)
            kw.setdefault("stderr", self._kernel_log)
            # no progress widgets in executed notebooks (see run_notebooks); the runner's
            # own bar lives in this process and is unaffected
            kw["env"] = {**(kw.get("env") or os.environ), "TQDM_DISABLE": "1"}
            return await super()._async_launch_kernel(kernel_cmd, **kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            log = getattr(self, "_kernel_log", None)
            if log is not None and not restart:
                log.close()

    return QuietKernelManager


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_notebooks(
    profile: str | Path,
    *,
    only: Sequence[str] = (),
    start: str | None = None,
    notebooks_dir: Path | None = None,
    output_root: Path | None = None,
    output_dir: Path | None = None,
    summary_path: Path | None = None,
    progress: bool = True,
) -> list[NotebookResult]:
    """Run the selected notebooks; raises RunnerError at the first failure.

    Outputs go under :func:`output_root_for` (executed notebooks to
    ``<root>/reports/notebooks/`` unless ``output_dir`` says otherwise). Everything is
    checked first (profile, names, types, a writable root); nothing runs on a bad
    parameter. The summary JSON is written after every notebook and on failure; the partial
    output notebook of a failed run is kept.

    Progress: the runner shows one bar per notebook (cells done) on a terminal and one
    line per notebook elsewhere; ``progress=False`` turns its bar off. Bars *inside* the
    executed notebooks are always off (``TQDM_DISABLE=1`` in the kernels): a Jupyter
    progress widget's updates are not saved, so an executed notebook would keep a frozen
    "0%" bar. Opened in Jupyter, the same notebooks show live widget bars.
    """
    notebooks_dir = Path(notebooks_dir or paths.NOTEBOOKS_DIR)
    name, profile_path, profile_data = load_profile(profile)
    everything = discover_notebooks(notebooks_dir)
    parameters = resolve_parameters(profile_data, everything)  # validates all blocks
    selected = select_notebooks(everything, only, start)
    root = output_root_for(name, output_root)
    check_writable(root)
    reports = root / "reports"
    output_dir = Path(output_dir or reports / "notebooks")
    summary_path = Path(summary_path or reports / "run_summary.json")
    logs = root / "reports" / "logs"
    # the notebooks' kernels inherit this environment: they write where the runner reads
    os.environ["SDE_OUTPUT_ROOT"] = str(root)
    commit = git_commit()
    os.environ["SDE_RUN_PROFILE"] = name
    os.environ["SDE_RUN_COMMIT"] = commit or ""
    # a live bar only on a terminal; elsewhere one plain line per notebook
    live = progress and sys.stderr.isatty()

    summary: dict[str, Any] = {
        "profile": name,
        "profile_path": _relative(profile_path),
        "output_root": _relative(root),
        "git_commit": commit,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "finished": None,
        "status": "running",
        "notebooks": [],
    }
    results = [
        NotebookResult(nb.stem, "pending", parameters=parameters[nb.stem]) for nb in selected
    ]

    def save(status: str) -> None:
        summary["status"] = status
        summary["notebooks"] = [r.__dict__ for r in results]
        if status != "running":
            summary["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _write_json_atomic(summary_path, summary)
        if status != "running":  # the run ended (ok, failed or interrupted): refresh the page
            from sde_utils.pipeline.report import try_build_report

            try_build_report(summary_path.parent, run_summary=summary_path, executed_dir=output_dir)

    if not selected:
        print(f"no notebooks to run in {notebooks_dir}")
        save("ok")
        return results

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    kernel = kernel_name()
    output_dir.mkdir(parents=True, exist_ok=True)
    save("running")
    print(f"profile {name}: {len(selected)} notebook(s) -> {root}", flush=True)
    for i, (nb, result) in enumerate(zip(selected, results, strict=True), start=1):
        out_path = output_dir / nb.path.name
        log_path = logs / f"{nb.stem}.kernel.log"
        log_path.unlink(missing_ok=True)
        result.output = _relative(out_path)
        result.status = "running"
        save("running")
        if not live:
            print(f"[{i}/{len(selected)}] {nb.stem} ...", flush=True)
        began = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb.path),
                str(out_path),
                parameters=result.parameters,
                kernel_name=kernel,
                cwd=str(nb.path.parent),
                progress_bar={"desc": f"[{i}/{len(selected)}] {nb.stem}", "leave": False}
                if live
                else False,
                kernel_manager_class=_quiet_kernel_manager(log_path),
            )
        except PapermillExecutionError as exc:
            result.seconds = round(time.perf_counter() - began, 2)
            result.status = "failed"
            source_cell = _source_cell_number(out_path, exc.cell_index)
            result.error = {
                "cell": source_cell,
                "output_cell": exc.cell_index + 1,
                "execution_count": exc.exec_count,
                "ename": exc.ename,
                "evalue": exc.evalue,
            }
            save("failed")
            raise RunnerError(
                f"notebook {nb.stem} failed in cell {source_cell} (In [{exc.exec_count}], "
                f"cell {exc.cell_index + 1} of the executed copy): {exc.ename}: {exc.evalue}\n"
                f"partial output kept at {out_path}"
            ) from None
        except BaseException as exc:  # kernel death, Ctrl-C, ...: record, then re-raise
            result.seconds = round(time.perf_counter() - began, 2)
            result.status = "failed"
            result.error = {"cell": None, "ename": type(exc).__name__, "evalue": str(exc)}
            save("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            tail = _log_tail(log_path)
            if tail:
                print(f"kernel log of {nb.stem} ({log_path}):\n{tail}", file=sys.stderr)
            raise
        result.seconds = round(time.perf_counter() - began, 2)
        result.status = "ok"
        print(f"[{i}/{len(selected)}] {nb.stem} ok in {result.seconds:.1f} s", flush=True)
        save("running")
    save("ok")
    return results


def _source_cell_number(executed: Path, cell_index: int) -> int:
    """1-based number of the failing cell in the source notebook.

    papermill inserts an ``injected-parameters`` cell into the executed copy; cells after
    it are shifted by one relative to the notebook the user edits.
    """
    try:
        cells = nbformat.read(executed, as_version=4).cells[:cell_index]
    except (OSError, ValueError):
        return cell_index + 1
    injected = sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells)
    return cell_index + 1 - injected


EPILOG = f"""\
default profile: {COMMITTED_PROFILE} (params/{COMMITTED_PROFILE}.yaml), whose outputs are the
committed reports/. Other profiles write to {RUNS_DIR}/<profile>/ unless --output-root or
SDE_OUTPUT_ROOT says otherwise.

examples:
  python -m sde_utils                                  # every notebook, default profile
  python -m sde_utils --profile quick                  # minutes; -> {RUNS_DIR}/quick/
  python -m sde_utils --profile quick --only 03        # one notebook (01-02 ran there)
  python -m sde_utils --profile default --from 04      # 04 and later
  python -m sde_utils --profile my-profile.yaml        # your own profile file
  python -m sde_utils --profile quick --output-root /tmp/try
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sde_utils",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--profile",
        default=COMMITTED_PROFILE,
        help=f"params/<NAME>.yaml or a path to a profile file (default: {COMMITTED_PROFILE})",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NN", help="run only notebook NN"
    )
    parser.add_argument("--from", dest="start", metavar="NN", help="run NN and later")
    parser.add_argument("--notebooks", type=Path, help="notebook folder (default notebooks/)")
    parser.add_argument(
        "--output-root", type=Path, help="where data/processed/ and reports/ go (see above)"
    )
    parser.add_argument(
        "--output", type=Path, help="executed notebooks (<root>/reports/notebooks/)"
    )
    parser.add_argument(
        "--summary", type=Path, help="summary JSON (<root>/reports/run_summary.json)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars anywhere")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        results = run_notebooks(
            args.profile,
            only=args.only,
            start=args.start,
            notebooks_dir=args.notebooks,
            output_root=args.output_root,
            output_dir=args.output,
            summary_path=args.summary,
            progress=not args.no_progress,
        )
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - began
    for r in results:
        print(f"  {r.notebook:<32} {r.status:<6} {r.seconds:8.1f} s")
    name = load_profile(args.profile)[0]
    summary = args.summary or output_root_for(name, args.output_root) / "reports/run_summary.json"
    print(f"done in {total:.1f} s; summary in {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
