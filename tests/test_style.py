"""Ruff on code and notebooks, as `make lint` runs it (the rules live in pyproject.toml)."""

import subprocess
import sys

import pytest

from sde_utils.paths import PROJ_ROOT

TARGETS = ["sde_utils", "tests", "bench", "notebooks"]


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(args):
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *args, *TARGETS],
        cwd=PROJ_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
