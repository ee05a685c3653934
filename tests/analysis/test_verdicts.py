"""Tests for sde_utils.analysis.verdicts: the interval rule and the verdict-table row."""

from __future__ import annotations

import pytest

from sde_utils.analysis.verdicts import INSUFFICIENT, verdict, verdict_row


def test_verdict_rules():
    assert verdict((0.3, 0.1, 0.5)) == "reproduced"
    assert verdict((-0.3, -0.5, -0.1)) == "not reproduced"
    assert verdict((0.1, -0.1, 0.3)) == "mixed"
    assert verdict((0.2, 0.0, 0.4)) == "mixed"  # touching the threshold is not "entirely"
    assert verdict((0.1, 0.3), threshold=0.2) == "mixed"
    assert verdict({"low": -2.0, "high": -1.0}, direction="less") == "reproduced"
    assert verdict({"low": 1.0, "high": 2.0}, direction="less") == "not reproduced"
    assert verdict((1.5, 1.0, 2.0), threshold=1.0, direction="less") == "mixed"
    with pytest.raises(ValueError, match="direction"):
        verdict((0, 1), direction="above")
    with pytest.raises(ValueError, match="finite"):
        verdict((float("nan"), 1.0))
    with pytest.raises(ValueError, match="low must be <= high"):
        verdict((1.0, 0.0))
    with pytest.raises(TypeError):
        verdict(0.5)


@pytest.mark.parametrize(
    ("low", "high", "direction", "want"),
    [
        (0.1, 0.3, "greater", "reproduced"),
        (-0.3, -0.1, "greater", "not reproduced"),
        (-0.1, 0.2, "greater", "mixed"),
        (-0.3, -0.1, "less", "reproduced"),
        (float("nan"), 0.2, "greater", INSUFFICIENT),
    ],
)
def test_verdict_row_follows_stats_verdict(low, high, direction, want):
    row = verdict_row(
        "claim", "4.2", "stat", {"estimate": 0.0, "low": low, "high": high}, direction=direction
    )
    assert row["verdict"] == want
    assert row["direction"] == direction and row["threshold"] == 0.0
