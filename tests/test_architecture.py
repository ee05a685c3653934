"""The layout's promises, checked on the source: stages import only earlier stages, no
import cycle, no private name crosses a module boundary, modules stay small, notebooks
stay thin."""

import ast
import json
from pathlib import Path

import pytest

from sde_utils.paths import PROJ_ROOT

PACKAGE = PROJ_ROOT / "sde_utils"
# a stage may import modules of its own stage and of earlier ones (0 = shared plumbing)
STAGES = {"extraction": 1, "models": 2, "theory": 3, "analysis": 4, "plots": 5, "pipeline": 6}
SCIENCE = {"extraction", "models", "theory", "analysis", "plots"}
MAX_MODULE_LINES = 500
MAX_NOTEBOOK_CODE_LINES = 150


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PROJ_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, imported names, line)`` for every sde_utils import, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "sde_utils":
                out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sde_utils":
                    out.append((alias.name, [], node.lineno))
    return out


def _target(module: str, names: list[str]) -> list[str]:
    """The sde_utils modules an import statement loads (``from pkg import mod`` loads mod)."""
    found = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return found or ([module] if module in MODULES else [])


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for module, names, _ in _imports(path):
            deps.update(t for t in _target(module, names) if t != name)
        graph[name] = deps
    return graph


def test_relative_imports_are_not_used():
    relative = [
        f"{path.relative_to(PROJ_ROOT)}:{node.lineno}"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative, f"use absolute imports (from sde_utils.x import y): {relative}"


def test_stages_import_only_earlier_stages_and_pipeline_no_science():
    bad = []
    for name, path in MODULES.items():
        stage = _stage(name)
        for module, names, line in _imports(path):
            for target in _target(module, names):
                t_stage = _stage(target)
                if t_stage is None or t_stage == stage:
                    continue
                if stage == "pipeline" and t_stage in SCIENCE:
                    bad.append(f"{name}:{line} (pipeline) imports {target}")
                elif stage and STAGES[t_stage] > STAGES[stage]:
                    bad.append(f"{name}:{line} ({stage}) imports later stage {target}")
                elif stage is None and name not in ("sde_utils", "sde_utils.__main__"):
                    bad.append(f"{name}:{line} (shared plumbing) imports stage module {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # sde_utils/__init__ loads its exports lazily by name, not by import statements
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_is_imported_across_modules():
    bad = [
        f"{name}:{line} imports {n} from {module}"
        for name, path in MODULES.items()
        for module, names, line in _imports(path)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, "\n".join(bad)


def test_the_architecture_checks_can_fail(tmp_path):
    # the control: a private cross-module import and a cycle are found in a made-up module
    code = "from sde_utils.models.train import _secret\nfrom sde_utils.pipeline.run import main\n"
    path = tmp_path / "bad.py"
    path.write_text(code)
    found = _imports(path)
    assert ("sde_utils.models.train", ["_secret"], 1) in found
    assert _target("sde_utils.pipeline", ["run"]) == ["sde_utils.pipeline.run"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_MODULE_LINES, (
        f"{name} has {n} lines; split it by concept (limit {MAX_MODULE_LINES})"
    )


def _code_lines(source: str) -> int:
    return sum(
        1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#")
    )


NOTEBOOKS = sorted((PROJ_ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    total = sum(_code_lines(s) for s in sources)
    assert total <= MAX_NOTEBOOK_CODE_LINES, f"{path.name}: {total} code lines"
    for source in sources:
        tree = ast.parse(source)
        defs = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defs, f"{path.name} defines {defs}: move them into sde_utils/"
        mpl = [
            n for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom))
            and any("matplotlib" in (a.name or "") for a in n.names) | ("matplotlib" in (getattr(n, "module", "") or ""))
        ]  # fmt: skip
        assert not mpl, f"{path.name} imports matplotlib: draw in sde_utils/plots/"
        assert "plt." not in source, f"{path.name} calls matplotlib directly: use sde_utils.plots"
