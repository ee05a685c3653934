"""Tests for sde_utils.extraction.states on the real default model: embedding kinds,
teacher-forced states against a direct forward pass, attention maps. Tolerances are
explained in ``llm_cases.py``; references are recomputed from float32 outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llm_cases import PROMPTS, REL, RESPONSES, direct_forward

from sde_utils.extraction.llm import load_llm
from sde_utils.extraction.sampling import sample_trajectories
from sde_utils.extraction.states import (
    attention_maps,
    check_kind,
    encode_pair,
    index_chunks,
    num_layers,
    teacher_forced_states,
)
from sde_utils.extraction.tokens import display_token

# ----------------------------------------------------------------------------- kinds


def test_check_kind_valid(lm):
    model, _ = lm
    assert check_kind(model, "input") is None
    assert check_kind(model, "hidden") == 30
    assert check_kind(model, "layer:0") == 0
    assert check_kind(model, "layer:30") == 30
    assert check_kind(model, "layer:12") == 12


@pytest.mark.parametrize(
    "kind, exc, match",
    [
        ("output", ValueError, "unknown embedding kind"),
        ("layer:", ValueError, "unknown embedding kind"),
        ("layer:x", ValueError, "unknown embedding kind"),
        ("", ValueError, "unknown embedding kind"),
        ("layer:31", ValueError, "out of range"),
        ("layer:-1", ValueError, "out of range"),
        (3, TypeError, "must be a string"),  # a wrong type is a TypeError (sde_utils.checks)
    ],
)
def test_check_kind_errors(lm, kind, exc, match):
    model, tokenizer = lm
    with pytest.raises(exc, match=match) as info:
        check_kind(model, kind)
    assert "0..30" in str(info.value)
    with pytest.raises(exc, match="0..30"):
        teacher_forced_states(model, tokenizer, ["a"], ["b"], kind=kind)
    with pytest.raises(exc, match="0..30"):
        sample_trajectories(model, tokenizer, ["a"], kind=kind, max_new_tokens=1)


def test_num_layers(lm):
    model, _ = lm
    assert num_layers(model) == model.config.num_hidden_layers == 30


# ----------------------------------------------------------------------------- teacher forcing


@pytest.mark.parametrize("kind", ["input", "hidden", "layer:0", "layer:7", "layer:30"])
def test_teacher_forced_equals_direct_forward(lm, kind):
    model, tokenizer = lm
    index = {"input": 0, "hidden": -1, "layer:0": 0, "layer:7": 7, "layer:30": 30}[kind]
    out = teacher_forced_states(
        model, tokenizer, PROMPTS[:3], RESPONSES[:3], kind=kind, batch_size=1
    )
    for prompt, response, rec in zip(PROMPTS[:3], RESPONSES[:3], out, strict=True):
        response_ids = encode_pair(tokenizer, prompt, response)[1]
        assert rec["token_ids"] == response_ids
        assert rec["tokens"] == tokenizer.convert_ids_to_tokens(response_ids)
        assert "".join(display_token(t) for t in rec["tokens"]) == response
        start, ref = direct_forward(model, tokenizer, prompt, response_ids)
        assert rec["prompt_len"] == start
        expected = ref.hidden_states[index][0, start:].numpy()
        assert rec["states"].dtype == np.float32
        assert rec["states"].shape == (len(response_ids), 576)
        # batch of one, same positions: the same computation; 1e-5 allows only a different
        # reduction order (it is exact in practice)
        assert np.abs(rec["states"] - expected).max() <= 1e-5


def test_input_kind_is_embedding_rows_without_a_forward_pass(lm):
    model, tokenizer = lm
    calls = []
    handle = model.base_model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        out = teacher_forced_states(model, tokenizer, PROMPTS, RESPONSES, kind="input")
    finally:
        handle.remove()
    assert calls == []
    weight = model.get_input_embeddings().weight.detach().numpy()
    for rec in out:
        np.testing.assert_array_equal(rec["states"], weight[rec["token_ids"]])


@pytest.mark.parametrize("kind", ["hidden", "layer:12"])
def test_batched_equals_unbatched(lm, kind):
    model, tokenizer = lm
    one = teacher_forced_states(model, tokenizer, PROMPTS, RESPONSES, kind=kind, batch_size=1)
    many = teacher_forced_states(model, tokenizer, PROMPTS, RESPONSES, kind=kind, batch_size=3)
    lengths = {len(r["token_ids"]) for r in one}
    assert len(lengths) > 2  # the batches really are padded
    for a, b in zip(one, many, strict=True):
        assert a["token_ids"] == b["token_ids"]  # input order restored after sorting
        scale = max(1.0, float(np.abs(a["states"]).max()))
        # padding changes matmul shapes and so the reduction order: rounding only (1e-4 for
        # unit-scale states, REL of the largest activation for the massive ones)
        assert np.abs(a["states"] - b["states"]).max() <= max(1e-4, REL * scale)


def test_teacher_forced_bad_inputs(lm):
    model, tokenizer = lm
    with pytest.raises(ValueError, match="same length"):
        teacher_forced_states(model, tokenizer, ["a", "b"], ["c"])
    with pytest.raises(TypeError, match="single string"):
        teacher_forced_states(model, tokenizer, "a", ["c"])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        teacher_forced_states(model, tokenizer, ["a"], ["c"], kind="hidden", batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got 2.0"):
        teacher_forced_states(model, tokenizer, ["a"], ["c"], kind="hidden", batch_size=2.0)
    with pytest.raises(TypeError, match=r"entries \[1\] are not"):
        teacher_forced_states(model, tokenizer, ["a", 3], ["c", "d"])


# ----------------------------------------------------------------------------- attention


def test_attention_maps(lm):
    model, tokenizer = lm
    tokens, w = attention_maps(model, tokenizer, PROMPTS[1], RESPONSES[1], layer=-1)
    assert model.config._attn_implementation == "sdpa"  # switched back
    n = len(encode_pair(tokenizer, PROMPTS[1], RESPONSES[1])[1])
    assert tokens == tokenizer.convert_ids_to_tokens(
        encode_pair(tokenizer, PROMPTS[1], RESPONSES[1])[1]
    )
    assert w.shape == (n, n) and w.dtype == np.float32
    assert np.all(np.triu(w, 1) == 0)  # causal
    assert np.all(w >= 0)
    # part of each row's unit mass goes to the prompt; float32 softmax sums to 1 +- 1e-6
    assert np.all(w.sum(1) <= 1 + 1e-6) and np.all(w.sum(1) > 0)

    heads = [
        attention_maps(model, tokenizer, PROMPTS[1], RESPONSES[1], layer=29, head=h)[1]
        for h in range(9)
    ]
    # mean of nine float32 maps in two summation orders: 1e-6 absolute
    np.testing.assert_allclose(np.mean(heads, axis=0), w, rtol=0, atol=1e-6)

    # against transformers' own output_attentions path with an eager model
    eager, _ = load_llm(attn_implementation="eager")
    ids = torch.tensor([sum(encode_pair(tokenizer, PROMPTS[1], RESPONSES[1]), [])])
    with torch.inference_mode():
        ref = eager(ids, output_attentions=True).attentions[5][0, 3, -n:, -n:].numpy()
    _, w5 = attention_maps(eager, tokenizer, PROMPTS[1], RESPONSES[1], layer=5, head=3)
    assert eager.config._attn_implementation == "eager"
    # the same eager computation, a forward hook instead of output_attentions: exact
    np.testing.assert_allclose(w5, ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"layer": 30}, ValueError, "layer must be an int >= -30 and <= 29, got 30"),
        ({"layer": -31}, ValueError, "layer must be an int >= -30 and <= 29, got -31"),
        ({"layer": 1.0}, TypeError, "layer must be an int"),
        ({"head": 9}, ValueError, "head must be an int >= 0 and <= 8, got 9"),
        ({"head": True}, TypeError, "head must be an int"),
    ],
)
def test_attention_maps_bad_inputs(lm, kwargs, exc, match):
    model, tokenizer = lm
    with pytest.raises(exc, match=match):
        attention_maps(model, tokenizer, "a", "b", **kwargs)


def test_index_chunks_cover_the_sequence_in_order():
    assert list(index_chunks([5, 3, 9, 1, 7], 2)) == [[5, 3], [9, 1], [7]]
    assert list(index_chunks(range(4), 4)) == [[0, 1, 2, 3]]
    assert list(index_chunks([], 3)) == []


def test_encode_pair_is_prompt_then_response_encoding(lm):
    _, tokenizer = lm
    prompt_ids, response_ids = encode_pair(tokenizer, PROMPTS[0], RESPONSES[0])
    # the chat template wraps the prompt; the response is tokenised alone, no special tokens
    assert tokenizer.decode(prompt_ids).endswith("assistant\n")
    assert PROMPTS[0] in tokenizer.decode(prompt_ids)
    assert tokenizer.decode(response_ids) == RESPONSES[0]
