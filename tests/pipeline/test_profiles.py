"""Every profile in params/ validates against the notebooks' parameters cells (names and
types), as the runner checks before it executes anything; and the sharded-build command
line reads a profile as the runner does."""

from __future__ import annotations

from pathlib import Path

import pytest

from sde_utils import paths
from sde_utils.extraction.distributed import NOTEBOOK_01, NOTEBOOK_02, notebook_parameters
from sde_utils.pipeline import profiles

PROFILES = sorted(paths.PARAMS_DIR.glob("*.yaml"))
NOTEBOOKS = profiles.discover_notebooks()


def test_the_profiles_are_found():
    assert {"quick", "default", "gpu"} <= {p.stem for p in PROFILES}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_validates_against_the_notebooks(path):
    _, _, profile = profiles.load_profile(path)
    resolved = profiles.resolve_parameters(profile, NOTEBOOKS)  # RunnerError if not
    assert set(resolved) == {nb.stem for nb in NOTEBOOKS}


def test_a_bad_profile_is_rejected(tmp_path):
    # the control: an unknown name and a wrong type are both found
    bad = tmp_path / "bad.yaml"
    bad.write_text("01-extract-embeddings: {n_pairz: 3, n_pairs: 'many'}\n")
    with pytest.raises(profiles.RunnerError, match=r"unknown parameter 'n_pairz'.*\n.*n_pairs"):
        profiles.resolve_parameters(profiles.load_profile(bad)[2], NOTEBOOKS)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_the_sharded_build_reads_a_profile_as_the_runner(path):
    resolved = profiles.resolve_parameters(profiles.load_profile(path)[2], NOTEBOOKS)
    for nb in NOTEBOOKS:
        if nb.stem in (NOTEBOOK_01, NOTEBOOK_02):
            want = profiles.parameter_names(nb.path) | resolved[nb.stem]
            assert notebook_parameters(nb.stem, path) == want


@pytest.mark.parametrize("profile", ["default", "quick", "gpu"])
@pytest.mark.parametrize("explicit", [None, "/tmp/elsewhere"])
def test_the_sharded_build_writes_where_the_runner_reads(monkeypatch, profile, explicit):
    from sde_utils.extraction.distributed import output_root
    from sde_utils.pipeline.run import output_root_for

    monkeypatch.delenv("SDE_OUTPUT_ROOT", raising=False)
    want = output_root_for(profile, None if explicit is None else Path(explicit))
    assert output_root(profile, explicit) == want
    monkeypatch.setenv("SDE_OUTPUT_ROOT", "/tmp/from-env")
    assert output_root(profile, None) == output_root_for(profile) == Path("/tmp/from-env")
