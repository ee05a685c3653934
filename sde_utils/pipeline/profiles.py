"""Notebooks, profiles and parameters: what a run will execute, checked before it runs.

- :func:`discover_notebooks` / :func:`select_notebooks`: ``NN-name.ipynb`` in order;
- :func:`parameter_names`: the names and literal defaults of a notebook's ``parameters`` cell;
- :func:`load_profile` / :func:`resolve_parameters`: a profile's values per notebook, every
  name and every type checked against the ``parameters`` cells (papermill only warns).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from sde_utils import paths

NOTEBOOK_PATTERN = re.compile(r"^(\d{2})-[\w-]+\.ipynb$")


class RunnerError(Exception):
    """A problem found before or while running notebooks; the message says what to fix."""


@dataclass(frozen=True)
class Notebook:
    number: str  # "03"
    path: Path

    @property
    def stem(self) -> str:  # "03-train-sde"
        return self.path.stem


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


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def type_problem(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace the parameters cell's ``default``, or None if it can.

    The default's type decides: a bool takes a bool, an int an int (not a bool), a float an
    int or a float, a str a str, a list or tuple a list, a dict a dict. A default of None
    (or one that is not a literal) accepts anything, and None is accepted wherever the
    default is None.
    """
    if default is None:
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if ok:
        return None
    wanted = _TYPE_NAMES.get(type(default), type(default).__name__)
    if isinstance(default, (list, tuple)):
        wanted = "list"
    return (
        f"{name} must be {'an' if wanted[0] in 'aeiou' else 'a'} {wanted} like its default {default!r}, got {value!r} "
        f"({type(value).__name__})"
    )


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
    folder = notebooks[0].path.parent if notebooks else paths.NOTEBOOKS_DIR
    for key in profile:
        if key != "common" and key not in stems:
            if NOTEBOOK_PATTERN.match(f"{key}.ipynb"):
                problems.append(
                    f"profile block {key!r}: notebook file {folder / (key + '.ipynb')} does "
                    f"not exist; notebooks: {sorted(stems)}"
                )
            else:
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
        for name, value in resolved[stem].items():
            if name in names:
                problem = type_problem(name, value, names[name])
                if problem:
                    problems.append(f"{stem}: {problem}")
    if problems:
        raise RunnerError("bad parameters, nothing was executed:\n  " + "\n  ".join(problems))
    return resolved


__all__ = [
    "NOTEBOOK_PATTERN",
    "RunnerError",
    "Notebook",
    "discover_notebooks",
    "select_notebooks",
    "parameter_names",
    "load_profile",
    "type_problem",
    "resolve_parameters",
]
