"""Tests for sde_utils.extraction.llm: loading the real default model (SmolLM2-135M-Instruct,
float32) offline, and the checked safetensors cache made from its GGUF file."""

from __future__ import annotations

import json

import pytest
import torch

from sde_utils.extraction import llm
from sde_utils.extraction.llm import (
    CACHE_META,
    DEFAULT_LLM,
    LOGIT_ATOL,
    PROBE_PROMPT,
    ModelNotAvailableError,
    load_llm,
)
from sde_utils.extraction.states import encode_pair
from sde_utils.paths import MODELS_DIR


def test_loaded_model_is_eval_float32_cpu_sdpa(lm):
    model, tokenizer = lm
    assert not model.training
    assert model.dtype == torch.float32
    assert model.config.hidden_size == 576 and model.config.num_hidden_layers == 30
    assert model.config._attn_implementation == "sdpa"
    assert tokenizer.convert_ids_to_tokens(tokenizer(" the")["input_ids"]) == ["Ġthe"]


def test_cache_records_a_passed_logit_check(lm):
    meta = json.loads((MODELS_DIR / DEFAULT_LLM / CACHE_META).read_text())
    gguf = llm.gguf_path()
    assert meta["source"]["gguf_file"] == gguf.name
    assert meta["source"]["gguf_size"] == gguf.stat().st_size
    assert meta["probe_prompt"] == PROBE_PROMPT
    assert meta["probe_max_abs_logit_diff"] <= meta["probe_logit_atol"] == LOGIT_ATOL
    assert meta["probe_same_greedy_token"] is True
    assert meta["probe_max_abs_logit"] > 1.0  # the check compared real, non-trivial logits


def test_cache_creation_is_checked_atomic_and_reused(lm, tmp_path, monkeypatch):
    """Build a cache in a scratch folder, using the loaded model in place of the GGUF one
    (the conversion and check are the same; only the 11 s GGUF read is skipped)."""
    model, tokenizer = lm
    calls = []

    def fake_gguf(path, name=DEFAULT_LLM):
        calls.append(path)
        return model, tokenizer

    monkeypatch.setattr(llm, "load_gguf", fake_gguf)
    m1, _ = load_llm(cache_dir=tmp_path)
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEFAULT_LLM]  # no temp folder left
    meta = json.loads((tmp_path / DEFAULT_LLM / CACHE_META).read_text())
    assert meta["probe_max_abs_logit_diff"] <= LOGIT_ATOL and meta["probe_same_greedy_token"]
    ids = torch.tensor([encode_pair(tokenizer, PROBE_PROMPT, "Paris.")[0]])
    with torch.inference_mode():
        # same float32 weights, same kernels: identical up to 1e-5 (exact in practice)
        assert (m1(ids).logits - model(ids).logits).abs().max() <= 1e-5

    load_llm(cache_dir=tmp_path)  # second load: from the cache
    assert len(calls) == 1

    meta["source"]["gguf_size"] += 1  # the GGUF "changed": the cache must be rebuilt
    (tmp_path / DEFAULT_LLM / CACHE_META).write_text(json.dumps(meta))
    load_llm(cache_dir=tmp_path)
    assert len(calls) == 2
    rebuilt = json.loads((tmp_path / DEFAULT_LLM / CACHE_META).read_text())
    assert rebuilt["source"]["gguf_size"] == llm.gguf_path().stat().st_size


def test_failed_check_leaves_nothing_behind(lm, tmp_path):
    model, tokenizer = lm
    dest = tmp_path / "copy"
    # atol < 0 makes the check fail whatever the difference: the failure path must leave
    # neither the destination nor a temporary folder
    with pytest.raises(RuntimeError, match="does not reproduce its logits"):
        llm.write_cache(model, tokenizer, dest, source={}, atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_load_from_local_folder(lm):
    model, _ = lm
    m2, tok2 = load_llm(str(MODELS_DIR / DEFAULT_LLM), attn_implementation="eager")
    assert m2.config._attn_implementation == "eager"
    ids = torch.tensor([encode_pair(tok2, "Hello", "")[0]])
    with torch.inference_mode():
        # eager vs sdpa attention: same math, different kernels; logits ~40 agree to 1e-4
        assert (m2(ids).logits - model(ids).logits).abs().max() <= 1e-4


@pytest.mark.parametrize(
    "name, match",
    [
        ("nonexistent-org/nonexistent-model-xyz", "not available on this machine"),
        ("/nonexistent/folder/model", "no such folder"),
        ("./no/such/model", "no such folder"),
    ],
)
def test_unavailable_model_is_a_clear_error(name, match):
    with pytest.raises(ModelNotAvailableError, match=match) as info:
        load_llm(name)
    assert name in str(info.value)
    assert isinstance(info.value, OSError)


@pytest.mark.slow
def test_cache_matches_gguf_model_on_new_prompt(lm):
    """Independent re-check against a fresh GGUF read (~15 s): logits on a prompt other
    than the probe. Same float32 weights and kernels, so within LOGIT_ATOL (exact in
    practice)."""
    model, tokenizer = lm
    gguf_model, gguf_tok = llm.load_gguf(llm.gguf_path())
    prompt_ids, response_ids = encode_pair(tokenizer, "Name a colour.", "Blue is a colour.")
    assert encode_pair(gguf_tok, "Name a colour.", "Blue is a colour.") == (
        prompt_ids,
        response_ids,
    )
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.inference_mode():
        diff = (gguf_model(ids).logits - model(ids).logits).abs().max()
    assert diff <= LOGIT_ATOL
