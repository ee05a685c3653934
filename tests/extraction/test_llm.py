"""Tests for sde_utils.extraction.llm on the real default model (SmolLM2-135M-Instruct, float32).

The model is loaded once per session from the real cache under ``MODELS_DIR`` (created
from the GGUF on the first run, ~20 s; later runs load it in well under a second). The
LLM computes in float32; references are recomputed from its float32 outputs in float64.

Tolerances, once: the same float32 computation run through different kernel shapes
(a batch of one vs a padded batch, a KV-cached single-token step vs a full-sequence pass)
rounds differently. Llama-style residual streams carry a few "massive" activations (|x| up
to a few hundred in middle layers), so differences are bounded relative to the largest
magnitude of the state compared: ``REL`` = 2e-5 of it (~170 float32 ulps of that value,
room for rounding accumulated over up to 30 blocks). Identical computations must agree to
1e-5 absolute (in practice they agree exactly).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sde_utils.extraction import llm
from sde_utils.extraction.llm import (
    CACHE_META,
    DEFAULT_LLM,
    LOGIT_ATOL,
    PROBE_PROMPT,
    ModelNotAvailableError,
    attention_maps,
    check_kind,
    display_token,
    encode_pair,
    load_llm,
    nearest_tokens,
    sample_trajectories,
    teacher_forced_states,
)
from sde_utils.paths import MODELS_DIR

REL = 2e-5  # relative (to max |state|) tolerance for differently-shaped kernels, see above

PROMPTS = [
    "Tell me a joke.",
    "Explain gravity to a child in two short sentences, please.",
    "Hi",
    "List three prime numbers.",
    "What does a compiler do? Keep it brief.",
]
RESPONSES = [
    "Why did the chicken cross the road? To get to the other side!",
    "Gravity pulls things down.\nThat's why apples fall from trees.",
    "Hello! How can I help you today?",
    "2, 3 and 5.",
    "A compiler translates source code written by people into machine code that a "
    "processor can run, checking it for errors along the way.",
]


@pytest.fixture(scope="session")
def lm():
    torch.manual_seed(0)
    model, tokenizer = load_llm()
    return model, tokenizer


def direct_forward(model, tokenizer, prompt, token_ids):
    """One unbatched forward pass of chat(prompt) + token_ids through the full causal LM."""
    prompt_ids = encode_pair(tokenizer, prompt, "")[0]
    ids = torch.tensor([prompt_ids + list(token_ids)])
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
    return len(prompt_ids), out


# ----------------------------------------------------------------------------- loading


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

    def fake_gguf(path):
        calls.append(path)
        return model, tokenizer

    monkeypatch.setattr(llm, "_load_gguf", fake_gguf)
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
        llm._write_cache(model, tokenizer, dest, source={}, atol=-1.0)
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
    gguf_model, gguf_tok = llm._load_gguf(llm.gguf_path())
    prompt_ids, response_ids = encode_pair(tokenizer, "Name a colour.", "Blue is a colour.")
    assert encode_pair(gguf_tok, "Name a colour.", "Blue is a colour.") == (
        prompt_ids,
        response_ids,
    )
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.inference_mode():
        diff = (gguf_model(ids).logits - model(ids).logits).abs().max()
    assert diff <= LOGIT_ATOL


# ----------------------------------------------------------------------------- kinds


def test_check_kind_valid(lm):
    model, _ = lm
    assert check_kind(model, "input") is None
    assert check_kind(model, "hidden") == 30
    assert check_kind(model, "layer:0") == 0
    assert check_kind(model, "layer:30") == 30
    assert check_kind(model, "layer:12") == 12


@pytest.mark.parametrize(
    "kind, match",
    [
        ("output", "unknown embedding kind"),
        ("layer:", "unknown embedding kind"),
        ("layer:x", "unknown embedding kind"),
        ("", "unknown embedding kind"),
        ("layer:31", "out of range"),
        ("layer:-1", "out of range"),
        (3, "must be a string"),
    ],
)
def test_check_kind_errors(lm, kind, match):
    model, tokenizer = lm
    with pytest.raises(ValueError, match=match) as info:
        check_kind(model, kind)
    assert "0..30" in str(info.value)
    with pytest.raises(ValueError, match="0..30"):
        teacher_forced_states(model, tokenizer, ["a"], ["b"], kind=kind)
    with pytest.raises(ValueError, match="0..30"):
        sample_trajectories(model, tokenizer, ["a"], kind=kind, max_new_tokens=1)


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
    with pytest.raises(ValueError, match="batch_size"):
        teacher_forced_states(model, tokenizer, ["a"], ["c"], kind="hidden", batch_size=0)


# ----------------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def samples(lm):
    model, tokenizer = lm
    return sample_trajectories(
        model, tokenizer, PROMPTS[:2], k=2, temperatures=(0.7, 1.3), max_new_tokens=12, seed=3
    )


def test_sampling_shapes_and_ranges(lm, samples):
    model, tokenizer = lm
    assert len(samples) == 2 * 2 * 2
    keys = [(r["prompt_index"], r["temperature"], r["sample_index"]) for r in samples]
    assert keys == [(p, t, s) for p in range(2) for t in (0.7, 1.3) for s in range(2)]
    log_v = math.log(model.config.vocab_size)
    for r in samples:
        n = len(r["token_ids"])
        assert 1 <= n <= 12
        assert r["prompt"] == PROMPTS[r["prompt_index"]]
        assert r["states"].shape == (n, 576) and r["states"].dtype == np.float32
        assert r["entropy"].shape == (n,) and r["logprob"].shape == (n,)
        assert np.all(r["entropy"] >= 0) and np.all(r["entropy"] <= log_v)
        assert np.all(r["logprob"] <= 0)
        assert np.all(np.isfinite(r["logprob"]))
        assert r["tokens"] == tokenizer.convert_ids_to_tokens(r["token_ids"])
        assert r["text"] == tokenizer.decode(r["token_ids"], skip_special_tokens=True)
        assert tokenizer.eos_token_id not in r["token_ids"]


@pytest.mark.parametrize("kind", ["hidden", "layer:9", "input"])
def test_sampled_steps_match_a_full_forward_pass(lm, kind):
    """State, entropy and log-prob of every step, recomputed from one unbatched forward pass
    of prompt + sampled tokens."""
    model, tokenizer = lm
    out = sample_trajectories(
        model,
        tokenizer,
        ["Say hi.", "Answer with one word: what colour is the sky?", "Tell me a joke."],
        k=2,
        temperatures=(0.7,),
        max_new_tokens=10,
        kind=kind,
        seed=1,
        batch_size=4,  # mixes prompts of different lengths: left padding is exercised
    )
    # with this seed some rows end at EOS while others in their batch go on, so the
    # shrinking of the batch (and of its KV cache) is exercised too
    assert min(len(r["token_ids"]) for r in out) < 10 == max(len(r["token_ids"]) for r in out)
    index = {"input": 0, "hidden": -1, "layer:9": 9}[kind]
    for r in out:
        start, ref = direct_forward(model, tokenizer, r["prompt"], r["token_ids"])
        n = len(r["token_ids"])
        expected = ref.hidden_states[index][0, start:].numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        # KV-cached single-token steps vs one full pass: rounding only (see module doc)
        assert np.abs(r["states"] - expected).max() <= REL * scale
        logp = torch.log_softmax(
            ref.logits[0, start - 1 : start - 1 + n].double() / r["temperature"], -1
        )
        entropy = -(logp.exp() * logp).sum(-1).numpy()
        chosen = logp.gather(-1, torch.tensor(r["token_ids"])[:, None])[:, 0].numpy()
        # logits (|z| <= ~40) agree to ~1e-5 across the two paths; divided by T >= 0.7 and
        # passed through log-softmax that stays below 1e-4
        np.testing.assert_allclose(r["entropy"], entropy, rtol=0, atol=1e-4)
        np.testing.assert_allclose(r["logprob"], chosen, rtol=0, atol=1e-4)


def test_sampling_is_seeded_and_independent_of_other_prompts(lm, samples):
    model, tokenizer = lm
    kwargs = dict(k=2, temperatures=(0.7, 1.3), max_new_tokens=12)
    again = sample_trajectories(model, tokenizer, PROMPTS[:2], seed=3, **kwargs)
    for a, b in zip(samples, again, strict=True):
        assert a["token_ids"] == b["token_ids"]
        np.testing.assert_array_equal(a["states"], b["states"])
        np.testing.assert_array_equal(a["entropy"], b["entropy"])
    other = sample_trajectories(model, tokenizer, PROMPTS[:2], seed=4, **kwargs)
    assert any(a["token_ids"] != b["token_ids"] for a, b in zip(samples, other, strict=True))
    # one generator per (prompt, temperature, sample): prompt 1 sampled on its own (its
    # index given by prompt_offset) runs the very same batches, so it is reproduced exactly
    alone = sample_trajectories(model, tokenizer, PROMPTS[1:2], seed=3, prompt_offset=1, **kwargs)
    ones = [r for r in samples if r["prompt_index"] == 1]
    assert [r["prompt_index"] for r in alone] == [1] * len(ones)
    for a, b in zip(ones, alone, strict=True):
        assert a["token_ids"] == b["token_ids"]
        np.testing.assert_array_equal(a["logprob"], b["logprob"])


def test_low_temperature_approaches_greedy(lm):
    model, tokenizer = lm
    out = sample_trajectories(
        model, tokenizer, PROMPTS[:2], k=2, temperatures=(0.0, 1e-3), max_new_tokens=12
    )
    greedy = [r for r in out if r["temperature"] == 0.0]
    cold = [r for r in out if r["temperature"] == 1e-3]
    for r in greedy:
        assert np.all(r["entropy"] == 0) and np.all(r["logprob"] == 0)  # a point mass
        start, ref = direct_forward(model, tokenizer, r["prompt"], r["token_ids"])
        n = len(r["token_ids"])
        assert r["token_ids"] == ref.logits[0, start - 1 : start - 1 + n].argmax(-1).tolist()
    for g, c in zip(greedy, cold, strict=True):
        assert c["token_ids"] == g["token_ids"]
        assert np.mean(c["entropy"]) < 1e-2


def test_entropy_grows_with_temperature(lm):
    model, tokenizer = lm
    temps = (0.3, 1.0, 1.6)
    out = sample_trajectories(
        model, tokenizer, PROMPTS[:2], k=3, temperatures=temps, max_new_tokens=12, seed=5
    )
    mean = [
        np.concatenate([r["entropy"] for r in out if r["temperature"] == t]).mean() for t in temps
    ]
    assert mean[0] < mean[1] < mean[2], mean


def test_no_eos_stop_gives_full_length(lm):
    model, tokenizer = lm
    out = sample_trajectories(
        model, tokenizer, ["Say OK."], k=2, temperatures=(1.0,), max_new_tokens=9, stop_at_eos=False
    )
    assert [len(r["token_ids"]) for r in out] == [9, 9]
    assert all(r["states"].shape == (9, 576) for r in out)


def test_sampling_bad_inputs(lm):
    model, tokenizer = lm
    with pytest.raises(ValueError, match="k must be"):
        sample_trajectories(model, tokenizer, ["a"], k=0)
    with pytest.raises(ValueError, match="temperatures"):
        sample_trajectories(model, tokenizer, ["a"], temperatures=(-0.5,))
    with pytest.raises(ValueError, match="temperatures"):
        sample_trajectories(model, tokenizer, ["a"], temperatures=())
    with pytest.raises(ValueError, match="distinct"):
        sample_trajectories(model, tokenizer, ["a"], temperatures=(1.0, 1.0))
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample_trajectories(model, tokenizer, ["a"], max_new_tokens=0)


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
    "kwargs, match",
    [({"layer": 30}, r"-30\.\.29"), ({"layer": -31}, r"-30\.\.29"), ({"head": 9}, r"0\.\.8")],
)
def test_attention_maps_bad_inputs(lm, kwargs, match):
    model, tokenizer = lm
    with pytest.raises(ValueError, match=match):
        attention_maps(model, tokenizer, "a", "b", **kwargs)


# ----------------------------------------------------------------------------- decoding


def test_nearest_tokens_recovers_embedding_rows(lm):
    model, tokenizer = lm
    ids = tokenizer(" Paris is beautiful", add_special_tokens=False)["input_ids"]
    weight = model.get_input_embeddings().weight.detach().double().numpy()
    for metric in ("cosine", "euclidean"):
        result = nearest_tokens(model, tokenizer, weight[ids], k=4, metric=metric)
        assert len(result) == len(ids)
        for tid, hits in zip(ids, result, strict=True):
            assert hits[0][0] == tokenizer.convert_ids_to_tokens(tid)
            scores = [s for _, s in hits]
            if metric == "cosine":
                assert scores == sorted(scores, reverse=True)
                assert abs(scores[0] - 1) <= 1e-12  # float64 cosine of a vector with itself
            else:
                assert scores == sorted(scores)
                assert scores[0] <= 1e-12  # float64 distance of a vector to itself
    single = nearest_tokens(model, tokenizer, weight[ids[0]], k=1)
    assert single[0][0][0] == tokenizer.convert_ids_to_tokens(ids[0])
    with pytest.raises(ValueError, match="metric"):
        nearest_tokens(model, tokenizer, weight[ids], metric="dot")
    with pytest.raises(ValueError, match=r"\(n, 576\)"):
        nearest_tokens(model, tokenizer, np.zeros((2, 3)))


def test_display_token_matches_tokenizer_decode(lm):
    _, tokenizer = lm
    assert display_token("Ġthe") == " the"
    assert display_token("Ċ") == "\n"
    assert display_token("ĠĠ") == "  "
    assert display_token("Ã©") == "é"
    assert display_token("<|im_end|>") == "<|im_end|>"
    assert display_token("▁word") == " word"
    # every vocabulary entry that is a whole UTF-8 string decodes as the tokenizer does
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    checked = 0
    for tid, tok in enumerate(vocab):
        text = tokenizer.decode([tid])
        if "\ufffd" in text:
            continue  # part of a multi-byte character: both show a replacement mark
        assert display_token(tok) == text, (tid, tok)
        checked += 1
    assert checked > 0.95 * len(vocab)
