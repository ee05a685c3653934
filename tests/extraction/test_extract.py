"""Text -> store glue, on the real local LLM (loaded from its cache, well under a second)."""

import numpy as np
import pytest

from sde_utils.extraction.extract import extract_pairs, sample_to_store
from sde_utils.extraction.llm import load_llm
from sde_utils.extraction.pairs import assign_splits, load_pairs
from sde_utils.extraction.sampling import sample_trajectories
from sde_utils.extraction.states import teacher_forced_states
from sde_utils.extraction.store import load_store

PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello in French."]


@pytest.fixture(scope="module")
def llm():
    return load_llm()


def test_prompt_offset_makes_chunked_sampling_equal_one_call(llm):
    model, tok = llm
    kw = dict(k=2, temperatures=[0.8, 1.2], max_new_tokens=6, kind="input", seed=3)
    whole = sample_trajectories(model, tok, PROMPTS, **kw)
    tail = sample_trajectories(model, tok, PROMPTS[1:], prompt_offset=1, **kw)
    assert [r["prompt_index"] for r in tail] == [r["prompt_index"] for r in whole[4:]]
    for a, b in zip(whole[4:], tail, strict=True):
        assert a["token_ids"] == b["token_ids"]  # same generator per row: same draws
        np.testing.assert_allclose(a["entropy"], b["entropy"], atol=1e-5)  # padding rounding


def test_min_new_tokens_forbids_an_immediate_end(llm):
    model, tok = llm
    # "Reply with nothing" invites an immediate end; with the mask no row may be empty
    rows = sample_trajectories(
        model, tok, ["Reply with nothing at all."], k=8, temperatures=[2.0],
        max_new_tokens=3, kind="input", seed=0, min_new_tokens=1,
    )  # fmt: skip
    eos = set(tok.all_special_ids)
    assert all(len(r["token_ids"]) >= 1 for r in rows)
    assert all(r["token_ids"][0] not in eos for r in rows)


def test_sampled_store_does_not_depend_on_chunking(llm, tmp_path):
    model, tok = llm
    prompts = [
        {"pair_id": f"p{i}", "conv_id": f"c{i}", "prompt": p, "split": "test"}
        for i, p in enumerate(PROMPTS)
    ]
    kw = dict(k=2, temperatures=[1.0], max_new_tokens=5, kind="input", seed=1, progress=False)
    a = load_store(
        sample_to_store(
            prompts, model, tok, params={"a": 1}, prompts_per_chunk=1, root=tmp_path, **kw
        )
    )
    b = load_store(
        sample_to_store(
            prompts, model, tok, params={"a": 2}, prompts_per_chunk=2, root=tmp_path, **kw
        )
    )
    assert len(a) == len(b) == 6
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert [list(t) for t in a.sequences["token_ids"]] == [
        list(t) for t in b.sequences["token_ids"]
    ]
    assert {"entropy", "logprob", "temperature", "sample_index", "prompt_index"} <= set(a.sequences)
    assert all(
        len(e) == n for e, n in zip(a.sequences["entropy"], a.sequences["length"], strict=True)
    )


def test_extract_pairs_stores_teacher_forced_states(llm, tmp_path):
    model, tok = llm
    pairs = load_pairs("sharegpt", n_pairs=6, seed=0, max_response_tokens=60)
    splits = assign_splits(pairs["conv_id"], val_frac=0.2, test_frac=0.2, seed=0)
    store = load_store(
        extract_pairs(
            pairs, splits, model, tok, kind="input", params={"n": 6}, root=tmp_path, progress=False
        )
    )
    direct = teacher_forced_states(
        model, tok, [pairs[0]["prompt"]], [pairs[0]["response"]], kind="input"
    )
    np.testing.assert_array_equal(store.trajectory(0), direct[0]["states"])  # same numbers, stored
    assert store.sequences["split"].tolist() == splits
    with pytest.raises(ValueError, match="got 5 split labels for 6 pairs"):
        extract_pairs(pairs, splits[:5], model, tok, kind="input", params={}, root=tmp_path)
