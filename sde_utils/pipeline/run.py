"""Execute the notebooks in order with papermill, from a parameter profile.

    python -m sde_utils.pipeline.run --profile default            # every notebook
    python -m sde_utils.pipeline.run --profile quick --only 03    # one notebook
    python -m sde_utils.pipeline.run --profile my.yaml --from 04  # 04 and after

A profile (``params/<name>.yaml`` or a path) has a ``common:`` block and one block per
notebook, keyed by the notebook's stem (``03-train-sde``). A notebook receives the
common values it declares in its ``parameters`` cell plus its own block. Every name is
checked against the ``parameters`` cells before anything executes (papermill itself only
warns about unknown names). ``reports/run_summary.json`` records the profile, the git
commit and, per notebook, status, seconds and the parameters used; it is rewritten after
every notebook, so it survives a failure or an interrupted run.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from sde_utils import paths
from sde_utils.io import atomic_write_text

NOTEBOOK_PATTERN = re.compile(r"^(\d{2})-[\w-]+\.ipynb$")
KERNEL_NAME = "sde-llm"


class RunnerError(Exception):
    """A problem found before or while running notebooks; the message says what to fix."""


@dataclass(frozen=True)
class Notebook:
    number: str  # "03"
    path: Path

    @property
    def stem(self) -> str:  # "03-train-sde"
        return self.path.stem


@dataclass
class NotebookResult:
    notebook: str
    status: str  # "ok" | "failed" | "skipped"
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    error: dict[str, Any] | None = None


# --------------------------------------------------------------------------- discovery


def discover_notebooks(folder: Path = paths.NOTEBOOKS_DIR) -> list[Notebook]:
    """``NN-name.ipynb`` files of ``folder`` in number order (other files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunnerError(f"notebook folder {folder} does not exist")
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        match = NOTEBOOK_PATTERN.match(path.name)
        if match:
            found.append(Notebook(match.group(1), path))
    numbers = [nb.number for nb in found]
    duplicated = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicated:
        raise RunnerError(f"two notebooks share the number(s) {duplicated} in {folder}")
    return found


def select_notebooks(
    notebooks: Sequence[Notebook], only: Sequence[str] = (), start: str | None = None
) -> list[Notebook]:
    """Filter by ``--only NN`` (repeatable) and ``--from NN``; unknown numbers are errors."""
    available = [nb.number for nb in notebooks]
    wanted = [_normalise_number(n) for n in only]
    start = _normalise_number(start) if start is not None else None
    for number in [*wanted, *([start] if start else [])]:
        if number not in available:
            raise RunnerError(f"no notebook numbered {number}; available: {available}")
    selected = [nb for nb in notebooks if not wanted or nb.number in wanted]
    if start is not None:
        selected = [nb for nb in selected if nb.number >= start]
    return selected


def _normalise_number(value: str | int) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise RunnerError(f"notebook numbers are like 03, got {value!r}")
    return f"{int(text):02d}"


# --------------------------------------------------------------------------- parameters


def parameter_names(notebook_path: Path) -> dict[str, Any]:
    """Names assigned in the notebook's cell tagged ``parameters``, with their defaults.

    Defaults are the literal values where the right-hand side is a literal, else None.
    """
    nb = nbformat.read(notebook_path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RunnerError(
            f"{notebook_path.name}: expected exactly one cell tagged 'parameters', "
            f"found {len(cells)}"
        )
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as exc:
        raise RunnerError(f"{notebook_path.name}: parameters cell does not parse: {exc}") from exc
    names: dict[str, Any] = {}
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    names[target.id] = ast.literal_eval(value)
                except ValueError:
                    names[target.id] = None
    return names


def load_profile(profile: str | Path) -> tuple[str, Path, dict[str, Any]]:
    """Read ``params/<profile>.yaml`` or a YAML path: (name, path, mapping)."""
    candidate = Path(profile)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        path = candidate
    else:
        path = paths.PARAMS_DIR / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in paths.PARAMS_DIR.glob("*.yaml"))
        raise RunnerError(f"profile {profile!r} not found (looked for {path}); known: {known}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RunnerError(f"profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise RunnerError(f"profile {path} must be a mapping, got {type(data).__name__}")
    for key, block in data.items():
        if block is not None and not isinstance(block, Mapping):
            raise RunnerError(f"profile {path}: block {key!r} must be a mapping of parameters")
    return path.stem, path, {k: dict(v or {}) for k, v in data.items()}


def resolve_parameters(
    profile: Mapping[str, Mapping[str, Any]], notebooks: Sequence[Notebook]
) -> dict[str, dict[str, Any]]:
    """Parameters per notebook stem; every name is checked before anything runs.

    Raises RunnerError naming the notebook, the unknown name and the allowed names.
    """
    declared = {nb.stem: parameter_names(nb.path) for nb in notebooks}
    common = dict(profile.get("common", {}))
    problems = []
    stems = set(declared)
    for key in profile:
        if key != "common" and key not in stems:
            problems.append(
                f"profile block {key!r} matches no notebook; notebooks: {sorted(stems)}"
            )
    all_declared = set().union(*declared.values()) if declared else set()
    for name in common:
        if declared and name not in all_declared:
            problems.append(f"common parameter {name!r} is declared by no notebook")
    resolved = {}
    for stem, names in declared.items():
        own = dict(profile.get(stem, {}))
        for name in own:
            if name not in names:
                problems.append(f"{stem}: unknown parameter {name!r}; allowed: {sorted(names)}")
        resolved[stem] = {k: v for k, v in common.items() if k in names} | own
    if problems:
        raise RunnerError("bad parameters, nothing was executed:\n  " + "\n  ".join(problems))
    return resolved


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


def run_notebooks(
    profile: str | Path,
    *,
    only: Sequence[str] = (),
    start: str | None = None,
    notebooks_dir: Path | None = None,
    output_dir: Path | None = None,
    summary_path: Path | None = None,
    progress: bool = True,
) -> list[NotebookResult]:
    """Run the selected notebooks; raises RunnerError at the first failure.

    The summary JSON is written after every notebook and on failure; the partial output
    notebook of a failed run is kept in ``output_dir``.
    """
    from tqdm.auto import tqdm

    notebooks_dir = Path(notebooks_dir or paths.NOTEBOOKS_DIR)
    output_dir = Path(output_dir or paths.REPORT_NOTEBOOKS_DIR)
    summary_path = Path(summary_path or paths.RUN_SUMMARY)

    name, profile_path, profile_data = load_profile(profile)
    everything = discover_notebooks(notebooks_dir)
    parameters = resolve_parameters(profile_data, everything)  # validates all blocks
    selected = select_notebooks(everything, only, start)

    summary: dict[str, Any] = {
        "profile": name,
        "profile_path": _relative(profile_path),
        "git_commit": git_commit(),
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
    bar = tqdm(selected, desc=f"profile {name}", unit="notebook", disable=not progress)
    for nb, result in zip(bar, results, strict=True):
        bar.set_postfix_str(nb.stem)
        out_path = output_dir / nb.path.name
        result.output = _relative(out_path)
        result.status = "running"
        save("running")
        began = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb.path),
                str(out_path),
                parameters=result.parameters,
                kernel_name=kernel,
                cwd=str(nb.path.parent),
                progress_bar={"desc": f"  {nb.stem}", "leave": False} if progress else False,
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
            bar.close()
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
            bar.close()
            raise
        result.seconds = round(time.perf_counter() - began, 2)
        result.status = "ok"
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sde_utils.pipeline.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--profile", default="default", help="params/<NAME>.yaml or a path")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NN", help="run only notebook NN"
    )
    parser.add_argument("--from", dest="start", metavar="NN", help="run NN and later")
    parser.add_argument("--notebooks", type=Path, help="notebook folder (default notebooks/)")
    parser.add_argument("--output", type=Path, help="executed notebooks (reports/notebooks/)")
    parser.add_argument("--summary", type=Path, help="summary JSON (reports/run_summary.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        results = run_notebooks(
            args.profile,
            only=args.only,
            start=args.start,
            notebooks_dir=args.notebooks,
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
    print(f"done in {total:.1f} s; summary in {args.summary or paths.RUN_SUMMARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
