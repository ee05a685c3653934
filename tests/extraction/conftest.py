"""Shared fixture of the extraction tests: the real default model, loaded once per session.

The model is loaded from the real cache under ``MODELS_DIR`` (created from the GGUF on the
first run, ~20 s; later runs load it in well under a second).
"""

from __future__ import annotations

import pytest
import torch

from sde_utils.extraction.llm import load_llm


@pytest.fixture(scope="session")
def lm():
    torch.manual_seed(0)
    model, tokenizer = load_llm()
    return model, tokenizer
