"""Tests for sde_utils.extraction.sampling on the real default model: shapes and ranges,
every step against one full forward pass, seeding, temperature. Tolerances are explained
in ``llm_cases.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from llm_cases import PROMPTS, REL, direct_forward

from sde_utils.extraction.sampling import sample_trajectories

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
    with pytest.raises(TypeError, match=r"k must be an int >= 1, got 2\.0"):
        sample_trajectories(model, tokenizer, ["a"], k=2.0)
    with pytest.raises(TypeError, match=r"temperatures\[1\] must be a finite number >= 0"):
        sample_trajectories(model, tokenizer, ["a"], temperatures=(1.0, "hot"))
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        sample_trajectories(model, tokenizer, ["a"], seed=-1)


def test_same_rows_whatever_torch_thread_setting(lm, samples):
    # the thread policy: sampling runs single-threaded on the CPU, so a caller (or a
    # machine) with another thread count gets the same store, bit for bit
    model, tokenizer = lm
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = sample_trajectories(model, tokenizer, PROMPTS[:2], k=2, temperatures=(0.7, 1.3),
                                    max_new_tokens=12, seed=3)  # fmt: skip
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)
    for a, b in zip(samples, again, strict=True):
        assert a["token_ids"] == b["token_ids"]
        np.testing.assert_array_equal(a["states"], b["states"])
        np.testing.assert_array_equal(a["entropy"], b["entropy"])
    with pytest.raises(ValueError, match="cpu_threads must be an int >= 1"):
        sample_trajectories(model, tokenizer, PROMPTS, cpu_threads=0)
