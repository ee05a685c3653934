"""The paper's captions: numbered in order, saved under the right stems, copied verbatim."""

from pathlib import Path

import pytest

from sde_utils.captions import PAPER_FIGURES

PAPER_TEXT = Path("/work/shared/paper/2408.11863.txt")  # outside the repository


def test_captions_are_numbered_in_order():
    assert [s.number for s in PAPER_FIGURES.values()] == list(range(1, 8))
    assert all(s.caption.startswith(f"Figure {s.number}:") for s in PAPER_FIGURES.values())
    assert all(s.stem.startswith(f"fig{s.number}-") for s in PAPER_FIGURES.values())


def test_captions_are_copied_verbatim():
    if not PAPER_TEXT.is_file():
        pytest.skip(f"the paper's text is not at {PAPER_TEXT} on this machine")
    paper = PAPER_TEXT.read_text()
    for spec in PAPER_FIGURES.values():
        head = spec.caption.split(". (a) ")[0]  # figure 6's sub-captions stand apart in the text
        assert head in paper, spec.stem
    assert "(a) Word Importance Based on Embedding Magnitude" in paper
