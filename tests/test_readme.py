"""The README's parameter examples are valid: the runner profile resolves against the real
notebooks, and the flat papermill file names real parameters of notebook 03 with the
types their defaults have."""

import re

import yaml

from sde_utils.paths import NOTEBOOKS_DIR, PROJ_ROOT
from sde_utils.pipeline.profiles import (
    discover_notebooks,
    load_profile,
    parameter_names,
    resolve_parameters,
    type_problem,
)

README = (PROJ_ROOT / "README.md").read_text()
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


def _block(title: str) -> str:
    found = [b for b in YAML_BLOCKS if b.startswith(f"# {title}")]
    assert len(found) == 1, f"README should hold one YAML example starting '# {title}'"
    return found[0]


def test_profile_example_resolves_against_the_notebooks(tmp_path):
    path = tmp_path / "my-profile.yaml"
    path.write_text(_block("my-profile.yaml"))
    _, _, profile = load_profile(path)
    resolved = resolve_parameters(profile, discover_notebooks(NOTEBOOKS_DIR))
    assert (
        resolved["03-train-sde"]["epochs"] == 40 and resolved["01-extract-embeddings"]["seed"] == 1
    )


def test_flat_papermill_example_names_real_parameters_with_their_types():
    values = yaml.safe_load(_block("03-params.yaml"))
    declared = parameter_names(NOTEBOOKS_DIR / "03-train-sde.ipynb")
    assert set(values) <= set(declared)
    assert all(type_problem(k, v, declared[k]) is None for k, v in values.items())
    # the control: the profile format is not a flat parameter file for papermill
    profile = yaml.safe_load(_block("my-profile.yaml"))
    assert not set(profile) <= set(declared)
